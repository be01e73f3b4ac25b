//! Test harness: runs the real `wattdb` binary on free loopback ports in a temporary data
//! directory and talks to it with tokio-postgres, psql and HTTP.

#![allow(dead_code)]

pub mod archive_scenario;
pub mod compaction_scenario;
pub mod mqtt;
pub mod raw_pg;
pub mod receiver;
pub mod retention_scenario;
pub mod rng;
pub mod scenarios;
pub mod wattdb_calls;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tokio_postgres::{Client, NoTls};

/// A free loopback port for a server under test, from 20000-31999: below Linux's
/// ephemeral range (32768+), so the many client connections of concurrently running tests
/// cannot take it between picking it and the server binding it (a port from `bind(":0")`
/// could, and did). Each test process starts at its own offset and never hands out the
/// same port twice.
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    const FIRST: u32 = 20_000;
    const SPAN: u32 = 12_000;
    let offset = std::process::id().wrapping_mul(97) % SPAN;
    for _ in 0..SPAN {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let port = (FIRST + (offset + n) % SPAN) as u16;
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free port in {FIRST}..{}", FIRST + SPAN)
}

/// S3 settings for tests against a real S3 server (SeaweedFS in CI).
#[derive(Clone, Debug)]
pub struct S3 {
    pub endpoint: String,
    pub bucket: String,
    pub access_key: String,
    pub secret_key: String,
}

impl S3 {
    /// From `WATTDB_TEST_S3_ENDPOINT` etc. Returns None when unset, unless
    /// `WATTDB_REQUIRE_S3=1` (as in `.ci/run`), which makes a missing server a failure.
    pub fn from_env() -> Option<S3> {
        let endpoint = std::env::var("WATTDB_TEST_S3_ENDPOINT").ok();
        if endpoint.is_none() {
            assert!(
                std::env::var("WATTDB_REQUIRE_S3").as_deref() != Ok("1"),
                "WATTDB_REQUIRE_S3=1 but WATTDB_TEST_S3_ENDPOINT is not set"
            );
            eprintln!("skipping: set WATTDB_TEST_S3_ENDPOINT to run S3 tests");
            return None;
        }
        Some(S3 {
            endpoint: endpoint?,
            bucket: std::env::var("WATTDB_TEST_S3_BUCKET").unwrap_or_else(|_| "wattdb-test".into()),
            access_key: std::env::var("WATTDB_TEST_S3_ACCESS_KEY")
                .unwrap_or_else(|_| "ciaccesskey".into()),
            secret_key: std::env::var("WATTDB_TEST_S3_SECRET_KEY")
                .unwrap_or_else(|_| "cisecretkey123".into()),
        })
    }
}

pub struct Server {
    pub data_dir: PathBuf,
    pub pg_port: u16,
    pub http_port: u16,
    pub mqtt_port: u16,
    pub object_store: Option<String>,
    pub s3: Option<S3>,
    /// `--archive-store` URL, when the test wants an archive.
    pub archive_store: Option<String>,
    pub extra_args: Vec<String>,
    /// Environment variables for the server process (e.g. `FAILPOINTS`).
    pub envs: Vec<(String, String)>,
    pub password: Option<String>,
    child: Option<Child>,
    _tmp: Option<tempfile::TempDir>,
}

impl Server {
    pub fn new() -> Server {
        let tmp = tempfile::tempdir().expect("tempdir");
        Server {
            data_dir: tmp.path().join("data"),
            pg_port: free_port(),
            http_port: free_port(),
            mqtt_port: free_port(),
            object_store: None,
            s3: None,
            archive_store: None,
            extra_args: vec![],
            envs: vec![],
            password: None,
            child: None,
            _tmp: Some(tmp),
        }
    }

    pub fn with_s3(mut self, s3: &S3, prefix: &str) -> Server {
        self.object_store = Some(format!("s3://{}/{}", s3.bucket, prefix));
        self.s3 = Some(s3.clone());
        self
    }

    /// Archive expired months to `url` (`file:///…`, or `s3://…` on the server's S3).
    pub fn with_archive(mut self, url: &str) -> Server {
        self.archive_store = Some(url.to_string());
        self
    }

    /// A `file://` URL of a folder beside the server's data directory.
    pub fn local_url(&self, name: &str) -> String {
        let dir = self.data_dir.with_file_name(name);
        format!("file://{}", dir.display())
    }

    pub fn start(mut self) -> Server {
        self.spawn();
        self
    }

    pub fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .expect("log file");
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_wattdb"));
        cmd.arg("serve")
            .arg("--data-dir")
            .arg(&self.data_dir)
            .arg("--pg-listen")
            .arg(format!("127.0.0.1:{}", self.pg_port))
            .arg("--http-listen")
            .arg(format!("127.0.0.1:{}", self.http_port))
            .arg("--mqtt-listen")
            .arg(format!("127.0.0.1:{}", self.mqtt_port))
            .args(&self.extra_args)
            .envs(self.envs.iter().map(|(k, v)| (k, v)))
            .env_remove("WATTDB_PASSWORD")
            .stdout(Stdio::from(log.try_clone().expect("log")))
            .stderr(Stdio::from(log));
        if let Some(os) = &self.object_store {
            cmd.arg("--object-store").arg(os);
        }
        if let Some(a) = &self.archive_store {
            cmd.arg("--archive-store").arg(a);
        }
        if let Some(s3) = &self.s3 {
            cmd.env("AWS_ENDPOINT_URL", &s3.endpoint)
                .env("AWS_ACCESS_KEY_ID", &s3.access_key)
                .env("AWS_SECRET_ACCESS_KEY", &s3.secret_key)
                .env("AWS_REGION", "us-east-1");
        }
        if let Some(pw) = &self.password {
            cmd.env("WATTDB_PASSWORD", pw);
        }
        self.child = Some(cmd.spawn().expect("start wattdb"));
        self.wait_ready();
    }

    pub fn log_path(&self) -> PathBuf {
        self.data_dir.with_extension("log")
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            if let Some(Ok(Some(status))) = self.child.as_mut().map(|c| c.try_wait()) {
                panic!("wattdb exited early with {status}; log:\n{}", self.log());
            }
            let up = |port| std::net::TcpStream::connect(("127.0.0.1", port)).is_ok();
            // With --mqtt-url there is no embedded MQTT endpoint to wait for.
            let broker_mode = self.extra_args.iter().any(|a| a == "--mqtt-url");
            if up(self.pg_port) && up(self.http_port) && (broker_mode || up(self.mqtt_port)) {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("wattdb did not start listening; log:\n{}", self.log());
    }

    pub fn conn_string(&self) -> String {
        let mut s = format!(
            "host=127.0.0.1 port={} user=wattdb dbname=wattdb",
            self.pg_port
        );
        if let Some(pw) = &self.password {
            s.push_str(&format!(" password={pw}"));
        }
        s
    }

    pub async fn client(&self) -> Client {
        let (client, conn) = tokio_postgres::connect(&self.conn_string(), NoTls)
            .await
            .unwrap_or_else(|e| panic!("connect: {e}; log:\n{}", self.log()));
        tokio::spawn(async move {
            let _ = conn.await;
        });
        client
    }

    /// SIGKILL: no flush, no clean WAL close.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM and wait for a clean exit.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = Command::new("kill")
                .arg("-TERM")
                .arg(c.id().to_string())
                .status();
            let deadline = Instant::now() + Duration::from_secs(60);
            loop {
                if let Ok(Some(status)) = c.try_wait() {
                    assert!(
                        status.success(),
                        "wattdb exited with {status}; log:\n{}",
                        self.log()
                    );
                    return;
                }
                if Instant::now() > deadline {
                    let _ = c.kill();
                    panic!("wattdb did not stop on SIGTERM; log:\n{}", self.log());
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }

    pub fn is_running(&mut self) -> bool {
        matches!(self.child.as_mut().map(|c| c.try_wait()), Some(Ok(None)))
    }

    pub fn psql(&self, sql: &str) -> std::process::Output {
        Command::new("psql")
            .args([
                "-X",
                "-v",
                "ON_ERROR_STOP=1",
                "-h",
                "127.0.0.1",
                "-p",
                &self.pg_port.to_string(),
                "-U",
                "wattdb",
                "wattdb",
                "-c",
                sql,
            ])
            .output()
            .expect("run psql")
    }

    pub fn data_path(&self) -> &Path {
        &self.data_dir
    }

    /// A new node (not started) whose empty data directory was filled by `wattdb
    /// recover` from this server's object store alone; same store and archive.
    pub fn recovered_node(&self) -> Server {
        let new_dir = self.data_dir.with_file_name("recovered");
        let default = format!("file://{}", self.data_dir.join("objects").display());
        let url = self.object_store.clone().unwrap_or(default);
        let mut recover = Command::new(env!("CARGO_BIN_EXE_wattdb"));
        recover
            .args(["recover", "--object-store", &url, "--data-dir"])
            .arg(&new_dir);
        if let Some(s3) = &self.s3 {
            recover
                .env("AWS_ENDPOINT_URL", &s3.endpoint)
                .env("AWS_ACCESS_KEY_ID", &s3.access_key)
                .env("AWS_SECRET_ACCESS_KEY", &s3.secret_key);
        }
        let out = recover.output().expect("run wattdb recover");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let mut node = Server::new();
        node.data_dir = new_dir;
        node.object_store = Some(url);
        node.s3 = self.s3.clone();
        node.archive_store = self.archive_store.clone();
        node
    }

    /// Paths of every object the server stored (relative to its store root), from the
    /// local folder or from the S3 bucket under the server's prefix.
    pub async fn object_paths(&self) -> Vec<String> {
        let default = format!("file://{}", self.data_dir.join("objects").display());
        self.paths_at(self.object_store.as_deref().unwrap_or(&default))
            .await
    }

    /// Paths of every object in the archive (relative to its root).
    pub async fn archive_paths(&self) -> Vec<String> {
        let url = self
            .archive_store
            .as_deref()
            .expect("server has an archive");
        self.paths_at(url).await
    }

    /// Every object under `url` (`file:///dir` or `s3://bucket/prefix` on the server's
    /// S3), relative to it.
    async fn paths_at(&self, url: &str) -> Vec<String> {
        use futures::TryStreamExt;
        use object_store::ObjectStore;
        if let Some(rest) = url.strip_prefix("s3://") {
            let s3 = self
                .s3
                .as_ref()
                .expect("an s3:// location needs the test S3");
            let prefix = rest
                .split_once('/')
                .map(|(_, p)| p.to_string())
                .unwrap_or_default();
            let store = object_store::aws::AmazonS3Builder::new()
                .with_endpoint(&s3.endpoint)
                .with_bucket_name(&s3.bucket)
                .with_access_key_id(&s3.access_key)
                .with_secret_access_key(&s3.secret_key)
                .with_region("us-east-1")
                .with_allow_http(true)
                .build()
                .expect("S3 client");
            let root = object_store::path::Path::from(prefix.as_str());
            let listed: Vec<_> = store.list(Some(&root)).try_collect().await.expect("list");
            return listed
                .into_iter()
                .map(|o| {
                    let p = o.location.to_string();
                    p.strip_prefix(&format!("{prefix}/"))
                        .unwrap_or(&p)
                        .to_string()
                })
                .collect();
        }
        fn walk(dir: &Path, root: &Path, out: &mut Vec<String>) {
            for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
                let p = e.path();
                if p.is_dir() {
                    walk(&p, root, out);
                } else if let Ok(rel) = p.strip_prefix(root) {
                    out.push(rel.display().to_string());
                }
            }
        }
        let root = PathBuf::from(url.strip_prefix("file://").expect("file:// or s3:// URL"));
        let mut out = Vec::new();
        walk(&root, &root, &mut out);
        out
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// Error code of a failed statement.
/// The first column of every row `sql` returns over the simple (text) protocol.
pub async fn first_column_text(c: &tokio_postgres::Client, sql: &str) -> Vec<String> {
    c.simple_query(sql)
        .await
        .unwrap()
        .into_iter()
        .filter_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(r) => r.get(0).map(str::to_string),
            _ => None,
        })
        .collect()
}

/// Every value of every row `sql` returns, as text (simple protocol; NULL as "").
pub async fn all_values(c: &tokio_postgres::Client, sql: &str) -> Vec<String> {
    let mut out = Vec::new();
    for m in c.simple_query(sql).await.unwrap() {
        if let tokio_postgres::SimpleQueryMessage::Row(r) = m {
            out.extend((0..r.len()).map(|i| r.get(i).unwrap_or("").to_string()));
        }
    }
    out
}

pub fn sqlstate(e: &tokio_postgres::Error) -> String {
    e.code()
        .map(|c| c.code().to_string())
        .unwrap_or_else(|| format!("<no code: {e}>"))
}

/// A prefix no other test run uses, so S3 tests can share one bucket.
pub fn unique_prefix(name: &str) -> String {
    format!("{name}-{}-{}", std::process::id(), free_port())
}

/// GET a path from the server's HTTP endpoint; returns (status line, body).
pub fn http_get(port: u16, path: &str) -> (String, String) {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect http");
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )
    .expect("send");
    let mut resp = String::new();
    s.read_to_string(&mut resp).expect("read");
    let (head, body) = resp.split_once("\r\n\r\n").unwrap_or((&resp, ""));
    (
        head.lines().next().unwrap_or("").to_string(),
        body.to_string(),
    )
}

/// Rows of a `(text, bigint, double)` query as a map `(text, bigint) -> double`: the shape
/// tests use to compare stored readings with what they wrote.
pub async fn keyed_values(
    server: &Server,
    sql: &str,
) -> std::collections::BTreeMap<(String, i64), f64> {
    let rows = server.client().await.query(sql, &[]).await.unwrap();
    rows.iter()
        .map(|r| ((r.get(0), r.get(1)), r.get(2)))
        .collect()
}

/// Number of Parquet files in the catalog (`system.files`).
/// Parquet files of raw tables (rollup tables have files of their own).
pub async fn file_count(server: &Server) -> i64 {
    server
        .client()
        .await
        .query_one(
            "SELECT count(*) FROM system.files WHERE table_name IN \
             (SELECT table_name FROM system.tables WHERE kind = 'raw')",
            &[],
        )
        .await
        .unwrap()
        .get(0)
}

/// A connection as `user` with `password` (the server asks for passwords).
pub async fn connect_as(
    server: &Server,
    user: &str,
    password: &str,
) -> Result<Client, tokio_postgres::Error> {
    let conn = format!(
        "host=127.0.0.1 port={} user={user} dbname=wattdb password={password}",
        server.pg_port
    );
    let (client, connection) = tokio_postgres::connect(&conn, NoTls).await?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok(client)
}

/// The server's message of a failed statement (the error's text when there is none).
pub fn db_message(e: &tokio_postgres::Error) -> String {
    e.as_db_error()
        .map_or_else(|| e.to_string(), |d| d.message().to_string())
}

/// The value of `name` in the server's `/metrics`.
pub fn metric(server: &Server, name: &str) -> f64 {
    let (_, body) = http_get(server.http_port, "/metrics");
    body.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
        .unwrap_or_else(|| panic!("{name} not in /metrics:\n{body}"))
}
