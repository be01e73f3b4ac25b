//! One (table, month) partition of the write buffer.

use std::time::Instant;

use arrow::array::{Array, TimestampMicrosecondArray};
use arrow::compute::concat_batches;
use arrow::record_batch::RecordBatch;

use crate::error::Result;
use crate::model::{CompiledDelete, Month, TableId, Tombstone};
use crate::wal::WalSeq;

/// Chunks smaller than this are merged together once there are many of them, so that a
/// stream of one-row writes does not become a million one-row batches.
const SMALL_CHUNK_ROWS: usize = 8192;
const MAX_SMALL_CHUNKS: usize = 64;

#[derive(Debug, Clone)]
pub struct Chunk {
    pub batch: RecordBatch,
    pub min_seq: WalSeq,
    pub max_seq: WalSeq,
    pub min_ts: i64,
    pub max_ts: i64,
    pub bytes: usize,
}

impl Chunk {
    pub fn new(batch: RecordBatch, seq: WalSeq) -> Self {
        let (min_ts, max_ts) = ts_range(&batch);
        Chunk {
            bytes: batch.get_array_memory_size(),
            batch,
            min_seq: seq,
            max_seq: seq,
            min_ts,
            max_ts,
        }
    }
}

fn ts_range(batch: &RecordBatch) -> (i64, i64) {
    let Some(ts) = batch
        .column(0)
        .as_any()
        .downcast_ref::<TimestampMicrosecondArray>()
    else {
        return (i64::MIN, i64::MAX);
    };
    let min = arrow::compute::min(ts).unwrap_or(i64::MAX);
    let max = arrow::compute::max(ts).unwrap_or(i64::MIN);
    (min, max)
}

#[derive(Debug)]
pub struct Partition {
    pub table_id: TableId,
    pub month: Month,
    /// Being written to Parquet by the persister; removed when the file is in the catalog.
    pub frozen: Vec<Chunk>,
    /// Writes since the last freeze, oldest first.
    pub active: Vec<Chunk>,
    first_active_write: Option<Instant>,
    frozen_at: Option<Instant>,
}

impl Partition {
    pub fn new(table_id: TableId, month: Month) -> Self {
        Partition {
            table_id,
            month,
            frozen: Vec::new(),
            active: Vec::new(),
            first_active_write: None,
            frozen_at: None,
        }
    }

    pub fn append(&mut self, chunk: Chunk) {
        if chunk.batch.num_rows() == 0 {
            return;
        }
        self.first_active_write.get_or_insert_with(Instant::now);
        self.active.push(chunk);
        self.coalesce_small_chunks();
    }

    fn coalesce_small_chunks(&mut self) {
        let small_from = self
            .active
            .iter()
            .rposition(|c| c.batch.num_rows() >= SMALL_CHUNK_ROWS)
            .map_or(0, |i| i + 1);
        if self.active.len() - small_from < MAX_SMALL_CHUNKS {
            return;
        }
        let small: Vec<Chunk> = self.active.drain(small_from..).collect();
        // All chunks of one partition are built from the table's definition at write time;
        // bring them to the newest layout before concatenating.
        let schema = small
            .iter()
            .map(|c| c.batch.schema())
            .max_by_key(|s| s.fields().len())
            .expect("non-empty");
        let adapted: Result<Vec<_>, _> = small
            .iter()
            .map(|c| crate::batch::adapt_to_schema(&c.batch, &schema))
            .collect();
        let merged = adapted.ok().and_then(|b| concat_batches(&schema, &b).ok());
        match merged {
            Some(batch) => {
                let mut c = Chunk::new(batch, small[0].min_seq);
                c.max_seq = small.iter().map(|c| c.max_seq).max().unwrap_or(c.min_seq);
                self.active.push(c);
            }
            None => self.active.extend(small), // keep them as they are
        }
    }

    /// Move the oldest active chunks, up to `max_bytes` of them (at least one), to the
    /// frozen set and return the frozen chunks to write. When an earlier persist failed,
    /// its frozen chunks are returned as they are, so a retry never grows without bound.
    /// Freezing a prefix keeps every frozen row older than every active one.
    pub fn freeze(&mut self, max_bytes: usize) -> Vec<Chunk> {
        if self.frozen.is_empty() {
            let mut bytes = 0;
            let take = self
                .active
                .iter()
                .take_while(|c| {
                    bytes += c.bytes;
                    bytes <= max_bytes
                })
                .count()
                .max(1)
                .min(self.active.len());
            self.frozen.extend(self.active.drain(..take));
            if self.active.is_empty() {
                self.first_active_write = None;
            }
        }
        if !self.frozen.is_empty() {
            self.frozen_at.get_or_insert_with(Instant::now);
        }
        self.frozen.clone()
    }

    /// Rows written since the last freeze are waiting.
    pub fn has_active(&self) -> bool {
        !self.active.is_empty()
    }

    /// Drop frozen chunks once their file is in the catalog.
    pub fn release_frozen(&mut self) {
        self.frozen.clear();
        self.frozen_at = None;
    }

    pub fn chunks(&self) -> impl Iterator<Item = &Chunk> {
        self.frozen.iter().chain(self.active.iter())
    }

    pub fn is_empty(&self) -> bool {
        self.frozen.is_empty() && self.active.is_empty()
    }

    pub fn bytes(&self) -> usize {
        self.chunks().map(|c| c.bytes).sum()
    }

    pub fn rows(&self) -> usize {
        self.chunks().map(|c| c.batch.num_rows()).sum()
    }

    pub fn min_seq(&self) -> Option<WalSeq> {
        self.chunks().map(|c| c.min_seq).min()
    }

    pub fn oldest_write(&self) -> Option<Instant> {
        match (self.frozen_at, self.first_active_write) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Drop the rows `tombstone` removes, from the frozen chunks too (the persister
    /// writes its own copy; the tombstone applies to that file). Returns the rows
    /// removed.
    pub fn delete(&mut self, tombstone: &Tombstone) -> Result<usize> {
        let mut removed = 0;
        for chunks in [&mut self.frozen, &mut self.active] {
            for chunk in chunks.iter_mut() {
                if !tombstone
                    .predicates
                    .iter()
                    .any(|p| p.overlaps(chunk.min_ts, chunk.max_ts))
                {
                    continue;
                }
                let schema = chunk.batch.schema();
                let Some(compiled) = CompiledDelete::new(&schema, &[tombstone])? else {
                    continue;
                };
                let keep = compiled.keep_mask(&chunk.batch)?;
                let kept = keep.true_count();
                if kept == chunk.batch.num_rows() {
                    continue;
                }
                removed += chunk.batch.num_rows() - kept;
                let batch = arrow::compute::filter_record_batch(&chunk.batch, &keep)
                    .map_err(|e| crate::error::Error::Task(format!("DELETE: {e}")))?;
                let mut filtered = Chunk::new(batch, chunk.min_seq);
                filtered.max_seq = chunk.max_seq;
                *chunk = filtered;
            }
            chunks.retain(|c| c.batch.num_rows() > 0);
        }
        if self.active.is_empty() {
            self.first_active_write = None;
        }
        Ok(removed)
    }

    pub fn ts_range(&self) -> Option<(i64, i64)> {
        let min = self.chunks().map(|c| c.min_ts).min()?;
        let max = self.chunks().map(|c| c.max_ts).max()?;
        Some((min, max))
    }
}
