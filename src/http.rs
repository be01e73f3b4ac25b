//! HTTP endpoints: `/health` (200 "ok" once serving) and `/metrics` (Prometheus text).

use std::convert::Infallible;
use std::fmt::Write;

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use std::sync::Arc;
use tokio::net::TcpListener;

use wattdb_compaction::rollup::RollupMaintainer;
use wattdb_ingest::metrics::IngestMetrics;
use wattdb_storage::Storage;

/// The SQL side's figures: sessions and execution slots.
#[derive(Clone)]
pub struct SqlMetrics {
    pub sessions: Arc<wattdb_query::sessions::Sessions>,
    pub admission: Arc<wattdb_query::execution::Admission>,
}

fn metrics_text(
    storage: &Storage,
    ingest: &IngestMetrics,
    rollups: &RollupMaintainer,
    sql: &SqlMetrics,
) -> String {
    let parts = storage.partitions();
    let mut out = String::new();
    let mut gauge = |name: &str, help: &str, value: u64| {
        let _ = writeln!(
            out,
            "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {value}"
        );
    };
    gauge(
        "wattdb_tables",
        "Number of tables.",
        storage.tables().len() as u64,
    );
    gauge(
        "wattdb_partitions",
        "Month partitions with data.",
        parts.len() as u64,
    );
    gauge(
        "wattdb_files",
        "Parquet files in the catalog.",
        parts.iter().map(|p| p.files as u64).sum(),
    );
    gauge(
        "wattdb_file_rows",
        "Rows in Parquet files.",
        parts.iter().map(|p| p.file_rows).sum(),
    );
    gauge(
        "wattdb_file_bytes",
        "Bytes of Parquet files.",
        parts.iter().map(|p| p.file_bytes).sum(),
    );
    gauge(
        "wattdb_buffered_rows",
        "Rows durable in the WAL, not yet in Parquet.",
        parts.iter().map(|p| p.buffered_rows as u64).sum(),
    );
    gauge(
        "wattdb_buffered_bytes",
        "Memory held by buffered rows.",
        parts.iter().map(|p| p.buffered_bytes as u64).sum(),
    );
    gauge(
        "wattdb_wal_queued_bytes",
        "Memory held by writes waiting for the WAL's group commit (part of the buffer budget).",
        storage.wal_queued_bytes() as u64,
    );
    gauge(
        "wattdb_rollup_pending_marks",
        "(series, bucket) rollup marks waiting to be recomputed.",
        rollups.pending_marks() as u64,
    );
    let counters = storage.metrics().snapshot().into_iter();
    for (name, help, kind, value) in counters
        .chain(ingest.snapshot())
        .chain(rollups.metrics().snapshot())
        .chain(sql.sessions.metrics())
        .chain(sql.admission.snapshot())
        .chain(wattdb_query::execution::planning_checks::snapshot())
    {
        let _ = writeln!(
            out,
            "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}"
        );
    }
    out
}

async fn handle(
    storage: Storage,
    ingest: Arc<IngestMetrics>,
    rollups: Arc<RollupMaintainer>,
    sql: SqlMetrics,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let (status, ctype, body) = match req.uri().path() {
        "/health" => (StatusCode::OK, "text/plain", "ok\n".to_string()),
        "/metrics" => (
            StatusCode::OK,
            "text/plain; version=0.0.4",
            metrics_text(&storage, &ingest, &rollups, &sql),
        ),
        _ => (
            StatusCode::NOT_FOUND,
            "text/plain",
            "not found\n".to_string(),
        ),
    };
    let resp = Response::builder()
        .status(status)
        .header("content-type", ctype)
        .body(Full::new(Bytes::from(body)))
        .unwrap_or_else(|_| Response::new(Full::new(Bytes::new())));
    Ok(resp)
}

pub async fn serve(
    listener: TcpListener,
    storage: Storage,
    ingest: Arc<IngestMetrics>,
    rollups: Arc<RollupMaintainer>,
    sql: SqlMetrics,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((stream, _)) = accepted else { continue };
                let storage = storage.clone();
                let ingest = ingest.clone();
                let rollups = rollups.clone();
                let sql = sql.clone();
                tokio::spawn(async move {
                    let svc = service_fn(move |req| {
                        handle(storage.clone(), ingest.clone(), rollups.clone(), sql.clone(), req)
                    });
                    let _ = http1::Builder::new().serve_connection(TokioIo::new(stream), svc).await;
                });
            }
            _ = shutdown.changed() => if *shutdown.borrow() { return },
        }
    }
}
