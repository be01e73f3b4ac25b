//! Durability: every acknowledged write survives kill -9 and restart; graceful restarts
//! keep everything; the catalog can be rebuilt from the object store alone.

mod common;

use std::collections::BTreeMap;

use common::Server;

const CREATE: &str = "CREATE TABLE m (ts TIMESTAMPTZ NOT NULL, pid TEXT NOT NULL, \
    p DOUBLE PRECISION, PRIMARY KEY (pid, ts))";

/// Rows the test wrote and was acknowledged for: (pid, ts seconds) -> p.
type Acked = BTreeMap<(String, i64), f64>;

fn at(secs: i64) -> std::time::SystemTime {
    std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs as u64)
}

async fn read_all(server: &Server) -> Acked {
    let c = server.client().await;
    let rows = c
        .query("SELECT pid, CAST(extract(epoch FROM ts) AS BIGINT), p FROM m", &[])
        .await
        .unwrap();
    rows.iter().map(|r| ((r.get(0), r.get(1)), r.get(2))).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_right_after_acknowledged_inserts_loses_nothing() {
    let mut server = Server::new().start();
    let c = server.client().await;
    c.batch_execute(CREATE).await.unwrap();
    let stmt = c.prepare("INSERT INTO m (ts, pid, p) VALUES ($1, $2, $3)").await.unwrap();
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
    server.client().await.batch_execute("SELECT flush()").await.unwrap();
    server.kill9();
    server.spawn();
    assert_eq!(read_all(&server).await, acked);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn torn_wal_tail_is_truncated_and_the_server_starts() {
    let mut server = Server::new().start();
    let c = server.client().await;
    c.batch_execute(CREATE).await.unwrap();
    c.batch_execute("INSERT INTO m VALUES ('2026-11-01T00:00:00Z', 'a', 1.0)").await.unwrap();
    server.kill9();
    // Append garbage to the newest WAL segment, as a crash mid-write would leave.
    let wal = server.data_path().join("wal");
    let mut segs: Vec<_> = std::fs::read_dir(&wal).unwrap().map(|e| e.unwrap().path()).collect();
    segs.sort();
    let last = segs.iter().rev().find(|p| std::fs::metadata(p).unwrap().len() > 12).unwrap().clone();
    let mut data = std::fs::read(&last).unwrap();
    data.extend_from_slice(&[0x40, 0, 0, 0, 1, 2, 3, 4, 9, 9]);
    std::fs::write(&last, data).unwrap();
    server.spawn();
    let rows = read_all(&server).await;
    assert_eq!(rows.get(&("a".to_string(), 1_793_491_200)), Some(&1.0));
    assert!(server.log().contains("torn or corrupt tail"), "{}", server.log());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_restart_persists_and_recover_rebuilds_catalog_from_bucket() {
    let mut server = Server::new().start();
    let c = server.client().await;
    c.batch_execute(CREATE).await.unwrap();
    c.batch_execute(
        "INSERT INTO m VALUES ('2026-09-30T23:59:59Z','a',1), ('2026-10-01T00:00:00Z','a',2), \
         ('2026-10-15T12:00:00Z','b',3), ('2026-11-01T00:00:00Z','b',4)",
    )
    .await
    .unwrap();
    let before = read_all(&server).await;
    server.stop(); // SIGTERM: flushes buffers into Parquet
    let objects = server.data_path().join("objects");
    server.spawn();
    assert_eq!(read_all(&server).await, before);
    let files: i64 = server.client().await.query_one("SELECT count(*) FROM system.files", &[]).await.unwrap().get(0);
    assert_eq!(files, 3, "one file per month partition after the shutdown flush");
    server.stop();

    // A new node with an empty data dir, recovered from the object store alone.
    let new_dir = server.data_path().with_file_name("recovered");
    let url = format!("file://{}", objects.display());
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_wattdb"))
        .args(["recover", "--object-store", &url, "--data-dir"])
        .arg(&new_dir)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let mut node2 = Server::new();
    node2.data_dir = new_dir;
    node2.object_store = Some(url);
    let node2 = node2.start();
    assert_eq!(read_all(&node2).await, before);
    let (n, s): (i64, f64) = {
        let r = node2.client().await.query_one("SELECT count(*), sum(p) FROM m WHERE ts >= '2026-10-01T00:00:00Z'", &[]).await.unwrap();
        (r.get(0), r.get(1))
    };
    assert_eq!((n, s), (3, 9.0));
}
