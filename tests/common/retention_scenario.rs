//! Retention scenario, run on the local folder and on S3: `set_retention` + `run_retention`
//! drop whole expired months (catalog, files, buffered rows — also after a kill -9 that
//! would replay them from the WAL), keep every month with an unexpired instant, refuse
//! writes to expired months (SQL error; MQTT items to `rejected`) until the retention is
//! cleared, and leave rollups of the dropped months alone.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use chrono::{Datelike, Months, TimeZone, Utc};

use super::Server;
use super::mqtt::publish_qos1;

async fn read(c: &tokio_postgres::Client) -> BTreeSet<i64> {
    c.query("SELECT CAST(extract(epoch FROM ts) AS BIGINT) FROM r", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get::<_, i64>(0))
        .collect()
}

/// `r`'s retention and expired_before as `system.tables` shows them.
async fn retention_of_r(c: &tokio_postgres::Client) -> (String, String) {
    let row = c
        .query_one(
            "SELECT retention, expired_before FROM system.tables WHERE table_name = 'r'",
            &[],
        )
        .await
        .unwrap();
    (row.get(0), row.get(1))
}

/// `YYYY-MM` of a timestamp.
fn month_of(ts: chrono::DateTime<Utc>) -> String {
    format!("{:04}-{:02}", ts.year(), ts.month())
}

/// Retention end to end on `server` (not started yet); see `tests/retention.rs`.
pub async fn retention_drops_whole_expired_months(mut server: Server) {
    server.spawn();
    let c = server.client().await;
    c.batch_execute(
        "CREATE TABLE r (ts TIMESTAMPTZ NOT NULL, pid TEXT NOT NULL, v DOUBLE PRECISION, \
         PRIMARY KEY (pid, ts))",
    )
    .await
    .unwrap();
    // One reading on the 15th of each of the last 10 months (this one included), and one
    // in the last minute of each month: months straddle the cutoff.
    let now = Utc::now();
    let this_month = Utc
        .with_ymd_and_hms(now.year(), now.month(), 1, 0, 0, 0)
        .unwrap();
    let mut rows = Vec::new();
    for k in 0..10u32 {
        let start = this_month - Months::new(k);
        rows.push(start + chrono::Duration::days(14));
        if k > 0 {
            rows.push(start + Months::new(1) - chrono::Duration::minutes(1));
        }
    }
    let insert = |ts: &[chrono::DateTime<Utc>], v: f64| {
        let values: Vec<String> = ts
            .iter()
            .map(|t| format!("(to_timestamp({}), 'p1', {v})", t.timestamp()))
            .collect();
        format!("INSERT INTO r VALUES {}", values.join(", "))
    };
    // Half persisted, half only in the buffer (and the WAL).
    let (older, newer): (Vec<_>, Vec<_>) = rows.iter().partition(|t| t.day() == 15);
    c.batch_execute(&insert(&older, 1.0)).await.unwrap();
    c.batch_execute("SELECT flush()").await.unwrap();
    c.batch_execute(&insert(&newer, 2.0)).await.unwrap();

    // Rollups first catch up with everything.
    let days: BTreeSet<String> = rows.iter().map(|t| t.format("%F").to_string()).collect();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let n: i64 = c
            .query_one("SELECT count(*) FROM r_1d", &[])
            .await
            .map(|r| r.get(0))
            .unwrap_or(0);
        if n == days.len() as i64 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "rollups not ready; log:\n{}",
            server.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Keep 4 months: a month goes only if it ends at or before now - 4 months.
    let cutoff = now - Months::new(4);
    let first_kept = month_of(cutoff);
    let msg = c
        .simple_query("SELECT set_retention('r', '4 months')")
        .await
        .unwrap();
    assert!(format!("{msg:?}").contains("4 months"), "{msg:?}");
    let msg = c.simple_query("SELECT run_retention()").await.unwrap();
    assert!(format!("{msg:?}").contains("dropped"), "{msg:?}");

    let kept: BTreeSet<i64> = rows
        .iter()
        .filter(|t| month_of(**t) >= first_kept)
        .map(|t| t.timestamp())
        .collect();
    assert!(kept.len() >= 8 && kept.len() < rows.len(), "{kept:?}");
    assert_eq!(read(&c).await, kept);
    let months_with_files: Vec<String> = c
        .query("SELECT month FROM system.files WHERE table_name = 'r'", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert!(
        months_with_files.iter().all(|m| *m >= first_kept),
        "{months_with_files:?} (first kept {first_kept})"
    );
    let paths = server.object_paths().await;
    assert!(
        paths
            .iter()
            .any(|p| p.starts_with(&format!("r/month={first_kept}/"))),
        "kept months keep their files: {paths:?}"
    );
    for path in paths {
        if let Some(month) = path.strip_prefix("r/month=").and_then(|p| p.get(..7)) {
            assert!(
                month >= first_kept.as_str(),
                "{path} of an expired month is still stored"
            );
        }
    }
    assert_eq!(
        retention_of_r(&c).await,
        ("4 months".to_string(), first_kept.clone())
    );
    let rollup_retention: Vec<(String, String)> = c
        .query(
            "SELECT table_name, retention FROM system.tables WHERE kind = 'rollup' \
             ORDER BY table_name",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert_eq!(
        rollup_retention,
        vec![
            ("r_15m".to_string(), "3 years".to_string()),
            ("r_1d".to_string(), "none".to_string())
        ]
    );

    // Writes to an expired month are refused: SQL with an error...
    let expired_ts = rows.iter().min().unwrap().timestamp();
    let err = c
        .batch_execute(&format!(
            "INSERT INTO r VALUES (to_timestamp({expired_ts}), 'p2', 9)"
        ))
        .await
        .unwrap_err();
    assert_eq!(super::sqlstate(&err), "22023", "{err}");
    let message = err.as_db_error().map(|e| e.message().to_string());
    assert!(
        message.as_deref().is_some_and(|m| m.contains("expired")),
        "{message:?}"
    );
    // ...MQTT item by item into `rejected`, while the good item is stored.
    let payload = format!(
        r#"[{{"ts": {}, "tags": {{"pid": "p3"}}, "fields": {{"v": 1}}}},
            {{"ts": {}, "tags": {{"pid": "p3"}}, "fields": {{"v": 2}}}}]"#,
        expired_ts * 1000,
        now.timestamp_millis()
    );
    let acked = publish_qos1(
        "127.0.0.1",
        server.mqtt_port,
        "retention-test",
        vec![("wattdb/r".to_string(), payload, ())],
        1,
        Duration::ZERO,
        |_| {},
    )
    .await;
    assert_eq!(acked, 1);
    let rejected: Vec<String> = c
        .query("SELECT error FROM rejected WHERE topic = 'wattdb/r'", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(rejected.len(), 1, "{rejected:?}");
    assert!(rejected[0].contains("expired"), "{rejected:?}");
    let p3: i64 = c
        .query_one("SELECT count(*) FROM r WHERE pid = 'p3'", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(p3, 1);

    // Rollups of the dropped months stay.
    let rollup_days: i64 = c
        .query_one("SELECT count(*) FROM r_1d WHERE pid = 'p1'", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(rollup_days, days.len() as i64);
    // A daily aggregate over the raw table — answered from r_1d where it is settled (the
    // real-time rollup rewrite) — sees only the kept months, like the raw rows: one
    // reading per kept UTC day (its timestamps are a day or more apart).
    let daily = c
        .query(
            "SELECT CAST(date_trunc('day', ts) AS VARCHAR), count(v) FROM r WHERE pid = 'p1' \
             GROUP BY date_trunc('day', ts) ORDER BY 1",
            &[],
        )
        .await
        .unwrap();
    let want_days: BTreeSet<String> = kept
        .iter()
        .map(|t| {
            chrono::DateTime::from_timestamp(*t, 0)
                .unwrap()
                .format("%Y-%m-%d")
                .to_string()
        })
        .collect();
    let got_days: BTreeSet<String> = daily
        .iter()
        .map(|r| r.get::<_, String>(0).chars().take(10).collect())
        .collect();
    assert_eq!(got_days, want_days);
    assert!(daily.iter().all(|r| r.get::<_, i64>(1) == 1));

    // A crash right now replays the WAL, which still held rows of dropped months: they
    // must not come back.
    server.kill9();
    server.spawn();
    let c = server.client().await;
    let mut after = read(&c).await;
    after.remove(&now.timestamp()); // p3's reading
    assert_eq!(after, kept);
    let rollup_days: i64 = c
        .query_one("SELECT count(*) FROM r_1d WHERE pid = 'p1'", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(
        rollup_days,
        days.len() as i64,
        "rollups survive the restart"
    );

    // Clearing the retention re-opens the dropped months: empty, and writable again
    // (deliberate backfill).
    c.batch_execute("SELECT set_retention('r', 'none')")
        .await
        .unwrap();
    c.batch_execute(&format!(
        "INSERT INTO r VALUES (to_timestamp({expired_ts}), 'p2', 9)"
    ))
    .await
    .unwrap();
    assert_eq!(
        retention_of_r(&c).await,
        ("none".to_string(), String::new())
    );
    let backfilled: i64 = c
        .query_one("SELECT count(*) FROM r WHERE pid = 'p2'", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(backfilled, 1);
}
