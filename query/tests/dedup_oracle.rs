//! Property test: random interleaved inserts and overwrites across month boundaries, with
//! flushes and compactions in between, give exactly the answers a brute-force
//! computation over the deduplicated rows gives, for a fixed set of queries.

use std::collections::BTreeMap;
use std::time::Duration;

use arrow::array::{Array, AsArray};
use arrow::datatypes::{Float64Type, Int64Type, TimestampMicrosecondType};
use proptest::prelude::*;
use wattdb_storage::{FieldValue, Row, Storage, StorageConfig, WriteBatch, WriteMode};

/// 2026-10-31T00:00:00Z in microseconds: timestamps straddle the Oct/Nov boundary and
/// reach into December.
const BASE: i64 = 1_793_404_800_000_000;
const HOUR: i64 = 3_600_000_000;

#[derive(Debug, Clone)]
enum Op {
    Insert(Vec<(u8, i64, i32)>),
    Flush,
    /// Merge each month's files into one (`Storage::compact_month`).
    Compact,
    /// Merge a run of consecutive files of each month (`Storage::compact_files`, what the
    /// background size tiers do): where it starts and how long it is, modulo the files.
    CompactRun(u8, u8),
    /// `last_values('t')` now equals the newest row of each series (the first call
    /// builds the cache; later writes must keep it current).
    LastValues,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => prop::collection::vec((0u8..3, 0i64..48, -50i32..50), 1..12).prop_map(Op::Insert),
        1 => Just(Op::Flush),
        1 => Just(Op::Compact),
        1 => (any::<u8>(), any::<u8>()).prop_map(|(a, b)| Op::CompactRun(a, b)),
        1 => Just(Op::LastValues),
    ]
}

fn ts_of(slot: i64) -> i64 {
    // Slots are 23 hours apart: 48 slots cover Oct 31 .. mid-December.
    BASE + slot * 23 * HOUR
}

async fn query(
    ctx: &datafusion::prelude::SessionContext,
    sql: &str,
) -> Vec<arrow::record_batch::RecordBatch> {
    ctx.sql(sql).await.unwrap().collect().await.unwrap()
}

fn run_case(ops: Vec<Op>) -> Result<(), TestCaseError> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let dir = tempfile::tempdir().unwrap();
        let mut cfg = StorageConfig::new(dir.path());
        cfg.persist_max_age = Duration::from_secs(3600);
        let storage = Storage::open(cfg).await.unwrap();
        storage
            .create_table(
                "t",
                vec!["pid".into()],
                vec![wattdb_storage::FieldDef {
                    name: "v".into(),
                    field_type: wattdb_storage::FieldType::Float,
                }],
                false,
            )
            .await
            .unwrap();
        let ctx = wattdb_query::build_session(&storage, wattdb_query::users::Users::load(storage.clone(), None)).unwrap();
        let mut oracle: BTreeMap<(String, i64), f64> = BTreeMap::new();
        for op in ops {
            match op {
                Op::Insert(rows) => {
                    let rows: Vec<Row> = rows
                        .into_iter()
                        .map(|(pid, slot, v)| {
                            let pid = format!("p{pid}");
                            oracle.insert((pid.clone(), ts_of(slot)), v as f64);
                            Row {
                                ts: ts_of(slot),
                                tags: vec![("pid".into(), pid)],
                                fields: vec![("v".into(), FieldValue::Float(v as f64))],
                            }
                        })
                        .collect();
                    storage
                        .write(WriteBatch { table: "t".into(), rows }, WriteMode::AllOrNothing, false)
                        .await
                        .unwrap();
                }
                Op::Flush => {
                    storage.flush().await.unwrap();
                }
                Op::Compact => {
                    let months: Vec<_> = storage
                        .partitions()
                        .into_iter()
                        .filter(|p| p.table == "t")
                        .map(|p| p.month)
                        .collect();
                    for m in months {
                        storage.compact_month("t", m, Duration::ZERO).await.unwrap();
                    }
                    let files = storage.files();
                    let mut months: Vec<_> = files.iter().map(|(_, f)| f.month).collect();
                    months.sort();
                    let n = months.len();
                    months.dedup();
                    prop_assert_eq!(n, months.len(), "one file per month after compaction");
                }
                Op::LastValues => check_last_values(&ctx, &oracle).await?,
                Op::CompactRun(a, b) => {
                    let months: Vec<_> = storage
                        .partitions()
                        .into_iter()
                        .filter(|p| p.table == "t" && p.files >= 2)
                        .map(|p| p.month)
                        .collect();
                    for m in months {
                        let files = storage.month_files("t", m);
                        let start = a as usize % (files.len() - 1);
                        let len = 2 + b as usize % (files.len() - start - 1);
                        let paths: Vec<String> =
                            files[start..start + len].iter().map(|f| f.path.clone()).collect();
                        let r = storage
                            .compact_files("t", m, Some(&paths), Duration::ZERO)
                            .await
                            .unwrap();
                        prop_assert!(r.is_some());
                        prop_assert_eq!(storage.month_files("t", m).len(), files.len() - len + 1);
                        if files.len() >= 3 {
                            // Files that are not consecutive in write order are refused.
                            let files = storage.month_files("t", m);
                            if files.len() >= 3 {
                                let gap = vec![files[0].path.clone(), files[2].path.clone()];
                                prop_assert!(storage
                                    .compact_files("t", m, Some(&gap), Duration::ZERO)
                                    .await
                                    .is_err());
                            }
                        }
                    }
                }
            }
        }

        check_last_values(&ctx, &oracle).await?;

        // count, sum
        let b = query(&ctx, "SELECT count(*) AS n, sum(v) AS s FROM t").await;
        let n = b[0].column(0).as_primitive::<Int64Type>().value(0);
        prop_assert_eq!(n as usize, oracle.len());
        let s = b[0].column(1).as_primitive::<Float64Type>();
        let expected_sum: f64 = oracle.values().sum();
        if oracle.is_empty() {
            prop_assert!(s.is_null(0));
        } else {
            prop_assert_eq!(s.value(0), expected_sum);
        }

        // min/max ts
        if !oracle.is_empty() {
            let b = query(&ctx, "SELECT min(ts), max(ts) FROM t").await;
            let min = b[0].column(0).as_primitive::<TimestampMicrosecondType>().value(0);
            let max = b[0].column(1).as_primitive::<TimestampMicrosecondType>().value(0);
            prop_assert_eq!(min, oracle.keys().map(|k| k.1).min().unwrap());
            prop_assert_eq!(max, oracle.keys().map(|k| k.1).max().unwrap());
        }

        // group by tag
        let b = query(&ctx, "SELECT pid, count(*), sum(v) FROM t GROUP BY pid ORDER BY pid").await;
        let mut got = Vec::new();
        for batch in &b {
            for i in 0..batch.num_rows() {
                got.push((
                    batch.column(0).as_string::<i32>().value(i).to_string(),
                    batch.column(1).as_primitive::<Int64Type>().value(i),
                    batch.column(2).as_primitive::<Float64Type>().value(i),
                ));
            }
        }
        let mut expected: BTreeMap<String, (i64, f64)> = BTreeMap::new();
        for ((pid, _), v) in &oracle {
            let e = expected.entry(pid.clone()).or_default();
            e.0 += 1;
            e.1 += v;
        }
        let expected: Vec<_> = expected.into_iter().map(|(p, (c, s))| (p, c, s)).collect();
        prop_assert_eq!(got, expected);

        // time window crossing the month boundary (filters prune files and buffers)
        let (lo, hi) = (ts_of(1), ts_of(30));
        let sql = format!(
            "SELECT count(*), sum(v) FROM t WHERE ts >= to_timestamp_micros({lo}) AND ts < to_timestamp_micros({hi})"
        );
        let b = query(&ctx, &sql).await;
        let n = b[0].column(0).as_primitive::<Int64Type>().value(0);
        let in_window: Vec<f64> = oracle
            .iter()
            .filter(|((_, ts), _)| *ts >= lo && *ts < hi)
            .map(|(_, v)| *v)
            .collect();
        prop_assert_eq!(n as usize, in_window.len());
        if !in_window.is_empty() {
            let s = b[0].column(1).as_primitive::<Float64Type>().value(0);
            prop_assert_eq!(s, in_window.iter().sum::<f64>());
        }

        // a filter on a field sees only the last write of each key (an older write that
        // matches must not show through a newer one that does not), in key order
        let b = query(&ctx, "SELECT pid, ts, v FROM t WHERE v > 0 ORDER BY pid, ts").await;
        let got = rows_of(&b);
        let want: Vec<(String, i64, f64)> = oracle
            .iter()
            .filter(|(_, v)| **v > 0.0)
            .map(|((p, t), v)| (p.clone(), *t, *v))
            .collect();
        prop_assert_eq!(got, want);

        // LIMIT without a filter is pushed into the scan: any rows, each a last write
        let b = query(&ctx, "SELECT pid, ts, v FROM t LIMIT 3").await;
        let got = rows_of(&b);
        prop_assert_eq!(got.len(), oracle.len().min(3));
        let mut keys = std::collections::BTreeSet::new();
        for (p, t, v) in &got {
            prop_assert_eq!(oracle.get(&(p.clone(), *t)), Some(v));
            prop_assert!(keys.insert((p.clone(), *t)), "duplicate key in LIMIT answer");
        }

        // point lookups by full key return the last write
        for ((pid, ts), v) in oracle.iter().take(5) {
            let sql = format!("SELECT v FROM t WHERE pid = '{pid}' AND ts = to_timestamp_micros({ts})");
            let b = query(&ctx, &sql).await;
            let rows: usize = b.iter().map(|b| b.num_rows()).sum();
            prop_assert_eq!(rows, 1);
            prop_assert_eq!(b.iter().find(|b| b.num_rows() > 0).unwrap().column(0).as_primitive::<Float64Type>().value(0), *v);
        }
        storage.shutdown().await.unwrap();
        Ok(())
    })
}

/// `last_values('t')` against the oracle: per pid, the row with the greatest ts.
async fn check_last_values(
    ctx: &datafusion::prelude::SessionContext,
    oracle: &BTreeMap<(String, i64), f64>,
) -> Result<(), TestCaseError> {
    let b = query(ctx, "SELECT pid, ts, v FROM last_values('t')").await;
    let got = rows_of(&b);
    let mut want: BTreeMap<String, (i64, f64)> = BTreeMap::new();
    for ((pid, ts), v) in oracle {
        // Keys iterate by (pid, ts) ascending: the last one seen per pid is the newest.
        want.insert(pid.clone(), (*ts, *v));
    }
    let want: Vec<_> = want.into_iter().map(|(p, (t, v))| (p, t, v)).collect();
    prop_assert_eq!(got, want);
    Ok(())
}

/// (pid, ts, v) of every row of `batches` (columns in that order).
fn rows_of(batches: &[arrow::record_batch::RecordBatch]) -> Vec<(String, i64, f64)> {
    let mut out = Vec::new();
    for b in batches {
        let pid = b.column(0).as_string::<i32>();
        let ts = b.column(1).as_primitive::<TimestampMicrosecondType>();
        let v = b.column(2).as_primitive::<Float64Type>();
        for i in 0..b.num_rows() {
            out.push((pid.value(i).to_string(), ts.value(i), v.value(i)));
        }
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 32, ..ProptestConfig::default() })]

    #[test]
    fn queries_equal_brute_force_over_deduplicated_rows(ops in prop::collection::vec(op(), 1..14)) {
        run_case(ops)?;
    }
}
