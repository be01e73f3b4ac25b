//! `DELETE FROM t WHERE …` through the PostgreSQL endpoint, checked against a model the
//! test keeps: over buffered rows, persisted and overlapping files, compaction, a
//! graceful restart and kill -9; exact under concurrent writes (a row acknowledged
//! before the DELETE started is gone, one written after it was acknowledged stays);
//! refused predicates and roles.

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::{Server, sqlstate};

const CREATE_D: &str = "CREATE TABLE d (ts TIMESTAMPTZ NOT NULL, meter TEXT NOT NULL, phase TEXT NOT NULL, v DOUBLE PRECISION, PRIMARY KEY (meter, phase, ts))";
/// 2026-10-01T00:00:00Z.
const OCT: i64 = 1_790_812_800;
const DAY: i64 = 86_400;

type Model = BTreeMap<(String, String, i64), f64>;

/// A small deterministic generator (the test must be reproducible).
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        self.0 >> 33
    }
}

/// `n` rows over October and November (whole minutes), inserted and put in the model.
async fn insert(c: &tokio_postgres::Client, model: &mut Model, rng: &mut Lcg, n: usize) {
    let mut values = Vec::new();
    for _ in 0..n {
        let meter = format!("m{}", rng.next() % 5);
        let phase = ["a", "b"][(rng.next() % 2) as usize].to_string();
        let ts = OCT + (rng.next() % (61 * 24 * 60)) as i64 * 60;
        let v = (rng.next() % 10_000) as f64 / 4.0;
        values.push(format!("(to_timestamp({ts}), '{meter}', '{phase}', {v})"));
        model.insert((meter, phase, ts), v);
    }
    c.batch_execute(&format!("INSERT INTO d VALUES {}", values.join(", ")))
        .await
        .unwrap();
}

async fn contents(c: &tokio_postgres::Client) -> Model {
    c.query(
        "SELECT meter, phase, CAST(extract(epoch FROM ts) AS BIGINT), v FROM d",
        &[],
    )
    .await
    .unwrap()
    .iter()
    .map(|r| ((r.get(0), r.get(1), r.get(2)), r.get(3)))
    .collect()
}

/// Remove what a predicate matches from the model; the number removed.
fn model_delete(model: &mut Model, hit: impl Fn(&str, &str, i64) -> bool) -> u64 {
    let before = model.len();
    model.retain(|(m, p, ts), _| !hit(m, p, *ts));
    (before - model.len()) as u64
}

fn at(secs: i64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(secs as u64)
}

/// After a flush and `compact`: one file per month, holding exactly the model's rows
/// (the deletes were applied to the files, not only filtered at read time).
async fn check_compacted(c: &tokio_postgres::Client, model: &Model, when: &str) {
    let row = c
        .query_one(
            "SELECT count(*), sum(rows) FROM system.files WHERE table_name = 'd'",
            &[],
        )
        .await
        .unwrap();
    let (files, rows): (i64, i64) = (row.get(0), row.get(1));
    assert_eq!(files, 2, "{when}: one file per month");
    assert_eq!(rows, model.len() as i64, "{when}: rows in files");
}

async fn check(c: &tokio_postgres::Client, model: &Model, when: &str) {
    let got = contents(c).await;
    assert_eq!(got.len(), model.len(), "{when}: row count");
    assert!(got == *model, "{when}: rows differ from the model");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_matches_a_model_over_buffer_files_compaction_and_restarts() {
    let mut server = Server::new().start();
    let mut c = server.client().await;
    c.batch_execute(CREATE_D).await.unwrap();
    let mut model = Model::new();
    let mut rng = Lcg(7);
    // Files that overlap (two persists of the same months), then buffered rows.
    insert(&c, &mut model, &mut rng, 1500).await;
    c.batch_execute("SELECT flush()").await.unwrap();
    insert(&c, &mut model, &mut rng, 1500).await;
    c.batch_execute("SELECT flush()").await.unwrap();
    insert(&c, &mut model, &mut rng, 800).await;
    check(&c, &model, "before any delete").await;

    // 1. Simple protocol, one meter and a time range given as text.
    let n = model_delete(&mut model, |m, _, ts| {
        m == "m1" && (OCT + 4 * DAY..OCT + 19 * DAY).contains(&ts)
    });
    assert!(n > 0);
    let tag = c
        .simple_query(
            "DELETE FROM d WHERE meter = 'm1' AND ts >= '2026-10-05T00:00:00Z' AND ts < '2026-10-20 00:00:00+00'",
        )
        .await
        .unwrap();
    let affected = tag.iter().find_map(|m| match m {
        tokio_postgres::SimpleQueryMessage::CommandComplete(n) => Some(*n),
        _ => None,
    });
    assert_eq!(affected, Some(n), "DELETE's row count");
    check(&c, &model, "after a range delete of one meter").await;

    // 2. Extended protocol with parameters: IN, <>, BETWEEN (inclusive).
    let (lo, hi) = (OCT + 10 * DAY, OCT + 40 * DAY);
    let n = model_delete(&mut model, |m, p, ts| {
        (m == "m2" || m == "m3") && p != "a" && ts >= lo && ts <= hi
    });
    let deleted = c
        .execute(
            "DELETE FROM d WHERE meter IN ('m2', 'm3') AND phase <> $1 AND ts BETWEEN $2 AND $3",
            &[&"a", &at(lo), &at(hi)],
        )
        .await
        .unwrap();
    assert_eq!(deleted, n);
    check(&c, &model, "after IN / <> / BETWEEN").await;

    // Rows written after a delete stay, in the range it covered.
    insert(&c, &mut model, &mut rng, 600).await;
    check(&c, &model, "after writing into deleted ranges").await;

    // 3. Compaction applies the deletes to the files; OR of equalities on one tag.
    c.batch_execute("SELECT flush(); SELECT compact('d')")
        .await
        .unwrap();
    check(&c, &model, "after compaction").await;
    check_compacted(&c, &model, "after compaction").await;
    let n = model_delete(&mut model, |m, _, ts| {
        (m == "m0" || m == "m4") && ts < OCT + 30 * DAY
    });
    let deleted = c
        .execute(
            "DELETE FROM d WHERE (meter = $1 OR meter = 'm4') AND ts < $2",
            &[&"m0", &at(OCT + 30 * DAY)],
        )
        .await
        .unwrap();
    assert_eq!(deleted, n);
    check(&c, &model, "after deleting from compacted files").await;

    // 4. A graceful restart, then kill -9 right after an acknowledged delete of
    // buffered and persisted rows alike.
    server.stop();
    server.spawn();
    c = server.client().await;
    check(&c, &model, "after a restart").await;
    insert(&c, &mut model, &mut rng, 400).await;
    let n = model_delete(&mut model, |_, p, ts| p == "b" && ts >= OCT + 45 * DAY);
    let deleted = c
        .execute(
            "DELETE FROM d WHERE phase = 'b' AND ts >= $1",
            &[&at(OCT + 45 * DAY)],
        )
        .await
        .unwrap();
    assert_eq!(deleted, n);
    server.kill9();
    server.spawn();
    c = server.client().await;
    check(&c, &model, "after kill -9").await;
    // And the tombstones survive compacting and persisting after the restart.
    c.batch_execute("SELECT flush(); SELECT compact('d')")
        .await
        .unwrap();
    check(&c, &model, "after compaction following kill -9").await;
    check_compacted(&c, &model, "after compaction following kill -9").await;

    // 5. Everything, then TRUNCATE of what was written since.
    let deleted = c.execute("DELETE FROM d", &[]).await.unwrap();
    assert_eq!(deleted, model.len() as u64);
    model.clear();
    check(&c, &model, "after DELETE without WHERE").await;
    insert(&c, &mut model, &mut rng, 50).await;
    c.batch_execute("TRUNCATE d").await.unwrap();
    model.clear();
    check(&c, &model, "after TRUNCATE").await;
}

/// Rows are written one by one, each with the time its write started and was
/// acknowledged; a DELETE of the whole series runs in the middle. Every row
/// acknowledged before the DELETE started is gone; every row whose write started after
/// the DELETE was acknowledged is there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_is_exact_under_concurrent_writes() {
    let server = Server::new().start();
    let c = server.client().await;
    c.batch_execute(CREATE_D).await.unwrap();
    let writer = server.client().await;
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let stop2 = stop.clone();
    let written = tokio::spawn(async move {
        let insert = writer
            .prepare("INSERT INTO d VALUES ($1, 'live', 'a', 1.0)")
            .await
            .unwrap();
        let mut log = Vec::new();
        let mut i: i64 = 0;
        while !stop2.load(std::sync::atomic::Ordering::SeqCst) {
            let started = Instant::now();
            writer.execute(&insert, &[&at(OCT + i * 60)]).await.unwrap();
            log.push((OCT + i * 60, started, Instant::now()));
            i += 1;
        }
        log
    });
    tokio::time::sleep(Duration::from_millis(400)).await;
    c.batch_execute("SELECT flush()").await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let delete_started = Instant::now();
    c.execute("DELETE FROM d WHERE meter = 'live'", &[])
        .await
        .unwrap();
    let delete_done = Instant::now();
    tokio::time::sleep(Duration::from_millis(400)).await;
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let log = written.await.unwrap();
    let present: std::collections::HashSet<i64> =
        contents(&c).await.keys().map(|(_, _, ts)| *ts).collect();
    let (mut before, mut after) = (0, 0);
    for (ts, started, acked) in &log {
        if *acked <= delete_started {
            before += 1;
            assert!(
                !present.contains(ts),
                "row at {ts} acknowledged before the DELETE survived it"
            );
        }
        if *started >= delete_done {
            after += 1;
            assert!(
                present.contains(ts),
                "row at {ts} written after the DELETE is missing"
            );
        }
    }
    assert!(
        before > 10 && after > 10,
        "too few rows on either side: {before} / {after}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unsupported_deletes_are_refused_and_delete_nothing() {
    let server = Server::new().start();
    let c = server.client().await;
    c.batch_execute(CREATE_D).await.unwrap();
    c.batch_execute(
        "INSERT INTO d VALUES ('2026-10-01T00:00:00Z', 'm1', 'a', 1.0), ('2026-10-01T00:01:00Z', 'm2', 'b', 5.0)",
    )
    .await
    .unwrap();
    // The rollup worker creates d_15m for the rows just written.
    let deadline = Instant::now() + Duration::from_secs(60);
    while c.batch_execute("SELECT 1 FROM d_15m").await.is_err() {
        assert!(Instant::now() < deadline, "d_15m never appeared");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for (sql, code, words) in [
        ("DELETE FROM d WHERE v > 3", "0A000", "not the field v"),
        (
            "DELETE FROM d WHERE meter = 'm1' OR phase = 'b'",
            "0A000",
            "one tag",
        ),
        (
            "DELETE FROM d WHERE meter LIKE 'm%'",
            "0A000",
            "DELETE supports",
        ),
        (
            "DELETE FROM d WHERE ts <> '2026-10-01T00:00:00Z'",
            "0A000",
            "DELETE supports",
        ),
        ("UPDATE d SET v = 2", "0A000", "UPDATE is not supported"),
        ("DELETE FROM d_15m", "42809", "rollup"),
    ] {
        let e = c.batch_execute(sql).await.expect_err(sql);
        assert_eq!(sqlstate(&e), code, "{sql}: {e:?}");
        let message = e
            .as_db_error()
            .map(|d| d.message().to_string())
            .unwrap_or_default();
        assert!(message.contains(words), "{sql}: {message}");
    }
    assert_eq!(contents(&c).await.len(), 2, "a refused DELETE deleted rows");
    // A table alias (PostgreSQL takes it; DataFusion alone would not).
    assert_eq!(
        c.execute(
            "DELETE FROM d AS x WHERE x.meter = 'nobody' AND x.ts > $1",
            &[&at(OCT)]
        )
        .await
        .unwrap(),
        0
    );
    // Contradictions and EXPLAIN delete nothing.
    assert_eq!(
        c.execute(
            "DELETE FROM d WHERE meter = 'm1' AND ts < '2026-01-01' AND ts > '2026-02-01'",
            &[]
        )
        .await
        .unwrap(),
        0
    );
    c.batch_execute("EXPLAIN DELETE FROM d").await.unwrap();
    assert_eq!(
        contents(&c).await.len(),
        2,
        "EXPLAIN or a contradiction deleted rows"
    );

    // A reader may not delete; a writer may.
    c.batch_execute("CREATE USER rita PASSWORD 'pw-rita'")
        .await
        .unwrap();
    let connect = |user: &str, pw: &str| {
        format!(
            "host=127.0.0.1 port={} user={user} password={pw} dbname=wattdb",
            server.pg_port
        )
    };
    let (rita, conn) = tokio_postgres::connect(&connect("rita", "pw-rita"), tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    let e = rita.batch_execute("DELETE FROM d").await.unwrap_err();
    assert_eq!(sqlstate(&e), "42501");
    c.batch_execute("GRANT writer TO rita").await.unwrap();
    assert_eq!(
        rita.execute("DELETE FROM d WHERE meter = 'm2'", &[])
            .await
            .unwrap(),
        1
    );
    assert_eq!(contents(&c).await.len(), 1);
}
