//! The last-value cache over SQL: `last_values('<table>')` and the `DISTINCT ON (tags) …
//! ORDER BY tags, ts DESC` it serves give the newest row of every series — computed here
//! independently — across persisted and buffered rows, overwrites, late (older) rows,
//! writes after the cache was built, and a kill -9 (the cache is rebuilt from storage).

mod common;

use std::collections::BTreeMap;

use common::Server;

/// 2026-10-01T00:00:00Z in seconds.
const OCT: i64 = 1_790_812_800;

fn ts(secs: i64) -> String {
    let t = chrono::DateTime::from_timestamp(secs, 0).unwrap();
    t.format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

async fn insert(
    c: &tokio_postgres::Client,
    want: &mut BTreeMap<(String, String), (i64, f64)>,
    rows: &[(&str, &str, i64, f64)],
) {
    let values: Vec<String> = rows
        .iter()
        .map(|(site, pid, t, v)| format!("('{}', '{site}', '{pid}', {v})", ts(*t)))
        .collect();
    c.batch_execute(&format!(
        "INSERT INTO m (ts, site, pid, v) VALUES {}",
        values.join(", ")
    ))
    .await
    .unwrap();
    for (site, pid, t, v) in rows {
        let key = (site.to_string(), pid.to_string());
        match want.get(&key) {
            Some((old, _)) if *old > *t => {}
            _ => {
                want.insert(key, (*t, *v));
            }
        }
    }
}

async fn check(c: &tokio_postgres::Client, want: &BTreeMap<(String, String), (i64, f64)>) {
    let expected: Vec<(String, String, String, f64)> = want
        .iter()
        .map(|((s, p), (t, v))| (s.clone(), p.clone(), ts(*t), *v))
        .collect();
    for sql in [
        "SELECT site, pid, ts, v FROM last_values('m') ORDER BY site, pid",
        "SELECT DISTINCT ON (site, pid) site, pid, ts, v FROM m ORDER BY site, pid, ts DESC",
        "SELECT DISTINCT ON (pid, site) site, pid, ts, v FROM m ORDER BY pid, site, ts DESC",
    ] {
        let rows = c.query(sql, &[]).await.unwrap();
        let mut got: Vec<(String, String, String, f64)> = rows
            .iter()
            .map(|r| {
                let t: std::time::SystemTime = r.get(2);
                let secs = t.duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64;
                (r.get(0), r.get(1), ts(secs), r.get(3))
            })
            .collect();
        // In the order the query asks for.
        let by_pid_first = sql.contains("ORDER BY pid, site");
        let key = |r: &(String, String, String, f64)| {
            if by_pid_first {
                (r.1.clone(), r.0.clone())
            } else {
                (r.0.clone(), r.1.clone())
            }
        };
        assert!(
            got.windows(2).all(|w| key(&w[0]) < key(&w[1])),
            "{sql}: order"
        );
        got.sort_by(|a, b| (&a.0, &a.1).cmp(&(&b.0, &b.1)));
        assert_eq!(got, expected, "{sql}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn newest_row_per_series_through_flushes_overwrites_late_rows_and_a_crash() {
    let mut server = Server::new().start();
    let c = server.client().await;
    c.batch_execute(
        "CREATE TABLE m (ts TIMESTAMPTZ NOT NULL, site TEXT NOT NULL, pid TEXT NOT NULL, \
         v DOUBLE PRECISION, PRIMARY KEY (site, pid, ts))",
    )
    .await
    .unwrap();
    let mut want = BTreeMap::new();
    // Two months of rows for six series, persisted in two files.
    let mut rows = Vec::new();
    for k in 0..60i64 {
        let site = ["s1", "s2"][(k % 2) as usize];
        let pid = ["a", "b", "c"][(k % 3) as usize];
        rows.push((site, pid, OCT + k * 86_400 / 2, k as f64));
    }
    insert(&c, &mut want, &rows[..30]).await;
    c.batch_execute("SELECT flush()").await.unwrap();
    insert(&c, &mut want, &rows[30..]).await;
    c.batch_execute("SELECT flush()").await.unwrap();
    check(&c, &want).await; // builds the cache from the files

    // After the cache exists: a new newest row, an overwrite of a newest row, a late row
    // (older than the newest: must not replace it), a new series — buffered only.
    let newest = want[&("s1".to_string(), "a".to_string())].0;
    insert(
        &c,
        &mut want,
        &[
            ("s2", "b", OCT + 40 * 86_400, 100.0),
            ("s1", "a", newest, 101.0),
            ("s1", "c", OCT, 102.0),
            ("s3", "z", OCT + 5, 103.0),
        ],
    )
    .await;
    check(&c, &want).await;

    // The DISTINCT ON query is served from the cache: no Parquet scan, no merge.
    let plan = c
        .query(
            "EXPLAIN SELECT DISTINCT ON (site, pid) site, pid, ts, v FROM m ORDER BY site, pid, ts DESC",
            &[],
        )
        .await
        .unwrap();
    let shown: Vec<String> = plan.iter().map(|r| r.get::<_, String>(1)).collect();
    let shown = shown.join("\n");
    assert!(
        !shown.contains("parquet") && !shown.contains("LastWriteWins"),
        "{shown}"
    );
    // With a time filter it is not (the newest row in a window is another question).
    let rows = c
        .query(
            &format!(
                "SELECT DISTINCT ON (site, pid) site, pid, ts FROM m WHERE ts < '{}' ORDER BY site, pid, ts DESC",
                ts(OCT + 86_400)
            ),
            &[],
        )
        .await
        .unwrap();
    for r in &rows {
        let t: std::time::SystemTime = r.get(2);
        let secs = t.duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64;
        assert!(secs < OCT + 86_400);
    }

    // kill -9: the cache is rebuilt from the files and the replayed WAL.
    server.kill9();
    server.spawn();
    let c = server.client().await;
    check(&c, &want).await;
    insert(&c, &mut want, &[("s3", "z", OCT + 50 * 86_400, 104.0)]).await;
    check(&c, &want).await;

    // Errors: an unknown table, a bad argument.
    let err = c
        .query("SELECT * FROM last_values('nope')", &[])
        .await
        .unwrap_err();
    assert_eq!(common::sqlstate(&err), "42P01", "{err:?}");
    let err = c
        .query("SELECT * FROM last_values(1)", &[])
        .await
        .unwrap_err();
    assert!(format!("{err:?}").contains("takes one argument"), "{err:?}");
}
