//! Compaction primitive: merge every Parquet file of one (table, month) into one sorted,
//! deduplicated file (streaming, so a month need not fit in memory), swap it into the catalog atomically (only if the old files are all
//! still there), and delete the old files after a grace period, so a query that planned
//! with them can still read them. Which months to compact, and when, is the compaction
//! crate's business.

use std::time::Duration;

use crate::catalog::{CatalogOp, FileMeta, ObjectPlace};
use crate::error::{Error, Result};
use crate::model::Month;
use crate::persist::{file_path, merge_files, new_file_id};

use super::Storage;
use super::deletes::pending_deletes;

/// What compacting one month did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompactReport {
    pub month: Month,
    pub files_before: usize,
    pub bytes_before: u64,
    pub rows_before: u64,
    /// The merged file.
    pub file: FileMeta,
}

/// How many recent compactions `Storage::recent_compactions` keeps.
pub const COMPACTION_LOG_LEN: usize = 1000;

impl Storage {
    /// The latest compactions (table, report), oldest first.
    pub fn recent_compactions(&self) -> Vec<(String, CompactReport)> {
        self.inner
            .compactions
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .cloned()
            .collect()
    }

    /// Merge all files of `table`'s `month` into one. `None` when there were fewer than
    /// two files, or the month changed meanwhile (files expired or the table dropped; the
    /// new file is then deleted and nothing changes). Old files are deleted `grace`
    /// after the swap.
    pub async fn compact_month(
        &self,
        table: &str,
        month: Month,
        grace: Duration,
    ) -> Result<Option<CompactReport>> {
        self.compact_files(table, month, None, grace).await
    }

    /// The month's files, oldest write first (the order in which they are ranked).
    pub fn month_files(&self, table: &str, month: Month) -> Vec<FileMeta> {
        let Some(def) = self.table(table) else {
            return Vec::new();
        };
        let mut files: Vec<FileMeta> = self
            .inner
            .catalog
            .files(def.id)
            .into_iter()
            .filter(|f| f.month == month)
            .collect();
        files.sort_by_key(|f| f.max_seq);
        files
    }

    /// Merge some of a month's files into one: `paths` must name files that are
    /// consecutive in write order (see [`Storage::month_files`]), so that no file outside
    /// the merge sits between two of its inputs and the merged file (ranked by the newest
    /// input) keeps every key's newest write on top. `None` merges the whole month. `None`
    /// is returned when fewer than two files would be merged or the month changed.
    pub async fn compact_files(
        &self,
        table: &str,
        month: Month,
        paths: Option<&[String]>,
        grace: Duration,
    ) -> Result<Option<CompactReport>> {
        let Some(def) = self.table(table) else {
            return Err(Error::TableNotFound {
                table: table.into(),
            });
        };
        let all = self.month_files(table, month);
        let old: Vec<FileMeta> = match paths {
            None => all,
            Some(paths) => {
                let pos: Vec<usize> = paths
                    .iter()
                    .filter_map(|p| all.iter().position(|f| &f.path == p))
                    .collect();
                if pos.len() != paths.len() {
                    return Ok(None); // some input is gone already
                }
                let (lo, hi) = (
                    pos.iter().copied().min().unwrap_or(0),
                    pos.iter().copied().max().unwrap_or(0),
                );
                if hi + 1 - lo != pos.len() {
                    return Err(Error::Task(format!(
                        "compacting {table} {month}: the files to merge are not consecutive in write order"
                    )));
                }
                all[lo..=hi].to_vec()
            }
        };
        let path = file_path(&def.name, month, &new_file_id());
        // Every DELETE logged so far is applied to the inputs it concerns; the merged
        // file records that, so reads stop re-applying them.
        let tombstones = self.tombstones_of(def.id);
        let deletes_applied = tombstones
            .iter()
            .map(|t| t.seq)
            .max()
            .unwrap_or(crate::wal::WalSeq(0));
        // One file is rewritten only to apply DELETEs to it.
        let deletes_due = old.iter().any(|f| {
            tombstones
                .iter()
                .any(|t| t.applies_to(f.max_seq, f.deletes_applied, f.min_ts, f.max_ts))
        });
        if old.is_empty() || (old.len() < 2 && !deletes_due) {
            return Ok(None);
        }
        let merged = merge_files(
            &self.inner.read_session,
            &self.inner.store,
            &def,
            &old,
            &tombstones,
            &path,
            &self.inner.config.fulltext_scratch_dir(),
        )
        .await?;
        let (rows, bytes) = (merged.rows, merged.bytes);
        crate::metrics::StorageMetrics::add(
            &self.inner.metrics.text_indexes_built,
            merged.fulltext.len() as u64,
        );
        let file = FileMeta {
            table_id: def.id,
            month,
            path: path.clone(),
            min_ts: old.iter().map(|f| f.min_ts).min().unwrap_or(0),
            max_ts: old.iter().map(|f| f.max_ts).max().unwrap_or(0),
            rows,
            bytes,
            max_seq: old
                .iter()
                .map(|f| f.max_seq)
                .max()
                .unwrap_or(crate::wal::WalSeq(0)),
            created_at_ms: chrono::Utc::now().timestamp_millis(),
            deletes_applied: old
                .iter()
                .map(|f| f.deletes_applied)
                .max()
                .unwrap_or_default()
                .max(deletes_applied),
            fulltext: merged.fulltext,
        };
        let catalog = self.inner.catalog.clone();
        let (old2, file2) = (old.clone(), file.clone());
        let swapped = tokio::task::spawn_blocking(move || {
            catalog.commit_checked(|state| {
                let current = state.files.get(&old2[0].table_id);
                let all_there = old2
                    .iter()
                    .all(|o| current.is_some_and(|files| files.iter().any(|f| f.path == o.path)));
                if !all_there {
                    return Ok(vec![]);
                }
                let mut ops: Vec<CatalogOp> =
                    old2.iter().cloned().map(CatalogOp::RemoveFile).collect();
                ops.push(CatalogOp::AddFile(file2));
                ops.extend(pending_deletes(
                    ObjectPlace::Store,
                    old2.iter().flat_map(|f| f.objects()),
                    grace,
                    "compacted",
                ));
                Ok(ops)
            })
        })
        .await??;
        if swapped.is_empty() {
            // The month changed meanwhile: the new file is not needed.
            let catalog = self.inner.catalog.clone();
            let ops = pending_deletes(
                ObjectPlace::Store,
                file.objects(),
                Duration::ZERO,
                "superseded merge",
            );
            tokio::task::spawn_blocking(move || catalog.commit(ops)).await??;
            self.sweep_deletes().await;
            return Ok(None);
        }
        self.write_manifest().await;
        self.sweep_after(grace);
        let report = CompactReport {
            month,
            files_before: old.len(),
            bytes_before: old.iter().map(|f| f.bytes).sum(),
            rows_before: old.iter().map(|f| f.rows).sum(),
            file,
        };
        {
            let mut log = self
                .inner
                .compactions
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            if log.len() == COMPACTION_LOG_LEN {
                log.pop_front();
            }
            log.push_back((def.name.clone(), report.clone()));
        }
        tracing::info!(
            table = %def.name,
            %month,
            files_before = report.files_before,
            rows_before = report.rows_before,
            rows_after = report.file.rows,
            bytes_before = report.bytes_before,
            bytes_after = report.file.bytes,
            "compacted month"
        );
        Ok(Some(report))
    }
}
