//! `DELETE FROM t WHERE …` over tags and `ts`: logged in the WAL like a write (so it is
//! ordered with writes: a row acknowledged before the delete is removed, one written
//! after it stays), applied to the buffer when logged, recorded as a tombstone in the
//! catalog, applied by reads to older files and by compaction when it rewrites them.

use datafusion::prelude::Expr;
use futures::StreamExt;

use crate::catalog::CatalogOp;
use crate::error::{Error, Result};
use crate::model::{DeletePredicate, TableDef};
use crate::read::{ScanRequest, ordered_stream};
use crate::wal::{WalRecord, WalSeq};

use super::Storage;

impl Storage {
    /// Delete the rows of `table` matching any of `predicates` (all rows when empty)
    /// that were written before this call. Durable when it returns. Rollup tables are
    /// refused: they are recomputed from their source table.
    pub async fn delete(&self, table: &str, predicates: Vec<DeletePredicate>) -> Result<WalSeq> {
        let def = self
            .shared_table(table)
            .ok_or_else(|| Error::TableNotFound {
                table: table.into(),
            })?;
        if def.is_rollup() {
            return Err(Error::ReadOnlyTable {
                table: def.name.clone(),
            });
        }
        // Rollup-shaped queries read raw rows for this table until the rollup worker
        // has marked the buckets the delete changed (RollupView::deletes_pending).
        let seq = self.log_delete(&def, predicates).await?;
        Ok(seq)
    }

    /// Delete rows of a rollup table (the rollup worker, when a bucket's raw rows are
    /// all gone).
    pub async fn delete_rollup_rows(
        &self,
        def: &TableDef,
        predicates: Vec<DeletePredicate>,
    ) -> Result<WalSeq> {
        if !def.is_rollup() {
            return Err(Error::InvalidTableDef {
                table: def.name.clone(),
                reason: "not a rollup table".into(),
            });
        }
        self.log_delete(def, predicates).await
    }

    async fn log_delete(&self, def: &TableDef, predicates: Vec<DeletePredicate>) -> Result<WalSeq> {
        for p in &predicates {
            p.check(def)?;
        }
        let predicates = if predicates.is_empty() {
            vec![DeletePredicate::default()]
        } else {
            predicates
        };
        // No wait for room in the buffer: a delete only ever frees some.
        let seq = self
            .inner
            .wal
            .enqueue(WalRecord::delete(def.id, predicates))?
            .await?;
        self.commit_tombstones().await?;
        self.write_manifest().await;
        tracing::info!(table = %def.name, seq = seq.0, "DELETE logged");
        Ok(seq)
    }

    /// The DELETEs of a table logged so far (those of the catalog and those since).
    pub(crate) fn tombstones_of(
        &self,
        table: crate::model::TableId,
    ) -> Vec<std::sync::Arc<crate::model::Tombstone>> {
        self.inner
            .buffer
            .lock()
            .tombstones
            .get(&table)
            .cloned()
            .unwrap_or_default()
    }

    /// Months of `table` with files that DELETEs logged after them still apply to
    /// (compaction rewrites them, after which reads need not filter).
    pub fn months_with_deletes_due(&self, table: &str) -> Vec<crate::model::Month> {
        let Some(def) = self.shared_table(table) else {
            return Vec::new();
        };
        let tombstones = self.tombstones_of(def.id);
        if tombstones.is_empty() {
            return Vec::new();
        }
        let mut months: Vec<crate::model::Month> = self
            .inner
            .catalog
            .files(def.id)
            .iter()
            .filter(|f| {
                tombstones
                    .iter()
                    .any(|t| t.applies_to(f.max_seq, f.deletes_applied, f.min_ts, f.max_ts))
            })
            .map(|f| f.month)
            .collect();
        months.sort();
        months.dedup();
        months
    }

    /// Record in the catalog the tombstones logged since it was loaded. Must happen
    /// before the WAL segments holding them are released.
    pub(crate) async fn commit_tombstones(&self) -> Result<()> {
        let buffer = self.inner.buffer.clone();
        let catalog = self.inner.catalog.clone();
        tokio::task::spawn_blocking(move || {
            let new = buffer.uncommitted_tombstones();
            if new.is_empty() {
                return Ok(());
            }
            catalog.commit(new.into_iter().map(CatalogOp::AddTombstone).collect())
        })
        .await?
    }

    /// How many rows of `table` match any of `predicates` (all rows when empty).
    pub async fn count_matching(&self, table: &str, predicates: &[DeletePredicate]) -> Result<u64> {
        let mut n = 0u64;
        self.each_matching(table, predicates, |_, removed| {
            n += removed.true_count() as u64;
            Ok(())
        })
        .await?;
        Ok(n)
    }

    /// Key (tags, `ts`) of every row of `table` matching any of `predicates`, sorted by
    /// tags then `ts`: e.g. the rollup buckets a delete of raw rows changes.
    pub async fn keys_matching(
        &self,
        table: &str,
        predicates: &[DeletePredicate],
    ) -> Result<Vec<(Vec<String>, i64)>> {
        let n_tags = self.table(table).map_or(0, |d| d.tags.len());
        let mut out = Vec::new();
        self.each_matching(table, predicates, |batch, removed| {
            let ts = batch
                .column(0)
                .as_any()
                .downcast_ref::<arrow::array::TimestampMicrosecondArray>()
                .ok_or_else(|| Error::Task("ts column is not a microsecond timestamp".into()))?;
            let tags: Vec<&arrow::array::StringArray> = (1..=n_tags)
                .map(|i| batch.column(i).as_any().downcast_ref())
                .collect::<Option<_>>()
                .ok_or_else(|| Error::Task("tag column is not text".into()))?;
            for r in 0..batch.num_rows() {
                if removed.value(r) {
                    let series = tags.iter().map(|t| t.value(r).to_string()).collect();
                    out.push((series, ts.value(r)));
                }
            }
            Ok(())
        })
        .await?;
        Ok(out)
    }

    /// Read the key columns of `table` (deduplicated, sorted by tags then `ts`) and hand
    /// each batch to `f` with the rows `predicates` match flagged.
    async fn each_matching(
        &self,
        table: &str,
        predicates: &[DeletePredicate],
        mut f: impl FnMut(&arrow::record_batch::RecordBatch, &arrow::array::BooleanArray) -> Result<()>,
    ) -> Result<()> {
        let snapshot = match self.snapshot(table) {
            Ok(s) => s,
            Err(Error::TableNotFound { .. }) => return Ok(()),
            Err(e) => return Err(e),
        };
        let def = &snapshot.def;
        let predicates = if predicates.is_empty() {
            vec![DeletePredicate::default()]
        } else {
            predicates.to_vec()
        };
        let filter = predicates
            .iter()
            .map(DeletePredicate::to_expr)
            .reduce(Expr::or)
            .unwrap_or(datafusion::prelude::lit(true));
        let key: Vec<usize> = (0..def.key_len()).collect();
        let request = ScanRequest {
            projection: Some(key.clone()),
            filters: vec![filter],
            ordered: true,
            small_files: None,
            text_hits: None,
            ..Default::default()
        };
        let mut stream = ordered_stream(&self.inner.read_session, &snapshot, &request)?;
        let schema = def
            .arrow_schema()
            .project(&key)
            .map_err(Error::arrow("projecting key columns"))?;
        // The scan prunes with the filter; rows are tested exactly here.
        let probe = crate::model::Tombstone {
            table_id: def.id,
            seq: WalSeq(u64::MAX),
            predicates,
        };
        let compiled = crate::model::CompiledDelete::new(&schema, &[&probe])?
            .ok_or_else(|| Error::Task("no predicate".into()))?;
        while let Some(batch) = stream.next().await {
            let batch = batch.map_err(Error::read(table))?;
            let keep = compiled.keep_mask(&batch)?;
            let removed = arrow::compute::not(&keep).map_err(Error::arrow("negating a mask"))?;
            f(&batch, &removed)?;
        }
        Ok(())
    }
}
