//! Appliance detection on the write path, through SQL: `set_appliance_detection` (bad
//! options refused with their SQLSTATEs), power readings inserted in time order, the
//! detected runs read back from `appliance_events` and the prohibited appliance's alarm
//! from `alarm_events` — against what the readings were built from (an immersion heater
//! on from minute 10 to 50, a kettle from 70 to 73, on an 80 W background) — and the
//! same after a kill -9 in the middle of the heater's run (the detector restored from
//! the runtime's state file), without a transition repeated; then the same readings over
//! MQTT with the notifications at a webhook.

mod common;

use std::time::{Duration, Instant};

use common::{Server, sqlstate};

/// 2026-11-24T00:00:00Z in seconds.
const T0: i64 = 1_795_996_800;
const MINUTE: i64 = 60;

fn ts_text(secs: i64) -> String {
    chrono::DateTime::from_timestamp(secs, 0)
        .unwrap()
        .format("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

/// Room 301's active power at `secs` (5 s readings), W.
fn power(secs: i64) -> f64 {
    let minute = (secs - T0) / MINUTE;
    let heater = if (10..50).contains(&minute) {
        1500.0
    } else {
        0.0
    };
    let kettle = if (70..73).contains(&minute) {
        2000.0
    } else {
        0.0
    };
    80.0 + heater + kettle
}

async fn setup(c: &tokio_postgres::Client) {
    c.batch_execute(
        "CREATE TABLE room_power (ts TIMESTAMPTZ NOT NULL, room TEXT NOT NULL, \
         p DOUBLE PRECISION, q DOUBLE PRECISION, note TEXT, PRIMARY KEY (room, ts))",
    )
    .await
    .unwrap();
}

/// Insert room 301's readings for minutes `from..to`, 5 s apart, in time order.
async fn insert_minutes(c: &tokio_postgres::Client, from: i64, to: i64) {
    insert_power(c, from, to, power).await;
}

/// The same with active power `p(secs)`.
async fn insert_power(c: &tokio_postgres::Client, from: i64, to: i64, p: impl Fn(i64) -> f64) {
    let secs: Vec<i64> = (T0 + from * MINUTE..T0 + to * MINUTE).step_by(5).collect();
    for chunk in secs.chunks(120) {
        let values: Vec<String> = chunk
            .iter()
            .map(|s| format!("('{}', '301', {}, 30)", ts_text(*s), p(*s)))
            .collect();
        c.batch_execute(&format!(
            "INSERT INTO room_power (ts, room, p, q) VALUES {}",
            values.join(", ")
        ))
        .await
        .unwrap();
    }
}

/// (appliance, on minute, off minute) of room 301's rows in `appliance_events`.
async fn runs(c: &tokio_postgres::Client) -> Vec<(String, i64, Option<i64>)> {
    let Ok(rows) = c
        .query(
            "SELECT appliance, CAST(extract(epoch FROM ts) AS BIGINT) AS on_s, \
             CAST(extract(epoch FROM off_ts) AS BIGINT) AS off_s FROM appliance_events \
             WHERE room = '301' ORDER BY ts",
            &[],
        )
        .await
    else {
        return Vec::new(); // the table does not exist yet
    };
    rows.iter()
        .map(|r| {
            let off: Option<i64> = r.get(2);
            (
                r.get::<_, String>(0),
                (r.get::<_, i64>(1) - T0) / MINUTE,
                off.map(|o| (o - T0) / MINUTE),
            )
        })
        .collect()
}

/// (state, minute) of the prohibited-appliance transitions in `alarm_events`.
async fn transitions(c: &tokio_postgres::Client) -> Vec<(String, i64)> {
    let Ok(rows) = c
        .query(
            "SELECT state, CAST(extract(epoch FROM ts) AS BIGINT) FROM alarm_events \
             WHERE alarm = 'prohibited_appliance' ORDER BY ts",
            &[],
        )
        .await
    else {
        return Vec::new();
    };
    rows.iter()
        .map(|r| (r.get::<_, String>(0), (r.get::<_, i64>(1) - T0) / MINUTE))
        .collect()
}

async fn wait_for<T: PartialEq + std::fmt::Debug, F, Fut>(server: &Server, want: T, get: F)
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = T>,
{
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let got = get().await;
        if got == want {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "got {got:?}, want {want:?}\nlog:\n{}",
            server.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn expected_runs() -> Vec<(String, i64, Option<i64>)> {
    vec![
        ("immersion_heater".to_string(), 10, Some(50)),
        ("kettle".to_string(), 70, Some(73)),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_detection_settings_are_refused() {
    let server = Server::new().start();
    let c = server.client().await;
    setup(&c).await;
    for (options, table, code) in [
        (r#"{"power": "p"}"#, "nope", "42P01"),
        (r#"{"power": "watts"}"#, "room_power", "42703"),
        (r#"{"power": "p", "reactive": "qq"}"#, "room_power", "42703"),
        (r#"{"power": "note"}"#, "room_power", "22023"),
        (
            r#"{"power": "p", "prohibited": ["toaster"]}"#,
            "room_power",
            "22023",
        ),
        (r#"{"power": "p", "colour": "red"}"#, "room_power", "22023"),
        (
            r#"{"power": "p", "channels": ["nowhere"]}"#,
            "room_power",
            "22023",
        ),
        (r#"{"power": "p", "delay": "soon"}"#, "room_power", "22023"),
        (r#"{"reactive": "q"}"#, "room_power", "22023"),
        (r#"{"power": "p", "where": "p > 3"}"#, "room_power", "22023"),
        (
            r#"{"power": "p", "where": "room = "}"#,
            "room_power",
            "42601",
        ),
    ] {
        let err = c
            .simple_query(&format!(
                "SELECT set_appliance_detection('{table}', '{options}')"
            ))
            .await
            .unwrap_err();
        assert_eq!(sqlstate(&err), code, "{options}: {err}");
    }
    // Room 301 is outside the `where` scope: its heater is not watched.
    c.simple_query(
        "SELECT set_appliance_detection('room_power', \
         '{\"power\": \"p\", \"reactive\": \"q\", \"where\": \"room = ''302''\"}')",
    )
    .await
    .unwrap();
    insert_minutes(&c, 0, 20).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(runs(&c).await, vec![]);
    // NULL stops detection.
    let stopped =
        common::first_column_text(&c, "SELECT set_appliance_detection('room_power', NULL)").await;
    assert_eq!(stopped, vec!["appliance detection on room_power stopped"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn appliances_are_detected_on_write_and_survive_kill_9() {
    let mut server = Server::new().start();
    let c = server.client().await;
    setup(&c).await;
    c.simple_query(
        "SELECT set_appliance_detection('room_power', \
         '{\"power\": \"p\", \"reactive\": \"q\", \"delay\": \"3 minutes\"}')",
    )
    .await
    .unwrap();
    // The heater has been on for 20 minutes: decided at 6 minutes (a kettle would have
    // switched itself off by then), its alarm fired then, past the 3-minute delay.
    insert_minutes(&c, 0, 30).await;
    let c2 = server.client().await;
    wait_for(&server, vec![("firing".to_string(), 16)], || {
        transitions(&c2)
    })
    .await;
    wait_for(
        &server,
        vec![("immersion_heater".to_string(), 10, None)],
        || runs(&c2),
    )
    .await;
    // The runtime stores its state (with the WAL position it includes) every second:
    // once it has, the restart replays only newer records, so the detector's state
    // (the heater on since minute 10) must come from the state file.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    server.kill9();
    server.spawn();
    let c = server.client().await;
    insert_minutes(&c, 30, 90).await;
    wait_for(&server, expected_runs(), || runs(&c)).await;
    wait_for(
        &server,
        vec![("firing".to_string(), 16), ("resolved".to_string(), 50)],
        || transitions(&c),
    )
    .await;
    // The kettle raised nothing; the heater's row says it was prohibited.
    let prohibited: Vec<bool> = c
        .query(
            "SELECT prohibited FROM appliance_events WHERE room = '301' ORDER BY ts",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(prohibited, vec![true, false]);
}

/// `create_appliance`: an appliance of one's own (bad definitions refused), matched and
/// prohibited like the built-in ones — a 2.8 kW resistive load on for 25 minutes is the
/// user's `lab_oven` (decided after its 10-minute minimum), not an immersion heater.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn own_appliances_are_recognised_and_prohibited() {
    let server = Server::new().start();
    let c = server.client().await;
    setup(&c).await;
    for (name, options, code) in [
        ("kettle", r#"{"watts": [100, 200]}"#, "22023"),
        ("oven", r#"{"watts": [3200, 2500]}"#, "22023"),
        ("oven", r#"{"pf": [0.9, 1.0]}"#, "22023"),
        (
            "oven",
            r#"{"watts": [2500, 3200], "colour": "red"}"#,
            "22023",
        ),
        (
            "oven",
            r#"{"watts": [2500, 3200], "min_duration": "a while"}"#,
            "22023",
        ),
    ] {
        let err = c
            .simple_query(&format!("SELECT create_appliance('{name}', '{options}')"))
            .await
            .unwrap_err();
        assert_eq!(sqlstate(&err), code, "{name} {options}: {err}");
    }
    let oven = r#"{"watts": [2500, 3200], "pf": [0.97, 1.0], "min_duration": "10 minutes"}"#;
    c.simple_query(&format!("SELECT create_appliance('lab_oven', '{oven}')"))
        .await
        .unwrap();
    let err = c
        .simple_query(&format!("SELECT create_appliance('lab_oven', '{oven}')"))
        .await
        .unwrap_err();
    assert_eq!(sqlstate(&err), "42710");
    // Listed with the built-in ones.
    let listed: Vec<(String, bool, f64, Option<f64>)> = c
        .query(
            "SELECT appliance, built_in, watts_max, min_duration_seconds FROM system.appliances \
             WHERE appliance IN ('lab_oven', 'kettle') ORDER BY appliance",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3)))
        .collect();
    assert_eq!(
        listed,
        vec![
            ("kettle".to_string(), true, 3000.0, Some(30.0)),
            ("lab_oven".to_string(), false, 3200.0, Some(600.0)),
        ]
    );
    c.simple_query(
        "SELECT set_appliance_detection('room_power', \
         '{\"power\": \"p\", \"reactive\": \"q\", \"prohibited\": [\"lab_oven\"]}')",
    )
    .await
    .unwrap();
    let settings: Vec<(String, String, i64)> = c
        .query(
            "SELECT table_name, prohibited, delay_seconds FROM system.appliance_detection",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
    assert_eq!(
        settings,
        vec![("room_power".to_string(), "lab_oven".to_string(), 180)]
    );
    // A 2.8 kW resistive load from minute 10 to 35.
    insert_power(&c, 0, 40, |s| {
        if (10..35).contains(&((s - T0) / MINUTE)) {
            2880.0
        } else {
            80.0
        }
    })
    .await;
    wait_for(
        &server,
        vec![("lab_oven".to_string(), 10, Some(35))],
        || runs(&c),
    )
    .await;
    wait_for(
        &server,
        vec![("firing".to_string(), 20), ("resolved".to_string(), 35)],
        || transitions(&c),
    )
    .await;
}

/// Room 301's readings for minutes `from..to` as canonical JSON arrays (60 readings per
/// message, in time order) published over MQTT at QoS 1 to wattdb's own endpoint.
async fn publish_minutes(server: &Server, from: i64, to: i64) {
    let secs: Vec<i64> = (T0 + from * MINUTE..T0 + to * MINUTE).step_by(5).collect();
    let msgs: Vec<(String, String, ())> = secs
        .chunks(60)
        .map(|chunk| {
            let readings: Vec<String> = chunk
                .iter()
                .map(|s| {
                    format!(
                        r#"{{"ts": {}, "tags": {{"room": "301"}}, "fields": {{"p": {}, "q": 30.0}}}}"#,
                        s * 1000,
                        power(*s)
                    )
                })
                .collect();
            (
                "wattdb/room_power".to_string(),
                format!("[{}]", readings.join(", ")),
                (),
            )
        })
        .collect();
    let n = msgs.len();
    let acked = common::mqtt::publish_qos1(
        "127.0.0.1",
        server.mqtt_port,
        "room-301-meter",
        msgs,
        1,
        Duration::ZERO,
        |_| {},
    )
    .await;
    assert_eq!(acked, n, "every message acknowledged");
}

/// The issue's end-to-end path: readings published over MQTT, the runs in
/// `appliance_events`, the prohibited appliance's firing and resolved notifications at
/// a webhook (each with its event id), with a kill -9 while the heater is on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mqtt_readings_reach_appliance_events_and_a_webhook_across_kill_9() {
    let hook = common::receiver::Receiver::start(
        0,
        std::sync::Arc::new(|_: &str, _| (200, String::new())),
    )
    .await;
    let mut server = Server::new().start();
    let c = server.client().await;
    setup(&c).await;
    c.simple_query(&format!(
        "SELECT create_channel('hook', 'webhook', '{{\"url\": \"{}\"}}')",
        hook.url("/hook")
    ))
    .await
    .unwrap();
    c.simple_query(
        "SELECT set_appliance_detection('room_power', \
         '{\"power\": \"p\", \"reactive\": \"q\", \"channels\": [\"hook\"]}')",
    )
    .await
    .unwrap();
    publish_minutes(&server, 0, 30).await;
    wait_for(&server, 1, || async { hook.received("/hook").len() }).await;
    // Let the runtime store its state, then crash while the heater is on.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    server.kill9();
    server.spawn();
    publish_minutes(&server, 30, 90).await;
    let c = server.client().await;
    wait_for(&server, expected_runs(), || runs(&c)).await;
    wait_for(&server, 2, || async { hook.received("/hook").len() }).await;
    let got: Vec<(String, String, String)> = hook
        .received("/hook")
        .iter()
        .map(|r| {
            let v = r.json();
            (
                v["alarm"].as_str().unwrap_or_default().to_string(),
                v["state"].as_str().unwrap_or_default().to_string(),
                v["message"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect();
    assert_eq!(got[0].0, "prohibited_appliance");
    assert_eq!(
        (got[0].1.as_str(), got[1].1.as_str()),
        ("firing", "resolved")
    );
    assert!(
        got[0].2.contains("immersion_heater") && got[0].2.contains("room=301"),
        "{got:?}"
    );
    let ids: Vec<String> = hook
        .received("/hook")
        .iter()
        .map(|r| r.headers["x-wattdb-event-id"].clone())
        .collect();
    assert_ne!(ids[0], ids[1]);
    let transitions_now = transitions(&c).await;
    assert_eq!(
        transitions_now,
        vec![("firing".to_string(), 16), ("resolved".to_string(), 50)]
    );
}
