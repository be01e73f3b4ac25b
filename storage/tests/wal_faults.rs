//! The WAL when writes and fsyncs fail (failpoints; run with `--features failpoints`, as
//! the test suite does): a failed group is refused as a whole and never acknowledged, the
//! segment it was written to is cut back and given up, writing goes on in a new segment
//! by itself, and replay after a restart gives back exactly the acknowledged records.

#![cfg(feature = "failpoints")]

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex};

use fail::FailScenario;
use wattdb_storage::error::Error;
use wattdb_storage::model::{TableId, ValidRow};
use wattdb_storage::wal::{DurableObserver, Wal, WalConfig, WalRecord, WalSeq};

/// (seq, ts) of every record the WAL hands over as durable.
#[derive(Default)]
struct Collect(Mutex<Vec<(u64, i64)>>);

impl DurableObserver for Collect {
    fn on_durable(&self, seq: WalSeq, record: &WalRecord) {
        self.0.lock().unwrap().push((seq.0, record.rows[0].ts));
    }
}

fn rec(ts: i64) -> WalRecord {
    WalRecord::write(
        TableId(1),
        vec![ValidRow {
            ts,
            tags: vec![format!("meter-{ts}")],
            fields: vec![None],
        }],
    )
}

fn config(dir: &Path) -> WalConfig {
    let mut cfg = WalConfig::new(dir.to_path_buf());
    cfg.segment_bytes = 4096;
    cfg
}

fn open(dir: &Path) -> (Wal, Arc<Collect>) {
    let seen = Arc::new(Collect::default());
    let (wal, _) = Wal::open(config(dir), seen.clone(), WalSeq(1), Default::default()).unwrap();
    (wal, seen)
}

/// What a restart replays: (seq, ts) in order.
async fn replay(dir: &Path) -> Vec<(u64, i64)> {
    let (wal, seen) = open(dir);
    wal.shutdown().await;
    std::mem::take(&mut *seen.0.lock().unwrap())
}

fn segment_files(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[tokio::test]
async fn a_failed_fsync_refuses_the_group_and_the_wal_goes_on_in_a_new_segment() {
    let scenario = FailScenario::setup();
    let dir = tempfile::tempdir().unwrap();
    let (wal, _) = open(dir.path());
    let mut acked = Vec::new();
    for ts in 0..5 {
        acked.push((wal.append(rec(ts)).await.unwrap().0, ts));
    }
    // The record's bytes reach the file; the fsync after them fails.
    fail::cfg("wal-fsync", "1*return").unwrap();
    let refused = wal.append(rec(5)).await;
    assert!(matches!(refused, Err(Error::WalIo { .. })), "{refused:?}");
    assert_eq!(segment_files(dir.path()).len(), 1);
    for ts in 6..10 {
        acked.push((wal.append(rec(ts)).await.unwrap().0, ts));
    }
    assert_eq!(
        segment_files(dir.path()).len(),
        2,
        "the failed segment is closed and a new one started"
    );
    wal.shutdown().await;
    // The refused record was cut off the first segment: it never comes back.
    assert_eq!(replay(dir.path()).await, acked);
    scenario.teardown();
}

#[tokio::test]
async fn a_full_disk_refuses_writes_with_disk_full_until_space_returns_then_writing_resumes() {
    let scenario = FailScenario::setup();
    let dir = tempfile::tempdir().unwrap();
    let (wal, _) = open(dir.path());
    let mut acked = vec![(wal.append(rec(0)).await.unwrap().0, 0)];
    // Full: the write fails, and so does every attempt to start a new segment.
    fail::cfg("wal-append", "return(enospc)").unwrap();
    fail::cfg("wal-create", "return(enospc)").unwrap();
    for ts in 1..20 {
        let refused = wal.append(rec(ts)).await;
        assert!(
            matches!(refused, Err(Error::DiskFull { .. })),
            "{refused:?}"
        );
    }
    assert_eq!(
        segment_files(dir.path()).len(),
        1,
        "no half-created segment is left behind: {:?}",
        segment_files(dir.path())
    );
    // Space is back: the next write goes through without a restart.
    fail::remove("wal-append");
    fail::remove("wal-create");
    for ts in 20..25 {
        acked.push((wal.append(rec(ts)).await.unwrap().0, ts));
    }
    wal.shutdown().await;
    assert_eq!(replay(dir.path()).await, acked);
    scenario.teardown();
}

#[tokio::test]
async fn a_segment_that_cannot_be_cut_back_stops_writes_until_a_restart() {
    let scenario = FailScenario::setup();
    let dir = tempfile::tempdir().unwrap();
    let (wal, _) = open(dir.path());
    let acked = [(wal.append(rec(0)).await.unwrap().0, 0)];
    fail::cfg("wal-fsync", "1*return").unwrap();
    fail::cfg("wal-abandon", "1*return").unwrap();
    assert!(matches!(wal.append(rec(1)).await, Err(Error::WalIo { .. })));
    // Nothing is written behind the bytes that could not be cut off.
    for ts in 2..5 {
        let refused = wal.append(rec(ts)).await;
        assert!(
            matches!(refused, Err(Error::WalHalted { .. })),
            "{refused:?}"
        );
    }
    assert_eq!(segment_files(dir.path()).len(), 1);
    wal.shutdown().await;
    // After a restart the acknowledged record is there; the refused record 1, whose bytes
    // reached the file before its fsync failed, may come back (as after a crash between
    // write and acknowledgement); the records refused while halted never were written.
    let replayed = replay(dir.path()).await;
    assert_eq!(replayed[..1], acked[..]);
    assert!(replayed.len() <= 2 && replayed.iter().all(|&(_, ts)| ts <= 1));
    scenario.teardown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_write_fsync_and_create_failures_keep_exactly_the_acknowledged_records() {
    let scenario = FailScenario::setup();
    let dir = tempfile::tempdir().unwrap();
    let (wal, _) = open(dir.path());
    fail::cfg("wal-append", "2%return(enospc)").unwrap();
    fail::cfg("wal-fsync", "5%return").unwrap();
    fail::cfg("wal-create", "30%return(enospc)").unwrap();
    let mut writers = Vec::new();
    for w in 0..8i64 {
        let wal = wal.clone();
        writers.push(tokio::spawn(async move {
            let mut outcome = Vec::new();
            for i in 0..300i64 {
                let ts = w * 1000 + i;
                outcome.push((ts, wal.append(rec(ts)).await));
            }
            outcome
        }));
    }
    let mut acked = BTreeMap::new();
    let mut refused = 0;
    for writer in writers {
        for (ts, outcome) in writer.await.unwrap() {
            match outcome {
                Ok(seq) => {
                    acked.insert(seq.0, ts);
                }
                Err(Error::DiskFull { .. } | Error::WalIo { .. }) => refused += 1,
                Err(e) => panic!("unexpected error: {e}"),
            }
        }
    }
    fail::remove("wal-append");
    fail::remove("wal-fsync");
    fail::remove("wal-create");
    wal.shutdown().await;
    assert!(refused > 0 && acked.len() > 1000, "{refused} refused");
    assert!(segment_files(dir.path()).len() > 2);
    let acked: Vec<(u64, i64)> = acked.into_iter().collect();
    assert_eq!(
        replay(dir.path()).await,
        acked,
        "{refused} writes were refused"
    );
    scenario.teardown();
}

/// Writes queued behind a stalled fsync hold memory: they count against the buffer's
/// budget, so writers wait once it is used up instead of queueing without bound.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_waiting_for_a_stalled_fsync_count_against_the_buffer_budget() {
    use common::batch;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;
    use wattdb_storage::{Storage, StorageConfig, WriteMode};

    let scenario = FailScenario::setup();
    let dir = tempfile::tempdir().unwrap();
    let budget = 256 * 1024;
    let mut cfg = StorageConfig::new(dir.path());
    cfg.buffer_budget_bytes = budget;
    cfg.persist_max_age = Duration::from_secs(3600);
    let storage = Storage::open(cfg).await.unwrap();
    storage
        .write(batch(0), WriteMode::AllOrNothing, true)
        .await
        .unwrap();

    fail::cfg("wal-fsync", "pause").unwrap();
    let submitted = Arc::new(AtomicUsize::new(0));
    let writer = {
        let (storage, submitted) = (storage.clone(), submitted.clone());
        tokio::spawn(async move {
            let mut pending = Vec::new();
            for i in 1..=2000 {
                let p = storage
                    .submit(batch(i), WriteMode::AllOrNothing, true)
                    .await
                    .unwrap();
                submitted.fetch_add(1, Ordering::SeqCst);
                pending.push(p);
            }
            for p in pending {
                p.durable().await.unwrap();
            }
        })
    };
    // Until the writer stops getting through.
    let mut last = usize::MAX;
    let mut peak = 0;
    for _ in 0..500 {
        tokio::time::sleep(Duration::from_millis(20)).await;
        peak = peak.max(storage.wal_queued_bytes());
        let now = submitted.load(Ordering::SeqCst);
        if now == last && now > 0 {
            break;
        }
        last = now;
    }
    let one_write = 2 * 50 * 64; // a generous upper bound of one batch's charge
    assert!(
        peak <= budget + one_write,
        "{peak} bytes queued behind the fsync, budget {budget}"
    );
    assert!(
        submitted.load(Ordering::SeqCst) < 2000,
        "the writer never waited"
    );
    fail::remove("wal-fsync");
    writer.await.unwrap();
    let rows: u64 = storage
        .partitions()
        .iter()
        .map(|p| p.buffered_rows as u64 + p.file_rows)
        .sum();
    assert_eq!(rows, 2001 * 50);
    storage.shutdown().await.unwrap();
    scenario.teardown();
}
