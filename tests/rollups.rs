//! Continuous rollups end to end: readings published over MQTT (out of order, late,
//! overwritten, across a kill -9) and inserted over SQL; rollup tables read over SQL and
//! compared with values computed here by brute force or by hand.

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use common::Server;
use common::mqtt::publish_qos1;

const HOUR: i64 = 3_600_000;
/// 2026-11-24T00:00:00+08:00 (Asia/Shanghai midnight), epoch ms.
const SHANGHAI_DAY0: i64 = 1_795_968_000_000 - 8 * HOUR;

#[derive(Debug, Clone)]
struct Reading {
    pid: String,
    ts_ms: i64,
    ua: f64,
    ep: f64,
}

fn payload(r: &Reading) -> String {
    format!(
        r#"{{"ts": {}, "tags": {{"pid": "{}"}}, "fields": {{"ua": {}, "ep": {}}}}}"#,
        r.ts_ms, r.pid, r.ua, r.ep
    )
}

/// Three meters, a reading every 10 minutes over two Shanghai days, plus the first
/// instant of the third day. Meter m2's energy register resets in the middle.
fn dataset() -> Vec<Reading> {
    let mut out = Vec::new();
    for m in 0..3 {
        let mut ep = 1000.0 * (m + 1) as f64;
        for k in 0..=(2 * 24 * 6) {
            let ts_ms = SHANGHAI_DAY0 + k * 10 * 60_000;
            if m == 2 && k == 100 {
                ep = 0.25; // reset: a new meter
            } else {
                ep += 0.5 + (k % 7) as f64 * 0.25;
            }
            out.push(Reading {
                pid: format!("m{m}"),
                ts_ms,
                ua: 220.0 + ((k * 37 + m * 11) % 50) as f64 * 0.5,
                ep,
            });
        }
    }
    out
}

/// Expected rollup rows (pid, bucket start ms) → [ua_min, ua_max, ua_avg, ua_count,
/// ua_first, ua_last, ep_delta], from the final rows, by brute force.
/// (pid, bucket start ms) → values, as compared.
type Buckets = BTreeMap<(String, i64), Vec<f64>>;

fn expected(rows: &BTreeMap<(String, i64), Reading>, bucket: impl Fn(i64) -> i64) -> Buckets {
    type Group<'a> = Vec<(&'a Reading, Option<f64>)>;
    let mut groups: BTreeMap<(String, i64), Group<'_>> = BTreeMap::new();
    let mut prev: Option<(&str, f64)> = None;
    for r in rows.values() {
        let inc = match prev {
            Some((pid, p)) if pid == r.pid => Some(if r.ep >= p { r.ep - p } else { r.ep }),
            _ => None,
        };
        prev = Some((&r.pid, r.ep));
        groups
            .entry((r.pid.clone(), bucket(r.ts_ms)))
            .or_default()
            .push((r, inc));
    }
    groups
        .into_iter()
        .map(|(k, g)| {
            let ua: Vec<f64> = g.iter().map(|(r, _)| r.ua).collect();
            let n = ua.len() as f64;
            let v = vec![
                ua.iter().cloned().fold(f64::INFINITY, f64::min),
                ua.iter().cloned().fold(f64::NEG_INFINITY, f64::max),
                ua.iter().sum::<f64>() / n,
                n,
                ua[0],
                ua[ua.len() - 1],
                g.iter().filter_map(|(_, i)| *i).sum::<f64>(),
            ];
            (k, v)
        })
        .collect()
}

async fn rollup_rows(server: &Server, table: &str) -> Buckets {
    let c = server.client().await;
    let sql = format!(
        "SELECT pid, CAST(extract(epoch FROM ts) * 1000 AS BIGINT), ua_min, ua_max, ua_avg, \
         ua_count, ua_first, ua_last, ep_delta FROM {table} ORDER BY pid, ts"
    );
    let Ok(rows) = c.query(sql.as_str(), &[]).await else {
        return BTreeMap::new(); // not created yet
    };
    rows.iter()
        .map(|r| {
            let v = vec![
                r.get::<_, f64>(2),
                r.get::<_, f64>(3),
                r.get::<_, f64>(4),
                r.get::<_, i64>(5) as f64,
                r.get::<_, f64>(6),
                r.get::<_, f64>(7),
                r.get::<_, Option<f64>>(8).unwrap_or(f64::NAN),
            ];
            ((r.get::<_, String>(0), r.get::<_, i64>(1)), v)
        })
        .collect()
}

fn close(a: &[f64], b: &[f64]) -> bool {
    a.len() == b.len()
        && a.iter()
            .zip(b)
            .all(|(x, y)| (x - y).abs() <= 1e-9 * x.abs().max(1.0))
}

fn same(a: &Buckets, b: &Buckets) -> bool {
    a.len() == b.len()
        && a.iter()
            .zip(b)
            .all(|((ka, va), (kb, vb))| ka == kb && close(va, vb))
}

/// Rollups are maintained in the background: wait (bounded) until they match.
async fn wait_for_rollup(server: &Server, table: &str, want: &Buckets) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let got = rollup_rows(server, table).await;
        if same(&got, want) {
            return;
        }
        if Instant::now() > deadline {
            let diff: Vec<_> = want
                .iter()
                .filter(|(k, v)| got.get(*k).is_none_or(|g| !close(g, v)))
                .take(5)
                .map(|(k, v)| format!("{k:?}: want {v:?}, got {:?}", got.get(k)))
                .collect();
            panic!(
                "{table}: {} rows, want {}; first differences:\n{}\nlog:\n{}",
                got.len(),
                want.len(),
                diff.join("\n"),
                server.log()
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn publish(server: &Server, readings: &[Reading], client_id: &str) {
    let messages: Vec<(String, String, ())> = readings
        .iter()
        .map(|r| ("wattdb/electric".to_string(), payload(r), ()))
        .collect();
    let n = messages.len();
    let acked = publish_qos1(
        "127.0.0.1",
        server.mqtt_port,
        client_id,
        messages,
        100,
        Duration::ZERO,
        |_| {},
    )
    .await;
    assert_eq!(acked, n, "every reading acknowledged");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mqtt_rollups_are_exact_after_late_data_overwrites_and_kill_9() {
    let mut server = Server::new();
    let config = server.data_dir.with_extension("toml");
    std::fs::write(&config, "[rollups.electric]\ncounters = [\"ep\"]\n").unwrap();
    server.extra_args = vec![
        "--config".into(),
        config.display().to_string(),
        "--timezone".into(),
        "Asia/Shanghai".into(),
    ];
    server.spawn();

    let all = dataset();
    // First the second half of each meter's day, newest first (out of order)...
    let (early, late): (Vec<Reading>, Vec<Reading>) = all
        .iter()
        .cloned()
        .partition(|r| r.ts_ms < SHANGHAI_DAY0 + 30 * HOUR);
    let mut first: Vec<Reading> = late.clone();
    first.reverse();
    publish(&server, &first, "rollup-a").await;
    // ...persist some of it and crash with marks possibly not worked off.
    server
        .client()
        .await
        .batch_execute("SELECT flush()")
        .await
        .unwrap();
    server.kill9();
    server.spawn();
    // Then the earlier rows arrive late, and some readings are overwritten.
    let mut second = early.clone();
    for r in all.iter().filter(|r| r.ts_ms % (7 * 10 * 60_000) == 0) {
        second.push(Reading {
            ua: r.ua + 3.0,
            ..r.clone()
        });
    }
    publish(&server, &second, "rollup-b").await;

    let mut final_rows: BTreeMap<(String, i64), Reading> = BTreeMap::new();
    for r in first.iter().chain(&second) {
        final_rows.insert((r.pid.clone(), r.ts_ms), r.clone());
    }
    let q = 15 * 60_000;
    let want_15m = expected(&final_rows, |t| t.div_euclid(q) * q);
    let day = 24 * HOUR;
    let want_1d = expected(&final_rows, |t| {
        (t + 8 * HOUR).div_euclid(day) * day - 8 * HOUR
    });
    assert_eq!(
        want_1d.len(),
        3 * 3,
        "two full Shanghai days and one instant of the third"
    );
    wait_for_rollup(&server, "electric_15m", &want_15m).await;
    wait_for_rollup(&server, "electric_1d", &want_1d).await;

    // A graceful restart keeps them, and a rebuild from raw data gives the same rows.
    server.stop();
    server.spawn();
    let c = server.client().await;
    let msg = c
        .simple_query("SELECT rebuild_rollups('electric')")
        .await
        .unwrap();
    assert!(format!("{msg:?}").contains("rebuilt"), "{msg:?}");
    assert!(same(&rollup_rows(&server, "electric_1d").await, &want_1d));
    assert!(same(&rollup_rows(&server, "electric_15m").await, &want_15m));
    assert!(server.log().contains("rebuild_rollups: done"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn berlin_dst_days_local_midnight_and_counter_resets_over_sql() {
    let mut server = Server::new();
    server.extra_args = vec!["--timezone".into(), "Europe/Berlin".into()];
    server.spawn();
    let c = server.client().await;
    c.batch_execute(
        "CREATE TABLE e (ts TIMESTAMPTZ NOT NULL, pid TEXT NOT NULL, ua DOUBLE PRECISION, \
         ep DOUBLE PRECISION, PRIMARY KEY (pid, ts))",
    )
    .await
    .unwrap();
    // Hourly readings from 2026-03-28 00:00 (+01:00) through 2026-03-30 00:00 (+02:00):
    // 24 on the 28th, 23 on the 29th (clocks skip 02:00-03:00), and the reading at local
    // midnight of the 30th, which belongs to the 30th. The register counts 1 kWh an hour
    // and is reset at 2026-03-29T12:00+02:00 (to 0.5 kWh).
    let start = 1_774_652_400_i64; // 2026-03-27T23:00:00Z
    let reset = 1_774_778_400_i64; // 2026-03-29T10:00:00Z
    let mut ep = 100.0;
    let mut values = Vec::new();
    for h in 0..=(24 + 23) {
        let t = start + h * 3600;
        if t == reset {
            ep = 0.5;
        } else if h > 0 {
            ep += 1.0;
        }
        values.push(format!("(to_timestamp({t}), 'p1', {}, {ep})", 230 + h));
    }
    c.batch_execute(&format!("INSERT INTO e VALUES {}", values.join(", ")))
        .await
        .unwrap();

    let deadline = Instant::now() + Duration::from_secs(60);
    let query = "SELECT CAST(extract(epoch FROM ts) AS BIGINT), ua_count, ua_first, ua_last \
                 FROM e_1d ORDER BY ts";
    let days = loop {
        let rows = c.query(query, &[]).await.map(|r| r.len()).unwrap_or(0);
        if rows == 3 {
            break c.query(query, &[]).await.unwrap();
        }
        assert!(
            Instant::now() < deadline,
            "e_1d not ready; log:\n{}",
            server.log()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let got: Vec<(i64, i64, f64, f64)> = days
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3)))
        .collect();
    assert_eq!(
        got,
        vec![
            (1_774_652_400, 24, 230.0, 253.0), // 2026-03-28T00:00+01:00, 24 hours
            (1_774_738_800, 23, 254.0, 276.0), // 2026-03-29T00:00+01:00, 23 hours
            (1_774_821_600, 1, 277.0, 277.0),  // 2026-03-30T00:00+02:00
        ]
    );

    // Declaring the counter afterwards rebuilds the rollups with ep_delta.
    let msg = c
        .simple_query("SELECT set_counters('e', 'ep')")
        .await
        .unwrap();
    assert!(format!("{msg:?}").contains("rebuilt"), "{msg:?}");
    let deltas: Vec<f64> = c
        .query("SELECT ep_delta FROM e_1d ORDER BY ts", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    // 28th: 23 increments of 1 (its first reading has none before it); 29th: 23
    // readings, one of them the reset (0.5 since the restart, not -122.5); 30th: 1.
    assert_eq!(deltas, vec![23.0, 22.5, 1.0]);

    // Rollup tables are ordinary tables to read, not to write.
    let err = c
        .batch_execute("INSERT INTO e_1d (ts, pid) VALUES (now(), 'x')")
        .await
        .unwrap_err();
    assert_eq!(common::sqlstate(&err), "42809", "{err}");
    let cols: Vec<String> = c
        .query(
            "SELECT column_name FROM information_schema.columns WHERE table_name = 'e_15m' \
             ORDER BY ordinal_position",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(cols[..3], ["ts".to_string(), "pid".into(), "ua_min".into()]);
    assert!(cols.contains(&"ep_delta".to_string()), "{cols:?}");
    // Bad settings are refused with a reason.
    let err = c
        .batch_execute("SELECT set_rollup_intervals('e', '7m,1d')")
        .await
        .unwrap_err();
    assert_eq!(common::sqlstate(&err), "22023", "{err}");
}
