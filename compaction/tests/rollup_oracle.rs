//! Property test: whatever order rows arrive in — out of order, overwriting earlier
//! rows, late after their month was persisted, months back, across counter resets,
//! DELETEs (of buffered rows, of persisted and compacted files, before and after a
//! restart) and restarts — the raw table holds exactly the rows of a model kept here,
//! and every rollup row equals a brute-force computation over the final deduplicated
//! rows, done here independently of the rollup code (chrono-tz for day boundaries,
//! plain loops for the aggregates).

use std::collections::BTreeMap;

use arrow::array::{Array, Float64Array, Int64Array, StringArray, TimestampMicrosecondArray};
use chrono::{NaiveTime, TimeZone};
use chrono_tz::Tz;
use proptest::prelude::*;
use wattdb_compaction::rollup::{RollupMaintainer, open_storage};
use wattdb_storage::{
    FieldDef, FieldType, FieldValue, RollupSettings, Row, Storage, StorageConfig, WriteBatch,
    WriteMode,
};

const MIN: i64 = 60_000_000;
const Q: i64 = 15 * MIN;
/// 2026-03-28T00:00:00Z: the days around Europe's switch to summer time.
const T0: i64 = 1_774_656_000_000_000;
/// 70 days earlier: backfill into an older month.
const BACKFILL: i64 = T0 - 70 * 24 * 60 * MIN;

#[derive(Debug, Clone)]
struct Reading {
    series: usize,
    ts: i64,
    v: Option<f64>,
    e: Option<f64>,
    n: Option<i64>,
}

#[derive(Debug, Clone)]
enum Step {
    Write(Vec<Reading>),
    /// `DELETE FROM m WHERE [pid = series] [AND ts >= from] [AND ts < to]`.
    Delete {
        series: Option<usize>,
        from: Option<i64>,
        to: Option<i64>,
    },
    Flush,
    /// Compact every month of `m` (also one file: it applies the deletes).
    Compact,
    Settle,
    Restart,
}

fn ts_strategy() -> impl Strategy<Value = i64> {
    prop_oneof![
        // Anywhere in three days around the DST change, to the second.
        (0i64..3 * 24 * 3600).prop_map(|s| T0 + s * 1_000_000),
        // Exactly on, or just before, a 15-minute boundary (local midnights are some).
        (0i64..3 * 96, prop::bool::ANY).prop_map(|(q, before)| T0 + q * Q - i64::from(before)),
        // A month and more back.
        (0i64..2 * 24 * 3600).prop_map(|s| BACKFILL + s * 1_000_000),
    ]
}

fn quarter(range: std::ops::Range<i32>) -> impl Strategy<Value = f64> {
    range.prop_map(|x| f64::from(x) * 0.25)
}

fn reading() -> impl Strategy<Value = Reading> {
    (
        0usize..3,
        ts_strategy(),
        prop::option::weighted(0.85, quarter(-400..400)),
        // Counter: mostly high values, sometimes small (a reset when it follows a high).
        prop::option::weighted(
            0.85,
            prop_oneof![4 => quarter(4000..8000), 1 => quarter(0..40)],
        ),
        prop::option::weighted(0.8, -50i64..50),
    )
        .prop_map(|(series, ts, v, e, n)| Reading {
            series,
            ts,
            v,
            e,
            n,
        })
}

fn steps() -> impl Strategy<Value = Vec<Step>> {
    prop::collection::vec(
        prop_oneof![
            6 => prop::collection::vec(reading(), 1..30).prop_map(Step::Write),
            2 => (
                prop::option::weighted(0.7, 0usize..3),
                prop::option::weighted(0.6, ts_strategy()),
                prop::option::weighted(0.6, ts_strategy()),
            )
                .prop_map(|(series, from, to)| Step::Delete { series, from, to }),
            1 => Just(Step::Flush),
            1 => Just(Step::Compact),
            1 => Just(Step::Settle),
            1 => Just(Step::Restart),
        ],
        1..14,
    )
}

fn tz_strategy() -> impl Strategy<Value = Tz> {
    prop_oneof![
        Just(chrono_tz::UTC),
        Just(chrono_tz::Asia::Shanghai),
        Just(chrono_tz::Europe::Berlin),
        Just(chrono_tz::Asia::Kathmandu),
    ]
}

const SERIES: [&str; 3] = ["m1", "m2", "m3"];

/// Expected rollup rows: (series, bucket start) -> column -> value.
type Expected = BTreeMap<(String, i64), BTreeMap<String, Option<f64>>>;

fn local_day_start(tz: Tz, ts: i64) -> i64 {
    let date = chrono::DateTime::from_timestamp_micros(ts)
        .unwrap()
        .with_timezone(&tz)
        .date_naive();
    tz.from_local_datetime(&date.and_time(NaiveTime::MIN))
        .earliest()
        .unwrap()
        .timestamp_micros()
}

/// Brute force over the final rows (last write per key), in time order per series.
fn expected(final_rows: &BTreeMap<(usize, i64), Reading>, bucket: impl Fn(i64) -> i64) -> Expected {
    let mut out = Expected::new();
    for (s, name) in SERIES.iter().enumerate() {
        let rows: Vec<&Reading> = final_rows
            .range((s, i64::MIN)..=(s, i64::MAX))
            .map(|(_, r)| r)
            .collect();
        // Counter increments, per reading, from the previous reading of the series.
        let mut prev_e: Option<f64> = None;
        let mut incs = Vec::new();
        for r in &rows {
            let inc = match (prev_e, r.e) {
                (Some(p), Some(c)) => Some(if c >= p { c - p } else { c }),
                _ => None,
            };
            if r.e.is_some() {
                prev_e = r.e;
            }
            incs.push(inc);
        }
        let mut groups: BTreeMap<i64, Vec<usize>> = BTreeMap::new();
        for (i, r) in rows.iter().enumerate() {
            groups.entry(bucket(r.ts)).or_default().push(i);
        }
        for (start, idx) in groups {
            let mut cols = BTreeMap::new();
            let mut put_stats = |field: &str, vals: Vec<f64>| {
                let count = vals.len();
                let get = |v: Option<f64>| if count == 0 { None } else { v };
                cols.insert(format!("{field}_count"), Some(count as f64));
                cols.insert(
                    format!("{field}_min"),
                    get(vals.iter().cloned().reduce(f64::min)),
                );
                cols.insert(
                    format!("{field}_max"),
                    get(vals.iter().cloned().reduce(f64::max)),
                );
                let sum: f64 = vals.iter().sum();
                cols.insert(format!("{field}_sum"), get(Some(sum)));
                cols.insert(format!("{field}_avg"), get(Some(sum / count as f64)));
                cols.insert(format!("{field}_first"), vals.first().cloned());
                cols.insert(format!("{field}_last"), vals.last().cloned());
            };
            put_stats("v", idx.iter().filter_map(|&i| rows[i].v).collect());
            put_stats("e", idx.iter().filter_map(|&i| rows[i].e).collect());
            put_stats(
                "n",
                idx.iter()
                    .filter_map(|&i| rows[i].n.map(|x| x as f64))
                    .collect(),
            );
            let has_e = idx.iter().any(|&i| rows[i].e.is_some());
            let delta: f64 = idx.iter().filter_map(|&i| incs[i]).sum();
            cols.insert("e_delta".into(), if has_e { Some(delta) } else { None });
            out.insert((name.to_string(), start), cols);
        }
    }
    out
}

fn num_at(col: &dyn Array, r: usize) -> Option<f64> {
    if col.is_null(r) {
        return None;
    }
    if let Some(a) = col.as_any().downcast_ref::<Float64Array>() {
        return Some(a.value(r));
    }
    col.as_any()
        .downcast_ref::<Int64Array>()
        .map(|a| a.value(r) as f64)
}

async fn actual(storage: &Storage, table: &str, columns: &[String]) -> Expected {
    let Some(batch) = storage
        .read_range(table, i64::MIN, i64::MAX, None)
        .await
        .unwrap()
    else {
        return Expected::new(); // never created: no rows were ever rolled up
    };
    let ts = batch
        .column(0)
        .as_any()
        .downcast_ref::<TimestampMicrosecondArray>()
        .unwrap();
    let pid = batch
        .column(1)
        .as_any()
        .downcast_ref::<StringArray>()
        .unwrap();
    let mut out = Expected::new();
    for r in 0..batch.num_rows() {
        let mut cols = BTreeMap::new();
        for c in columns {
            let col = batch
                .column_by_name(c)
                .unwrap_or_else(|| panic!("{table} lacks {c}"));
            cols.insert(c.clone(), num_at(col.as_ref(), r));
        }
        out.insert((pid.value(r).to_string(), ts.value(r)), cols);
    }
    out
}

fn close(a: Option<f64>, b: Option<f64>) -> bool {
    match (a, b) {
        (None, None) => true,
        (Some(a), Some(b)) => (a - b).abs() <= 1e-9 * a.abs().max(b.abs()).max(1.0),
        _ => false,
    }
}

fn assert_same(table: &str, got: &Expected, want: &Expected) {
    let got_keys: Vec<_> = got.keys().collect();
    let want_keys: Vec<_> = want.keys().collect();
    assert_eq!(got_keys, want_keys, "{table}: buckets differ");
    for (k, w) in want {
        let g = &got[k];
        for (c, wv) in w {
            assert!(
                close(g[c], *wv),
                "{table} {k:?} {c}: got {:?}, want {wv:?}",
                g[c]
            );
        }
    }
}

async fn open(dir: &std::path::Path, tz: Tz) -> (Storage, std::sync::Arc<RollupMaintainer>) {
    let mut config = StorageConfig::new(dir);
    // Nothing is persisted unless the test says so.
    config.persist_max_age = std::time::Duration::from_secs(3600);
    open_storage(config, tz).await.unwrap()
}

async fn run_case(tz: Tz, steps: Vec<Step>) {
    let dir = tempfile::tempdir().unwrap();
    let (mut storage, mut rollups) = open(dir.path(), tz).await;
    let f = |n: &str, t| FieldDef {
        name: n.into(),
        field_type: t,
    };
    storage
        .create_table(
            "m",
            vec!["pid".into()],
            vec![
                f("v", FieldType::Float),
                f("e", FieldType::Float),
                f("n", FieldType::Integer),
            ],
            false,
        )
        .await
        .unwrap();
    storage
        .set_rollup_settings(
            "m",
            RollupSettings {
                intervals: None,
                counters: vec!["e".into()],
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let mut final_rows: BTreeMap<(usize, i64), Reading> = BTreeMap::new();
    for step in steps {
        match step {
            Step::Write(readings) => {
                let rows = readings
                    .iter()
                    .map(|r| {
                        let mut fields = Vec::new();
                        if let Some(v) = r.v {
                            fields.push(("v".to_string(), FieldValue::Float(v)));
                        }
                        if let Some(e) = r.e {
                            fields.push(("e".to_string(), FieldValue::Float(e)));
                        }
                        if let Some(n) = r.n {
                            fields.push(("n".to_string(), FieldValue::Integer(n)));
                        }
                        Row {
                            ts: r.ts,
                            tags: vec![("pid".into(), SERIES[r.series].into())],
                            fields,
                        }
                    })
                    .collect();
                storage
                    .write(
                        WriteBatch {
                            table: "m".into(),
                            rows,
                        },
                        WriteMode::AllOrNothing,
                        false,
                    )
                    .await
                    .unwrap();
                for r in readings {
                    final_rows.insert((r.series, r.ts), r);
                }
            }
            Step::Delete { series, from, to } => {
                let predicate = wattdb_storage::DeletePredicate {
                    ts_from: from,
                    ts_to: to,
                    tags: series
                        .map(|s| wattdb_storage::TagCondition {
                            tag: "pid".into(),
                            values: vec![SERIES[s].into()],
                            negated: false,
                        })
                        .into_iter()
                        .collect(),
                };
                storage.delete("m", vec![predicate]).await.unwrap();
                final_rows.retain(|(s, ts), _| {
                    let hit = series.is_none_or(|x| x == *s)
                        && from.is_none_or(|f| *ts >= f)
                        && to.is_none_or(|t| *ts < t);
                    !hit
                });
            }
            Step::Flush => {
                storage.flush().await.unwrap();
            }
            Step::Compact => {
                let months: std::collections::BTreeSet<_> = storage
                    .files()
                    .into_iter()
                    .filter(|(t, _)| t == "m")
                    .map(|(_, f)| f.month)
                    .collect();
                for month in months {
                    storage
                        .compact_month("m", month, std::time::Duration::ZERO)
                        .await
                        .unwrap();
                }
            }
            Step::Settle => rollups.settle().await.unwrap(),
            Step::Restart => {
                // Marks not yet worked off must survive (made durable when the WAL is
                // released on shutdown).
                storage.shutdown().await.unwrap();
                drop(rollups);
                drop(storage);
                (storage, rollups) = open(dir.path(), tz).await;
            }
        }
    }
    rollups.settle().await.unwrap();
    let mut columns: Vec<String> = ["v", "e", "n"]
        .iter()
        .flat_map(|f| {
            ["min", "max", "avg", "sum", "count", "first", "last"]
                .iter()
                .map(move |s| format!("{f}_{s}"))
        })
        .collect();
    columns.push("e_delta".into());
    // The raw rows themselves: exactly the model's.
    let raw = actual(&storage, "m", &["v".to_string(), "n".to_string()]).await;
    let want_raw: Expected = final_rows
        .iter()
        .map(|((s, ts), r)| {
            let cols = BTreeMap::from([
                ("v".to_string(), r.v),
                ("n".to_string(), r.n.map(|x| x as f64)),
            ]);
            ((SERIES[*s].to_string(), *ts), cols)
        })
        .collect();
    assert_same("m", &raw, &want_raw);
    let want_15m = expected(&final_rows, |ts| ts.div_euclid(Q) * Q);
    assert_same(
        "m_15m",
        &actual(&storage, "m_15m", &columns).await,
        &want_15m,
    );
    let want_1d = expected(&final_rows, |ts| local_day_start(tz, ts));
    assert_same("m_1d", &actual(&storage, "m_1d", &columns).await, &want_1d);
    storage.shutdown().await.unwrap();
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn rollups_equal_a_full_recomputation(tz in tz_strategy(), steps in steps()) {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(run_case(tz, steps));
    }
}
