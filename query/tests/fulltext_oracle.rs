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
use arrow::record_batch::RecordBatch;
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

/// The batches `sql` returns.
async fn run(ctx: &datafusion::prelude::SessionContext, sql: &str) -> Vec<RecordBatch> {
    ctx.sql(sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
        .collect()
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
}

/// The keys of a batch whose first columns are `pid, ts`.
fn batch_keys(b: &RecordBatch) -> Vec<Key> {
    let pid = b.column(0).as_string::<i32>();
    let ts = b.column(1).as_primitive::<TimestampMicrosecondType>();
    (0..b.num_rows())
        .map(|i| (pid.value(i).to_string(), ts.value(i)))
        .collect()
}

async fn keys(ctx: &datafusion::prelude::SessionContext, sql: &str) -> Vec<Key> {
    run(ctx, sql).await.iter().flat_map(batch_keys).collect()
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

/// A two-worker runtime, as the server has.
fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// Storage in `dir` with table `t` (tag `pid`, full-text `msg`, chinese) and a SQL
/// session over it.
async fn table_t(
    dir: &std::path::Path,
) -> (Storage, std::sync::Arc<datafusion::prelude::SessionContext>) {
    let mut cfg = StorageConfig::new(dir);
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
    (storage, ctx)
}

/// Write `rows` to table `t`, all or nothing.
async fn write_t(storage: &Storage, rows: Vec<Row>) {
    storage
        .write(
            WriteBatch {
                table: "t".into(),
                rows,
            },
            WriteMode::AllOrNothing,
            false,
        )
        .await
        .unwrap();
}

fn run_case(ops: Vec<Op>, queries: Vec<String>) -> Result<(), TestCaseError> {
    runtime().block_on(async move {
        let dir = tempfile::tempdir().unwrap();
        let (storage, ctx) = table_t(dir.path()).await;
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
                    write_t(&storage, batch).await;
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

/// BM25 written out again here, from the textbook definition, over counts made by brute
/// force: what `score()` must return for a value, given every value in the indexed files.
struct Bm25Oracle {
    docs: f64,
    avg_len: f64,
    doc_freq: BTreeMap<String, f64>,
}

fn cut(text: &str) -> Vec<String> {
    let mut a = Analyzer::Chinese.for_values();
    wattdb_storage::fulltext::analyzer::tokens(&mut a, text)
        .into_iter()
        .map(|(_, t)| t)
        .collect()
}

impl Bm25Oracle {
    fn over(indexed: &[String]) -> Bm25Oracle {
        let mut doc_freq = BTreeMap::new();
        let mut tokens = 0usize;
        for v in indexed {
            let t = cut(v);
            tokens += t.len();
            let distinct: std::collections::BTreeSet<String> = t.into_iter().collect();
            for t in distinct {
                *doc_freq.entry(t).or_insert(0.0) += 1.0;
            }
        }
        Bm25Oracle {
            docs: indexed.len() as f64,
            avg_len: tokens as f64 / indexed.len() as f64,
            doc_freq,
        }
    }

    /// The score of `text` for the words `any` (OR) when it has none of `none`.
    fn score(&self, text: &str, any: &[&str], none: &[&str]) -> f64 {
        let t = cut(text);
        if none.iter().any(|w| t.iter().any(|x| x == w)) {
            return 0.0;
        }
        let len = t.len() as f64;
        any.iter()
            .map(|w| {
                let tf = t.iter().filter(|x| x == w).count() as f64;
                if tf == 0.0 {
                    return 0.0;
                }
                let df = self.doc_freq.get(*w).copied().unwrap_or(0.0);
                let idf = (1.0 + (self.docs - df + 0.5) / (df + 0.5)).ln();
                idf * tf * 2.2 / (tf + 1.2 * (0.25 + 0.75 * len / self.avg_len))
            })
            .sum()
    }
}

async fn scores(ctx: &datafusion::prelude::SessionContext, sql: &str) -> Vec<(Key, f64)> {
    let mut out = Vec::new();
    for b in run(ctx, sql).await {
        let s = b.column(2).as_primitive::<arrow::datatypes::Float64Type>();
        out.extend(batch_keys(&b).into_iter().zip(s.values().iter().copied()));
    }
    out
}

/// `score()` equals BM25 computed by brute force over every value in the indexed files
/// (buffered rows scored with those counts), before and after a compaction drops the
/// overwritten versions; `ORDER BY score() DESC LIMIT` ranks accordingly.
#[test]
fn score_is_bm25_over_the_indexed_values() {
    runtime().block_on(async move {
        // Each query word must be one token, so that the oracle's OR of words is the query.
        for w in ["breaker", "gateway", "告警", "reset", "e17"] {
            assert_eq!(cut(w), [w], "{w} is one token");
        }
        let dir = tempfile::tempdir().unwrap();
        let (storage, ctx) = table_t(dir.path()).await;
        // Current rows, and every value written to a file (overwritten ones included).
        let mut current: BTreeMap<Key, String> = BTreeMap::new();
        let mut indexed: Vec<String> = Vec::new();
        // Deterministic text from a small generator.
        let mut seed = 7u64;
        let mut next = |n: u64| {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (seed >> 33) % n
        };
        for round in 0..4 {
            let mut rows = Vec::new();
            for _ in 0..40 {
                let pid = format!("p{}", next(3));
                let ts = ts_of(next(40) as i64);
                let words = 1 + next(6);
                let text = (0..words)
                    .map(|_| WORDS[next(WORDS.len() as u64) as usize])
                    .collect::<Vec<_>>()
                    .join(" ");
                rows.push(((pid, ts), text));
            }
            let batch = rows
                .iter()
                .map(|((pid, ts), text)| Row {
                    ts: *ts,
                    tags: vec![("pid".into(), pid.clone())],
                    fields: vec![("msg".to_string(), FieldValue::Text(text.clone()))],
                })
                .collect();
            write_t(&storage, batch).await;
            // Within one batch the last row of a key wins.
            let batch_rows: BTreeMap<Key, String> = rows.into_iter().collect();
            // The last round stays in the buffer.
            if round < 3 {
                storage.flush().await.unwrap();
                indexed.extend(batch_rows.values().cloned());
            }
            current.extend(batch_rows);
        }
        let queries: [(&str, &[&str], &[&str]); 3] = [
            ("breaker", &["breaker"], &[]),
            ("告警 OR gateway OR e17", &["告警", "gateway", "e17"], &[]),
            (
                "(breaker OR reset) AND NOT 告警",
                &["breaker", "reset"],
                &["告警"],
            ),
        ];
        for phase in ["files and buffer", "compacted"] {
            if phase == "compacted" {
                storage.flush().await.unwrap();
                for p in storage.partitions().into_iter().filter(|p| p.table == "t") {
                    storage
                        .compact_month("t", p.month, Duration::ZERO)
                        .await
                        .unwrap();
                }
                // Compaction rewrote every month: the files now hold exactly the rows.
                indexed = current.values().cloned().collect();
            }
            let oracle = Bm25Oracle::over(&indexed);
            for (q, any, none) in queries {
                let got = scores(
                    &ctx,
                    &format!("SELECT pid, ts, score(msg, '{q}') FROM t ORDER BY pid, ts"),
                )
                .await;
                assert_eq!(got.len(), current.len(), "{phase}: {q}");
                let mut want_top: Vec<(Key, f64)> = Vec::new();
                for ((key, s), (want_key, text)) in got.iter().zip(&current) {
                    assert_eq!(key, want_key);
                    let want = oracle.score(text, any, none);
                    assert!(
                        (s - want).abs() <= 1e-9 * want.abs().max(1.0),
                        "{phase}: {q} on {text:?}: {s} vs {want}"
                    );
                    if want > 0.0 {
                        want_top.push((key.clone(), want));
                    }
                }
                assert!(!want_top.is_empty(), "{phase}: {q} matches something");
                // Relevance order, ties by key.
                want_top.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
                let top = scores(
                    &ctx,
                    &format!(
                        "SELECT pid, ts, score(msg, '{q}') AS s FROM t WHERE matches(msg, '{q}') \
                         ORDER BY s DESC, pid, ts LIMIT 5"
                    ),
                )
                .await;
                let top_keys: Vec<&Key> = top.iter().map(|(k, _)| k).collect();
                let want_keys: Vec<&Key> = want_top.iter().take(5).map(|(k, _)| k).collect();
                // Scores within 1e-9 of each other may swap; compare the scores themselves.
                for ((k, s), (wk, ws)) in top.iter().zip(want_top.iter().take(5)) {
                    assert!(
                        (s - ws).abs() <= 1e-9 * ws.max(1.0),
                        "{phase}: {q}: {k:?} {s} vs {wk:?} {ws}"
                    );
                }
                assert_eq!(top_keys.len(), want_keys.len(), "{phase}: {q}");
            }
        }
        // ORDER BY the function itself (not a selected column), and a non-full-text column.
        let n = ctx
            .sql("SELECT pid FROM t ORDER BY score(msg, 'breaker') DESC LIMIT 3")
            .await
            .unwrap()
            .collect()
            .await
            .unwrap()
            .iter()
            .map(|b| b.num_rows())
            .sum::<usize>();
        assert_eq!(n, 3);
        let err = ctx
            .sql("SELECT score(msg, '(') FROM t")
            .await
            .unwrap()
            .collect()
            .await
            .unwrap_err();
        assert!(err.to_string().contains("full-text query"), "{err}");
        storage.shutdown().await.unwrap();
    });
}

/// Bytes a plan's Parquet scans read (DataFusion's `bytes_scanned`), over the whole tree.
fn bytes_scanned(plan: &std::sync::Arc<dyn datafusion::physical_plan::ExecutionPlan>) -> usize {
    let own = plan
        .metrics()
        .and_then(|m| m.sum_by_name("bytes_scanned"))
        .map(|v| v.as_usize())
        .unwrap_or(0);
    own + plan
        .children()
        .into_iter()
        .map(bytes_scanned)
        .sum::<usize>()
}

/// The keys `sql` (selecting `pid, ts` first) returns, and the bytes its Parquet scans read.
async fn keys_and_bytes(ctx: &datafusion::prelude::SessionContext, sql: &str) -> (Vec<Key>, usize) {
    let plan = ctx
        .sql(sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
        .create_physical_plan()
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
    let batches = datafusion::physical_plan::collect(plan.clone(), ctx.task_ctx())
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
    let mut keys: Vec<Key> = batches.iter().flat_map(batch_keys).collect();
    keys.sort();
    (keys, bytes_scanned(&plan))
}

/// A selective `matches()` reads the pages that hold its rows, not the file: with the
/// index's row selection and the page index, a one-row hit in a 200,000-row file costs
/// a small fraction of the file's bytes.
#[test]
fn a_selective_match_reads_only_its_pages() {
    runtime().block_on(async move {
        let dir = tempfile::tempdir().unwrap();
        let (storage, ctx) = table_t(dir.path()).await;
        const ROWS: i64 = 200_000;
        const HIT: i64 = 123_457;
        let rows = (0..ROWS)
            .map(|i| Row {
                ts: BASE + 86_400_000_000 + i * 1_000_000,
                tags: vec![("pid".into(), format!("p{}", i % 7))],
                fields: vec![(
                    "msg".to_string(),
                    FieldValue::Text(if i == HIT {
                        "接地故障 on feeder 9".to_string()
                    } else {
                        format!("heartbeat ok seq={i} rssi=-{}dBm", (i * 7919) % 97)
                    }),
                )],
            })
            .collect();
        write_t(&storage, rows).await;
        storage.flush().await.unwrap();
        let files = storage.snapshot("t").unwrap().files;
        assert_eq!(files.len(), 1, "one file");
        let file_bytes = files[0].bytes as usize;
        let (found, read) = keys_and_bytes(
            &ctx,
            "SELECT pid, ts, msg FROM t WHERE matches(msg, '接地故障')",
        )
        .await;
        assert_eq!(found.len(), 1);
        assert!(read > 0, "the scan read something");
        assert!(
            read * 5 < file_bytes,
            "one matching row read {read} bytes of a {file_bytes}-byte file"
        );
        // A common word: the index's answer for the file is exact, so counting its
        // matches does not read (and analyze) the text again.
        let plan = ctx
            .sql("SELECT count(*) FROM t WHERE matches(msg, 'heartbeat')")
            .await
            .unwrap()
            .create_physical_plan()
            .await
            .unwrap();
        let counted = datafusion::physical_plan::collect(plan.clone(), ctx.task_ctx())
            .await
            .unwrap();
        assert_eq!(
            counted[0]
                .column(0)
                .as_primitive::<arrow::datatypes::Int64Type>()
                .value(0),
            ROWS - 1
        );
        let read = bytes_scanned(&plan);
        assert!(
            read * 5 < file_bytes,
            "counting {} matching rows read {read} bytes of a {file_bytes}-byte file",
            ROWS - 1
        );
        storage.shutdown().await.unwrap();
    });
}

/// In the month being written, files overlap and are merged; a selective `matches()`
/// still reads only the versions of the keys some file's index hit — and gets them
/// right: a key whose old version matches but whose newer one (in a later file or in
/// the buffer) does not is not returned, and one whose newer version matches is.
#[test]
fn a_selective_match_over_overlapping_files_reads_only_candidate_keys() {
    runtime().block_on(async move {
        let dir = tempfile::tempdir().unwrap();
        let (storage, ctx) = table_t(dir.path()).await;
        const ROWS: i64 = 200_000;
        let day = BASE + 86_400_000_000;
        let key = |i: i64| (format!("p{}", i % 7), day + i * 1_000_000);
        let text = |i: i64| format!("heartbeat ok seq={i} rssi=-{}dBm", (i * 7919) % 97);
        let mut oracle: BTreeMap<Key, Option<String>> = BTreeMap::new();
        let write = |rows: Vec<(i64, String)>| {
            rows.into_iter()
                .map(|(i, msg)| {
                    let (pid, ts) = key(i);
                    Row {
                        ts,
                        tags: vec![("pid".into(), pid)],
                        fields: vec![("msg".to_string(), FieldValue::Text(msg))],
                    }
                })
                .collect::<Vec<_>>()
        };
        let hit = "接地故障 on feeder 9".to_string();
        // File 1: every row; rows 1000, 50_000 and 150_000 match.
        let first: Vec<(i64, String)> = (0..ROWS)
            .map(|i| {
                (
                    i,
                    if [1000, 50_000, 150_000].contains(&i) {
                        hit.clone()
                    } else {
                        text(i)
                    },
                )
            })
            .collect();
        // File 2, over the same range: 1000 no longer matches, 70_000 now does, and
        // new rows between the old ones' seconds... (overwrites of every 97th row).
        let second: Vec<(i64, String)> = (0..ROWS)
            .step_by(97)
            .chain([1000, 70_000])
            .map(|i| {
                (
                    i,
                    if i == 70_000 {
                        hit.clone()
                    } else {
                        format!("{} v2", text(i))
                    },
                )
            })
            .collect();
        // Buffered: 150_000 no longer matches, 180_000 now does; a new key and an
        // overwrite that match "heartbeat".
        let buffered = vec![
            (150_000, "reset".to_string()),
            (180_000, hit.clone()),
            (190_001, "heartbeat from the buffer".to_string()),
            (ROWS + 5, "late heartbeat".to_string()),
        ];
        for (rows, flush) in [(first, true), (second, true), (buffered, false)] {
            for (i, msg) in &rows {
                oracle.insert(key(*i), Some(msg.clone()));
            }
            write_t(&storage, write(rows)).await;
            if flush {
                storage.flush().await.unwrap();
            }
        }
        let files = storage.snapshot("t").unwrap().files;
        assert_eq!(files.len(), 2, "two overlapping files");
        let file_bytes: usize = files.iter().map(|f| f.bytes as usize).sum();
        let q = FullTextQuery::new("接地故障", Analyzer::Chinese).unwrap();
        let expected = brute_force(&oracle, &q);
        assert_eq!(
            expected,
            [key(50_000), key(70_000), key(180_000)]
                .into_iter()
                .collect::<std::collections::BTreeSet<_>>()
                .into_iter()
                .collect::<Vec<_>>(),
            "the oracle itself"
        );
        let (found, read) = keys_and_bytes(
            &ctx,
            "SELECT pid, ts, msg FROM t WHERE matches(msg, '接地故障')",
        )
        .await;
        assert_eq!(found, expected);
        // The scan applies matches() itself (exactly): a LIMIT above it still counts
        // matching rows only.
        let (limited, _) = keys_and_bytes(
            &ctx,
            "SELECT pid, ts FROM t WHERE matches(msg, '接地故障') LIMIT 2",
        )
        .await;
        assert_eq!(limited.len(), 2);
        assert!(limited.iter().all(|k| expected.contains(k)), "{limited:?}");
        assert!(
            read * 5 < file_bytes,
            "three candidate keys read {read} bytes of {file_bytes} bytes of overlapping files"
        );
        // A query with most rows matching is merged whole, and still exact: the files'
        // hits ride through the merge as flags, so the text is not read from the files
        // (the buffered rows are checked by matches()).
        let q = FullTextQuery::new("heartbeat -v2", Analyzer::Chinese).unwrap();
        let expected = brute_force(&oracle, &q);
        assert!(expected.len() > 150_000, "{} rows match", expected.len());
        assert!(expected.contains(&key(ROWS + 5)) && expected.contains(&key(190_001)));
        assert!(!expected.contains(&key(150_000)) && !expected.contains(&key(1000)));
        let (found, read) = keys_and_bytes(
            &ctx,
            "SELECT pid, ts FROM t WHERE matches(msg, 'heartbeat -v2')",
        )
        .await;
        assert_eq!(found, expected);
        assert!(
            read * 3 < file_bytes,
            "a whole merge for a common term read {read} of {file_bytes} bytes"
        );
        let (limited, _) = keys_and_bytes(
            &ctx,
            "SELECT pid, ts FROM t WHERE matches(msg, 'heartbeat -v2') LIMIT 5",
        )
        .await;
        assert_eq!(limited.len(), 5);
        assert!(limited.iter().all(|k| expected.contains(k)), "{limited:?}");
        // The rows themselves, text included, from the same flagged merge.
        let rows = run(
            &ctx,
            "SELECT pid, ts, msg FROM t WHERE matches(msg, 'heartbeat -v2') AND ts >= TIMESTAMP '2020-01-01 00:00:00'",
        )
        .await;
        let mut with_text: Vec<(Key, String)> = rows
            .iter()
            .flat_map(|b| {
                let msg = b.column(2).as_string::<i32>();
                batch_keys(b)
                    .into_iter()
                    .zip(msg.iter().map(|m| m.unwrap_or_default().to_string()))
                    .collect::<Vec<_>>()
            })
            .collect();
        with_text.sort();
        let want: Vec<(Key, String)> = expected
            .iter()
            .map(|k| (k.clone(), oracle[k].clone().unwrap_or_default()))
            .collect();
        assert_eq!(with_text, want);
        storage.shutdown().await.unwrap();
    });
}

/// Two full-text columns over overlapping files, one file's index of the second column
/// gone (deleted from the store and the local cache while the server was down): that
/// file's index answer covers only the first filter, so its rows must be checked — a
/// narrowed or flagged merge would take it as exact and return rows matching only the
/// first column. Answers against brute force over both columns.
#[test]
fn a_merge_with_one_files_second_index_missing_is_checked() {
    runtime().block_on(async move {
        let dir = tempfile::tempdir().unwrap();
        let open = || async {
            let mut cfg = StorageConfig::new(dir.path());
            cfg.persist_max_age = Duration::from_secs(3600);
            Storage::open(cfg).await.unwrap()
        };
        let storage = open().await;
        let text = |name: &str| wattdb_storage::FieldDef {
            name: name.into(),
            field_type: wattdb_storage::FieldType::Text,
        };
        storage
            .create_table_with_fulltext(
                "t",
                vec!["pid".into()],
                vec![text("msg"), text("detail")],
                [
                    ("msg".to_string(), Analyzer::Chinese),
                    ("detail".to_string(), Analyzer::Chinese),
                ]
                .into(),
                false,
            )
            .await
            .unwrap();
        const ROWS: i64 = 20_000;
        let day = BASE + 86_400_000_000;
        let key = |i: i64| (format!("p{}", i % 7), day + i * 1_000_000);
        // msg says 接地故障 on every 100th row; detail says breaker on every 300th.
        let row = |i: i64, version: &str| {
            let (pid, ts) = key(i);
            let msg = if i % 100 == 0 {
                "接地故障 告警"
            } else {
                "心跳正常"
            };
            let detail = if i % 300 == 0 {
                "breaker tripped"
            } else {
                "ok"
            };
            Row {
                ts,
                tags: vec![("pid".into(), pid)],
                fields: vec![
                    (
                        "msg".to_string(),
                        FieldValue::Text(format!("{msg} {version}")),
                    ),
                    (
                        "detail".to_string(),
                        FieldValue::Text(format!("{detail} {version}")),
                    ),
                ],
            }
        };
        let mut oracle: BTreeMap<Key, (String, String)> = BTreeMap::new();
        let mut remember = |rows: &[Row]| {
            for r in rows {
                let text = |n: usize| match &r.fields[n].1 {
                    FieldValue::Text(t) => t.clone(),
                    other => panic!("{other:?}"),
                };
                oracle.insert((r.tags[0].1.clone(), r.ts), (text(0), text(1)));
            }
        };
        // File 1: every row. File 2, overlapping it: every 200th row (some hits of
        // both) and every 50th from row 1 (no hits) written again; most of file 1's
        // msg hits stay its newest versions.
        let first: Vec<Row> = (0..ROWS).map(|i| row(i, "v1")).collect();
        let mut again: Vec<i64> = (0..ROWS)
            .step_by(200)
            .chain((1..ROWS).step_by(50))
            .collect();
        again.sort_unstable();
        let second: Vec<Row> = again.into_iter().map(|i| row(i, "v2")).collect();
        for rows in [first, second] {
            remember(&rows);
            write_t(&storage, rows).await;
            storage.flush().await.unwrap();
        }
        let mut files = storage.snapshot("t").unwrap().files;
        assert_eq!(files.len(), 2, "two overlapping files");
        files.sort_by_key(|f| f.max_seq);
        let gone = files[0]
            .text_index("detail", Analyzer::Chinese)
            .expect("file 1 has its detail index")
            .path
            .clone();
        storage.shutdown().await.unwrap();
        drop(storage);
        std::fs::remove_file(dir.path().join("objects").join(&gone)).unwrap();
        let _ = std::fs::remove_dir_all(dir.path().join("fulltext/cache"));
        // (A session is made only now: it keeps the storage it serves.)
        let storage = open().await;
        let ctx = wattdb_query::build_session(
            &storage,
            wattdb_query::users::Users::load(storage.clone(), None),
        )
        .unwrap();
        let (q_msg, q_detail) = (
            FullTextQuery::new("接地故障", Analyzer::Chinese).unwrap(),
            FullTextQuery::new("breaker", Analyzer::Chinese).unwrap(),
        );
        let (mut m, mut d) = (q_msg.matcher(), q_detail.matcher());
        let expected: Vec<Key> = oracle
            .iter()
            .filter(|(_, (msg, detail))| m.matches(msg) && d.matches(detail))
            .map(|(k, _)| k.clone())
            .collect();
        // Rows 0, 300, 600, … (multiples of both 100 and 300): ⌈ROWS / 300⌉ of them.
        assert_eq!(
            expected.len() as i64,
            (ROWS + 299) / 300,
            "the oracle itself"
        );
        let (found, _) = keys_and_bytes(
            &ctx,
            "SELECT pid, ts FROM t WHERE matches(msg, '接地故障') AND matches(detail, 'breaker')",
        )
        .await;
        assert_eq!(found, expected);
        storage.shutdown().await.unwrap();
    });
}
