//! Archive scenario, run on the local folder and on S3: with `--archive-store`,
//! `run_retention` copies expired months to the archive before dropping them (rows that
//! were only buffered included), `system.archive` lists them, and
//! `restore_partition('<table>', 'YYYY-MM')` brings a month back with identical query
//! results, kept through later retention runs and a kill -9. Expected results are
//! computed here from the inserted rows.

use std::collections::BTreeMap;

use chrono::{Datelike, Months, TimeZone, Timelike, Utc};

use super::{Server, sqlstate};

/// Archived months of `a`: (month, rows, not restored).
async fn archive_listing(c: &tokio_postgres::Client) -> Vec<(String, i64, bool)> {
    c.query(
        "SELECT month, rows, restored_until IS NULL FROM system.archive \
         WHERE table_name = 'a' ORDER BY month",
        &[],
    )
    .await
    .unwrap()
    .iter()
    .map(|r| (r.get(0), r.get(1), r.get(2)))
    .collect()
}

/// Per meter of one month: (count, sum of v, first ts, last ts), in epoch seconds.
type Summary = BTreeMap<String, (i64, f64, i64, i64)>;

async fn summary(c: &tokio_postgres::Client, month: &str) -> Summary {
    let (y, m): (i32, u32) = (month[..4].parse().unwrap(), month[5..].parse().unwrap());
    let start = Utc.with_ymd_and_hms(y, m, 1, 0, 0, 0).unwrap();
    let end = start + Months::new(1);
    c.query(
        &format!(
            "SELECT pid, count(*), sum(v), CAST(extract(epoch FROM min(ts)) AS BIGINT), \
             CAST(extract(epoch FROM max(ts)) AS BIGINT) FROM a \
             WHERE ts >= to_timestamp({}) AND ts < to_timestamp({}) GROUP BY pid",
            start.timestamp(),
            end.timestamp()
        ),
        &[],
    )
    .await
    .unwrap()
    .iter()
    .map(|r| (r.get(0), (r.get(1), r.get(2), r.get(3), r.get(4))))
    .collect()
}

fn month_of(ts: i64) -> String {
    let t = Utc.timestamp_opt(ts, 0).unwrap();
    format!("{:04}-{:02}", t.year(), t.month())
}

/// Archive → restore round trip on `server` (not started, archive configured).
pub async fn archive_then_restore_round_trip(mut server: Server) {
    server.spawn();
    let c = server.client().await;
    c.batch_execute(
        "CREATE TABLE a (ts TIMESTAMPTZ NOT NULL, pid TEXT NOT NULL, v DOUBLE PRECISION, \
         PRIMARY KEY (pid, ts))",
    )
    .await
    .unwrap();
    // Eight months back from this one: three meters, hourly on the 10th; the first half
    // of each day persisted, the second half only buffered.
    let now = Utc::now();
    let this_month = Utc
        .with_ymd_and_hms(now.year(), now.month(), 1, 0, 0, 0)
        .unwrap();
    let mut rows: Vec<(String, i64, f64)> = Vec::new();
    for k in 0..8u32 {
        let day = this_month - Months::new(k) + chrono::Duration::days(9);
        for h in 0..24i64 {
            for p in 0..3 {
                let ts = (day + chrono::Duration::hours(h)).timestamp();
                rows.push((format!("m{p}"), ts, f64::from(k * 100 + p) + h as f64 / 4.0));
            }
        }
    }
    let insert = |rows: &[&(String, i64, f64)]| {
        let values: Vec<String> = rows
            .iter()
            .map(|(p, ts, v)| format!("(to_timestamp({ts}), '{p}', {v})"))
            .collect();
        format!("INSERT INTO a VALUES {}", values.join(", "))
    };
    let (first, second): (Vec<_>, Vec<_>) = rows
        .iter()
        .partition(|(_, ts, _)| Utc.timestamp_opt(*ts, 0).unwrap().hour() < 12);
    c.batch_execute(&insert(&first)).await.unwrap();
    c.batch_execute("SELECT flush()").await.unwrap();
    c.batch_execute(&insert(&second)).await.unwrap();

    // What each month's summary must be, from the rows themselves.
    let mut expected: BTreeMap<String, Summary> = BTreeMap::new();
    for (p, ts, v) in &rows {
        let e = expected
            .entry(month_of(*ts))
            .or_default()
            .entry(p.clone())
            .or_insert((0, 0.0, i64::MAX, i64::MIN));
        e.0 += 1;
        e.1 += v;
        e.2 = e.2.min(*ts);
        e.3 = e.3.max(*ts);
    }
    let close = |a: &Summary, b: &Summary| {
        a.len() == b.len()
            && a.iter().zip(b).all(|((pa, x), (pb, y))| {
                pa == pb && x.0 == y.0 && (x.1 - y.1).abs() < 1e-6 && x.2 == y.2 && x.3 == y.3
            })
    };
    let first_kept = month_of((now - Months::new(4)).timestamp());
    let expired: Vec<String> = expected
        .keys()
        .filter(|m| **m < first_kept)
        .cloned()
        .collect();
    assert!(expired.len() >= 3, "{expired:?}");
    let probe = expired[1].clone();
    let before = summary(&c, &probe).await;
    assert!(close(&before, &expected[&probe]), "{before:?}");

    c.batch_execute("SELECT set_retention('a', '4 months')")
        .await
        .unwrap();
    let msg = c.simple_query("SELECT run_retention()").await.unwrap();
    assert!(
        format!("{msg:?}").contains(&format!("{} month(s) archived first", expired.len())),
        "{msg:?}"
    );
    assert!(summary(&c, &probe).await.is_empty(), "{probe} dropped");

    // system.archive lists every expired month with its rows.
    let listed = archive_listing(&c).await;
    let want: Vec<(String, i64, bool)> = expired
        .iter()
        .map(|m| (m.clone(), expected[m].values().map(|s| s.0).sum(), true))
        .collect();
    assert_eq!(listed, want);
    // The archive holds their files and manifests; the store no longer does.
    let archived = server.archive_paths().await;
    for m in &expired {
        let dir = format!("a/month={m}/");
        assert!(
            archived.contains(&format!("{dir}_partition.json")),
            "{archived:?}"
        );
        assert!(
            archived
                .iter()
                .any(|p| p.starts_with(&dir) && p.ends_with(".parquet")),
            "{archived:?}"
        );
        let stored = server.object_paths().await;
        assert!(!stored.iter().any(|p| p.starts_with(&dir)), "{stored:?}");
    }

    // Restore one month: identical query results.
    let msg = c
        .simple_query(&format!("SELECT restore_partition('a', '{probe}')"))
        .await
        .unwrap();
    assert!(format!("{msg:?}").contains("restored a"), "{msg:?}");
    assert_eq!(summary(&c, &probe).await, before);
    let restored: bool = c
        .query_one(
            &format!(
                "SELECT restored_until > now() FROM system.archive \
                 WHERE table_name = 'a' AND month = '{probe}'"
            ),
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(restored);
    let files: i64 = c
        .query_one(
            &format!(
                "SELECT count(*) FROM system.files WHERE table_name = 'a' AND month = '{probe}'"
            ),
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(files >= 1);

    // Kept by the next retention run, and across a kill -9.
    c.batch_execute("SELECT run_retention()").await.unwrap();
    assert_eq!(summary(&c, &probe).await, before);
    server.kill9();
    server.spawn();
    let c = server.client().await;
    assert_eq!(summary(&c, &probe).await, before);
    for m in expired.iter().filter(|m| **m != probe) {
        assert!(summary(&c, m).await.is_empty(), "{m} stays archived");
    }

    // A node recovered from the bucket alone knows the archive and the restore.
    let listed_now = archive_listing(&c).await;
    server.stop();
    let mut node2 = server.recovered_node();
    node2.spawn();
    let c2 = node2.client().await;
    let listed_there = archive_listing(&c2).await;
    assert_eq!(listed_there, listed_now);
    assert_eq!(summary(&c2, &probe).await, before);
    drop(c2);
    node2.stop();
    server.spawn();
    let c = server.client().await;

    // Mistakes get clear errors.
    for (sql, code) in [
        (
            format!("SELECT restore_partition('a', '{first_kept}')"),
            "42704",
        ),
        (
            "SELECT restore_partition('nope', '2020-01')".to_string(),
            "42P01",
        ),
        (
            "SELECT restore_partition('a', '2020-13')".to_string(),
            "22023",
        ),
        (
            format!("SELECT restore_partition('a', '{probe}', 'none')"),
            "22023",
        ),
        ("SELECT restore_partition('a')".to_string(), "42883"),
    ] {
        let err = c.batch_execute(&sql).await.unwrap_err();
        assert_eq!(sqlstate(&err), code, "{sql}: {err}");
    }
}

/// Without an archive there is nothing to restore: a clear error.
pub async fn restore_without_archive_is_refused(mut server: Server) {
    server.spawn();
    let c = server.client().await;
    c.batch_execute("CREATE TABLE a (ts TIMESTAMPTZ NOT NULL, pid TEXT NOT NULL, v DOUBLE PRECISION, PRIMARY KEY (pid, ts))")
        .await
        .unwrap();
    let err = c
        .batch_execute("SELECT restore_partition('a', '2020-01')")
        .await
        .unwrap_err();
    assert_eq!(sqlstate(&err), "55000", "{err}");
    assert!(err.to_string().contains("archive") || format!("{err:?}").contains("archive"));
}
