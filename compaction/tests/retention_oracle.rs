//! Property test: random rows over many months (some persisted, some only buffered),
//! random TTL changes and retention runs at advancing times → no row in a month that
//! still holds an unexpired instant is ever dropped, every month that lay entirely
//! before a run's cutoff is gone from the rows, the catalog and the object store, and
//! writes to it are refused — until a wider retention keeps it again (then it is empty
//! and writable). The expected months are computed by brute force over month
//! ends, independently of the janitor's arithmetic.

mod common;

use std::collections::BTreeSet;

use chrono::{DateTime, Months, TimeZone, Utc};
use common::create_t;
use futures::TryStreamExt;
use proptest::prelude::*;
use wattdb_compaction::retention::run_retention;
use wattdb_storage::{FieldValue, Month, Row, Storage, StorageConfig, WriteBatch, WriteMode};

#[derive(Debug, Clone)]
enum Step {
    /// Rows at these (month offset from the start, second within the month) positions.
    Write(Vec<(u32, u32)>),
    Flush,
    /// TTL in months (`true`) or days, then a run `advance_days` after the previous one.
    Retain {
        months: bool,
        n: u32,
        advance_days: u32,
    },
}

/// 2025-01-01T00:00:00Z, the first month of generated data.
fn start() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2025, 1, 1, 0, 0, 0).unwrap()
}

fn ts_of(month_offset: u32, second: u32) -> i64 {
    let m = start() + Months::new(month_offset);
    // Seconds within the month (at most 28 days, so always inside it).
    (m + chrono::Duration::seconds(i64::from(second % (28 * 86_400)))).timestamp_micros()
}

fn steps() -> impl Strategy<Value = Vec<Step>> {
    prop::collection::vec(
        prop_oneof![
            4 => prop::collection::vec((0u32..16, 0u32..(28 * 86_400)), 1..20).prop_map(Step::Write),
            1 => Just(Step::Flush),
            2 => (prop::bool::ANY, 1u32..8, 0u32..120).prop_map(|(months, n, advance_days)| {
                Step::Retain { months, n: if months { n } else { n * 20 }, advance_days }
            }),
        ],
        1..16,
    )
}

/// The first month with an end after the cutoff, by walking month ends.
fn first_kept_brute_force(cutoff: DateTime<Utc>) -> Month {
    let mut m = Month::of_micros(start().timestamp_micros() - 400 * 86_400_000_000);
    while m.end_micros() <= cutoff.timestamp_micros() {
        m = m.next();
    }
    m
}

async fn rows(storage: &Storage) -> BTreeSet<i64> {
    let batch = storage
        .read_range("t", i64::MIN, i64::MAX, None)
        .await
        .unwrap()
        .unwrap();
    let ts = batch
        .column(0)
        .as_any()
        .downcast_ref::<arrow::array::TimestampMicrosecondArray>()
        .unwrap();
    ts.values().iter().copied().collect()
}

/// The table's definition treats exactly the months before `watermark` as expired.
async fn check_writability(storage: &Storage, watermark: Option<Month>) {
    let def = storage.table("t").unwrap();
    let mut m = start().timestamp_micros();
    for _ in 0..20 {
        let month = Month::of_micros(m);
        let expired = watermark.is_some_and(|w| month < w);
        assert_eq!(
            def.is_month_expired(month),
            expired,
            "{month} vs {watermark:?}"
        );
        m = month.next().start_micros();
    }
}

async fn run_case(steps: Vec<Step>) {
    let dir = tempfile::tempdir().unwrap();
    let mut config = StorageConfig::new(dir.path());
    config.persist_max_age = std::time::Duration::from_secs(3600);
    let storage = Storage::open(config).await.unwrap();
    create_t(&storage, &[]).await;
    // Retention runs start a year and a half after the data starts.
    let mut now = start() + Months::new(18);
    let mut written: BTreeSet<i64> = BTreeSet::new();
    let mut watermark: Option<Month> = None;
    for step in steps {
        match step {
            Step::Write(positions) => {
                let mut ok = Vec::new();
                for (m, s) in positions {
                    let ts = ts_of(m, s);
                    let row = Row {
                        ts,
                        tags: vec![],
                        fields: vec![("v".into(), FieldValue::Float(1.0))],
                    };
                    let result = storage
                        .write(
                            WriteBatch {
                                table: "t".into(),
                                rows: vec![row],
                            },
                            WriteMode::AllOrNothing,
                            false,
                        )
                        .await;
                    let expired = watermark.is_some_and(|w| Month::of_micros(ts) < w);
                    match result {
                        Ok(_) if !expired => ok.push(ts),
                        Err(wattdb_storage::Error::Expired { .. }) if expired => {}
                        other => panic!("write at {ts} (expired: {expired}): {other:?}"),
                    }
                }
                written.extend(ok);
            }
            Step::Flush => {
                storage.flush().await.unwrap();
            }
            Step::Retain {
                months,
                n,
                advance_days,
            } => {
                now += chrono::Duration::days(i64::from(advance_days));
                let text = if months {
                    format!("{n} months")
                } else {
                    format!("{n} days")
                };
                let cutoff = if months {
                    now - Months::new(n)
                } else {
                    now - chrono::Duration::days(i64::from(n))
                };
                let kept = first_kept_brute_force(cutoff);
                // A wider retention re-opens the (empty) months it keeps again.
                storage
                    .set_retention("t", Some(text), Some(kept))
                    .await
                    .unwrap();
                watermark = watermark.map(|w| w.min(kept));
                check_writability(&storage, watermark).await;
                run_retention(&storage, now).await;
                watermark = Some(kept);
                written.retain(|ts| Month::of_micros(*ts) >= kept);
            }
        }
        // After every step: exactly the written rows of unexpired months remain.
        let want: BTreeSet<i64> = written
            .iter()
            .copied()
            .filter(|ts| watermark.is_none_or(|w| Month::of_micros(*ts) >= w))
            .collect();
        assert_eq!(rows(&storage).await, want, "watermark {watermark:?}");
        if let Some(w) = watermark {
            for (_, f) in storage.files() {
                assert!(f.month >= w, "catalog still lists {}", f.path);
            }
            let listed: Vec<_> = storage
                .object_store()
                .list(None)
                .try_collect::<Vec<_>>()
                .await
                .unwrap();
            for o in listed {
                let p = o.location.to_string();
                if let Some(m) = p
                    .strip_prefix("t/month=")
                    .and_then(|r| r.get(..7))
                    .and_then(Month::parse)
                {
                    assert!(
                        m >= w,
                        "object {p} of an expired month is still in the store"
                    );
                }
            }
        }
    }
    storage.shutdown().await.unwrap();
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 32, ..ProptestConfig::default() })]

    #[test]
    fn retention_drops_exactly_the_expired_months(steps in steps()) {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(run_case(steps));
    }
}
