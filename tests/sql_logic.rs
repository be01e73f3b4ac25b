//! SQL behaviour as sqllogictest files (`tests/slt/*.slt`), each run against a fresh
//! server through the PostgreSQL simple query protocol, exactly as psql would see it.

mod common;

use std::path::Path;

use common::Server;
use sqllogictest::{AsyncDB, DBOutput, DefaultColumnType};
use tokio_postgres::SimpleQueryMessage;

struct PgDb {
    client: tokio_postgres::Client,
}

#[derive(Debug)]
struct PgError(tokio_postgres::Error);

impl std::fmt::Display for PgError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0.as_db_error() {
            Some(db) => write!(f, "{}: {}", db.code().code(), db.message()),
            None => write!(f, "{}", self.0),
        }
    }
}

impl std::error::Error for PgError {}

#[async_trait::async_trait]
impl AsyncDB for PgDb {
    type Error = PgError;
    type ColumnType = DefaultColumnType;

    async fn run(&mut self, sql: &str) -> Result<DBOutput<DefaultColumnType>, PgError> {
        let messages = self.client.simple_query(sql).await.map_err(PgError)?;
        let mut rows = Vec::new();
        let mut columns = None;
        let mut count = 0;
        for m in messages {
            match m {
                SimpleQueryMessage::RowDescription(cols) => columns = Some(cols.len()),
                SimpleQueryMessage::Row(r) => rows.push(
                    (0..r.len())
                        .map(|i| match r.get(i) {
                            None => "NULL".to_string(),
                            Some("") => "(empty)".to_string(),
                            Some(v) => v.to_string(),
                        })
                        .collect(),
                ),
                SimpleQueryMessage::CommandComplete(n) => count = n,
                _ => {}
            }
        }
        Ok(match columns {
            Some(n) => DBOutput::Rows {
                types: vec![DefaultColumnType::Any; n],
                rows,
            },
            None => DBOutput::StatementComplete(count),
        })
    }

    async fn shutdown(&mut self) {}

    async fn sleep(dur: std::time::Duration) {
        tokio::time::sleep(dur).await
    }
}

async fn run_file(path: &Path) {
    let server = Server::new().start();
    let client = server.client().await;
    let mut db = Some(PgDb { client });
    let mut runner = sqllogictest::Runner::new(move || {
        let db = db.take();
        async move { db.ok_or_else(|| PgError(unreachable_connect())) }
    });
    runner.with_column_validator(sqllogictest::default_column_validator);
    if let Err(e) = runner.run_file_async(path).await {
        panic!("{}: {e}\nserver log:\n{}", path.display(), server.log());
    }
}

fn unreachable_connect() -> tokio_postgres::Error {
    panic!("the runner asked for a second connection")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slt_files() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/slt");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "slt"))
        .collect();
    files.sort();
    assert!(!files.is_empty());
    for f in files {
        run_file(&f).await;
    }
}
