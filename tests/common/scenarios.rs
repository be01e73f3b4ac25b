//! Scenarios run against both object stores (local folder and S3): each takes a server
//! that is not started yet and checks results against values computed here.

use std::collections::BTreeMap;

use super::Server;

pub const CREATE_M: &str = "CREATE TABLE m (ts TIMESTAMPTZ NOT NULL, pid TEXT NOT NULL, \
    p DOUBLE PRECISION, PRIMARY KEY (pid, ts))";

pub const CREATE_ELECTRIC: &str = "CREATE TABLE electric (ts TIMESTAMPTZ NOT NULL, pid TEXT NOT NULL, \
    ua DOUBLE PRECISION, kwh DOUBLE PRECISION, status BIGINT, on_grid BOOLEAN, note TEXT, \
    PRIMARY KEY (pid, ts))";

/// Rows the test wrote and was acknowledged for: (pid, ts seconds) -> p.
pub type Acked = BTreeMap<(String, i64), f64>;

pub fn at(secs: i64) -> std::time::SystemTime {
    std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs as u64)
}

pub async fn read_all(server: &Server) -> Acked {
    super::keyed_values(
        server,
        "SELECT pid, CAST(extract(epoch FROM ts) AS BIGINT), p FROM m",
    )
    .await
}

pub async fn kill_9_after_acknowledged_inserts(server: Server) {
    let mut server = server.start();
    let c = server.client().await;
    c.batch_execute(CREATE_M).await.unwrap();
    let stmt = c
        .prepare("INSERT INTO m (ts, pid, p) VALUES ($1, $2, $3)")
        .await
        .unwrap();
    let mut acked = Acked::new();
    // Several months, overwrites, some persisted before the crash, most only in the WAL.
    for i in 0..300i64 {
        let ts = 1_780_000_000 + (i % 120) * 86_400; // spans ~4 months, repeats keys
        let pid = format!("meter-{}", i % 7);
        let p = i as f64 * 1.5;
        c.execute(&stmt, &[&at(ts), &pid, &p]).await.unwrap();
        acked.insert((pid, ts), p);
        if i == 100 {
            c.batch_execute("SELECT flush()").await.unwrap();
        }
    }
    // Concurrent writers, acknowledged just before the kill.
    let mut tasks = Vec::new();
    for w in 0..4i64 {
        let c = server.client().await;
        tasks.push(tokio::spawn(async move {
            let mut mine = Vec::new();
            for i in 0..50i64 {
                let ts = 1_790_000_000 + w * 1000 + i;
                let pid = format!("w{w}");
                c.execute(
                    "INSERT INTO m (ts, pid, p) VALUES ($1, $2, $3)",
                    &[&at(ts), &pid, &(i as f64)],
                )
                .await
                .unwrap();
                mine.push(((pid, ts), i as f64));
            }
            mine
        }));
    }
    for t in tasks {
        acked.extend(t.await.unwrap());
    }
    server.kill9();
    server.spawn();
    assert_eq!(read_all(&server).await, acked);
    // And once more after the replayed data is persisted and the server killed again.
    server
        .client()
        .await
        .batch_execute("SELECT flush()")
        .await
        .unwrap();
    server.kill9();
    server.spawn();
    assert_eq!(read_all(&server).await, acked);
}

pub async fn graceful_restart_then_recover_from_bucket(server: Server) {
    let mut server = server.start();
    let c = server.client().await;
    c.batch_execute(CREATE_M).await.unwrap();
    c.batch_execute(
        "INSERT INTO m VALUES ('2026-09-30T23:59:59Z','a',1), ('2026-10-01T00:00:00Z','a',2), \
         ('2026-10-15T12:00:00Z','b',3), ('2026-11-01T00:00:00Z','b',4)",
    )
    .await
    .unwrap();
    let before = read_all(&server).await;
    server.stop(); // SIGTERM: flushes buffers into Parquet
    server.spawn();
    assert_eq!(read_all(&server).await, before);
    let files = super::file_count(&server).await;
    assert_eq!(
        files, 3,
        "one file per month partition after the shutdown flush"
    );
    server.stop();

    // A new node with an empty data dir, recovered from the object store alone.
    let node2 = server.recovered_node().start();
    assert_eq!(read_all(&node2).await, before);
    let (n, s): (i64, f64) = {
        let r = node2
            .client()
            .await
            .query_one(
                "SELECT count(*), sum(p) FROM m WHERE ts >= '2026-10-01T00:00:00Z'",
                &[],
            )
            .await
            .unwrap();
        (r.get(0), r.get(1))
    };
    assert_eq!((n, s), (3, 9.0));
}

pub async fn dedup_across_flushes(server: Server) {
    let server = server.start();
    let c = server.client().await;
    c.batch_execute(CREATE_ELECTRIC).await.unwrap();
    let ins = |ts: &str, pid: &str, ua: f64| {
        format!("INSERT INTO electric (ts, pid, ua) VALUES ('{ts}', '{pid}', {ua})")
    };
    c.batch_execute(&ins("2026-10-31T23:00:00Z", "p1", 1.0))
        .await
        .unwrap();
    c.batch_execute(&ins("2026-11-01T00:00:00Z", "p1", 2.0))
        .await
        .unwrap();
    c.batch_execute("SELECT flush()").await.unwrap();
    // Same keys again: one in a file only, one overwritten twice across a flush.
    c.batch_execute(&ins("2026-11-01T00:00:00Z", "p1", 3.0))
        .await
        .unwrap();
    c.batch_execute("SELECT flush()").await.unwrap();
    c.batch_execute(&ins("2026-11-01T00:00:00Z", "p1", 4.0))
        .await
        .unwrap();
    c.batch_execute(&ins("2026-11-01T00:00:00Z", "p2", 5.0))
        .await
        .unwrap();
    let rows = c
        .query("SELECT pid, ua FROM electric ORDER BY pid, ts", &[])
        .await
        .unwrap();
    let got: Vec<(String, f64)> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
    assert_eq!(
        got,
        vec![("p1".into(), 1.0), ("p1".into(), 4.0), ("p2".into(), 5.0)]
    );
    let n: i64 = c
        .query_one("SELECT count(*) FROM electric", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 3);
    // After persisting everything, the answer is the same.
    c.batch_execute("SELECT flush()").await.unwrap();
    let rows = c
        .query("SELECT pid, ua FROM electric ORDER BY pid, ts", &[])
        .await
        .unwrap();
    let got2: Vec<(String, f64)> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
    assert_eq!(got2, got);
    // The system views show the files with their row counts.
    let files: i64 = c
        .query_one(
            "SELECT count(*) FROM system.files WHERE table_name = 'electric'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(
        files >= 3,
        "expected one file per flushed partition, got {files}"
    );
    let rows_in_files: i64 = c
        .query_one("SELECT sum(rows) FROM system.files WHERE table_name = 'electric' AND month = '2026-10'", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(rows_in_files, 1);
}
