//! Charging a merge's own memory to the query memory pool: what its Parquet readers hold
//! (estimated per file when the merge starts), each input's current batch with its keys
//! and the batches its prefetch task decodes ahead, and a buffered partition's sorted
//! copy. Past the pool's limit the query fails with "resources exhausted" (SQLSTATE
//! 53200) instead of growing the process beyond its budget.

use arrow::array::Array;
use arrow::record_batch::RecordBatch;
use datafusion::error::Result;
use datafusion::execution::memory_pool::MemoryReservation;

/// Bytes of memory `batch` refers to (its slice of shared buffers, not whole buffers).
pub fn batch_bytes(batch: &RecordBatch) -> usize {
    batch
        .columns()
        .iter()
        .map(|c| {
            c.to_data()
                .get_slice_memory_size()
                .unwrap_or_else(|_| c.get_array_memory_size())
        })
        .sum()
}

/// A merge's reservation: a fixed part (the readers) plus what each input holds now.
#[derive(Debug)]
pub struct MergeMemory {
    reservation: MemoryReservation,
    fixed: usize,
    /// Batches each input's producer may hold beyond the merge's current one.
    batches_ahead: usize,
    /// Per input: bytes charged for its current batch (and those ahead of it).
    held: Vec<usize>,
    held_total: usize,
}

impl MergeMemory {
    /// Reserve `fixed` bytes at once (fails when the pool cannot give them).
    pub fn try_new(
        reservation: MemoryReservation,
        fixed: usize,
        batches_ahead: usize,
    ) -> Result<Self> {
        reservation.try_resize(fixed)?;
        Ok(MergeMemory {
            reservation,
            fixed,
            batches_ahead,
            held: Vec::new(),
            held_total: 0,
        })
    }

    /// Input `i` now holds `batch` with `key_bytes` of keys; `charge` is false for inputs
    /// whose rows are charged by the input itself (a sorted buffered partition).
    pub fn hold(
        &mut self,
        i: usize,
        batch: &RecordBatch,
        key_bytes: usize,
        charge: bool,
    ) -> Result<()> {
        let bytes = if charge {
            batch_bytes(batch) * (1 + self.batches_ahead)
        } else {
            0
        } + key_bytes;
        self.set(i, bytes)
    }

    /// Input `i` is done.
    pub fn release(&mut self, i: usize) {
        // Shrinking cannot fail.
        let _ = self.set(i, 0);
    }

    fn set(&mut self, i: usize, bytes: usize) -> Result<()> {
        if self.held.len() <= i {
            self.held.resize(i + 1, 0);
        }
        let total = self.held_total - self.held[i] + bytes;
        if total > self.held_total {
            self.reservation.try_resize(self.fixed + total)?;
        } else {
            self.reservation.resize(self.fixed + total);
        }
        self.held_total = total;
        self.held[i] = bytes;
        Ok(())
    }

    /// Bytes reserved now.
    pub fn reserved(&self) -> usize {
        self.reservation.size()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::Int64Array;
    use datafusion::execution::memory_pool::{GreedyMemoryPool, MemoryConsumer, MemoryPool};

    use super::*;

    fn batch(rows: i64) -> RecordBatch {
        RecordBatch::try_from_iter([("v", Arc::new(Int64Array::from_iter_values(0..rows)) as _)])
            .unwrap()
    }

    #[test]
    fn slices_count_their_share_and_the_pool_limit_holds() {
        let b = batch(1000);
        assert_eq!(batch_bytes(&b), 8000);
        assert_eq!(batch_bytes(&b.slice(0, 100)), 800);

        let pool: Arc<dyn MemoryPool> = Arc::new(GreedyMemoryPool::new(50_000));
        let r = MemoryConsumer::new("merge").register(&pool);
        let mut m = MergeMemory::try_new(r, 10_000, 2).unwrap();
        m.hold(0, &b, 100, true).unwrap();
        assert_eq!(m.reserved(), 10_000 + 3 * 8000 + 100);
        // A second input: 24,100 more would exceed 50,000.
        let err = m.hold(1, &b, 100, true).unwrap_err();
        assert!(err.to_string().contains("Resources exhausted"), "{err}");
        assert_eq!(m.reserved(), 10_000 + 3 * 8000 + 100, "nothing changed");
        // Uncharged rows (a buffered partition): only its keys.
        m.hold(1, &b, 100, false).unwrap();
        m.release(0);
        assert_eq!(m.reserved(), 10_000 + 100);
        assert_eq!(pool.reserved(), 10_100);
        drop(m);
        assert_eq!(pool.reserved(), 0, "freed with the merge");
        // A fixed part bigger than the pool fails at once.
        let r = MemoryConsumer::new("merge").register(&pool);
        assert!(MergeMemory::try_new(r, 60_000, 2).is_err());
        assert_eq!(pool.reserved(), 0);
    }
}
