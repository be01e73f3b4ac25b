//! S3 unreachable for a while: SeaweedFS (started by `.ci/run`) is paused with SIGSTOP, so
//! its sockets accept nothing and answer nothing. Writes keep being acknowledged (WAL +
//! buffer); a persist started during the outage waits and completes once S3 answers
//! again; a kill -9 in the middle of the outage loses nothing acknowledged.
//!
//! Its own test binary: cargo runs test binaries one after another, so pausing the shared
//! SeaweedFS cannot disturb the other S3 tests.

mod common;

use std::time::Duration;

use common::scenarios::{CREATE_M, read_all};
use common::{S3, Server, unique_prefix};

/// Resumes the paused server however the test ends.
struct Paused(u32);

impl Paused {
    fn new(pid: u32) -> Self {
        signal("-STOP", pid);
        Paused(pid)
    }
}

impl Drop for Paused {
    fn drop(&mut self) {
        signal("-CONT", self.0);
    }
}

fn signal(sig: &str, pid: u32) {
    let ok = std::process::Command::new("kill")
        .args([sig, &pid.to_string()])
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    assert!(ok, "kill {sig} {pid}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_outage_ingest_continues_and_persistence_catches_up() {
    let Some(s3) = S3::from_env() else { return };
    let Ok(pid_file) = std::env::var("WATTDB_TEST_S3_PID_FILE") else {
        eprintln!("skipping: WATTDB_TEST_S3_PID_FILE (the S3 server's pid) is not set");
        return;
    };
    let weed: u32 = std::fs::read_to_string(&pid_file)
        .expect("S3 server pid file")
        .trim()
        .parse()
        .expect("a pid");
    let mut server = Server::new().with_s3(&s3, &unique_prefix("outage")).start();
    let c = server.client().await;
    c.batch_execute(CREATE_M).await.unwrap();
    let insert = |from: i64, to: i64| {
        let values: Vec<String> = (from..to)
            .map(|i| {
                format!(
                    "(to_timestamp({}), 'p{}', {i})",
                    1_793_491_200 + i * 60,
                    i % 3
                )
            })
            .collect();
        format!("INSERT INTO m VALUES {}", values.join(", "))
    };
    c.batch_execute(&insert(0, 100)).await.unwrap();
    c.batch_execute("SELECT flush()").await.unwrap();

    let paused = Paused::new(weed);
    // Writes are acknowledged while S3 does not answer.
    for k in 1..5 {
        c.batch_execute(&insert(k * 100, (k + 1) * 100))
            .await
            .unwrap();
    }
    // A persist during the outage waits for S3 instead of failing or dropping rows.
    let c2 = server.client().await;
    let flush = tokio::spawn(async move { c2.batch_execute("SELECT flush()").await });
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(
        !flush.is_finished(),
        "flush cannot finish while S3 is paused"
    );
    // More writes, then S3 comes back and the persist completes.
    c.batch_execute(&insert(500, 600)).await.unwrap();
    drop(paused);
    tokio::time::timeout(Duration::from_secs(120), flush)
        .await
        .expect("flush finished after S3 came back")
        .unwrap()
        .unwrap();

    // Second outage, with a crash in the middle of it.
    let paused = Paused::new(weed);
    c.batch_execute(&insert(600, 700)).await.unwrap();
    server.kill9();
    drop(paused);
    server.spawn();
    let rows = read_all(&server).await;
    assert_eq!(
        rows.len(),
        700,
        "every acknowledged row, after the outage and a kill -9"
    );
    for i in 0..700i64 {
        let key = (format!("p{}", i % 3), 1_793_491_200 + i * 60);
        assert_eq!(rows.get(&key), Some(&(i as f64)), "{key:?}");
    }
    let c = server.client().await;
    c.batch_execute("SELECT flush()").await.unwrap();
    assert_eq!(read_all(&server).await.len(), 700);
}
