//! S3 unreachable for a while, three ways, with SeaweedFS started by `.ci/run`:
//! - paused with SIGSTOP (sockets accept nothing and answer nothing) for a few seconds:
//!   writes keep being acknowledged (WAL + buffer), a persist started during the outage
//!   waits and completes once S3 answers again, a kill -9 in the middle loses nothing;
//! - paused longer than the object store's retry budget: persists fail (and are counted),
//!   the persister's next rounds write everything once S3 is back;
//! - stopped (SIGTERM, connections refused) and started again: the same.
//!
//! Its own test binary: cargo runs test binaries one after another, so pausing (or
//! stopping) the shared SeaweedFS cannot disturb the other S3 tests; within this binary
//! the tests take turns (`S3_TURN`).

mod common;

use std::time::{Duration, Instant};

use common::scenarios::{CREATE_M, read_all};
use common::{S3, Server, unique_prefix};

/// One outage at a time: the tests of this binary share the S3 server.
static S3_TURN: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn signal(sig: &str, pid: u32) -> bool {
    std::process::Command::new("kill")
        .args([sig, &pid.to_string()])
        .stderr(std::process::Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

/// The S3 server's pid (from `.ci/run`), or None when the tests cannot control it.
fn s3_pid() -> Option<u32> {
    let Ok(pid_file) = std::env::var("WATTDB_TEST_S3_PID_FILE") else {
        eprintln!("skipping: WATTDB_TEST_S3_PID_FILE (the S3 server's pid) is not set");
        return None;
    };
    let pid = std::fs::read_to_string(&pid_file)
        .expect("S3 server pid file")
        .trim()
        .parse()
        .expect("a pid");
    Some(pid)
}

/// Resumes the paused server however the test ends.
struct Paused(u32);

impl Paused {
    fn new(pid: u32) -> Self {
        assert!(signal("-STOP", pid), "pausing the S3 server");
        Paused(pid)
    }
}

impl Drop for Paused {
    fn drop(&mut self) {
        assert!(signal("-CONT", self.0), "resuming the S3 server");
    }
}

/// Stopped S3 server; started again (by `.ci/run`'s start script) however the test ends.
struct Stopped(String);

impl Stopped {
    fn new(pid: u32, start_script: &str) -> Self {
        assert!(signal("-TERM", pid), "stopping the S3 server");
        // SeaweedFS sometimes takes long to exit on a loaded machine: what matters here
        // is that S3 is gone, so after 20 s it is killed.
        let started = Instant::now();
        let mut killed = false;
        while signal("-0", pid) {
            if !killed && started.elapsed() > Duration::from_secs(20) {
                killed = signal("-KILL", pid);
            }
            assert!(
                started.elapsed() < Duration::from_secs(40),
                "S3 server did not stop"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        Stopped(start_script.to_string())
    }
}

impl Drop for Stopped {
    fn drop(&mut self) {
        let ok = std::process::Command::new(&self.0)
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        assert!(ok, "restarting the S3 server with {}", self.0);
    }
}

/// `INSERT` of rows `from..to` of table `m`: row i is (p{i % 3}, minute i, value i).
fn insert(from: i64, to: i64) -> String {
    let values: Vec<String> = (from..to)
        .map(|i| format!("(to_timestamp({}), 'p{}', {i})", key_ts(i), i % 3))
        .collect();
    format!("INSERT INTO m VALUES {}", values.join(", "))
}

fn key_ts(i: i64) -> i64 {
    1_793_491_200 + i * 60
}

/// Exactly rows `0..n`, each with its own value.
async fn assert_rows(server: &Server, n: i64) {
    let rows = read_all(server).await;
    assert_eq!(rows.len(), n as usize, "every acknowledged row");
    for i in 0..n {
        let key = (format!("p{}", i % 3), key_ts(i));
        assert_eq!(rows.get(&key), Some(&(i as f64)), "{key:?}");
    }
}

/// A server on S3 whose requests give up after 1 s, and all retries after 2 s, so an
/// outage of a few seconds outlasts the retry budget; partitions are due after 1 s.
fn impatient_server(s3: &S3, name: &str) -> Server {
    let mut server = Server::new().with_s3(s3, &unique_prefix(name));
    let config = server.data_dir.with_extension("toml");
    std::fs::write(
        &config,
        "object_store_request_timeout_secs = 1\nobject_store_retry_timeout_secs = 2\n\
         persist_max_age_secs = 1\n",
    )
    .unwrap();
    server.extra_args = vec!["--config".into(), config.display().to_string()];
    server
}

/// Wait until the persister alone has written every buffered row of `m`.
async fn wait_until_persisted(c: &tokio_postgres::Client, server: &Server) {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let buffered: i64 = c
            .query_one(
                "SELECT CAST(sum(buffered_rows) AS BIGINT) FROM system.tables WHERE table_name = 'm'",
                &[],
            )
            .await
            .unwrap()
            .get(0);
        if buffered == 0 {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{buffered} rows still buffered; log:\n{}",
            server.log()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The value of a counter or gauge in the server's `/metrics`.
fn metric(server: &Server, name: &str) -> f64 {
    let (_, body) = common::http_get(server.http_port, "/metrics");
    body.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
        .unwrap_or_else(|| panic!("{name} not in /metrics:\n{body}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_outage_ingest_continues_and_persistence_catches_up() {
    let Some(s3) = S3::from_env() else { return };
    let _turn = S3_TURN.lock().await;
    let Some(weed) = s3_pid() else { return };
    let mut server = Server::new().with_s3(&s3, &unique_prefix("outage")).start();
    let c = server.client().await;
    c.batch_execute(CREATE_M).await.unwrap();
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
    assert_rows(&server, 700).await;
    let c = server.client().await;
    c.batch_execute("SELECT flush()").await.unwrap();
    assert_eq!(read_all(&server).await.len(), 700);
}

/// An outage longer than the object store's retry budget: persists fail (and are
/// counted), rows stay in the WAL and buffer, and once S3 answers again the persister's
/// next round writes them — nothing acknowledged is lost, also across a kill -9.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_outage_beyond_the_retry_budget_fails_persists_that_are_retried() {
    let Some(s3) = S3::from_env() else { return };
    let _turn = S3_TURN.lock().await;
    let Some(weed) = s3_pid() else { return };
    let mut server = impatient_server(&s3, "outage-long");
    server.spawn();
    let c = server.client().await;
    c.batch_execute(CREATE_M).await.unwrap();
    c.batch_execute(&insert(0, 100)).await.unwrap();
    c.batch_execute("SELECT flush()").await.unwrap();
    let failures_before = metric(&server, "wattdb_persist_failures_total");

    let paused = Paused::new(weed);
    c.batch_execute(&insert(100, 300)).await.unwrap();
    // flush() gives up after the retry budget with an I/O error; the rows stay queryable.
    let err = c.batch_execute("SELECT flush()").await.unwrap_err();
    assert_eq!(common::sqlstate(&err), "58030", "{err}");
    assert!(metric(&server, "wattdb_persist_failures_total") > failures_before);
    // The background persister keeps failing (age 1 s) while S3 is away; writes go on.
    c.batch_execute(&insert(300, 400)).await.unwrap();
    tokio::time::sleep(Duration::from_secs(3)).await;
    drop(paused);
    // Once S3 answers, the persister's own rounds catch up (no flush() needed).
    wait_until_persisted(&c, &server).await;
    let files: i64 = c
        .query_one(
            "SELECT count(*) FROM system.files WHERE table_name = 'm'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(files >= 2, "{files}");
    server.kill9();
    server.spawn();
    assert_rows(&server, 400).await;
}

/// The outage, literally: SeaweedFS is stopped during ingest (connections
/// refused) and started again. Writes are acknowledged throughout, persists fail while it
/// is down, the persister catches up once it is back, and every acknowledged row is
/// there after a kill -9.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_stopped_and_restarted_during_ingest_loses_nothing() {
    let Some(s3) = S3::from_env() else { return };
    let _turn = S3_TURN.lock().await;
    let Some(weed) = s3_pid() else { return };
    let Ok(start) = std::env::var("WATTDB_TEST_S3_START") else {
        eprintln!("skipping: WATTDB_TEST_S3_START (the S3 server's start script) is not set");
        return;
    };
    let mut server = impatient_server(&s3, "outage-stop");
    server.spawn();
    let c = server.client().await;
    c.batch_execute(CREATE_M).await.unwrap();
    c.batch_execute(&insert(0, 100)).await.unwrap();
    c.batch_execute("SELECT flush()").await.unwrap();

    let stopped = Stopped::new(weed, &start);
    for k in 1..4 {
        c.batch_execute(&insert(k * 100, (k + 1) * 100))
            .await
            .unwrap();
    }
    let err = c.batch_execute("SELECT flush()").await.unwrap_err();
    assert_eq!(common::sqlstate(&err), "58030", "{err}");
    c.batch_execute(&insert(400, 500)).await.unwrap();
    drop(stopped); // started again
    wait_until_persisted(&c, &server).await;
    server.kill9();
    server.spawn();
    assert_rows(&server, 500).await;
}
