//! S3 unreachable for a while: SeaweedFS (started by `.ci/run`) is paused with SIGSTOP, so
//! its sockets accept nothing and answer nothing. Writes keep being acknowledged (WAL +
//! buffer); a persist started during the outage waits and completes once S3 answers
//! again; a kill -9 in the middle of the outage loses nothing acknowledged.
//!
//! Its own test binary: cargo runs test binaries one after another, so pausing (or
//! stopping) the shared SeaweedFS cannot disturb the other S3 tests; within this binary
//! the tests take turns (`S3_TURN`).

mod common;

use std::time::Duration;

use common::scenarios::{CREATE_M, read_all};
use common::{S3, Server, unique_prefix};

/// One outage at a time: the tests of this binary share the S3 server.
static S3_TURN: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

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
    let _turn = S3_TURN.lock().await;
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

/// The value of a counter or gauge in the server's `/metrics`.
fn metric(server: &Server, name: &str) -> f64 {
    let (_, body) = common::http_get(server.http_port, "/metrics");
    body.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
        .unwrap_or_else(|| panic!("{name} not in /metrics:\n{body}"))
}

/// An outage longer than the object store's retry budget: persists fail (and are
/// counted), rows stay in the WAL and buffer, and once S3 answers again the persister's
/// next round writes them — nothing acknowledged is lost, also across a kill -9.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_outage_beyond_the_retry_budget_fails_persists_that_are_retried() {
    let Some(s3) = S3::from_env() else { return };
    let _turn = S3_TURN.lock().await;
    let Ok(pid_file) = std::env::var("WATTDB_TEST_S3_PID_FILE") else {
        eprintln!("skipping: WATTDB_TEST_S3_PID_FILE (the S3 server's pid) is not set");
        return;
    };
    let weed: u32 = std::fs::read_to_string(&pid_file)
        .expect("S3 server pid file")
        .trim()
        .parse()
        .expect("a pid");
    let mut server = Server::new().with_s3(&s3, &unique_prefix("outage-long"));
    let config = server.data_dir.with_extension("toml");
    std::fs::write(
        &config,
        "object_store_request_timeout_secs = 1\nobject_store_retry_timeout_secs = 2\n\
         persist_max_age_secs = 1\n",
    )
    .unwrap();
    server.extra_args = vec!["--config".into(), config.display().to_string()];
    server.spawn();
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
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
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
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{buffered} rows still buffered; log:\n{}",
            server.log()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
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
    let rows = read_all(&server).await;
    assert_eq!(rows.len(), 400, "every acknowledged row");
    for i in 0..400i64 {
        let key = (format!("p{}", i % 3), 1_793_491_200 + i * 60);
        assert_eq!(rows.get(&key), Some(&(i as f64)), "{key:?}");
    }
}

/// Stopped S3 server; started again (by `.ci/run`'s start script) however the test ends.
struct Stopped(String);

impl Stopped {
    fn new(pid: u32, start_script: &str) -> Self {
        signal("-TERM", pid);
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while std::process::Command::new("kill")
            .args(["-0", &pid.to_string()])
            .status()
            .map(|s| s.success())
            .unwrap_or(false)
        {
            assert!(
                std::time::Instant::now() < deadline,
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

/// The outage, literally: SeaweedFS is stopped during ingest (connections
/// refused) and started again. Writes are acknowledged throughout, persists fail while it
/// is down, the persister catches up once it is back, and every acknowledged row is
/// there after a kill -9.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_stopped_and_restarted_during_ingest_loses_nothing() {
    let Some(s3) = S3::from_env() else { return };
    let _turn = S3_TURN.lock().await;
    let (Ok(pid_file), Ok(start)) = (
        std::env::var("WATTDB_TEST_S3_PID_FILE"),
        std::env::var("WATTDB_TEST_S3_START"),
    ) else {
        eprintln!("skipping: WATTDB_TEST_S3_PID_FILE / WATTDB_TEST_S3_START are not set");
        return;
    };
    let weed: u32 = std::fs::read_to_string(&pid_file)
        .expect("S3 server pid file")
        .trim()
        .parse()
        .expect("a pid");
    let mut server = Server::new().with_s3(&s3, &unique_prefix("outage-stop"));
    let config = server.data_dir.with_extension("toml");
    std::fs::write(
        &config,
        "object_store_request_timeout_secs = 1\nobject_store_retry_timeout_secs = 2\n\
         persist_max_age_secs = 1\n",
    )
    .unwrap();
    server.extra_args = vec!["--config".into(), config.display().to_string()];
    server.spawn();
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
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
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
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{buffered} rows still buffered; log:\n{}",
            server.log()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    server.kill9();
    server.spawn();
    let rows = read_all(&server).await;
    assert_eq!(rows.len(), 500, "every acknowledged row");
    for i in 0..500i64 {
        let key = (format!("p{}", i % 3), 1_793_491_200 + i * 60);
        assert_eq!(rows.get(&key), Some(&(i as f64)), "{key:?}");
    }
}
