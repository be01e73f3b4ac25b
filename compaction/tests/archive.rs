//! The cold archive under a simulated clock: retention copies expired months (buffered
//! rows included) to the archive before dropping them; `restore_partition` brings one
//! back with the same rows; a restored month accepts writes and survives retention runs
//! until its hold ends; the next run then archives it again (with what was written
//! meanwhile, replacing the old archive copy) and drops it; a second restore gives the
//! new contents back. Expected rows are the last write per key, kept here.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use common::{Rows, contents, create_t, row, write_t};
use futures::TryStreamExt;
use object_store::ObjectStore;
use wattdb_compaction::compact::compact_table;
use wattdb_compaction::retention::run_retention;
use wattdb_storage::{Month, ObjectStoreLocation, Storage, StorageConfig};

async fn write(storage: &Storage, rows: &[(String, i64, f64)], expected: &mut Rows) {
    for (pid, ts, v) in rows {
        expected.insert((pid.clone(), *ts), *v);
    }
    let rows = rows.iter().map(|(pid, ts, v)| row(pid, *ts, *v)).collect();
    write_t(storage, rows).await.unwrap();
}

/// Equal, or a short account of the first difference (the maps are large).
#[track_caller]
fn same(got: &Rows, want: &Rows, what: &str) {
    if got == want {
        return;
    }
    let first = want
        .iter()
        .find(|(k, v)| got.get(*k) != Some(*v))
        .map(|(k, v)| format!("expected {k:?} = {v}, got {:?}", got.get(k)))
        .or_else(|| {
            got.iter()
                .find(|(k, _)| !want.contains_key(*k))
                .map(|(k, v)| format!("unexpected {k:?} = {v}"))
        });
    panic!(
        "{what}: {} rows, expected {}; {}",
        got.len(),
        want.len(),
        first.unwrap_or_default()
    );
}

async fn paths(store: &dyn ObjectStore) -> BTreeSet<String> {
    store
        .list(None)
        .map_ok(|o| o.location.to_string())
        .try_collect()
        .await
        .unwrap()
}

fn month(s: &str) -> Month {
    Month::parse(s).unwrap()
}

fn in_month(rows: &Rows, m: Month) -> Rows {
    rows.iter()
        .filter(|((_, ts), _)| Month::of_micros(*ts) == m)
        .map(|(k, v)| (k.clone(), *v))
        .collect()
}

fn at(y: i32, m: u32, d: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(y, m, d, 12, 0, 0).unwrap()
}

async fn open(dir: &std::path::Path) -> Storage {
    let mut config = StorageConfig::new(dir.join("data"));
    config.persist_max_age = Duration::from_secs(3600);
    config.archive = Some(ObjectStoreLocation::Local(dir.join("archive")));
    Storage::open(config).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn archive_restore_hold_and_rearchive() {
    let dir = tempfile::tempdir().unwrap();
    let archive = ObjectStoreLocation::Local(dir.path().join("archive"))
        .open()
        .unwrap();
    let mut storage = open(dir.path()).await;
    create_t(&storage, &["pid"]).await;
    storage
        .set_retention("t", Some("2 months".into()), Some(month("2026-04")))
        .await
        .unwrap();
    // January to June 2026, three meters, a reading every 6 hours for 10 days; the
    // second half of each month's readings stays in the buffer.
    let mut expected = Rows::new();
    let month_rows = |m: u32| -> Vec<(String, i64, f64)> {
        let start = Utc.with_ymd_and_hms(2026, m, 1, 0, 0, 0).unwrap();
        (0..40i64)
            .flat_map(|i| {
                (0..3).map(move |p| {
                    let ts = (start + chrono::Duration::hours(6 * i)).timestamp_micros();
                    (
                        format!("m{p}"),
                        ts,
                        f64::from(m * 1000) + (i * 3 + p) as f64,
                    )
                })
            })
            .collect()
    };
    for m in 1..=6u32 {
        write(&storage, &month_rows(m)[..60], &mut expected).await;
    }
    storage.flush().await.unwrap();
    for m in 1..=6u32 {
        write(&storage, &month_rows(m)[60..], &mut expected).await;
    }
    same(&contents(&storage).await, &expected, "after the writes");

    // June 15th with a 2-month TTL: January to March expire, archived first.
    let now = at(2026, 6, 15);
    let outcome = run_retention(&storage, now).await;
    let report = outcome[0].1.as_ref().unwrap();
    assert_eq!(report.archived, 3);
    let expired: Vec<Month> = ["2026-01", "2026-02", "2026-03"].map(month).into();
    assert_eq!(report.months, expired);
    let kept: Rows = expected
        .iter()
        .filter(|((_, ts), _)| Month::of_micros(*ts) >= month("2026-04"))
        .map(|(k, v)| (k.clone(), *v))
        .collect();
    same(&contents(&storage).await, &kept, "after archiving");
    let archived = storage.archived_partitions();
    assert_eq!(
        archived.iter().map(|(_, a)| a.month).collect::<Vec<_>>(),
        expired
    );
    for (_, a) in &archived {
        assert_eq!(a.rows(), in_month(&expected, a.month).len() as u64);
    }
    // The archive holds each month's files and manifest; the store holds none of them.
    let mut want: BTreeSet<String> = archived
        .iter()
        .flat_map(|(_, a)| a.archive_paths())
        .collect();
    assert_eq!(paths(&*archive).await, want);
    for p in paths(&*storage.object_store()).await {
        assert!(
            !expired
                .iter()
                .any(|m| p.starts_with(&format!("t/month={m}/"))),
            "{p} of an expired month is still in the store"
        );
    }

    // Restore February for 7 days: the same rows are back, and it accepts writes.
    let feb = month("2026-02");
    let until = (now + chrono::Duration::days(7)).timestamp_millis();
    let r = storage.restore_partition("t", feb, until).await.unwrap();
    assert!(!r.already_restored);
    let mut restored = kept.clone();
    restored.extend(in_month(&expected, feb));
    same(&contents(&storage).await, &restored, "after the restore");
    let feb_ts = Utc.with_ymd_and_hms(2026, 2, 20, 0, 0, 0).unwrap();
    let first_feb = in_month(&expected, feb).keys().next().unwrap().clone();
    write(
        &storage,
        &[
            ("m9".into(), feb_ts.timestamp_micros(), 9.5),
            (first_feb.0.clone(), first_feb.1, -1.0),
        ],
        &mut expected,
    )
    .await;
    // January (not restored) still refuses writes.
    let jan = Utc.with_ymd_and_hms(2026, 1, 5, 0, 0, 0).unwrap();
    let err = write_t(&storage, vec![row("m0", jan.timestamp_micros(), 1.0)])
        .await
        .unwrap_err();
    assert!(err.to_string().contains("expired"), "{err}");
    // Restoring a month that was never archived says why.
    let err = storage
        .restore_partition("t", month("2026-05"), until)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("has not expired"), "{err}");

    // A run within the hold leaves February alone, across a restart too.
    storage.flush().await.unwrap();
    storage.shutdown().await.unwrap();
    drop(storage);
    storage = open(dir.path()).await;
    let with_feb = |e: &Rows| -> Rows {
        e.iter()
            .filter(|((_, ts), _)| {
                let m = Month::of_micros(*ts);
                m >= month("2026-04") || m == feb
            })
            .map(|(k, v)| (k.clone(), *v))
            .collect()
    };
    run_retention(&storage, now + chrono::Duration::days(1)).await;
    same(
        &contents(&storage).await,
        &with_feb(&expected),
        "within the hold",
    );
    assert_eq!(storage.archived_partitions().len(), 3, "survives a restart");

    // Compacting February changes its files; after the hold the next run archives the
    // new files (the old archive copy's files are deleted) and drops the month again.
    let reports = compact_table(&storage, "t", 2, Duration::ZERO)
        .await
        .unwrap();
    assert!(reports.iter().any(|r| r.month == feb), "{reports:?}");
    tokio::time::sleep(Duration::from_millis(200)).await;
    let outcome = run_retention(&storage, now + chrono::Duration::days(8)).await;
    let report = outcome[0].1.as_ref().unwrap();
    assert_eq!(report.months, vec![feb]);
    assert_eq!(report.archived, 1);
    same(&contents(&storage).await, &kept, "after the hold");
    let archived = storage.archived_partitions();
    let feb_entry = &archived.iter().find(|(_, a)| a.month == feb).unwrap().1;
    assert_eq!(feb_entry.files.len(), 1, "the compacted file");
    assert_eq!(feb_entry.rows(), in_month(&expected, feb).len() as u64);
    want = archived
        .iter()
        .flat_map(|(_, a)| a.archive_paths())
        .collect();
    assert_eq!(paths(&*archive).await, want, "old copies replaced");
    assert!(storage.table("t").unwrap().restored.is_empty());

    // Restored again: February with what was written while it was restored.
    storage
        .restore_partition("t", feb, until + 86_400_000 * 30)
        .await
        .unwrap();
    same(
        &contents(&storage).await,
        &with_feb(&expected),
        "restored again",
    );
    let again = storage
        .restore_partition("t", feb, until + 86_400_000 * 31)
        .await
        .unwrap();
    assert!(again.already_restored);
    same(
        &contents(&storage).await,
        &with_feb(&expected),
        "restored twice",
    );
    storage.shutdown().await.unwrap();
}
