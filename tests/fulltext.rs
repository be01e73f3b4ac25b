//! Full-text search through the PostgreSQL endpoint: `CREATE TABLE … WITH (fulltext =
//! 'msg')`, `set_fulltext`, `matches(msg, '…')` combined with other predicates and
//! `score(msg, '…')` ranking, over buffered rows, persisted files in two months,
//! overwrites of the same key, a graceful restart and kill -9. Messages are built from
//! parts chosen by the row number, so which rows a query must return follows from that
//! rule (computed here, not by wattdb).

mod common;

use std::collections::BTreeSet;

use common::{Server, metric, sqlstate};

const CREATE: &str = "CREATE TABLE device_log (ts TIMESTAMPTZ NOT NULL, device TEXT NOT NULL, \
    level TEXT, msg TEXT, code BIGINT, PRIMARY KEY (device, ts)) WITH (fulltext = 'msg')";
/// 2026-10-31T12:00:00Z: rows span the end of October and the start of November.
const T0: i64 = 1_793_448_000;
const ROWS: i64 = 600;

/// The message of row `i`, and the facts about it the queries ask for.
struct Msg {
    text: String,
    offline: bool,
    timeout: bool,
    gateway: i64,
    tripped: bool,
    reset: bool,
}

fn message(i: i64) -> Msg {
    let offline = i % 5 == 0;
    let timeout = i % 3 == 0;
    let gateway = i % 10;
    let tripped = i % 7 == 0;
    let reset = i % 7 == 1;
    let mut parts = vec![format!("网关{gateway}")];
    if timeout {
        parts.push("通讯超时".into());
    }
    if offline {
        parts.push("设备离线".into());
    }
    if tripped {
        parts.push("Breaker tripped on feeder 3".into());
    }
    if reset {
        parts.push("breaker reset".into());
    }
    parts.push(format!("序号{i}"));
    Msg {
        text: parts.join("，"),
        offline,
        timeout,
        gateway,
        tripped,
        reset,
    }
}

/// The message row `i` was overwritten with: its gateway moves on by 5, nothing else
/// is said.
fn overwrite(i: i64) -> Msg {
    let gateway = (i + 5) % 10;
    Msg {
        text: format!("恢复正常，网关{gateway}"),
        offline: false,
        timeout: false,
        gateway,
        tripped: false,
        reset: false,
    }
}

/// The message row `i` holds.
fn expected(i: i64, overwritten: &BTreeSet<i64>) -> Msg {
    if overwritten.contains(&i) {
        overwrite(i)
    } else {
        message(i)
    }
}

async fn insert_rows(
    c: &tokio_postgres::Client,
    rows: impl Iterator<Item = i64>,
    text: impl Fn(i64) -> Msg,
) {
    let values: Vec<String> = rows
        .map(|i| {
            let level = if i % 2 == 0 { "warn" } else { "error" };
            format!(
                "(to_timestamp({}), 'dev{}', '{level}', '{}', {i})",
                T0 + i * 300,
                i % 4,
                text(i).text
            )
        })
        .collect();
    c.batch_execute(&format!(
        "INSERT INTO device_log VALUES {}",
        values.join(", ")
    ))
    .await
    .unwrap();
}

async fn codes(c: &tokio_postgres::Client, where_: &str) -> BTreeSet<i64> {
    c.query(&format!("SELECT code FROM device_log WHERE {where_}"), &[])
        .await
        .unwrap_or_else(|e| panic!("{where_}: {e:?}"))
        .iter()
        .map(|r| r.get(0))
        .collect()
}

/// Every query against the rule that built the messages.
async fn check(c: &tokio_postgres::Client, overwritten: &BTreeSet<i64>, when: &str) {
    type Rule = fn(i64, &Msg) -> bool;
    let cases: Vec<(&str, Rule)> = vec![
        ("matches(msg, '通讯超时')", |_, m| m.timeout),
        ("matches(msg, '超时')", |_, m| m.timeout),
        ("matches(msg, '通讯超时 AND 网关7')", |_, m| {
            m.timeout && m.gateway == 7
        }),
        ("matches(msg, '通讯超时 网关7')", |_, m| {
            m.timeout && m.gateway == 7
        }),
        (
            "matches(msg, '设备离线 OR \"breaker tripped\"')",
            |_, m| m.offline || m.tripped,
        ),
        ("matches(msg, 'breaker -tripped')", |_, m| m.reset),
        ("matches(msg, 'BREAKER')", |_, m| m.tripped || m.reset),
        ("matches(msg, 'NOT 通讯超时')", |_, m| !m.timeout),
        (
            "matches(msg, '(设备离线 OR 通讯超时) AND NOT 网关0')",
            |_, m| (m.offline || m.timeout) && m.gateway != 0,
        ),
        ("matches(msg, 'feed*')", |_, m| m.tripped),
        (
            "matches(msg, '通讯超时') AND level = 'warn' AND device = 'dev2'",
            |i, m| m.timeout && i % 2 == 0 && i % 4 == 2,
        ),
        (
            "matches(msg, '设备离线') AND ts >= '2026-11-01T00:00:00Z'",
            |i, m| m.offline && T0 + i * 300 >= 1_793_491_200,
        ),
        ("NOT matches(msg, '网关3')", |_, m| m.gateway != 3),
        // score() is positive exactly where the query matches.
        ("score(msg, '通讯超时 OR breaker') > 0", |_, m| {
            m.timeout || m.tripped || m.reset
        }),
    ];
    for (where_, rule) in cases {
        let want: BTreeSet<i64> = (0..ROWS)
            .filter(|&i| rule(i, &expected(i, overwritten)))
            .collect();
        let got = codes(c, where_).await;
        assert_eq!(
            got,
            want,
            "{when}: {where_}: {} rows, want {} (extra {:?}, missing {:?})",
            got.len(),
            want.len(),
            got.difference(&want).take(5).collect::<Vec<_>>(),
            want.difference(&got).take(5).collect::<Vec<_>>()
        );
    }
    // Ranked by relevance: the rows with 'breaker', most relevant first.
    let ranked = c
        .query(
            "SELECT code, score(msg, 'breaker') FROM device_log WHERE matches(msg, 'breaker') \
             ORDER BY score(msg, 'breaker') DESC, code LIMIT 10",
            &[],
        )
        .await
        .unwrap();
    let want = (0..ROWS)
        .filter(|&i| {
            let m = expected(i, overwritten);
            m.tripped || m.reset
        })
        .count()
        .min(10);
    assert_eq!(ranked.len(), want, "{when}: ranked rows");
    let scores: Vec<f64> = ranked.iter().map(|r| r.get(1)).collect();
    assert!(
        scores.iter().all(|s| *s > 0.0) && scores.windows(2).all(|w| w[0] >= w[1]),
        "{when}: scores not in descending order: {scores:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn matches_over_buffer_files_overwrites_and_restarts() {
    let mut server = Server::new().start();
    let c = server.client().await;
    c.batch_execute(CREATE).await.unwrap();
    let mut overwritten = BTreeSet::new();
    // Half persisted (two months), half buffered.
    insert_rows(&c, 0..ROWS / 2, message).await;
    c.batch_execute("SELECT flush()").await.unwrap();
    insert_rows(&c, ROWS / 2..ROWS, message).await;
    check(&c, &overwritten, "buffer and files").await;

    // Overwrite some keys, persisted and buffered ones: the old text must not be found
    // any more, the new one must.
    let rewrite: Vec<i64> = (0..ROWS).filter(|i| i % 11 == 0).collect();
    insert_rows(&c, rewrite.iter().copied(), overwrite).await;
    overwritten.extend(rewrite);
    check(&c, &overwritten, "after overwrites").await;
    c.batch_execute("SELECT flush()").await.unwrap();
    check(&c, &overwritten, "after a second flush").await;

    drop(c);
    server.kill9();
    server.spawn();
    let c = server.client().await;
    check(&c, &overwritten, "after kill -9").await;

    // A parameter as the query; NULL text is not a match.
    c.batch_execute(
        "INSERT INTO device_log (ts, device, code) VALUES ('2026-11-05T00:00:00Z', 'dev9', 9999)",
    )
    .await
    .unwrap();
    let n: i64 = c
        .query_one(
            "SELECT count(*) FROM device_log WHERE matches(msg, $1)",
            &[&"通讯超时"],
        )
        .await
        .unwrap()
        .get(0);
    let want = (0..ROWS)
        .filter(|&i| expected(i, &overwritten).timeout)
        .count() as i64;
    assert_eq!(n, want);
    let null: Option<bool> = c
        .query_one(
            "SELECT matches(msg, '通讯超时') FROM device_log WHERE code = 9999",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(null, None, "matches() over NULL text is NULL");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn analyzers_set_fulltext_and_errors() {
    let server = Server::new().start();
    let c = server.client().await;
    c.batch_execute(
        "CREATE TABLE codes (ts TIMESTAMPTZ NOT NULL, device TEXT NOT NULL, note TEXT, \
         n BIGINT, PRIMARY KEY (device, ts))",
    )
    .await
    .unwrap();
    c.batch_execute(
        "INSERT INTO codes VALUES ('2026-11-01T00:00:00Z', 'a', 'ERR-0x1F on SN12345', 1), \
         ('2026-11-01T00:01:00Z', 'a', 'err-0x1f on sn12345', 2), \
         ('2026-11-01T00:02:00Z', 'a', 'E17 breaker', 3)",
    )
    .await
    .unwrap();
    let ns = |sql: &'static str| {
        let c = &c;
        async move {
            c.query(sql, &[])
                .await
                .unwrap()
                .iter()
                .map(|r| r.get::<_, i64>(0))
                .collect::<Vec<_>>()
        }
    };
    // Not declared: the default analyzer (lower-cases).
    assert_eq!(
        ns("SELECT n FROM codes WHERE matches(note, 'sn12345') ORDER BY n").await,
        [1, 2]
    );
    // raw: exact tokens, case kept.
    c.simple_query("SELECT set_fulltext('codes', 'note', '{\"analyzer\": \"raw\"}')")
        .await
        .unwrap();
    assert_eq!(
        ns("SELECT n FROM codes WHERE matches(note, 'ERR-0x1F') ORDER BY n").await,
        [1]
    );
    assert_eq!(
        ns("SELECT n FROM codes WHERE matches(note, 'sn12345') ORDER BY n").await,
        [2]
    );
    // standard: words of letters and digits, lower-cased.
    c.simple_query("SELECT set_fulltext('codes', 'note', '{\"analyzer\": \"standard\"}')")
        .await
        .unwrap();
    assert_eq!(
        ns("SELECT n FROM codes WHERE matches(note, '0x1f') ORDER BY n").await,
        [1, 2]
    );
    let listed = c
        .query(
            "SELECT table_name, column_name, analyzer FROM system.fulltext \
             WHERE table_name = 'codes'",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].get::<_, String>(1), "note");
    assert_eq!(listed[0].get::<_, String>(2), "standard");
    c.simple_query("SELECT set_fulltext('codes', 'note', 'none')")
        .await
        .unwrap();
    assert!(
        c.query(
            "SELECT * FROM system.fulltext WHERE table_name = 'codes'",
            &[]
        )
        .await
        .unwrap()
        .is_empty()
    );
    // CREATE TABLE IF NOT EXISTS on the existing table changes nothing about it.
    c.batch_execute(
        "CREATE TABLE IF NOT EXISTS codes (ts TIMESTAMPTZ NOT NULL, device TEXT NOT NULL, \
         note TEXT, n BIGINT, PRIMARY KEY (device, ts)) WITH (fulltext = 'note')",
    )
    .await
    .unwrap();
    assert!(
        c.query(
            "SELECT * FROM system.fulltext WHERE table_name = 'codes'",
            &[]
        )
        .await
        .unwrap()
        .is_empty(),
        "IF NOT EXISTS made an existing column full-text"
    );

    for (sql, code) in [
        (
            "SELECT n FROM codes WHERE matches(note, '(breaker')",
            "22023",
        ),
        ("SELECT n FROM codes WHERE matches(note, '')", "22023"),
        ("SELECT n FROM codes WHERE matches(note, note)", "22023"),
        ("SELECT set_fulltext('codes', 'n')", "42P16"),
        ("SELECT set_fulltext('codes', 'device')", "42P16"),
        ("SELECT set_fulltext('nope', 'note')", "42P01"),
        (
            "SELECT set_fulltext('codes', 'note', '{\"analyzer\": \"x\"}')",
            "22023",
        ),
        (
            "CREATE TABLE t1 (ts TIMESTAMPTZ NOT NULL, msg TEXT) WITH (fulltext = 'nope')",
            "42703",
        ),
        (
            "CREATE TABLE t2 (ts TIMESTAMPTZ NOT NULL, v BIGINT) WITH (fulltext = 'v')",
            "42804",
        ),
        (
            "CREATE TABLE t3 (ts TIMESTAMPTZ NOT NULL, msg TEXT) WITH (compression = 'zstd')",
            "22023",
        ),
    ] {
        let err = c.simple_query(sql).await.unwrap_err();
        assert_eq!(sqlstate(&err), code, "{sql}: {err:?}");
    }
    // The refused CREATE TABLEs created nothing.
    assert!(c.simple_query("SELECT * FROM t1").await.is_err());
    let e = c
        .simple_query("SELECT n FROM codes WHERE matches(note, '\"open')")
        .await
        .unwrap_err();
    assert!(
        format!("{e:?}").contains("closing quote"),
        "the error says what is wrong: {e:?}"
    );
}

/// (files, files indexed, index bytes) of `device_log.msg` in `system.fulltext`.
async fn index_progress(c: &tokio_postgres::Client) -> (i64, i64, i64) {
    let r = c
        .query_one(
            "SELECT files, files_indexed, index_bytes FROM system.fulltext \
             WHERE table_name = 'device_log' AND column_name = 'msg'",
            &[],
        )
        .await
        .unwrap();
    (r.get(0), r.get(1), r.get(2))
}

/// Wait until every file of `device_log` has an index of `msg` (the background builder).
async fn all_indexed(c: &tokio_postgres::Client, what: &str) {
    for _ in 0..600 {
        let (files, indexed, _) = index_progress(c).await;
        if files > 0 && files == indexed {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    panic!("{what}: indexes not built: {:?}", index_progress(c).await);
}

/// The index objects of the table in the store.
async fn index_objects(server: &Server) -> Vec<String> {
    server
        .object_paths()
        .await
        .into_iter()
        .filter(|p| p.starts_with("device_log/") && p.ends_with(".fts"))
        .collect()
}

/// Indexes are built at persist, by compaction and afterwards (`set_fulltext` on a table
/// with data); scans use them (files without a match are not read); a damaged or deleted
/// index object is noticed, answered around and built again; kill -9 while indexes are
/// being built loses nothing. Every answer is checked against the generating rule.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn indexes_are_built_used_and_rebuilt() {
    let mut server = Server::new();
    // Compacted files go at once (no grace period); no background compaction.
    let config = server.data_dir.with_extension("toml");
    std::fs::write(
        &config,
        "compaction_min_files = 1000\ncompaction_grace_secs = 0\n",
    )
    .unwrap();
    server.extra_args = vec!["--config".into(), config.display().to_string()];
    server.spawn();
    let c = server.client().await;
    // Declared afterwards: the files written before get their indexes in the background.
    c.batch_execute(&CREATE.replace(" WITH (fulltext = 'msg')", ""))
        .await
        .unwrap();
    let none = BTreeSet::new();
    for part in 0..4 {
        insert_rows(&c, (part * ROWS / 4)..((part + 1) * ROWS / 4), message).await;
        c.batch_execute("SELECT flush()").await.unwrap();
    }
    c.simple_query("SELECT set_fulltext('device_log', 'msg')")
        .await
        .unwrap();
    all_indexed(&c, "after set_fulltext").await;
    let (files, _, bytes) = index_progress(&c).await;
    assert!(files >= 5, "four flushes over two months: {files} files");
    assert!(bytes > 0);
    assert_eq!(index_objects(&server).await.len() as i64, files);
    let in_partitions: i64 = c
        .query_one(
            "SELECT CAST(sum(index_bytes) AS BIGINT) FROM system.partitions \
             WHERE table_name = 'device_log'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(in_partitions, bytes);
    let listed = c
        .query(
            "SELECT indexed_columns, index_bytes FROM system.files WHERE table_name = 'device_log'",
            &[],
        )
        .await
        .unwrap();
    assert!(
        listed
            .iter()
            .all(|r| r.get::<_, String>(0) == "msg" && r.get::<_, i64>(1) > 0)
    );

    let searches = metric(&server, "wattdb_fulltext_index_searches_total");
    check(&c, &none, "indexes built after set_fulltext").await;
    assert!(metric(&server, "wattdb_fulltext_index_searches_total") > searches);
    // A word no row has: every file is skipped without being read.
    let skipped = metric(&server, "wattdb_fulltext_files_skipped_total");
    assert!(codes(&c, "matches(msg, '变压器')").await.is_empty());
    assert_eq!(
        metric(&server, "wattdb_fulltext_files_skipped_total") - skipped,
        files as f64
    );

    // New files get their index when they are written; overwrites of indexed rows.
    let rewrite: Vec<i64> = (0..ROWS).filter(|i| i % 13 == 0).collect();
    insert_rows(&c, rewrite.iter().copied(), overwrite).await;
    let overwritten: BTreeSet<i64> = rewrite.into_iter().collect();
    check(&c, &overwritten, "overwrites buffered").await;
    c.batch_execute("SELECT flush()").await.unwrap();
    let (files, indexed, _) = index_progress(&c).await;
    assert_eq!(
        files, indexed,
        "a persisted file is indexed as it is written"
    );
    check(&c, &overwritten, "overwrites persisted, files overlap").await;

    // Damage one index object and delete another in the bucket while the server is
    // down, and drop its local copies so they are read from the store again. Answers
    // stay exact; both are built again.
    drop(c);
    server.stop();
    let objects = index_objects(&server).await;
    let store = server.data_path().join("objects");
    std::fs::write(store.join(&objects[0]), b"not an index").unwrap();
    std::fs::remove_file(store.join(&objects[1])).unwrap();
    std::fs::remove_dir_all(server.data_path().join("fulltext/cache")).unwrap();
    server.spawn();
    let c = server.client().await;
    check(&c, &overwritten, "with a damaged and a missing index").await;
    assert!(metric(&server, "wattdb_fulltext_index_failures_total") >= 2.0);
    let mut rebuilt = false;
    for _ in 0..600 {
        let now = index_objects(&server).await;
        if !now.contains(&objects[0]) && !now.contains(&objects[1]) && now.len() == objects.len() {
            rebuilt = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(rebuilt, "the damaged and missing indexes are built again");
    let failures = metric(&server, "wattdb_fulltext_index_failures_total");
    check(&c, &overwritten, "after the rebuild").await;
    assert_eq!(
        metric(&server, "wattdb_fulltext_index_failures_total"),
        failures
    );

    // Compaction merges the files of each month; the merged files are indexed as they
    // are written.
    c.simple_query("SELECT compact('device_log')")
        .await
        .unwrap();
    let (files, indexed, _) = index_progress(&c).await;
    assert_eq!((files, indexed), (2, 2), "one indexed file per month");
    check(&c, &overwritten, "after compaction").await;

    // Dropping the table deletes its index objects with its files.
    c.batch_execute("DROP TABLE device_log").await.unwrap();
    let mut left = index_objects(&server).await;
    for _ in 0..600 {
        if left.is_empty() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        left = index_objects(&server).await;
    }
    assert!(
        left.is_empty(),
        "index objects left after DROP TABLE: {left:?}"
    );

    // Another analyzer for a table with data: every index is built again, and the
    // server is killed (-9) while that goes on.
    c.batch_execute(CREATE).await.unwrap();
    for part in 0..3 {
        insert_rows(&c, (part * ROWS / 3)..((part + 1) * ROWS / 3), message).await;
        c.batch_execute("SELECT flush()").await.unwrap();
    }
    all_indexed(&c, "indexed as persisted").await;
    // With the test build's failpoints each index build is held 3 s before it finishes,
    // and the kill waits until one is under way (its scratch folder exists).
    let held = wattdb_storage::failpoints::enabled();
    if held {
        drop(c);
        server.stop();
        server.envs = vec![("FAILPOINTS".into(), "text-index-build=sleep(3000)".into())];
        server.spawn();
    }
    let c = server.client().await;
    c.simple_query("SELECT set_fulltext('device_log', 'msg', '{\"analyzer\": \"standard\"}')")
        .await
        .unwrap();
    drop(c);
    if held {
        let scratch = server.data_dir.join("fulltext").join("build");
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        loop {
            let building = std::fs::read_dir(&scratch)
                .map(|d| {
                    d.flatten()
                        .any(|e| e.file_name().to_string_lossy().starts_with("build-"))
                })
                .unwrap_or(false);
            if building {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "no index build started after set_fulltext"
            );
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }
    server.kill9();
    server.envs.clear();
    server.spawn();
    let c = server.client().await;
    all_indexed(&c, "after kill -9 during a rebuild").await;
    let n: i64 = c
        .query_one(
            "SELECT count(*) FROM device_log WHERE matches(msg, 'breaker')",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    let want = (0..ROWS)
        .filter(|&i| {
            let m = message(i);
            m.tripped || m.reset
        })
        .count() as i64;
    assert_eq!(n, want, "standard analyzer after kill -9");
    let (files, _, standard_bytes) = index_progress(&c).await;
    assert!(standard_bytes > 0);
    // Neither the interrupted build nor the replaced chinese indexes stay behind (the
    // replaced ones are deleted after the grace period, 0 here).
    let mut objects = index_objects(&server).await;
    for _ in 0..600 {
        if objects.len() as i64 == files {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        objects = index_objects(&server).await;
    }
    assert_eq!(
        objects.len() as i64,
        files,
        "index objects after kill -9: {objects:?}"
    );
}
