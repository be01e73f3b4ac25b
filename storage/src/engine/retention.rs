//! Retention primitives: a table's retention setting, and dropping whole months before
//! a cutoff — catalog first (files removed and the table marked expired up to the
//! cutoff, in one atomic commit), then buffered rows, then the files in the object
//! store. Deciding *which* months have expired is the compaction crate's janitor.

use crate::catalog::CatalogOp;
use crate::error::{Error, Result};
use crate::model::{Month, TableDef};

use super::{Storage, delete_objects};

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ExpireReport {
    /// Months that held data and were dropped.
    pub months: Vec<Month>,
    pub files: usize,
    pub rows: u64,
    pub bytes: u64,
}

impl Storage {
    /// Set (or with `None` clear) how long `table` keeps rows; the text is the caller's
    /// (`"4 months"`), checked by it.
    pub async fn set_retention(&self, table: &str, retention: Option<String>) -> Result<TableDef> {
        self.update_table(table, move |cur| {
            let mut def = cur.clone();
            def.retention = retention;
            Ok(def)
        })
        .await
    }

    /// Drop every month of `table` before `before`. From then on, writes for those
    /// months are refused (`Error::Expired`), so a dropped month never comes back.
    pub async fn expire_months_before(&self, table: &str, before: Month) -> Result<ExpireReport> {
        let _persist = self.inner.persist_lock.lock().await;
        let catalog = self.inner.catalog.clone();
        let table2 = table.to_string();
        let (def, files) = tokio::task::spawn_blocking(move || {
            let mut out = None;
            catalog.commit_checked(|state| {
                let cur = state
                    .tables
                    .get(&table2)
                    .ok_or_else(|| Error::TableNotFound {
                        table: table2.clone(),
                    })?;
                let files: Vec<_> = state
                    .files
                    .get(&cur.id)
                    .into_iter()
                    .flatten()
                    .filter(|f| f.month < before)
                    .cloned()
                    .collect();
                let mut def = (**cur).clone();
                def.expired_before = Some(def.expired_before.map_or(before, |e| e.max(before)));
                out = Some((def.clone(), files.clone()));
                let mut ops: Vec<CatalogOp> =
                    files.into_iter().map(CatalogOp::RemoveFile).collect();
                if def != **cur {
                    ops.push(CatalogOp::PutTable(def));
                }
                Ok(ops)
            })?;
            out.ok_or_else(|| Error::Task("expire produced nothing".into()))
        })
        .await??;
        let mut report = ExpireReport::default();
        let buffered: Vec<Month> = self
            .inner
            .buffer
            .lock()
            .partitions
            .keys()
            .filter(|(t, m)| *t == def.id && *m < before)
            .map(|(_, m)| *m)
            .collect();
        self.inner.buffer.drop_months_before(def.id, before);
        for f in &files {
            report.rows += f.rows;
            report.bytes += f.bytes;
        }
        // A file that cannot be deleted is no longer listed, so never read again.
        delete_objects(
            &self.inner.store,
            files.iter().map(|f| f.path.as_str()),
            "expired",
        )
        .await;
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
                "retention dropped expired months"
            );
        }
        drop(_persist);
        self.write_manifest().await;
        self.release_wal().await;
        Ok(report)
    }
}
