//! Compaction: a month's files merge into one with identical contents (checked against
//! the last write per key, computed here), and a query planned with the old files still
//! reads them during the grace period; afterwards they are deleted.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::{contents, create_t, row, write_t};
use object_store::ObjectStoreExt;
use wattdb_compaction::compact::compact_table;
use wattdb_storage::{Row, Storage, StorageConfig};

/// 2026-10-01T00:00:00Z.
const OCT: i64 = 1_790_812_800_000_000;
const MIN: i64 = 60_000_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn files_merge_into_one_and_old_files_outlive_the_swap_by_the_grace_period() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = StorageConfig::new(dir.path());
    config.persist_max_age = Duration::from_secs(3600);
    let storage = Storage::open(config).await.unwrap();
    create_t(&storage, &["pid"]).await;
    // Three flushes, each overwriting part of the previous one: three files in October.
    let mut expected = BTreeMap::new();
    for round in 0..3 {
        let rows: Vec<Row> = (0..200)
            .map(|i| {
                let pid = format!("m{}", i % 4);
                let ts = OCT + (i / 4 + round * 20) * MIN;
                let v = f64::from(round as i32 * 1000 + i as i32);
                expected.insert((pid.clone(), ts), v);
                row(&pid, ts, v)
            })
            .collect();
        write_t(&storage, rows).await.unwrap();
        storage.flush().await.unwrap();
    }
    assert_eq!(storage.files().len(), 3);
    assert_eq!(contents(&storage).await, expected);

    // A query plans with the three files...
    let planned = storage.snapshot("t").unwrap();
    let reports = compact_table(&storage, "t", 2, Duration::from_secs(2))
        .await
        .unwrap();
    assert_eq!(reports.len(), 1);
    assert_eq!(reports[0].files_before, 3);
    assert_eq!(
        reports[0].file.rows as usize,
        expected.len(),
        "duplicates removed"
    );
    assert_eq!(storage.files().len(), 1);
    assert_eq!(contents(&storage).await, expected);
    // ...and still reads them after the swap.
    let store = storage.object_store();
    for f in &planned.files {
        let bytes = store
            .get(&object_store::path::Path::from(f.path.as_str()))
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
        let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(bytes)
            .unwrap()
            .build()
            .unwrap();
        let rows: usize = reader.map(|b| b.unwrap().num_rows()).sum();
        assert_eq!(rows as u64, f.rows);
    }
    // After the grace period they are gone.
    tokio::time::sleep(Duration::from_millis(3000)).await;
    for f in &planned.files {
        let gone = store
            .head(&object_store::path::Path::from(f.path.as_str()))
            .await
            .is_err();
        assert!(gone, "{} still in the store", f.path);
    }
    // Nothing left to do on a second pass.
    assert!(
        compact_table(&storage, "t", 2, Duration::ZERO)
            .await
            .unwrap()
            .is_empty()
    );
    storage.shutdown().await.unwrap();
}

/// A restart inside the grace period does not leave the old files behind: they are
/// recorded for deletion in the swap's commit, and the next start deletes them once due.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn old_files_are_deleted_after_a_restart_inside_the_grace_period() {
    let dir = tempfile::tempdir().unwrap();
    let open = || {
        let mut config = StorageConfig::new(dir.path());
        config.persist_max_age = Duration::from_secs(3600);
        config.persist_check_interval = Duration::from_millis(100);
        Storage::open(config)
    };
    let storage = open().await.unwrap();
    create_t(&storage, &["pid"]).await;
    for round in 0..2i64 {
        let rows = (0..10)
            .map(|i| row("m", OCT + (i + round * 5) * MIN, i as f64))
            .collect();
        write_t(&storage, rows).await.unwrap();
        storage.flush().await.unwrap();
    }
    let old: Vec<String> = storage.files().into_iter().map(|(_, f)| f.path).collect();
    assert_eq!(old.len(), 2);
    compact_table(&storage, "t", 2, Duration::from_secs(2))
        .await
        .unwrap();
    assert_eq!(storage.pending_delete_count(), 2);
    storage.shutdown().await.unwrap();
    drop(storage);

    let storage = open().await.unwrap();
    let store = storage.object_store();
    let exists = |p: String| {
        let store = store.clone();
        async move {
            store
                .head(&object_store::path::Path::from(p.as_str()))
                .await
                .is_ok()
        }
    };
    for p in &old {
        assert!(exists(p.clone()).await, "{p} kept during the grace period");
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while storage.pending_delete_count() > 0 {
        assert!(std::time::Instant::now() < deadline, "never swept");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for p in &old {
        assert!(
            !exists(p.clone()).await,
            "{p} deleted after the grace period"
        );
    }
    assert_eq!(contents(&storage).await.len(), 15);
    storage.shutdown().await.unwrap();
}
