//! Property test: `matches(msg, '…')` over a table with a full-text column returns exactly
//! the rows a brute-force evaluation of the same query accepts over the deduplicated
//! rows — whatever mix of buffered rows, persisted files (each with its index), overwrites
//! of the same key, compactions, DELETEs and an expired month the data went through.
//! The brute force is the row-by-row definition (`FullTextQuery::matcher`); the index
//! path (file skipping, row selection) must agree with it.

use std::collections::BTreeMap;
use std::time::Duration;

use arrow::array::AsArray;
use arrow::datatypes::TimestampMicrosecondType;
use proptest::prelude::*;
use wattdb_storage::fulltext::{Analyzer, FullTextQuery};
use wattdb_storage::{
    DeletePredicate, FieldValue, Month, Row, Storage, StorageConfig, TagCondition, WriteBatch,
    WriteMode,
};

/// 2026-10-31T00:00:00Z: rows straddle October, November and December.
const BASE: i64 = 1_793_404_800_000_000;
const HOUR: i64 = 3_600_000_000;

const WORDS: [&str; 12] = [
    "通讯超时",
    "网关7",
    "设备离线",
    "breaker",
    "tripped",
    "feeder",
    "电压越限",
    "E17",
    "reset",
    "告警",
    "正常",
    "gateway",
];
const SEPARATORS: [&str; 3] = [" ", "，", ""];

type Key = (String, i64);

#[derive(Debug, Clone)]
enum Op {
    /// (pid, slot, words, separator). (NULL text is covered by tests/fulltext.rs.)
    Insert(Vec<(u8, i64, Vec<u8>, u8)>),
    Flush,
    Compact,
    /// DELETE every row of one pid.
    Delete(u8),
    /// Retention drops October.
    ExpireOctober,
    /// Run the queries now.
    Check,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        5 => prop::collection::vec(
            (0u8..3, 0i64..48, prop::collection::vec(0u8..WORDS.len() as u8, 1..5), 0u8..3),
            1..10
        )
        .prop_map(Op::Insert),
        2 => Just(Op::Flush),
        1 => Just(Op::Compact),
        1 => (0u8..3).prop_map(Op::Delete),
        1 => Just(Op::ExpireOctober),
        2 => Just(Op::Check),
    ]
}

fn leaf() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => (0..WORDS.len()).prop_map(|i| WORDS[i].to_string()),
        1 => Just("feed*".to_string()),
        1 => Just("通讯*".to_string()),
        1 => Just("\"breaker tripped\"".to_string()),
        1 => Just("\"通讯超时 网关7\"".to_string()),
    ]
}

fn query() -> impl Strategy<Value = String> {
    leaf().prop_recursive(3, 8, 2, |inner| {
        prop_oneof![
            (inner.clone(), inner.clone()).prop_map(|(a, b)| format!("({a} AND {b})")),
            (inner.clone(), inner.clone()).prop_map(|(a, b)| format!("({a} OR {b})")),
            (inner.clone(), inner.clone()).prop_map(|(a, b)| format!("({a} AND NOT {b})")),
            inner.prop_map(|a| format!("NOT {a}")),
        ]
    })
}

fn ts_of(slot: i64) -> i64 {
    BASE + slot * 23 * HOUR
}

fn text_of(words: &[u8], sep: u8) -> Option<String> {
    (!words.is_empty()).then(|| {
        words
            .iter()
            .map(|w| WORDS[*w as usize])
            .collect::<Vec<_>>()
            .join(SEPARATORS[sep as usize])
    })
}

/// Keys whose text matches `q`, by the row-by-row definition.
fn brute_force(oracle: &BTreeMap<Key, Option<String>>, q: &FullTextQuery) -> Vec<Key> {
    let mut m = q.matcher();
    oracle
        .iter()
        .filter(|(_, text)| text.as_deref().is_some_and(|t| m.matches(t)))
        .map(|(k, _)| k.clone())
        .collect()
}

async fn keys(ctx: &datafusion::prelude::SessionContext, sql: &str) -> Vec<Key> {
    let batches = ctx
        .sql(sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
        .collect()
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
    let mut out = Vec::new();
    for b in batches {
        let pid = b.column(0).as_string::<i32>();
        let ts = b.column(1).as_primitive::<TimestampMicrosecondType>();
        for i in 0..b.num_rows() {
            out.push((pid.value(i).to_string(), ts.value(i)));
        }
    }
    out
}

async fn check(
    ctx: &datafusion::prelude::SessionContext,
    oracle: &BTreeMap<Key, Option<String>>,
    queries: &[String],
) -> Result<(), TestCaseError> {
    let (lo, hi) = (ts_of(10), ts_of(35));
    for q in queries {
        let Ok(compiled) = FullTextQuery::new(q, Analyzer::Chinese) else {
            continue;
        };
        let want = brute_force(oracle, &compiled);
        let got = keys(
            ctx,
            &format!("SELECT pid, ts FROM t WHERE matches(msg, '{q}') ORDER BY pid, ts"),
        )
        .await;
        prop_assert_eq!(&got, &want, "query {}", q);
        // With a time range and another predicate beside it.
        let want: Vec<Key> = want
            .into_iter()
            .filter(|(p, ts)| *ts >= lo && *ts < hi && p != "p1")
            .collect();
        let got = keys(
            ctx,
            &format!(
                "SELECT pid, ts FROM t WHERE matches(msg, '{q}') AND pid <> 'p1' \
                 AND ts >= to_timestamp_micros({lo}) AND ts < to_timestamp_micros({hi}) \
                 ORDER BY pid, ts"
            ),
        )
        .await;
        prop_assert_eq!(&got, &want, "query {} in a time range", q);
    }
    Ok(())
}

fn run_case(ops: Vec<Op>, queries: Vec<String>) -> Result<(), TestCaseError> {
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
            .create_table_with_fulltext(
                "t",
                vec!["pid".into()],
                vec![wattdb_storage::FieldDef {
                    name: "msg".into(),
                    field_type: wattdb_storage::FieldType::Text,
                }],
                [("msg".to_string(), Analyzer::Chinese)].into(),
                false,
            )
            .await
            .unwrap();
        let ctx = wattdb_query::build_session(
            &storage,
            wattdb_query::users::Users::load(storage.clone(), None),
        )
        .unwrap();
        let mut oracle: BTreeMap<Key, Option<String>> = BTreeMap::new();
        let mut expired = false;
        let november = Month::parse("2026-11").unwrap();
        for op in ops {
            match op {
                Op::Insert(rows) => {
                    let rows: Vec<(Key, Option<String>)> = rows
                        .into_iter()
                        .map(|(pid, slot, words, sep)| {
                            ((format!("p{pid}"), ts_of(slot)), text_of(&words, sep))
                        })
                        .collect();
                    // October is refused once it expired: all or nothing.
                    if expired
                        && rows
                            .iter()
                            .any(|((_, ts), _)| *ts < november.start_micros())
                    {
                        continue;
                    }
                    let batch = rows
                        .iter()
                        .map(|((pid, ts), text)| Row {
                            ts: *ts,
                            tags: vec![("pid".into(), pid.clone())],
                            fields: vec![(
                                "msg".to_string(),
                                FieldValue::Text(text.clone().unwrap_or_default()),
                            )],
                        })
                        .collect();
                    storage
                        .write(
                            WriteBatch {
                                table: "t".into(),
                                rows: batch,
                            },
                            WriteMode::AllOrNothing,
                            false,
                        )
                        .await
                        .unwrap();
                    // A write replaces the whole row of its key.
                    oracle.extend(rows);
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
                }
                Op::Delete(pid) => {
                    let pid = format!("p{pid}");
                    storage
                        .delete(
                            "t",
                            vec![DeletePredicate {
                                ts_from: None,
                                ts_to: None,
                                tags: vec![TagCondition {
                                    tag: "pid".into(),
                                    values: vec![pid.clone()],
                                    negated: false,
                                }],
                            }],
                        )
                        .await
                        .unwrap();
                    oracle.retain(|(p, _), _| *p != pid);
                }
                Op::ExpireOctober => {
                    storage
                        .expire_months_before(
                            "t",
                            november,
                            std::time::SystemTime::now()
                                .duration_since(std::time::UNIX_EPOCH)
                                .unwrap()
                                .as_millis() as i64,
                        )
                        .await
                        .unwrap();
                    oracle.retain(|(_, ts), _| *ts >= november.start_micros());
                    expired = true;
                }
                Op::Check => check(&ctx, &oracle, &queries).await?,
            }
        }
        storage.flush().await.unwrap();
        check(&ctx, &oracle, &queries).await?;
        storage.shutdown().await.unwrap();
        Ok(())
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn matches_equals_brute_force_through_files_indexes_and_merges(
        ops in prop::collection::vec(op(), 1..16),
        queries in prop::collection::vec(query(), 1..5),
    ) {
        run_case(ops, queries)?;
    }
}
