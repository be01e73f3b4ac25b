//! Durability: every acknowledged write survives kill -9 and restart; graceful restarts
//! keep everything; the catalog can be rebuilt from the object store alone.

mod common;

use common::Server;
use common::scenarios::{self, CREATE_M, read_all};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_right_after_acknowledged_inserts_loses_nothing() {
    scenarios::kill_9_after_acknowledged_inserts(Server::new()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_restart_persists_and_recover_rebuilds_catalog_from_bucket() {
    scenarios::graceful_restart_then_recover_from_bucket(Server::new()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn torn_wal_tail_is_truncated_and_the_server_starts() {
    let mut server = Server::new().start();
    let c = server.client().await;
    c.batch_execute(CREATE_M).await.unwrap();
    c.batch_execute("INSERT INTO m VALUES ('2026-11-01T00:00:00Z', 'a', 1.0)")
        .await
        .unwrap();
    server.kill9();
    // Append garbage to the newest WAL segment, as a crash mid-write would leave.
    let wal = server.data_path().join("wal");
    let mut segs: Vec<_> = std::fs::read_dir(&wal)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    segs.sort();
    let last = segs
        .iter()
        .rev()
        .find(|p| std::fs::metadata(p).unwrap().len() > 12)
        .unwrap()
        .clone();
    let mut data = std::fs::read(&last).unwrap();
    data.extend_from_slice(&[0x40, 0, 0, 0, 1, 2, 3, 4, 9, 9]);
    std::fs::write(&last, data).unwrap();
    server.spawn();
    let rows = read_all(&server).await;
    assert_eq!(rows.get(&("a".to_string(), 1_793_491_200)), Some(&1.0));
    assert!(
        server.log().contains("torn or corrupt tail"),
        "{}",
        server.log()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropped_table_does_not_come_back_after_kill_9() {
    let mut server = Server::new().start();
    let c = server.client().await;
    c.batch_execute(CREATE_M).await.unwrap();
    c.batch_execute("INSERT INTO m VALUES ('2026-10-01T00:00:00Z', 'old', 1.0)")
        .await
        .unwrap();
    c.batch_execute("SELECT flush()").await.unwrap();
    c.batch_execute("INSERT INTO m VALUES ('2026-11-01T00:00:00Z', 'old', 2.0)")
        .await
        .unwrap();
    c.batch_execute("DROP TABLE m").await.unwrap();
    c.batch_execute(CREATE_M).await.unwrap();
    c.batch_execute("INSERT INTO m VALUES ('2026-11-02T00:00:00Z', 'new', 3.0)")
        .await
        .unwrap();
    server.kill9();
    server.spawn();
    let rows = read_all(&server).await;
    assert_eq!(
        rows.into_iter().collect::<Vec<_>>(),
        vec![(("new".to_string(), 1_793_577_600), 3.0)]
    );
    let files = common::file_count(&server).await;
    assert_eq!(
        files, 0,
        "the dropped table's files are gone from the catalog"
    );
    assert!(
        !server
            .data_path()
            .join("objects/m/month=2026-10")
            .read_dir()
            .is_ok_and(|mut d| d.next().is_some()),
        "the dropped table's Parquet file was deleted"
    );
}
