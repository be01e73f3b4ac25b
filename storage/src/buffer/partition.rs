//! One (table, month) partition of the write buffer.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use arrow::array::{Array, TimestampMicrosecondArray};
use arrow::compute::concat_batches;
use arrow::record_batch::RecordBatch;

use crate::model::{Month, TableId};
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
    /// Sorted by (tags, ts) with one row per key (see [`Partition::replace_sorted`]).
    pub sorted: bool,
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
            sorted: false,
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
    /// Set by readers that had to sort this partition's rows, cleared by the sorter that
    /// then keeps its active rows sorted for them (see [`Partition::sort_work`]).
    pub read_wanted: Arc<AtomicBool>,
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
            read_wanted: Arc::new(AtomicBool::new(false)),
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

    /// The active chunks to sort into one, when readers asked for this partition and
    /// enough unsorted rows came after its sorted chunk (at least `min_rows`, and a
    /// quarter of the sorted rows: every row is re-sorted a bounded number of times).
    /// `force`: whenever any active chunk is unsorted, readers or not (tests).
    pub fn sort_work(&self, min_rows: usize, force: bool) -> Option<Vec<Chunk>> {
        if force {
            return self
                .active
                .iter()
                .any(|c| !c.sorted)
                .then(|| self.active.clone());
        }
        if !self.read_wanted.load(Ordering::Relaxed) {
            return None;
        }
        let sorted_rows = match self.active.first() {
            Some(c) if c.sorted => c.batch.num_rows(),
            _ => 0,
        };
        let unsorted: usize = self
            .active
            .iter()
            .filter(|c| !c.sorted)
            .map(|c| c.batch.num_rows())
            .sum();
        if unsorted < min_rows.max(sorted_rows / 4) {
            return None;
        }
        self.read_wanted.store(false, Ordering::Relaxed);
        Some(self.active.clone())
    }

    /// Put `sorted` (the rows of `taken`, sorted and deduplicated) in place of the active
    /// chunks it was made from, if they are still the first active chunks (a freeze or a
    /// coalescing since then: nothing is replaced). Reads see the same rows either way:
    /// within the chunks replaced, the last write of each key is kept, and later chunks
    /// still win over it.
    pub fn replace_sorted(&mut self, taken: &[Chunk], sorted: Chunk) -> bool {
        let same = |a: &Chunk, b: &Chunk| {
            a.min_seq == b.min_seq
                && a.max_seq == b.max_seq
                && a.batch.num_rows() == b.batch.num_rows()
                && a.bytes == b.bytes
        };
        if taken.is_empty()
            || self.active.len() < taken.len()
            || !taken.iter().zip(&self.active).all(|(t, a)| same(t, a))
        {
            return false;
        }
        self.active.splice(..taken.len(), [sorted]);
        true
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

    pub fn ts_range(&self) -> Option<(i64, i64)> {
        let min = self.chunks().map(|c| c.min_ts).min()?;
        let max = self.chunks().map(|c| c.max_ts).max()?;
        Some((min, max))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::TimestampMicrosecondArray;
    use arrow::datatypes::{DataType, Field, Schema, TimeUnit};

    fn chunk(seq: u64, rows: i64) -> Chunk {
        let schema = Arc::new(Schema::new(vec![Field::new(
            "ts",
            DataType::Timestamp(TimeUnit::Microsecond, None),
            false,
        )]));
        let ts = TimestampMicrosecondArray::from_iter_values(0..rows);
        let b = RecordBatch::try_new(schema, vec![Arc::new(ts)]).unwrap();
        Chunk::new(b, WalSeq(seq))
    }

    #[test]
    fn a_sorted_chunk_replaces_only_the_chunks_it_was_made_from() {
        let mut p = Partition::new(TableId(1), Month::parse("2026-11").unwrap());
        for seq in 1..=3 {
            p.append(chunk(seq, 10_000));
        }
        // Nobody read it: no work; forced: all three active chunks.
        assert!(p.sort_work(1, false).is_none());
        let taken = p.sort_work(1, true).unwrap();
        assert_eq!(taken.len(), 3);
        p.append(chunk(4, 10_000));
        let mut sorted = chunk(1, 30_000);
        sorted.max_seq = WalSeq(3);
        sorted.sorted = true;
        assert!(p.replace_sorted(&taken, sorted.clone()));
        assert_eq!(p.active.len(), 2);
        assert!(p.active[0].sorted && !p.active[1].sorted);
        assert_eq!(p.rows(), 40_000);
        assert_eq!(p.min_seq(), Some(WalSeq(1)));
        // After a freeze the first active chunks are others: nothing is replaced.
        let taken = p.sort_work(1, true).unwrap();
        p.freeze(1);
        assert!(!p.replace_sorted(&taken, sorted));
        assert_eq!(p.rows(), 40_000);
        // A reader asked, and only unsorted rows are active: work.
        p.read_wanted.store(true, Ordering::Relaxed);
        assert!(p.sort_work(1, false).is_some());
    }
}
