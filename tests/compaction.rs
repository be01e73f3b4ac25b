//! `SELECT compact('<table>')` through the SQL endpoint: a month's files become one and
//! every query answers as before.

mod common;

use common::Server;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compact_merges_a_months_files_and_answers_stay_the_same() {
    common::compaction_scenario::compact_merges_a_months_files(Server::new()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_background_pass_compacts_months_with_enough_files() {
    let mut server = Server::new();
    let config = server.data_dir.with_extension("toml");
    std::fs::write(
        &config,
        "compaction_interval_secs = 1\ncompaction_min_files = 3\ncompaction_grace_secs = 0\n",
    )
    .unwrap();
    server.extra_args = vec!["--config".into(), config.display().to_string()];
    server.spawn();
    let c = server.client().await;
    c.batch_execute(
        "CREATE TABLE t (ts TIMESTAMPTZ NOT NULL, pid TEXT NOT NULL, v DOUBLE PRECISION, \
         PRIMARY KEY (pid, ts))",
    )
    .await
    .unwrap();
    for round in 0..3 {
        c.batch_execute(&format!(
            "INSERT INTO t VALUES ('2026-10-0{}T00:00:00Z', 'a', {round})",
            round + 1
        ))
        .await
        .unwrap();
        c.batch_execute("SELECT flush()").await.unwrap();
    }
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while common::compaction_scenario::files(&c).await != 1 {
        assert!(
            std::time::Instant::now() < deadline,
            "not compacted; log:\n{}",
            server.log()
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    let n: i64 = c
        .query_one("SELECT count(*) FROM t", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 3);
    assert!(server.log().contains("compacted month"));
}
