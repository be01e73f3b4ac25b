//! Compaction scenario, run on the local folder and on S3: `SELECT compact('<table>')`
//! merges a month's files into one and every query answers as before.

use super::Server;

pub async fn files(c: &tokio_postgres::Client) -> i64 {
    let sql = "SELECT count(*) FROM system.files WHERE table_name = 't'";
    c.query_one(sql, &[]).await.unwrap().get(0)
}

/// `compact()` over SQL on `server` (not started yet); see `tests/compaction.rs`.
pub async fn compact_merges_a_months_files(mut server: Server) {
    server.spawn();
    let c = server.client().await;
    c.batch_execute(
        "CREATE TABLE t (ts TIMESTAMPTZ NOT NULL, pid TEXT NOT NULL, v DOUBLE PRECISION, \
         PRIMARY KEY (pid, ts))",
    )
    .await
    .unwrap();
    // Three flushes into October 2026; the second and third overwrite earlier keys.
    let mut last = std::collections::BTreeMap::new();
    for round in 0..3i64 {
        let mut values = Vec::new();
        for i in 0..50i64 {
            let (pid, minute) = (format!("m{}", i % 5), i + round * 10);
            let v = (round * 100 + i) as f64;
            last.insert((pid.clone(), minute), v);
            values.push(format!(
                "('2026-10-01T00:00:00Z'::timestamptz + INTERVAL '{minute} minutes', '{pid}', {v})"
            ));
        }
        c.batch_execute(&format!("INSERT INTO t VALUES {}", values.join(", ")))
            .await
            .unwrap();
        c.batch_execute("SELECT flush()").await.unwrap();
    }
    let q = "SELECT count(*), sum(v), count(DISTINCT pid) FROM t";
    let before = c.query_one(q, &[]).await.unwrap();
    let want: (i64, f64) = (last.len() as i64, last.values().sum());
    assert_eq!((before.get::<_, i64>(0), before.get::<_, f64>(1)), want);
    assert_eq!(files(&c).await, 3);
    let msg = c.simple_query("SELECT compact('t')").await.unwrap();
    assert!(format!("{msg:?}").contains("3 file(s) into 1"), "{msg:?}");
    assert_eq!(files(&c).await, 1);
    let logged = c
        .query_one(
            "SELECT files_before, rows_before, rows_after FROM system.compactions \
             WHERE table_name = 't'",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(
        (
            logged.get::<_, i64>(0),
            logged.get::<_, i64>(1),
            logged.get::<_, i64>(2)
        ),
        (3, 150, last.len() as i64)
    );
    let after = c.query_one(q, &[]).await.unwrap();
    assert_eq!((after.get::<_, i64>(0), after.get::<_, f64>(1)), want);
    assert_eq!(after.get::<_, i64>(2), 5);
    let err = c.batch_execute("SELECT compact('nope')").await.unwrap_err();
    assert_eq!(super::sqlstate(&err), "42P01", "{err}");

    // A crash inside the grace period: the answers stay the same after the restart, and
    // the old files are still there (recorded for deletion once the grace period ends).
    server.kill9();
    server.spawn();
    let c = server.client().await;
    let restarted = c.query_one(q, &[]).await.unwrap();
    assert_eq!(
        (restarted.get::<_, i64>(0), restarted.get::<_, f64>(1)),
        want
    );
    assert_eq!(files(&c).await, 1);
    let stored = server
        .object_paths()
        .await
        .into_iter()
        .filter(|p| p.starts_with("t/month=2026-10/"))
        .count();
    assert_eq!(
        stored, 4,
        "the merged file and, during the grace period, the three old ones"
    );
}
