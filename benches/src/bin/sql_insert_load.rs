//! Bulk parameterised INSERT load: N concurrent connections write a synthetic meter table
//! (10 float fields per row) through prepared multi-row INSERT statements, then the data
//! is flushed and the bytes on disk per value are read from `system.tables`. With
//! `--postgres` the same load runs against PostgreSQL (side-by-side runs).
//!
//! ```text
//! cargo run --release -p wattdb-benches --bin sql_insert_load -- --rows 1000000
//! ```

use std::time::Instant;

use anyhow::{Context, Result};
use clap::Parser;
use tokio_postgres::NoTls;
use tokio_postgres::types::ToSql;
use wattdb_benches::meter_data::{FIELDS, reading};

#[derive(Parser, Debug)]
struct Args {
    /// libpq-style connection string of a running wattdb.
    #[arg(
        long,
        default_value = "host=127.0.0.1 port=5433 user=wattdb dbname=wattdb"
    )]
    conn: String,
    /// Total rows to write.
    #[arg(long, default_value_t = 1_000_000)]
    rows: usize,
    /// Simulated meters (series).
    #[arg(long, default_value_t = 1000)]
    meters: usize,
    /// Rows per INSERT statement.
    #[arg(long, default_value_t = 1000)]
    batch: usize,
    /// Concurrent connections.
    #[arg(long, default_value_t = 4)]
    connections: usize,
    /// Table to (re)create.
    #[arg(long, default_value = "bench_meter")]
    table: String,
    /// The server is PostgreSQL (for the side-by-side run): skip wattdb's `flush()` and
    /// `system.tables`, report `pg_total_relation_size` instead.
    #[arg(long)]
    postgres: bool,
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    let (admin, conn) = tokio_postgres::connect(&args.conn, NoTls)
        .await
        .context("connect")?;
    tokio::spawn(conn);
    admin
        .batch_execute(&format!("DROP TABLE IF EXISTS {}", args.table))
        .await?;
    let cols: String = FIELDS
        .iter()
        .map(|f| format!(", {f} DOUBLE PRECISION"))
        .collect();
    admin
        .batch_execute(&format!(
            "CREATE TABLE {} (ts TIMESTAMPTZ NOT NULL, pid TEXT NOT NULL{cols}, PRIMARY KEY (pid, ts))",
            args.table
        ))
        .await?;

    let per_row = 2 + FIELDS.len();
    let values: Vec<String> = (0..args.batch)
        .map(|r| {
            let ps: Vec<String> = (0..per_row)
                .map(|c| format!("${}", r * per_row + c + 1))
                .collect();
            format!("({})", ps.join(", "))
        })
        .collect();
    let sql = format!("INSERT INTO {} VALUES {}", args.table, values.join(", "));

    let start = Instant::now();
    let mut tasks = Vec::new();
    let batches = args.rows.div_ceil(args.batch);
    for w in 0..args.connections {
        let (client, conn) = tokio_postgres::connect(&args.conn, NoTls).await?;
        tokio::spawn(conn);
        let sql = sql.clone();
        let (meters, batch, rows, conns) = (args.meters, args.batch, args.rows, args.connections);
        tasks.push(tokio::spawn(async move {
            let stmt = client.prepare(&sql).await?;
            let mut written = 0usize;
            for b in (w..batches).step_by(conns) {
                let first = b * batch;
                if first + batch > rows {
                    break; // the prepared statement has exactly `batch` rows
                }
                let readings: Vec<_> = (first..first + batch)
                    .map(|i| {
                        let r = reading(i, meters);
                        let ts = std::time::UNIX_EPOCH
                            + std::time::Duration::from_millis(r.ts_ms as u64);
                        (ts, r.pid, r.values)
                    })
                    .collect();
                let mut params: Vec<&(dyn ToSql + Sync)> = Vec::with_capacity(batch * per_row);
                for (ts, pid, f) in &readings {
                    params.push(ts);
                    params.push(pid);
                    for v in f {
                        params.push(v);
                    }
                }
                written += client.execute(&stmt, &params).await? as usize;
            }
            Ok::<usize, anyhow::Error>(written)
        }));
    }
    let mut written = 0;
    for t in tasks {
        written += t.await??;
    }
    let secs = start.elapsed().as_secs_f64();
    println!(
        "inserted {written} rows ({} values) in {secs:.2}s: {:.0} rows/s, {:.0} values/s",
        written * FIELDS.len(),
        written as f64 / secs,
        (written * FIELDS.len()) as f64 / secs
    );

    if args.postgres {
        let bytes: i64 = admin
            .query_one(
                "SELECT pg_total_relation_size($1::text::regclass)",
                &[&args.table],
            )
            .await?
            .get(0);
        println!("on disk (table + index): {bytes} bytes");
    } else {
        let t = Instant::now();
        admin.batch_execute("SELECT flush()").await?;
        println!("flush took {:.2}s", t.elapsed().as_secs_f64());
        let row = admin
            .query_one(
                "SELECT rows_in_files, bytes_in_files, files FROM system.tables WHERE table_name = $1",
                &[&args.table],
            )
            .await?;
        let (rows, bytes, files): (i64, i64, i64) = (row.get(0), row.get(1), row.get(2));
        let values = rows as f64 * FIELDS.len() as f64;
        println!(
            "on disk: {rows} rows in {files} file(s), {bytes} bytes = {:.2} bytes/value ({:.2} bytes/row, ts + tag included)",
            bytes as f64 / values,
            bytes as f64 / rows as f64
        );
    }
    let t = Instant::now();
    let n: i64 = admin
        .query_one(&format!("SELECT count(*) FROM {}", args.table), &[])
        .await?
        .get(0);
    println!("count(*) = {n} in {:.3}s", t.elapsed().as_secs_f64());
    Ok(())
}
