//! The catalog statements clients send (`tests/clients/catalog_corpus.sql`: psql,
//! pgjdbc, SQLAlchemy, psycopg, Grafana, DBeaver, Metabase) all run, over the simple and
//! the extended protocol; and Grafana's time-series queries, as its macros expand them,
//! return the buckets computed here from the readings written.

mod common;

use std::collections::BTreeMap;

use common::Server;

/// `(client, statement)` entries of the corpus.
fn corpus() -> Vec<(String, String)> {
    let text = include_str!("clients/catalog_corpus.sql");
    text.split("\n\n")
        .filter_map(|block| {
            let block = block.trim();
            let (header, statement) = block.split_once('\n')?;
            let client = header.strip_prefix("-- ")?;
            if client.contains(' ') {
                return None; // the file's own comments
            }
            Some((
                client.to_string(),
                statement.trim().trim_end_matches(';').to_string(),
            ))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_statement_of_the_catalog_corpus_runs() {
    let server = Server::new().start();
    let c = server.client().await;
    c.batch_execute(
        "CREATE TABLE corpus_t (ts TIMESTAMPTZ NOT NULL, pid TEXT NOT NULL, \
         p DOUBLE PRECISION, note TEXT, PRIMARY KEY (pid, ts))",
    )
    .await
    .unwrap();
    let oid: u32 = c
        .query_one(
            "SELECT oid FROM pg_catalog.pg_class WHERE relname = 'corpus_t'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    let entries = corpus();
    assert!(
        entries.len() >= 60,
        "corpus read: {} entries",
        entries.len()
    );
    let mut clients: BTreeMap<String, usize> = BTreeMap::new();
    let mut failures = Vec::new();
    for (client, statement) in &entries {
        *clients.entry(client.clone()).or_default() += 1;
        let sql = statement
            .replace("{table_oid}", &oid.to_string())
            .replace("{table}", "corpus_t");
        if let Err(e) = c.simple_query(&sql).await {
            failures.push(format!("{client} (simple): {e:?}\n  {sql}"));
        }
        // The extended protocol: parsed, described and executed without parameters.
        if let Err(e) = c.query(&sql, &[]).await {
            failures.push(format!("{client} (extended): {e:?}\n  {sql}"));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} statements failed:\n{}",
        failures.len(),
        entries.len(),
        failures.join("\n")
    );
    for client in [
        "psql",
        "pgjdbc",
        "sqlalchemy",
        "psycopg3",
        "grafana",
        "dbeaver",
        "metabase",
    ] {
        assert!(
            clients.contains_key(client),
            "no {client} entries: {clients:?}"
        );
    }
}

/// 2026-03-01 00:00:00 UTC.
const T0: i64 = 1_772_323_200;

/// The reading of meter `m` at minute `i`.
fn power(m: usize, i: i64) -> f64 {
    100.0 * m as f64 + (i % 37) as f64 * 0.5
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grafana_time_series_queries_return_the_buckets() {
    let server = Server::new().start();
    let c = server.client().await;
    c.batch_execute(
        "CREATE TABLE g (ts TIMESTAMPTZ NOT NULL, pid TEXT NOT NULL, p DOUBLE PRECISION, \
         epoch BIGINT, PRIMARY KEY (pid, ts))",
    )
    .await
    .unwrap();
    // Two meters, one reading a minute for six hours.
    let mut values = Vec::new();
    for m in 0..2 {
        for i in 0..360i64 {
            let t = T0 + i * 60;
            values.push(format!("(to_timestamp({t}), 'm{m}', {}, {t})", power(m, i)));
        }
    }
    for chunk in values.chunks(200) {
        c.batch_execute(&format!("INSERT INTO g VALUES {}", chunk.join(", ")))
            .await
            .unwrap();
    }
    // The dashboard's range: 01:00 to 05:00 (BETWEEN: both ends included).
    let (from, to) = (T0 + 3600, T0 + 5 * 3600);
    let mut want: BTreeMap<(i64, String), (f64, usize)> = BTreeMap::new();
    for m in 0..2 {
        for i in 0..360i64 {
            let t = T0 + i * 60;
            if t < from || t > to {
                continue;
            }
            let e = want.entry((t / 900 * 900, format!("m{m}"))).or_default();
            e.0 += power(m, i);
            e.1 += 1;
        }
    }

    // $__timeGroupAlias(ts, '15m') and $__timeFilter(ts).
    let rows = c
        .query(
            "SELECT floor(extract(epoch from ts)/900)*900 AS \"time\", pid AS metric, avg(p) AS p \
             FROM g WHERE ts BETWEEN '2026-03-01T01:00:00Z' AND '2026-03-01T05:00:00Z' \
             GROUP BY 1, 2 ORDER BY 1, 2",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(rows.len(), want.len());
    for (row, ((bucket, pid), (sum, n))) in rows.iter().zip(&want) {
        let time: f64 = row.get(0);
        assert_eq!(time as i64, *bucket);
        assert_eq!(row.get::<_, String>(1), *pid);
        let avg: f64 = row.get(2);
        assert!((avg - sum / *n as f64).abs() < 1e-9, "{pid} at {bucket}");
    }

    // $__unixEpochGroupAlias(epoch, '15m') and $__unixEpochFilter(epoch).
    let rows = c
        .query(
            &format!(
                "SELECT floor(epoch/900)*900 AS \"time\", pid, sum(p) AS p FROM g \
                 WHERE epoch >= {from} AND epoch <= {to} GROUP BY 1, 2 ORDER BY 1, 2"
            ),
            &[],
        )
        .await
        .unwrap();
    assert_eq!(rows.len(), want.len());
    for (row, ((bucket, pid), (sum, _))) in rows.iter().zip(&want) {
        // floor() of a bigint is double precision, as in PostgreSQL.
        let time: f64 = row.get(0);
        assert_eq!(time as i64, *bucket);
        assert_eq!(row.get::<_, String>(1), *pid);
        let total: f64 = row.get(2);
        assert!((total - sum).abs() < 1e-9, "{pid} at {bucket}");
    }

    // $__timeEpoch(ts) over raw rows, one meter.
    let rows = c
        .query(
            "SELECT extract(epoch from ts) AS \"time\", p FROM g \
             WHERE ts BETWEEN '2026-03-01T01:00:00Z' AND '2026-03-01T05:00:00Z' AND pid = 'm1' \
             ORDER BY 1",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(rows.len(), 241);
    for (k, row) in rows.iter().enumerate() {
        let i = 60 + k as i64;
        assert_eq!(row.get::<_, f64>(0) as i64, T0 + i * 60);
        assert_eq!(row.get::<_, f64>(1), power(1, i));
    }
}
