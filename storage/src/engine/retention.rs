//! Retention primitives: a table's retention setting, and dropping whole months before
//! a cutoff — the table is marked expired up to the cutoff first (writes to those months
//! are refused from then on), then, with an archive, buffered rows are persisted and the
//! months copied to the archive; then one commit removes the files (and records the
//! archive copies), then buffered rows are dropped, then the files deleted from the
//! object store. Deciding *which* months have expired is the compaction crate's janitor.

use std::time::Duration;

use crate::catalog::{CatalogOp, ObjectPlace};
use crate::error::{Error, Result};
use crate::model::{Month, TableDef};

use super::Storage;
use super::deletes::{keep_listed, pending_deletes};

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ExpireReport {
    /// Months that held data and were dropped.
    pub months: Vec<Month>,
    pub files: usize,
    pub rows: u64,
    pub bytes: u64,
    /// Months copied to the archive before they were dropped.
    pub archived: usize,
}

impl Storage {
    /// Set (or with `None` clear) how long `table` keeps rows; the text is the caller's
    /// (`"4 months"`), checked by it, and `keeps_from` the first month that retention
    /// keeps today (`None`: all). A wider retention re-opens the expired months it keeps
    /// again (empty, writable: backfill is deliberate then, and no run drops them); a
    /// narrower one changes nothing until the janitor's next run drops months.
    pub async fn set_retention(
        &self,
        table: &str,
        retention: Option<String>,
        keeps_from: Option<Month>,
    ) -> Result<TableDef> {
        self.update_table(table, move |cur| {
            let mut def = cur.clone();
            def.retention = retention;
            def.expired_before = match (def.expired_before, keeps_from) {
                (Some(e), Some(k)) => Some(e.min(k)),
                _ => None,
            };
            let expired_before = def.expired_before;
            def.restored
                .retain(|m, _| expired_before.is_some_and(|e| *m < e));
            Ok(def)
        })
        .await
    }

    /// Drop every month of `table` before `before`, except restored months whose hold
    /// lasts past `now_ms`. From then on, writes for the dropped months are refused
    /// (`Error::Expired`), so a dropped month never comes back. With an archive store,
    /// each month (its buffered rows persisted first) is copied there before it is
    /// dropped; if the copy fails nothing is dropped and the error is returned (the next
    /// run retries).
    pub async fn expire_months_before(
        &self,
        table: &str,
        before: Month,
        now_ms: i64,
    ) -> Result<ExpireReport> {
        let _persist = self.inner.persist_lock.lock().await;
        // 1. From here on writes to the months are refused; holds that ended are let go.
        let def = self
            .update_table(table, move |cur| {
                let mut def = cur.clone();
                def.expired_before = Some(def.expired_before.map_or(before, |e| e.max(before)));
                def.restored
                    .retain(|m, until| *m >= before || *until > now_ms);
                Ok(def)
            })
            .await?;
        let expired = def.clone();
        let doomed = move |m: Month| m < before && expired.is_month_expired(m);
        let buffered = self.inner.buffer.months_of(def.id, &doomed);
        // 2. With an archive, rows still buffered go to files first, and every month's
        // files are copied before anything is dropped.
        let mut archived = Vec::new();
        if self.inner.archive.is_some() {
            for &month in &buffered {
                let mut flushed = super::persister::FlushReport::default();
                while super::persister::persist_round(self, &def, month, &mut flushed).await? {}
            }
            let mut by_month: std::collections::BTreeMap<Month, Vec<crate::catalog::FileMeta>> =
                Default::default();
            for f in self.inner.catalog.files(def.id) {
                if doomed(f.month) {
                    by_month.entry(f.month).or_default().push(f);
                }
            }
            for (month, files) in by_month {
                archived.push(self.copy_to_archive(&def, month, files).await?);
            }
        }
        // 3. One commit removes the files and records the archive copies.
        let catalog = self.inner.catalog.clone();
        let (table_id, archived2, doomed2) = (def.id, archived.clone(), doomed.clone());
        let files = tokio::task::spawn_blocking(move || {
            let mut removed = Vec::new();
            catalog.commit_checked(|state| {
                let files: Vec<_> = state
                    .files
                    .get(&table_id)
                    .into_iter()
                    .flatten()
                    .filter(|f| doomed2(f.month))
                    .cloned()
                    .collect();
                let mut ops = pending_deletes(
                    ObjectPlace::Store,
                    files.iter().flat_map(|f| f.objects()),
                    Duration::ZERO,
                    "expired",
                );
                for a in &archived2 {
                    let keep = a.archive_paths();
                    // A month archived before (then restored): archive objects no longer
                    // part of it go; those of the new copy stay even if an earlier
                    // replacement had them waiting for their delete.
                    if let Some(old) = state.archived.get(&(a.table_id, a.month)) {
                        let replaced = old
                            .archive_paths()
                            .into_iter()
                            .filter(|p| !keep.contains(p));
                        let replaced: Vec<String> = replaced.collect();
                        ops.extend(pending_deletes(
                            ObjectPlace::Archive,
                            replaced.iter().map(String::as_str),
                            Duration::ZERO,
                            "re-archived",
                        ));
                    }
                    ops.extend(
                        keep.into_iter()
                            .filter_map(|p| keep_listed(state, ObjectPlace::Archive, p)),
                    );
                }
                removed = files.clone();
                ops.extend(files.into_iter().map(CatalogOp::RemoveFile));
                ops.extend(archived2.into_iter().map(CatalogOp::PutArchived));
                Ok(ops)
            })?;
            Ok::<_, Error>(removed)
        })
        .await??;
        let mut report = ExpireReport::default();
        // Rows of the months still buffered (without an archive; or written just before
        // step 1) are dropped with them.
        let buffered = self.inner.buffer.months_of(def.id, &doomed);
        self.inner.buffer.drop_months(def.id, &buffered);
        // The dropped rows may be some series' newest: built again on next use (the
        // months may be re-opened by a wider retention, so filtering is not enough).
        self.inner.last_values.forget(def.id);
        for f in &files {
            report.rows += f.rows;
            report.bytes += f.bytes;
        }
        // A file that cannot be deleted now is no longer listed, so never read again,
        // and stays recorded until a later sweep deletes it.
        self.sweep_deletes().await;
        report.archived = archived.len();
        report.files = files.len();
        report.months = files.iter().map(|f| f.month).chain(buffered).collect();
        report.months.sort();
        report.months.dedup();
        if !report.months.is_empty() {
            tracing::info!(
                table = %def.name,
                before = %before,
                months = ?report.months.iter().map(|m| m.to_string()).collect::<Vec<_>>(),
                files = report.files,
                rows = report.rows,
                archived = report.archived,
                "retention dropped expired months"
            );
        }
        drop(_persist);
        self.write_manifest().await;
        self.release_wal().await;
        Ok(report)
    }
}
