//! Over its byte budget the write buffer makes writers wait for the persister instead of
//! dropping data or growing without bound.

use std::time::Duration;

use wattdb_storage::{Storage, StorageConfig, WriteMode};

mod common;
use common::batch;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writers_wait_for_persistence_and_nothing_is_lost() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = StorageConfig::new(dir.path());
    cfg.buffer_budget_bytes = 64 * 1024; // tiny: a few batches fill it
    cfg.persist_max_age = Duration::from_secs(3600); // only pressure triggers persistence
    let storage = Storage::open(cfg).await.unwrap();
    let mut peak = 0usize;
    for i in 0..200 {
        storage
            .write(batch(i), WriteMode::AllOrNothing, true)
            .await
            .unwrap();
        let buffered: usize = storage.partitions().iter().map(|p| p.buffered_bytes).sum();
        peak = peak.max(buffered);
    }
    let parts = storage.partitions();
    let files: usize = parts.iter().map(|p| p.files).sum();
    assert!(
        files > 1,
        "pressure should have persisted files, got {files}"
    );
    // A writer only proceeds below the budget, so the buffer overshoots by at most the
    // batches admitted concurrently (here: one at a time, one batch each).
    assert!(peak < 64 * 1024 * 4, "buffer grew to {peak} bytes");
    storage.flush().await.unwrap();
    let rows: u64 = storage.partitions().iter().map(|p| p.file_rows).sum();
    assert_eq!(rows, 200 * 50);
    storage.shutdown().await.unwrap();
}

/// The persister writes a large partition in pieces of at most a quarter of the budget
/// (its sorted copy is reserved from the budget too), so persisting never needs more
/// memory than the budget allows; every row still ends up in a file exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_partition_is_persisted_in_pieces_within_the_budget() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = StorageConfig::new(dir.path());
    let budget = 1024 * 1024;
    cfg.buffer_budget_bytes = budget;
    // Nothing persists until the flush below (writes stay under the budget).
    cfg.persist_max_age = Duration::from_secs(3600);
    cfg.persist_check_interval = Duration::from_secs(3600);
    let storage = Storage::open(cfg).await.unwrap();
    let mut batches = 0;
    loop {
        let buffered: usize = storage.partitions().iter().map(|p| p.buffered_bytes).sum();
        if buffered >= budget / 2 {
            break;
        }
        storage
            .write(batch(batches), WriteMode::AllOrNothing, true)
            .await
            .unwrap();
        batches += 1;
    }
    let buffered: usize = storage.partitions().iter().map(|p| p.buffered_bytes).sum();
    let report = storage.flush().await.unwrap();
    assert!(
        report.files >= buffered.div_ceil(budget / 4),
        "{buffered} buffered bytes went out in {} files",
        report.files
    );
    let parts = storage.partitions();
    assert_eq!(parts.iter().map(|p| p.buffered_rows).sum::<usize>(), 0);
    let rows: u64 = parts.iter().map(|p| p.file_rows).sum();
    assert_eq!(rows, batches as u64 * 50);
    storage.shutdown().await.unwrap();
}
