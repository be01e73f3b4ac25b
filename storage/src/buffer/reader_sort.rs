//! Keeping buffered rows sorted for readers. A query over a month being written merges
//! the buffer with the month's files, and the buffer's rows must be in key order for
//! that: sorted by every query, a large partition made each one pay for the whole sort.
//! Once a reader has had to sort a partition, the active chunks of that partition are
//! sorted once, in the background, into one chunk (one row per key, the last write) that
//! later readers take as it is; only rows written after it are sorted per query. A
//! partition is re-sorted when the unsorted rows after its sorted chunk reach a quarter
//! of it, so each row is sorted a bounded number of times, and never without readers.

use std::sync::Arc;

use crate::batch::{adapt_to_schema, sort_dedup_batches};
use crate::error::Result;
use crate::model::{Month, TableId};

use super::{Chunk, WriteBuffer};

/// Fewer unsorted rows than this are left to the readers.
pub const MIN_ROWS_TO_SORT: usize = 16 * 1024;

/// Active chunks of one partition to sort into one.
pub struct SortWork {
    key: (TableId, Month),
    key_len: usize,
    taken: Vec<Chunk>,
}

impl WriteBuffer {
    /// The partitions readers asked for that have enough unsorted rows (`force`: every
    /// partition with unsorted active rows).
    pub fn take_sort_work(&self, force: bool) -> Vec<SortWork> {
        let state = self.lock();
        state
            .partitions
            .iter()
            .filter_map(|(key, p)| {
                let key_len = self.catalog.shared_table_by_id(key.0)?.key_len();
                let taken = p.sort_work(MIN_ROWS_TO_SORT, force)?;
                Some(SortWork {
                    key: *key,
                    key_len,
                    taken,
                })
            })
            .collect()
    }

    /// Put the sorted chunk in place (if the partition did not change underneath).
    pub fn finish_sort(&self, work: SortWork, sorted: Chunk) -> bool {
        let mut state = self.lock();
        match state.partitions.get_mut(&work.key) {
            Some(p) => p.replace_sorted(&work.taken, sorted),
            None => false,
        }
    }
}

impl SortWork {
    /// The taken chunks as one chunk sorted by key, in the newest layout among them.
    pub fn sort(&self) -> Result<Chunk> {
        let schema = self
            .taken
            .iter()
            .map(|c| c.batch.schema())
            .max_by_key(|s| s.fields().len())
            .unwrap_or_else(|| Arc::new(arrow::datatypes::Schema::empty()));
        let batches = self
            .taken
            .iter()
            .map(|c| adapt_to_schema(&c.batch, &schema))
            .collect::<Result<Vec<_>>>()?;
        let sorted = sort_dedup_batches(&schema, &batches, self.key_len)?;
        let min_seq = self.taken.iter().map(|c| c.min_seq).min();
        let max_seq = self.taken.iter().map(|c| c.max_seq).max();
        let mut chunk = Chunk::new(sorted, min_seq.unwrap_or(crate::wal::WalSeq(0)));
        chunk.max_seq = max_seq.unwrap_or(chunk.min_seq);
        chunk.sorted = true;
        Ok(chunk)
    }
}

/// Sort what readers asked for, every `tick`, until `shutdown`.
pub async fn run(
    buffer: Arc<WriteBuffer>,
    tick: std::time::Duration,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(tick) => {}
            _ = shutdown.changed() => return,
        }
        if *shutdown.borrow() {
            return;
        }
        sort_now(&buffer, false).await;
    }
}

/// Sort the partitions due (`force`: all with unsorted active rows) now; returns how
/// many chunks were put in place.
pub async fn sort_now(buffer: &Arc<WriteBuffer>, force: bool) -> usize {
    let mut done = 0;
    for work in buffer.take_sort_work(force) {
        let sorted = tokio::task::spawn_blocking(move || {
            let sorted = work.sort();
            (work, sorted)
        })
        .await;
        match sorted {
            Ok((work, Ok(chunk))) => done += usize::from(buffer.finish_sort(work, chunk)),
            Ok((_, Err(e))) => tracing::warn!(error = %e, "sorting buffered rows failed"),
            Err(e) => tracing::warn!(error = %e, "sorting buffered rows failed"),
        }
    }
    done
}
