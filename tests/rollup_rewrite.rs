//! The real-time rollup rewrite over the SQL endpoint: daily (Asia/Shanghai) and hourly
//! aggregates of a raw table are answered from its rollup tables once they are settled —
//! `EXPLAIN` shows the rollup table — with the values computed here by brute force;
//! late data and overwrites are visible at once (their buckets come from raw rows until
//! the rollup worker catches up); `SET wattdb.rollup_rewrite = false` reads raw rows
//! (in that session only) and answers the same.

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use common::Server;

const MINUTE: i64 = 60;
/// 2026-11-24T00:00:00+08:00 in seconds.
const DAY0: i64 = 1_795_968_000;

/// (pid, ts seconds) → (p, e)
type Readings = BTreeMap<(String, i64), (f64, i64)>;
/// (ts seconds, p, e)
type Reading = (i64, f64, i64);

fn ts(secs: i64) -> String {
    chrono::DateTime::from_timestamp(secs, 0)
        .unwrap()
        .format("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

async fn insert(c: &tokio_postgres::Client, want: &mut Readings, rows: &[(String, i64, f64, i64)]) {
    for chunk in rows.chunks(500) {
        let values: Vec<String> = chunk
            .iter()
            .map(|(pid, t, p, e)| format!("('{}', '{pid}', {p}, {e})", ts(*t)))
            .collect();
        c.batch_execute(&format!(
            "INSERT INTO m (ts, pid, p, e) VALUES {}",
            values.join(", ")
        ))
        .await
        .unwrap();
    }
    for (pid, t, p, e) in rows {
        want.insert((pid.clone(), *t), (*p, *e));
    }
}

/// Per (pid, Shanghai date): avg(p), max(p), count(p), sum(e), first(p), last(e).
type Daily = BTreeMap<(String, String), (f64, f64, i64, i64, f64, i64)>;

/// The Shanghai date (UTC+8, no DST since 1991) of `secs`.
fn local_date(secs: i64) -> String {
    chrono::DateTime::from_timestamp(secs + 8 * 3600, 0)
        .unwrap()
        .format("%Y-%m-%d")
        .to_string()
}

fn daily(want: &Readings) -> Daily {
    let mut out: BTreeMap<(String, String), Vec<Reading>> = BTreeMap::new();
    for ((pid, t), (p, e)) in want {
        out.entry((pid.clone(), local_date(*t)))
            .or_default()
            .push((*t, *p, *e));
    }
    out.into_iter()
        .map(|(k, mut v)| {
            v.sort_by_key(|r| r.0);
            let n = v.len() as i64;
            let sum: f64 = v.iter().map(|r| r.1).sum();
            let max = v.iter().map(|r| r.1).fold(f64::MIN, f64::max);
            let e: i64 = v.iter().map(|r| r.2).sum();
            (k, (sum / n as f64, max, n, e, v[0].1, v[v.len() - 1].2))
        })
        .collect()
}

// The day goes out as text: the binary encoding of a timestamp in a zone other than UTC
// is off by the zone's offset (a pg-wire encoding gap, see issue 15's notes).
const DAILY_SQL: &str = "SELECT pid, CAST(date_trunc('day', ts AT TIME ZONE 'Asia/Shanghai') AS VARCHAR), \
     avg(p), max(p), count(p), sum(e), first(p, ts), last(e, ts) FROM m \
     GROUP BY pid, date_trunc('day', ts AT TIME ZONE 'Asia/Shanghai') ORDER BY 1, 2";

async fn query_daily(c: &tokio_postgres::Client) -> Daily {
    c.query(DAILY_SQL, &[])
        .await
        .unwrap()
        .iter()
        .map(|r| {
            let day: String = r.get(1);
            let day = day.get(..10).unwrap_or(&day).to_string();
            (
                (r.get::<_, String>(0), day),
                (r.get(2), r.get(3), r.get(4), r.get(5), r.get(6), r.get(7)),
            )
        })
        .collect()
}

fn assert_same(got: &Daily, want: &Daily, what: &str) {
    assert_eq!(
        got.keys().collect::<Vec<_>>(),
        want.keys().collect::<Vec<_>>(),
        "{what}: rows"
    );
    for ((k, g), (kw, w)) in got.iter().zip(want) {
        assert_eq!(k, kw, "{what}");
        assert!(
            (g.0 - w.0).abs() <= 1e-9 * w.0.abs().max(1.0),
            "{what} {k:?}: avg {g:?} vs {w:?}"
        );
        assert_eq!(
            (g.1, g.2, g.3, g.4, g.5),
            (w.1, w.2, w.3, w.4, w.5),
            "{what} {k:?}"
        );
    }
}

async fn plan(c: &tokio_postgres::Client, sql: &str) -> String {
    c.query(&format!("EXPLAIN {sql}"), &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get::<_, String>(1))
        .collect::<Vec<_>>()
        .join("\n")
}

/// A server whose rollup time zone is Asia/Shanghai, with table `m (ts, pid, p, e)`.
async fn shanghai_server_with_m() -> (Server, tokio_postgres::Client) {
    let mut server = Server::new();
    server.extra_args = vec!["--timezone".into(), "Asia/Shanghai".into()];
    let server = server.start();
    let c = server.client().await;
    c.batch_execute(
        "CREATE TABLE m (ts TIMESTAMPTZ NOT NULL, pid TEXT NOT NULL, p DOUBLE PRECISION, \
         e BIGINT, PRIMARY KEY (pid, ts))",
    )
    .await
    .unwrap();
    (server, c)
}

#[tokio::test]
async fn aggregates_come_from_settled_rollups_with_raw_answers() {
    let (server, c) = shanghai_server_with_m().await;
    // Three meters, every 5 minutes for three days, values from a fixed sequence.
    let mut want = Readings::new();
    let mut rows = Vec::new();
    let mut x: u64 = 7;
    for pid in ["a", "b", "c"] {
        for i in 0..(3 * 288) {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let p = ((x >> 33) % 4000) as f64 / 8.0;
            let e = ((x >> 20) % 100) as i64;
            rows.push((pid.to_string(), DAY0 + i * 5 * MINUTE + 17, p, e));
        }
    }
    insert(&c, &mut want, &rows).await;

    // Once the rollup worker has settled everything, the daily query reads only m_1d.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let p = plan(&c, DAILY_SQL).await;
        if p.contains("TableScan: m_1d") && !p.contains("rollup_region_raw") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "never read from m_1d:\n{p}\nlog:\n{}",
            server.log()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_same(&query_daily(&c).await, &daily(&want), "settled");

    // An hourly query whose time range cuts quarter hours: there is no hour level, so
    // settled 15-minute rows, and raw rows for the two cut quarter hours.
    let hourly = format!(
        "SELECT date_bin(INTERVAL '1 hour', ts) AS h, sum(e), count(p) FROM m \
         WHERE ts >= '{}' AND ts < '{}' AND pid <> 'c' GROUP BY h ORDER BY h",
        ts(DAY0 + 3600 + 10 * MINUTE),
        ts(DAY0 + 30 * 3600 + 40 * MINUTE)
    );
    let p = plan(&c, &hourly).await;
    assert!(
        p.contains("TableScan: m_15m") && p.contains("rollup_region_raw"),
        "{p}"
    );
    let mut want_hourly: BTreeMap<i64, (i64, i64)> = BTreeMap::new();
    for ((pid, t), (_, e)) in &want {
        if pid != "c" && *t >= DAY0 + 3600 + 600 && *t < DAY0 + 30 * 3600 + 2400 {
            let h = want_hourly.entry(t.div_euclid(3600) * 3600).or_default();
            h.0 += e;
            h.1 += 1;
        }
    }
    // Hour (epoch seconds) → (sum, count) as a query answers them.
    let hourly_rows = |rows: Vec<tokio_postgres::Row>| -> BTreeMap<i64, (i64, i64)> {
        rows.iter()
            .map(|r| {
                let h: std::time::SystemTime = r.get(0);
                let h = h.duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64;
                (h, (r.get(1), r.get(2)))
            })
            .collect()
    };
    assert_eq!(
        hourly_rows(c.query(&hourly, &[]).await.unwrap()),
        want_hourly
    );
    // The same with `time_bucket` (TimescaleDB's name for it): from the rollup too.
    let bucketed = hourly.replacen("date_bin(", "time_bucket(", 1);
    let p = plan(&c, &bucketed).await;
    assert!(p.contains("TableScan: m_15m"), "{p}");
    assert_eq!(
        hourly_rows(c.query(&bucketed, &[]).await.unwrap()),
        want_hourly
    );

    // Per meter over all time (no time bucket): from m_1d alone.
    let per_meter = "SELECT pid, avg(p), max(p), count(p), sum(e) FROM m GROUP BY pid ORDER BY pid";
    let p = plan(&c, per_meter).await;
    assert!(
        p.contains("TableScan: m_1d") && !p.contains("rollup_region_raw"),
        "{p}"
    );
    let mut want_meter: BTreeMap<String, (f64, f64, i64, i64)> = BTreeMap::new();
    for ((pid, _), (p, e)) in &want {
        let m = want_meter
            .entry(pid.clone())
            .or_insert((0.0, f64::MIN, 0, 0));
        m.0 += p;
        m.1 = m.1.max(*p);
        m.2 += 1;
        m.3 += e;
    }
    let got_meter = c.query(per_meter, &[]).await.unwrap();
    assert_eq!(got_meter.len(), want_meter.len());
    for (r, (pid, (sum, max, n, e))) in got_meter.iter().zip(&want_meter) {
        assert_eq!(&r.get::<_, String>(0), pid);
        let avg: f64 = r.get(1);
        assert!(
            (avg - sum / *n as f64).abs() <= 1e-9 * avg.abs().max(1.0),
            "{pid}: avg {avg}"
        );
        assert_eq!(
            (r.get::<_, f64>(2), r.get::<_, i64>(3), r.get::<_, i64>(4)),
            (*max, *n, *e),
            "{pid}"
        );
    }

    // Late data: an overwrite and a new reading in day 0, answered right away (their
    // buckets come from raw rows until they settle).
    let late = vec![
        ("a".to_string(), DAY0 + 5 * MINUTE + 17, 9999.0, 1000),
        ("b".to_string(), DAY0 + 7 * MINUTE, 0.5, 3),
    ];
    insert(&c, &mut want, &late).await;
    assert_same(
        &query_daily(&c).await,
        &daily(&want),
        "right after late data",
    );

    // Turned off: raw rows only, same answers.
    c.batch_execute("SET wattdb.rollup_rewrite = false")
        .await
        .unwrap();
    let p = plan(&c, DAILY_SQL).await;
    assert!(!p.contains("m_1d") && !p.contains("rollup_region"), "{p}");
    assert_same(&query_daily(&c).await, &daily(&want), "rewrite off");
    // Only for that session: another one still reads the rollups.
    let other = server.client().await;
    assert!(plan(&other, DAILY_SQL).await.contains("m_1d"));
    c.batch_execute("SET wattdb.rollup_rewrite = true")
        .await
        .unwrap();
    assert!(plan(&c, DAILY_SQL).await.contains("m_1d"));
}

/// `wattdb recover` rebuilds a node from the object store alone, without the local
/// rollup marks (which buckets still need recomputing). Buckets dirty when the old node
/// stopped must not be answered from their stale rollup rows: the recovered node reads
/// raw rows until it has rebuilt the rollups, then reads the rollups again — the same
/// answers as the raw rows throughout.
#[tokio::test]
async fn a_recovered_node_rebuilds_rollups_before_answering_from_them() {
    let (mut server, c) = shanghai_server_with_m().await;
    let mut want = Readings::new();
    let rows: Vec<(String, i64, f64, i64)> = ["a", "b"]
        .iter()
        .flat_map(|pid| {
            (0..288).map(move |i| (pid.to_string(), DAY0 + i * 5 * MINUTE, i as f64, 1))
        })
        .collect();
    insert(&c, &mut want, &rows).await;
    let settled = |p: &str| p.contains("TableScan: m_1d") && !p.contains("rollup_region_raw");
    let deadline = Instant::now() + Duration::from_secs(60);
    while !settled(&plan(&c, DAILY_SQL).await) {
        assert!(Instant::now() < deadline, "never settled\n{}", server.log());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Late corrections to the settled day, persisted, and the node stopped before its
    // rollup worker (200 ms after a write) recomputes them.
    let late: Vec<(String, i64, f64, i64)> = (0..288)
        .step_by(7)
        .map(|i| ("a".to_string(), DAY0 + i * 5 * MINUTE, 1000.0 + i as f64, 5))
        .collect();
    insert(&c, &mut want, &late).await;
    c.batch_execute("SELECT flush()").await.unwrap();
    server.stop();

    let mut node = server.recovered_node();
    node.extra_args = vec!["--timezone".into(), "Asia/Shanghai".into()];
    let node = node.start();
    let c = node.client().await;
    assert_same(&query_daily(&c).await, &daily(&want), "right after recover");
    let deadline = Instant::now() + Duration::from_secs(60);
    while !settled(&plan(&c, DAILY_SQL).await) {
        assert!(Instant::now() < deadline, "never rebuilt\n{}", node.log());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_same(&query_daily(&c).await, &daily(&want), "after the rebuild");
}
