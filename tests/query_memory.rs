//! The query memory budget (`--query-memory`): a sort bigger than the budget spills to the
//! data directory and returns the right answer; a query that cannot spill and needs more
//! than the budget fails with SQLSTATE 53200, and the server goes on serving queries and
//! writes.

mod common;

use common::{Server, sqlstate};

/// Rows in the test table; each carries a 320-byte note, so the notes alone (~96 MB) are
/// bigger than the budget.
const ROWS: i64 = 300_000;
const BUDGET: &str = "96MiB";

fn note(i: i64) -> String {
    format!("{i:0320}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_budget_queries_spill_or_fail_with_53200_and_the_server_goes_on() {
    let mut server = Server::new();
    server.extra_args = vec!["--query-memory".into(), BUDGET.into()];
    let server = server.start();
    let c = server.client().await;
    c.batch_execute(
        "CREATE TABLE m (ts TIMESTAMPTZ NOT NULL, pid TEXT NOT NULL, v DOUBLE PRECISION, \
         note TEXT, PRIMARY KEY (pid, ts))",
    )
    .await
    .unwrap();
    // v = value * 7 mod ROWS: a permutation of 0..ROWS (7 and ROWS are coprime), so the
    // sorted order is known without asking the server.
    let n = c
        .execute(
            &format!(
                "INSERT INTO m (ts, pid, v, note) SELECT \
                 to_timestamp_micros(1790000000000000 + value * 60000000), \
                 concat('p', CAST(value % 100 AS VARCHAR)), \
                 CAST((value * 7) % {ROWS} AS DOUBLE), \
                 lpad(CAST(value AS VARCHAR), 320, '0') \
                 FROM generate_series(0, {}) AS g(value)",
                ROWS - 1
            ),
            &[],
        )
        .await
        .unwrap();
    assert_eq!(n, ROWS as u64);
    c.batch_execute("SELECT flush()").await.unwrap();

    // A sort of every note (~96 MB of strings) spills...
    let plan = c
        .query("EXPLAIN ANALYZE SELECT v, note FROM m ORDER BY v DESC", &[])
        .await
        .unwrap();
    let shown: String = plan
        .iter()
        .map(|r| r.get::<_, String>(1))
        .collect::<Vec<_>>()
        .join("\n");
    let spills: u64 = shown
        .split("spill_count=")
        .skip(1)
        .filter_map(|rest| {
            let digits: String = rest.chars().take_while(|c| c.is_ascii_digit()).collect();
            digits.parse::<u64>().ok()
        })
        .sum();
    assert!(spills > 0, "the sort should have spilled:\n{shown}");
    // ...and still answers exactly.
    let rows = c
        .query("SELECT v, note FROM m ORDER BY v DESC", &[])
        .await
        .unwrap();
    assert_eq!(rows.len(), ROWS as usize);
    for (k, r) in rows.iter().enumerate().step_by(997) {
        let v: f64 = r.get(0);
        let want_v = (ROWS - 1 - k as i64) as f64;
        assert_eq!(v, want_v);
        // value with (value * 7) % ROWS == v: value = v * inverse(7) mod ROWS.
        let value = (0..7)
            .map(|j| (want_v as i64 + j * ROWS) / 7)
            .find(|x| (x * 7) % ROWS == want_v as i64)
            .unwrap();
        let got: &str = r.get(1);
        assert_eq!(got, note(value));
    }

    // A hash join's build side cannot spill: over the budget it fails with 53200.
    let err = c
        .query(
            "SELECT count(*) FROM m a JOIN m b ON a.note = b.note AND a.pid = b.pid",
            &[],
        )
        .await
        .unwrap_err();
    assert_eq!(sqlstate(&err), "53200", "{err:?}");

    // The same connection and the server go on: a query, a write, the write read back.
    let row = c
        .query_one("SELECT count(*), sum(v) FROM m", &[])
        .await
        .unwrap();
    let (count, sum): (i64, f64) = (row.get(0), row.get(1));
    assert_eq!(count, ROWS);
    assert_eq!(sum, (ROWS * (ROWS - 1) / 2) as f64);
    c.execute(
        "INSERT INTO m (ts, pid, v) VALUES ('2030-01-01T00:00:00Z', 'after', 1.5)",
        &[],
    )
    .await
    .unwrap();
    let row = c
        .query_one("SELECT v FROM m WHERE pid = 'after'", &[])
        .await
        .unwrap();
    assert_eq!(row.get::<_, f64>(0), 1.5);
    // Spill files are gone once the queries are done.
    let spill = server.data_path().join("spill");
    let mut leftovers = Vec::new();
    for e in walk(&spill) {
        if e.is_file() {
            leftovers.push(e);
        }
    }
    assert!(leftovers.is_empty(), "spill files left: {leftovers:?}");
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                out.extend(walk(&p));
            } else {
                out.push(p);
            }
        }
    }
    out
}

/// The last-write-wins merge's own memory (each input's batches, the readers' row
/// groups) is charged to the budget too: merging two overlapping files of wide rows
/// under a small budget fails with 53200 instead of growing past it, while a merge of
/// narrow columns fits, and the server goes on ingesting.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_merge_over_budget_fails_with_53200_and_a_narrow_one_fits() {
    const ROWS: i64 = 60_000;
    let mut server = Server::new();
    server.extra_args = vec!["--query-memory".into(), "6MiB".into()];
    let server = server.start();
    let c = server.client().await;
    c.batch_execute(
        "CREATE TABLE m (ts TIMESTAMPTZ NOT NULL, pid TEXT NOT NULL, v DOUBLE PRECISION, \
         note TEXT, PRIMARY KEY (pid, ts))",
    )
    .await
    .unwrap();
    // The same keys twice, each version flushed to its own file: the files overlap.
    for version in 0..2 {
        c.execute(
            &format!(
                "INSERT INTO m (ts, pid, v, note) SELECT \
                 to_timestamp_micros(1790000000000000 + value * 1000000), \
                 concat('p', CAST(value % 10 AS VARCHAR)), CAST({version} AS DOUBLE), \
                 concat(CAST({version} AS VARCHAR), lpad(CAST(value AS VARCHAR), 319, 'x')) \
                 FROM generate_series(0, {}) AS g(value)",
                ROWS - 1
            ),
            &[],
        )
        .await
        .unwrap();
        c.batch_execute("SELECT flush()").await.unwrap();
    }
    let files: i64 = c
        .query_one(
            "SELECT count(*) FROM system.files WHERE table_name = 'm'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(files, 2);

    // Wide rows: batches of 8,192 notes (~2.7 MB each, prefetched) from both files.
    let err = c.query("SELECT max(note) FROM m", &[]).await.unwrap_err();
    assert_eq!(sqlstate(&err), "53200", "{err:?}");

    // Narrow: keys and one float; the newer version wins everywhere.
    let row = c
        .query_one("SELECT count(*), min(v), max(v) FROM m", &[])
        .await
        .unwrap();
    assert_eq!(row.get::<_, i64>(0), ROWS);
    assert_eq!((row.get::<_, f64>(1), row.get::<_, f64>(2)), (1.0, 1.0));

    // Ingest and reads of what was written go on.
    c.execute(
        "INSERT INTO m (ts, pid, v) VALUES ('2030-01-01T00:00:00Z', 'after', 2.5)",
        &[],
    )
    .await
    .unwrap();
    let row = c
        .query_one("SELECT v FROM m WHERE pid = 'after'", &[])
        .await
        .unwrap();
    assert_eq!(row.get::<_, f64>(0), 2.5);
}
