//! Threshold alarms on the write path, through the real interfaces: rules created over
//! SQL (bad ones refused with their SQLSTATE), readings published over MQTT (QoS 1, with
//! a duplicate, a late row and a row without the field), transitions read back from
//! `alarm_events` and states from `system.alarm_state` — both equal to what a reference
//! state machine in this test computes from the published readings. Then kill -9 in the
//! middle of a pending `for`: after the restart the states are the same, the pending
//! alarm fires when its `for` is complete and a firing one resolves, without a
//! transition repeated or invented.

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use common::{Server, sqlstate};

/// 2026-11-24T00:00:00Z in ms.
const T0: i64 = 1_795_996_800_000;

/// (pid, ts ms, ua or none: the row carries only `ub`).
type Reading = (String, i64, Option<f64>);

fn payload((pid, ts, ua): &Reading) -> String {
    let fields = match ua {
        Some(v) => format!(r#""ua": {v}"#),
        None => r#""ub": 1.0"#.to_string(),
    };
    format!(r#"{{"ts": {ts}, "tags": {{"pid": "{pid}"}}, "fields": {{{fields}}}}}"#)
}

/// The rule under test, as the reference implements it.
fn condition(ua: f64) -> bool {
    !(198.0..=235.4).contains(&ua)
}
fn clear(ua: f64) -> bool {
    (200.0..=233.0).contains(&ua)
}
const FOR_MS: i64 = 30_000;

#[derive(Debug, Clone, Copy, PartialEq)]
enum St {
    Ok,
    Pending(i64),
    Firing(i64),
}

/// Reference: per series, rows in publication order; older-or-equal rows ignored.
#[derive(Default)]
struct Reference {
    series: BTreeMap<String, (St, Option<i64>)>,
    /// (pid, ts ms, state, value)
    events: Vec<(String, i64, String, f64)>,
}

impl Reference {
    fn feed(&mut self, (pid, ts, ua): &Reading) {
        if !pid.starts_with("dorm-") {
            return;
        }
        let (st, newest) = self.series.entry(pid.clone()).or_insert((St::Ok, None));
        if newest.is_some_and(|n| *ts <= n) {
            return;
        }
        *newest = Some(*ts);
        let Some(v) = *ua else { return };
        match *st {
            St::Ok if condition(v) => {
                *st = St::Pending(*ts);
                if FOR_MS == 0 {
                    *st = St::Firing(*ts);
                }
            }
            St::Ok => {}
            St::Pending(since) if condition(v) => {
                if ts - since >= FOR_MS {
                    *st = St::Firing(*ts);
                    self.events.push((pid.clone(), *ts, "firing".into(), v));
                }
            }
            St::Pending(_) => *st = St::Ok,
            St::Firing(_) if clear(v) => {
                *st = St::Ok;
                self.events.push((pid.clone(), *ts, "resolved".into(), v));
            }
            St::Firing(_) => {}
        }
    }

    /// (pid, state, since ms) of every pending or firing series.
    fn active(&self) -> Vec<(String, String, i64)> {
        self.series
            .iter()
            .filter_map(|(pid, (st, _))| match st {
                St::Ok => None,
                St::Pending(s) => Some((format!("pid={pid}"), "pending".into(), *s)),
                St::Firing(s) => Some((format!("pid={pid}"), "firing".into(), *s)),
            })
            .collect()
    }
}

async fn publish(server: &Server, readings: &[Reading]) {
    let msgs: Vec<(String, String, ())> = readings
        .iter()
        .map(|r| ("wattdb/m".to_string(), payload(r), ()))
        .collect();
    let n = msgs.len();
    let acked = common::mqtt::publish_qos1(
        "127.0.0.1",
        server.mqtt_port,
        "meters",
        msgs,
        1,
        Duration::ZERO,
        |_| {},
    )
    .await;
    assert_eq!(acked, n, "every reading acknowledged");
}

async fn events(c: &tokio_postgres::Client) -> Vec<(String, i64, String, f64)> {
    match c
        .query(
            "SELECT series, ts, state, value FROM alarm_events \
             WHERE alarm = 'overvoltage' ORDER BY ts, series",
            &[],
        )
        .await
    {
        Ok(rows) => rows
            .iter()
            .map(|r| {
                let series: String = r.get(0);
                let ms = epoch_us(r.get(1)) / 1000;
                (
                    series.trim_start_matches("pid=").to_string(),
                    ms,
                    r.get(2),
                    r.get(3),
                )
            })
            .collect(),
        // No transition yet: the table does not exist.
        Err(e) if sqlstate(&e) == "42P01" => vec![],
        Err(e) => panic!("{e:?}"),
    }
}

async fn wait_for_events(
    server: &Server,
    c: &tokio_postgres::Client,
    want: &[(String, i64, String, f64)],
) {
    let mut want = want.to_vec();
    want.sort_by(|a, b| (a.1, &a.0).cmp(&(b.1, &b.0)));
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let got = events(c).await;
        if got == want {
            return;
        }
        assert!(
            Instant::now() < deadline && got.len() <= want.len(),
            "alarm_events {got:?}\nexpected {want:?}\nlog:\n{}",
            server.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn states(c: &tokio_postgres::Client) -> Vec<(String, String, i64)> {
    c.query(
        "SELECT series, state, since FROM system.alarm_state \
         WHERE alarm = 'overvoltage' ORDER BY series",
        &[],
    )
    .await
    .unwrap()
    .iter()
    .map(|r| {
        let ms = epoch_us(r.get(2)) / 1000;
        (r.get(0), r.get(1), ms)
    })
    .collect()
}

/// Microseconds since the epoch of a timestamp read from the server.
fn epoch_us(t: std::time::SystemTime) -> i64 {
    t.duration_since(std::time::UNIX_EPOCH).unwrap().as_micros() as i64
}

/// A running server with table `m (ts, pid, <fields> DOUBLE PRECISION)`, and a client.
async fn server_with_m(fields: &[&str]) -> (Server, tokio_postgres::Client) {
    let server = Server::new().start();
    let c = server.client().await;
    let fields: String = fields
        .iter()
        .map(|f| format!("{f} DOUBLE PRECISION, "))
        .collect();
    c.batch_execute(&format!(
        "CREATE TABLE m (ts TIMESTAMPTZ NOT NULL, pid TEXT NOT NULL, {fields}PRIMARY KEY (pid, ts))"
    ))
    .await
    .unwrap();
    (server, c)
}

fn at(s: i64) -> i64 {
    T0 + s * 1000
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alarms_fire_and_resolve_on_write_and_survive_kill_9() {
    let (mut server, c) = server_with_m(&["ua", "ub"]).await;

    // Bad definitions are refused with their SQLSTATE and store nothing.
    for (sql, code) in [
        ("SELECT create_alarm('a1', 'm', 'ua >', '{}')", "42601"),
        ("SELECT create_alarm('a1', 'm', 'ua + 1', '{}')", "42601"),
        ("SELECT create_alarm('a1', 'm', 'uz > 1', '{}')", "42703"),
        ("SELECT create_alarm('a1', 'nope', 'ua > 1', '{}')", "42P01"),
        (
            "SELECT create_alarm('a1', 'm', 'ua > 1', '{\"sevrity\": \"major\"}')",
            "22023",
        ),
        (
            "SELECT create_alarm('a1', 'm', 'ua > 1', '{\"channels\": [\"ops\"]}')",
            "22023",
        ),
        (
            "SELECT create_alarm('a1', 'm', 'ua > 1', '{\"for\": \"ten\"}')",
            "22023",
        ),
        (
            "SELECT create_alarm('a1', 'm', 'ua > 1', '{\"where\": \"ua > 2\"}')",
            "22023",
        ),
        ("SELECT drop_alarm('a1')", "42704"),
    ] {
        let err = c.simple_query(sql).await.unwrap_err();
        assert_eq!(sqlstate(&err), code, "{sql}: {err:?}");
    }
    c.simple_query(
        "SELECT create_alarm('overvoltage', 'm', 'ua > 235.4 OR ua < 198', \
         '{\"for\": \"30 seconds\", \"clear\": \"ua <= 233 AND ua >= 200\", \
           \"severity\": \"major\", \"where\": \"pid LIKE ''dorm-%''\"}')",
    )
    .await
    .unwrap();
    let err = c
        .simple_query("SELECT create_alarm('overvoltage', 'm', 'ua > 1')")
        .await
        .unwrap_err();
    assert_eq!(sqlstate(&err), "42710", "duplicate name");
    let rules = c
        .query(
            "SELECT alarm, table_name, for_seconds, severity, enabled FROM system.alarms",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(rules.len(), 1);
    assert_eq!(rules[0].get::<_, i64>(2), 30);
    assert_eq!(rules[0].get::<_, String>(3), "major");

    let r = |pid: &str, s: i64, ua: Option<f64>| (pid.to_string(), at(s), ua);
    let mut phase1: Vec<Reading> = Vec::new();
    // dorm-1: normal, over for 60 s (fires after 30 s), 234 (hysteresis: still firing),
    // then 230 (resolves).
    for s in (0..60).step_by(10) {
        phase1.push(r("dorm-1", s, Some(220.0)));
    }
    for s in (60..120).step_by(10) {
        phase1.push(r("dorm-1", s, Some(240.0 + s as f64 / 100.0)));
    }
    phase1.push(r("dorm-1", 120, Some(234.0)));
    phase1.push(r("dorm-1", 130, Some(230.0)));
    // dorm-2: a 10 s spike (no alarm), then under-voltage for 40 s (fires), a duplicate
    // and a late row (ignored), a row without ua (unknown: no change).
    phase1.push(r("dorm-2", 0, Some(240.0)));
    phase1.push(r("dorm-2", 10, Some(241.0)));
    phase1.push(r("dorm-2", 20, Some(220.0)));
    for s in (30..80).step_by(10) {
        phase1.push(r("dorm-2", s, Some(190.0)));
    }
    phase1.push(r("dorm-2", 70, Some(190.0)));
    phase1.push(r("dorm-2", 45, Some(220.0)));
    phase1.push(r("dorm-2", 80, None));
    // dorm-3: over voltage starts (pending when the server is killed).
    phase1.push(r("dorm-3", 100, Some(250.0)));
    phase1.push(r("dorm-3", 110, Some(250.0)));
    // office-1: out of the alarm's scope.
    for s in (0..120).step_by(10) {
        phase1.push(r("office-1", s, Some(260.0)));
    }
    let mut reference = Reference::default();
    for x in &phase1 {
        reference.feed(x);
    }
    publish(&server, &phase1).await;
    wait_for_events(&server, &c, &reference.events).await;
    assert_eq!(states(&c).await, reference.active());
    assert!(
        reference.events.len() >= 3
            && reference
                .active()
                .iter()
                .any(|(s, st, _)| s == "pid=dorm-3" && st == "pending"),
        "the scenario exercises firing, resolving and a pending alarm"
    );

    // kill -9 (the pending `for` of dorm-3 and the firing dorm-2 in flight).
    server.kill9();
    server.spawn();
    let c = server.client().await;
    assert_eq!(states(&c).await, reference.active(), "states after restart");
    let phase2 = vec![
        r("dorm-3", 140, Some(250.0)), // 40 s after the pending start: fires
        r("dorm-2", 90, Some(205.0)),  // resolves
        r("dorm-2", 75, Some(190.0)),  // late: ignored
        r("dorm-1", 140, Some(231.0)), // ok stays ok
    ];
    for x in &phase2 {
        reference.feed(x);
    }
    publish(&server, &phase2).await;
    wait_for_events(&server, &c, &reference.events).await;
    assert_eq!(states(&c).await, reference.active());

    // The events carry what a notification needs.
    let row = c
        .query_one(
            "SELECT severity, message, event_id FROM alarm_events \
             WHERE series = 'pid=dorm-3' AND state = 'firing'",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, String>(0), "major");
    let message: String = row.get(1);
    assert!(
        message.contains("overvoltage")
            && message.contains("pid=dorm-3")
            && message.contains("250"),
        "{message}"
    );
    assert_eq!(row.get::<_, String>(2).len(), 16);
    // Rollups of the measurements, none of the transitions.
    let deadline = Instant::now() + Duration::from_secs(60);
    while c.query("SELECT count(*) FROM m_15m", &[]).await.is_err() {
        assert!(Instant::now() < deadline, "m_15m never appeared");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let err = c
        .query("SELECT count(*) FROM alarm_events_15m", &[])
        .await
        .unwrap_err();
    assert_eq!(sqlstate(&err), "42P01", "alarm_events has no rollup tables");

    // Disabled: no evaluation; dropped: gone.
    c.simple_query("SELECT enable_alarm('overvoltage', false)")
        .await
        .unwrap();
    publish(
        &server,
        &[r("dorm-1", 200, Some(250.0)), r("dorm-1", 260, Some(250.0))],
    )
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(events(&c).await.len(), reference.events.len());
    c.simple_query("SELECT drop_alarm('overvoltage')")
        .await
        .unwrap();
    assert!(
        c.query("SELECT * FROM system.alarms", &[])
            .await
            .unwrap()
            .is_empty()
    );
}

async fn gap_events(c: &tokio_postgres::Client) -> Vec<(String, String, i64)> {
    match c
        .query(
            "SELECT series, state, ts FROM alarm_events WHERE alarm = 'silent' ORDER BY ts, series",
            &[],
        )
        .await
    {
        Ok(rows) => rows
            .iter()
            .map(|r| {
                let ms = epoch_us(r.get(2)) / 1000;
                (r.get(0), r.get(1), ms)
            })
            .collect(),
        Err(e) if sqlstate(&e) == "42P01" => vec![],
        Err(e) => panic!("{e:?}"),
    }
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// Data-gap alarms: a series that reported and then stays silent for `silent_for`
/// (arrival time) fires, and resolves when it reports again; series that keep reporting
/// or are out of scope never fire; after a restart, silence is counted from the start.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gap_alarms_fire_for_silent_series_and_resolve_when_they_report() {
    let (mut server, c) = server_with_m(&["ua"]).await;
    let err = c
        .simple_query("SELECT create_gap_alarm('silent', 'm', 'soon')")
        .await
        .unwrap_err();
    assert_eq!(sqlstate(&err), "22023");
    let err = c
        .simple_query("SELECT create_gap_alarm('silent', 'm', '2 seconds', '{\"for\": \"1s\"}')")
        .await
        .unwrap_err();
    assert_eq!(sqlstate(&err), "22023", "no `for` on gap alarms");
    c.simple_query(
        "SELECT create_gap_alarm('silent', 'm', '3 seconds', '{\"where\": \"pid <> ''spare''\"}')",
    )
    .await
    .unwrap();
    // Rows carry the current time (the resolution's timestamp is the row's).
    let insert = |pid: &str, ms: i64| {
        format!(
            "INSERT INTO m VALUES (to_timestamp_micros({}), '{pid}', 220.0)",
            ms * 1000
        )
    };
    let first = now_ms();
    for pid in ["a", "b", "spare"] {
        c.batch_execute(&insert(pid, first)).await.unwrap();
    }
    // b keeps reporting; a and spare go silent.
    let fired = loop {
        c.batch_execute(&insert("b", now_ms())).await.unwrap();
        let ev = gap_events(&c).await;
        if !ev.is_empty() {
            break ev;
        }
        assert!(now_ms() - first < 15_000, "the silent series never fired");
        tokio::time::sleep(Duration::from_millis(300)).await;
    };
    assert_eq!(fired.len(), 1, "{fired:?}");
    assert_eq!(
        (fired[0].0.as_str(), fired[0].1.as_str()),
        ("pid=a", "firing")
    );
    assert!(fired[0].2 - first >= 3_000, "not before 3 s of silence");
    let st: Vec<(String, String)> = c
        .query(
            "SELECT series, state FROM system.alarm_state WHERE alarm = 'silent'",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert_eq!(st, vec![("pid=a".to_string(), "firing".to_string())]);
    // a reports again: resolved.
    let back = now_ms();
    c.batch_execute(&insert("a", back)).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while gap_events(&c).await.len() < 2 {
        assert!(Instant::now() < deadline, "never resolved");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let ev = gap_events(&c).await;
    // Resolved at the timestamp of the row that broke the silence.
    assert_eq!(
        (ev[1].0.as_str(), ev[1].1.as_str(), ev[1].2),
        ("pid=a", "resolved", back)
    );

    // kill -9 and restart: nobody is judged silent before 3 s after the start, then the
    // series that stay silent (a, b) fire once each.
    server.kill9();
    let restart = now_ms();
    server.spawn();
    let c = server.client().await;
    let deadline = Instant::now() + Duration::from_secs(15);
    let after = loop {
        let ev = gap_events(&c).await;
        if ev.len() >= 4 {
            break ev;
        }
        assert!(Instant::now() < deadline, "{ev:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let new: Vec<_> = after[2..].to_vec();
    assert_eq!(
        new.iter()
            .map(|e| (e.0.as_str(), e.1.as_str()))
            .collect::<Vec<_>>(),
        vec![("pid=a", "firing"), ("pid=b", "firing")]
    );
    assert!(
        new.iter().all(|e| e.2 - restart >= 3_000),
        "{new:?} vs restart {restart}"
    );
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(gap_events(&c).await.len(), 4, "no repeated transitions");
}

/// `[[channels]]` / `[[alarms]]` in the config file: stored at startup (an alarm on a
/// table that does not exist yet starts evaluating once the table is written), kept
/// across restarts without duplicates, and an alarm disabled over SQL stays disabled.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rules_declared_in_the_config_file() {
    let mut server = Server::new();
    let config = server.data_path().with_file_name("wattdb.toml");
    std::fs::write(
        &config,
        "[[channels]]\n\
         name = \"hook\"\n\
         kind = \"webhook\"\n\
         options = { url = \"http://127.0.0.1:9/hook\" }\n\
         [[alarms]]\n\
         name = \"hot\"\n\
         table = \"m\"\n\
         condition = \"v > 10\"\n\
         options = { severity = \"critical\" }\n\
         [[alarms]]\n\
         name = \"quiet\"\n\
         table = \"m\"\n\
         silent_for = \"1 hour\"\n",
    )
    .unwrap();
    server.extra_args = vec!["--config".into(), config.display().to_string()];
    server.spawn();
    let c = server.client().await;
    let alarms = |c: tokio_postgres::Client| async move {
        c.query(
            "SELECT alarm, kind, severity, enabled FROM system.alarms ORDER BY alarm",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3)))
        .collect::<Vec<(String, String, String, bool)>>()
    };
    assert_eq!(
        alarms(server.client().await).await,
        vec![
            ("hot".into(), "threshold".into(), "critical".into(), true),
            ("quiet".into(), "gap".into(), "warning".into(), true),
        ]
    );
    let channels: i64 = c
        .query_one("SELECT count(*) FROM system.channels", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(channels, 1);
    // The table appears after the alarm: the alarm evaluates its writes.
    c.batch_execute(
        "CREATE TABLE m (ts TIMESTAMPTZ NOT NULL, pid TEXT NOT NULL, v DOUBLE PRECISION, \
         PRIMARY KEY (pid, ts)); \
         INSERT INTO m VALUES ('2026-11-24T00:00:00Z', 'a', 20)",
    )
    .await
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        match c.query("SELECT alarm, state FROM alarm_events", &[]).await {
            Ok(rows) if !rows.is_empty() => {
                assert_eq!(rows[0].get::<_, String>(0), "hot");
                break;
            }
            _ => {}
        }
        assert!(Instant::now() < deadline, "no transition\n{}", server.log());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    c.simple_query("SELECT enable_alarm('hot', false)")
        .await
        .unwrap();
    server.stop();
    server.spawn();
    let after = alarms(server.client().await).await;
    assert_eq!(after.len(), 2, "no duplicates after a restart");
    assert!(!after[0].3, "disabled over SQL stays disabled");
}

/// `keep_firing_for`: a firing alarm resolves only once its clear condition has held for
/// that long of the series' time; a row where it does not hold starts the wait over.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keep_firing_for_delays_the_resolution() {
    let (_server, c) = server_with_m(&["v"]).await;
    let err = c
        .simple_query(
            "SELECT create_alarm('sticky', 'm', 'v > 10', '{\"keep_firing_for\": \"a while\"}')",
        )
        .await
        .unwrap_err();
    assert_eq!(sqlstate(&err), "22023");
    c.simple_query(
        "SELECT create_alarm('sticky', 'm', 'v > 10', '{\"keep_firing_for\": \"30 seconds\"}')",
    )
    .await
    .unwrap();
    // (second, value): fires at 0; clear at 10 but high again at 20; clear from 30 on,
    // resolved at 60 (30 s of clear rows), not at 50.
    for (s, v) in [
        (0, 20),
        (10, 1),
        (20, 20),
        (30, 1),
        (50, 1),
        (60, 1),
        (70, 1),
    ] {
        c.batch_execute(&format!(
            "INSERT INTO m VALUES (to_timestamp_micros({}), 'a', {v})",
            1_795_996_800_000_000i64 + s * 1_000_000
        ))
        .await
        .unwrap();
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    let got = loop {
        let rows = c
            .query("SELECT state, ts FROM alarm_events ORDER BY ts", &[])
            .await
            .map(|rows| {
                rows.iter()
                    .map(|r| {
                        let us = epoch_us(r.get(1));
                        (r.get::<_, String>(0), us)
                    })
                    .collect::<Vec<_>>()
            })
            .unwrap_or_default();
        if rows.len() >= 2 {
            break rows;
        }
        assert!(Instant::now() < deadline, "{rows:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let base = 1_795_996_800_000_000i64;
    assert_eq!(
        got,
        vec![
            ("firing".to_string(), base),
            ("resolved".to_string(), base + 60_000_000)
        ]
    );
}

/// A gap alarm forgets a series silent beyond `forget_after` (a decommissioned meter
/// does not stay firing forever).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gap_alarms_forget_long_silent_series() {
    let (_server, c) = server_with_m(&["v"]).await;
    let err = c
        .simple_query(
            "SELECT create_gap_alarm('gone', 'm', '2 seconds', '{\"forget_after\": \"1 second\"}')",
        )
        .await
        .unwrap_err();
    assert_eq!(
        sqlstate(&err),
        "22023",
        "forget_after must exceed silent_for"
    );
    c.simple_query(
        "SELECT create_gap_alarm('gone', 'm', '1 second', '{\"forget_after\": \"4 seconds\"}')",
    )
    .await
    .unwrap();
    c.batch_execute("INSERT INTO m VALUES ('2026-11-24T00:00:00Z', 'a', 1)")
        .await
        .unwrap();
    let active = || async {
        c.query(
            "SELECT state FROM system.alarm_state WHERE alarm = 'gone'",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get::<_, String>(0))
        .collect::<Vec<_>>()
    };
    let deadline = Instant::now() + Duration::from_secs(15);
    while active().await != vec!["firing".to_string()] {
        assert!(Instant::now() < deadline, "never fired");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    while !active().await.is_empty() {
        assert!(Instant::now() < deadline, "never forgotten");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let events: i64 = c
        .query_one(
            "SELECT count(*) FROM alarm_events WHERE alarm = 'gone'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(events, 1, "fired once, then forgotten without a transition");
}

/// Rules created over SQL are in the catalog and its manifest: a node rebuilt by
/// `wattdb recover` from the object store alone lists the same channels, alarms,
/// enablement and silences, and evaluates the alarms on its first write.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rules_survive_wattdb_recover() {
    let (mut server, c) = server_with_m(&["v"]).await;
    c.batch_execute(
        "SELECT create_channel('hook', 'webhook', '{\"url\": \"http://127.0.0.1:9/hook\"}'); \
         SELECT create_alarm('hot', 'm', 'v > 10', '{\"severity\": \"critical\", \"channels\": [\"hook\"]}'); \
         SELECT create_alarm('cold', 'm', 'v < -10', '{}'); \
         SELECT enable_alarm('cold', false); \
         SELECT create_gap_alarm('quiet', 'm', '1 hour', '{}'); \
         SELECT silence_alarm('quiet', 'pid = ''b''', '2 days')",
    )
    .await
    .unwrap();
    let listing = |c: tokio_postgres::Client| async move {
        let alarms: Vec<(String, String, String, bool, String)> = c
            .query(
                "SELECT alarm, kind, severity, enabled, silences FROM system.alarms ORDER BY alarm",
                &[],
            )
            .await
            .unwrap()
            .iter()
            .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4)))
            .collect();
        let channels: Vec<(String, String)> = c
            .query("SELECT channel, kind FROM system.channels", &[])
            .await
            .unwrap()
            .iter()
            .map(|r| (r.get(0), r.get(1)))
            .collect();
        (alarms, channels)
    };
    let before = listing(c).await;
    assert_eq!(
        before
            .0
            .iter()
            .map(|a| (a.0.as_str(), a.3, !a.4.is_empty() && a.4 != "[]"))
            .collect::<Vec<_>>(),
        vec![
            ("cold", false, false),
            ("hot", true, false),
            ("quiet", true, true)
        ]
    );
    assert_eq!(before.1, vec![("hook".to_string(), "webhook".to_string())]);
    server.stop();

    let node = server.recovered_node().start();
    assert_eq!(listing(node.client().await).await, before);
    let c = node.client().await;
    c.batch_execute("INSERT INTO m (ts, pid, v) VALUES ('2026-11-24T00:00:00Z', 'a', 20)")
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let fired: Vec<(String, String)> = c
            .query("SELECT alarm, state FROM alarm_events", &[])
            .await
            .map(|rows| rows.iter().map(|r| (r.get(0), r.get(1))).collect())
            .unwrap_or_default();
        if !fired.is_empty() {
            assert_eq!(fired, vec![("hot".to_string(), "firing".to_string())]);
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the recovered node did not evaluate 'hot'"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
