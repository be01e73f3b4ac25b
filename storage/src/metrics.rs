//! Counters of the write path, read by the binary's `/metrics` endpoint. Plain atomics:
//! cheap enough for every write, no registry dependency.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

#[derive(Debug, Default)]
pub struct StorageMetrics {
    /// Rows acknowledged (durable in the WAL).
    pub rows_written: AtomicU64,
    /// Rows refused by validation.
    pub rows_rejected: AtomicU64,
    /// WAL records and group commits (fsyncs).
    pub wal_records: AtomicU64,
    pub wal_fsyncs: AtomicU64,
    pub wal_bytes: AtomicU64,
    /// Time spent in WAL write + fsync, and waiting for buffer room (backpressure).
    pub wal_fsync_micros: AtomicU64,
    pub backpressure_wait_micros: AtomicU64,
    /// Parquet files written by the persister, their bytes, and failed attempts.
    pub persisted_files: AtomicU64,
    pub persisted_bytes: AtomicU64,
    pub persist_failures: AtomicU64,
    /// Full-text index lookups by scans (one per file and filter), those that found the
    /// index missing or damaged (the file was read whole), and files skipped for
    /// having no matching row.
    pub text_index_searches: AtomicU64,
    pub text_index_failures: AtomicU64,
    pub text_index_files_skipped: AtomicU64,
    /// Rows of overlapping files a merge did not read because no version of their key
    /// can match (see `read::merge_candidates`).
    pub text_index_merge_rows_skipped: AtomicU64,
    /// Full-text indexes built (at persist, compaction, or by the index builder).
    pub text_indexes_built: AtomicU64,
}

impl StorageMetrics {
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    pub fn add_duration(counter: &AtomicU64, d: Duration) {
        counter.fetch_add(d.as_micros() as u64, Ordering::Relaxed);
    }

    /// (name, help, kind, value) for Prometheus exposition.
    pub fn snapshot(&self) -> Vec<(&'static str, &'static str, &'static str, f64)> {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed) as f64;
        vec![
            (
                "wattdb_rows_written_total",
                "Rows acknowledged (durable in the WAL).",
                "counter",
                get(&self.rows_written),
            ),
            (
                "wattdb_rows_rejected_total",
                "Rows refused by validation.",
                "counter",
                get(&self.rows_rejected),
            ),
            (
                "wattdb_wal_records_total",
                "WAL records appended.",
                "counter",
                get(&self.wal_records),
            ),
            (
                "wattdb_wal_fsyncs_total",
                "WAL group commits (one fsync each).",
                "counter",
                get(&self.wal_fsyncs),
            ),
            (
                "wattdb_wal_bytes_total",
                "Bytes appended to the WAL.",
                "counter",
                get(&self.wal_bytes),
            ),
            (
                "wattdb_wal_fsync_seconds_total",
                "Time spent writing and fsyncing WAL groups.",
                "counter",
                get(&self.wal_fsync_micros) / 1e6,
            ),
            (
                "wattdb_backpressure_wait_seconds_total",
                "Time writers waited for buffer room.",
                "counter",
                get(&self.backpressure_wait_micros) / 1e6,
            ),
            (
                "wattdb_persisted_files_total",
                "Parquet files written.",
                "counter",
                get(&self.persisted_files),
            ),
            (
                "wattdb_persisted_bytes_total",
                "Bytes of Parquet written.",
                "counter",
                get(&self.persisted_bytes),
            ),
            (
                "wattdb_persist_failures_total",
                "Partition persists that failed and will be retried.",
                "counter",
                get(&self.persist_failures),
            ),
            (
                "wattdb_fulltext_index_searches_total",
                "Full-text index lookups by scans (one per file and matches() filter).",
                "counter",
                get(&self.text_index_searches),
            ),
            (
                "wattdb_fulltext_index_failures_total",
                "Full-text indexes found missing or damaged by a scan (the file was read whole).",
                "counter",
                get(&self.text_index_failures),
            ),
            (
                "wattdb_fulltext_files_skipped_total",
                "Files a scan did not read because their full-text index had no matching row.",
                "counter",
                get(&self.text_index_files_skipped),
            ),
            (
                "wattdb_fulltext_merge_rows_skipped_total",
                "Rows of overlapping files a merge did not read because no version of their key matched the full-text index.",
                "counter",
                get(&self.text_index_merge_rows_skipped),
            ),
            (
                "wattdb_fulltext_indexes_built_total",
                "Full-text indexes built (at persist, at compaction, or afterwards).",
                "counter",
                get(&self.text_indexes_built),
            ),
        ]
    }
}
