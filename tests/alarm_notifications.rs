//! Alarm notifications through the durable outbox, against a local HTTP receiver that
//! answers like the vendors: WeCom text, a signed DingTalk request (the signature checked
//! here with HMAC-SHA256 of `timestamp\nsecret`), a webhook with its headers and the
//! event id; a robot that throttles (`errcode` 45009) gets the notification retried; a
//! receiver that is down gets it after it comes back — across a kill -9 of wattdb, with
//! the same event id and nothing delivered twice; more than a channel's rate at once
//! becomes one digest.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine;
use common::receiver::{Receiver, ok_errcode};
use common::{Server, sqlstate};

async fn setup_table(c: &tokio_postgres::Client) {
    c.batch_execute(
        "CREATE TABLE m (ts TIMESTAMPTZ NOT NULL, pid TEXT NOT NULL, v DOUBLE PRECISION, \
         PRIMARY KEY (pid, ts))",
    )
    .await
    .unwrap();
}

/// A receiver answering 200, a server with table `m` and channel `hook` to the
/// receiver's `/hook`, and a client.
async fn with_webhook() -> (Receiver, Server, tokio_postgres::Client) {
    let hook = Receiver::start(0, Arc::new(|_: &str, _| (200, String::new()))).await;
    let server = Server::new().start();
    let c = server.client().await;
    setup_table(&c).await;
    webhook_channel(&c, &hook).await;
    (hook, server, c)
}

/// Channel `hook`: a webhook to `receiver`'s `/hook`.
async fn webhook_channel(c: &tokio_postgres::Client, receiver: &Receiver) {
    c.simple_query(&format!(
        "SELECT create_channel('hook', 'webhook', '{{\"url\": \"{}\"}}')",
        receiver.url("/hook")
    ))
    .await
    .unwrap();
}

async fn wait_until(what: &str, server: &Server, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !done() {
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}\nlog:\n{}",
            server.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn event_ids(c: &tokio_postgres::Client) -> Vec<(String, String)> {
    c.query(
        "SELECT state, event_id FROM alarm_events ORDER BY ts, series",
        &[],
    )
    .await
    .unwrap()
    .iter()
    .map(|r| (r.get(0), r.get(1)))
    .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wecom_dingtalk_and_webhook_get_each_transition() {
    let receiver = Receiver::start(0, Arc::new(|_: &str, _| ok_errcode())).await;
    let server = Server::new().start();
    let c = server.client().await;
    setup_table(&c).await;
    for sql in [
        format!(
            "SELECT create_channel('ops', 'wecom', '{{\"url\": \"{}\"}}')",
            receiver.url("/cgi-bin/webhook/send?key=k1")
        ),
        format!(
            "SELECT create_channel('duty', 'dingtalk', '{{\"url\": \"{}\", \"secret\": \"SECabc\"}}')",
            receiver.url("/robot/send?access_token=t1")
        ),
        format!(
            "SELECT create_channel('hook', 'webhook', '{{\"url\": \"{}\", \"headers\": {{\"Authorization\": \"Bearer x\"}}}}')",
            receiver.url("/hook")
        ),
    ] {
        c.simple_query(&sql).await.unwrap();
    }
    // Bad channels and uses of them.
    for (sql, code) in [
        (
            "SELECT create_channel('x', 'pager', '{\"url\": \"http://a\"}')",
            "22023",
        ),
        ("SELECT create_channel('x', 'wecom', '{}')", "22023"),
        (
            "SELECT create_channel('x', 'mqtt', '{\"url\": \"mqtt://a\"}')",
            "22023",
        ),
        (
            "SELECT create_channel('x', 'mqtt', '{\"url\": \"http://a\", \"topic\": \"t\"}')",
            "22023",
        ),
        (
            "SELECT create_channel('ops', 'webhook', '{\"url\": \"http://a\"}')",
            "42710",
        ),
        (
            "SELECT create_alarm('a', 'm', 'v > 1', '{\"channels\": [\"nope\"]}')",
            "22023",
        ),
    ] {
        let err = c.simple_query(sql).await.unwrap_err();
        assert_eq!(sqlstate(&err), code, "{sql}: {err:?}");
    }
    let urls: Vec<String> = c
        .query("SELECT url FROM system.channels ORDER BY channel", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert!(
        urls.iter().all(|u| !u.contains("k1") && !u.contains("t1")),
        "keys hidden: {urls:?}"
    );

    c.simple_query(
        "SELECT create_alarm('hot', 'm', 'v > 10', '{\"channels\": [\"ops\", \"duty\", \"hook\"], \"severity\": \"critical\"}')",
    )
    .await
    .unwrap();
    let err = c
        .simple_query("SELECT drop_channel('ops')")
        .await
        .unwrap_err();
    assert_eq!(
        sqlstate(&err),
        "2BP01",
        "a channel in use cannot be dropped"
    );

    c.batch_execute(
        "INSERT INTO m VALUES ('2026-11-24T00:00:00Z', 'a', 20.5); \
         INSERT INTO m VALUES ('2026-11-24T00:01:00Z', 'a', 3.0)",
    )
    .await
    .unwrap();
    wait_until("two notifications on each channel", &server, || {
        ["/cgi-bin/webhook/send", "/robot/send", "/hook"]
            .iter()
            .all(|p| receiver.received(p).len() >= 2)
    })
    .await;
    for p in ["/cgi-bin/webhook/send", "/robot/send", "/hook"] {
        let got = receiver.received(p);
        assert_eq!(
            got.len(),
            2,
            "{p}: each transition once, nothing twice: {:?}",
            got.iter().map(|r| &r.body).collect::<Vec<_>>()
        );
    }
    let ids = event_ids(&c).await;
    assert_eq!(
        ids.iter().map(|(s, _)| s.as_str()).collect::<Vec<_>>(),
        vec!["firing", "resolved"]
    );
    // alarm_events.message (and rejected.payload) are full-text from the start.
    let declared: Vec<(String, String)> = c
        .query(
            "SELECT table_name, column_name FROM system.fulltext ORDER BY table_name",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert_eq!(
        declared,
        [
            ("alarm_events".to_string(), "message".to_string()),
            ("rejected".to_string(), "payload".to_string())
        ]
    );
    let found: Vec<String> = c
        .query(
            "SELECT state FROM alarm_events WHERE matches(message, 'hot AND resolved')",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(found, ["resolved"]);

    // WeCom: a text message with the event's message and id.
    for (r, (state, id)) in receiver.received("/cgi-bin/webhook/send").iter().zip(&ids) {
        assert_eq!(r.query, "key=k1");
        let v = r.json();
        assert_eq!(v["msgtype"], "text");
        let content = v["text"]["content"].as_str().unwrap();
        assert!(
            content.contains(id) && content.contains("hot") && content.contains(state),
            "{content}"
        );
    }
    // DingTalk: timestamp and sign computed here from the secret.
    for r in receiver.received("/robot/send") {
        let q: std::collections::HashMap<String, String> =
            url::form_urlencoded::parse(r.query.as_bytes())
                .into_owned()
                .collect();
        assert_eq!(q["access_token"], "t1");
        let ts: i64 = q["timestamp"].parse().unwrap();
        assert!((chrono::Utc::now().timestamp_millis() - ts).abs() < 60_000);
        let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, b"SECabc");
        let tag = ring::hmac::sign(&key, format!("{ts}\nSECabc").as_bytes());
        let want = base64::engine::general_purpose::STANDARD.encode(tag.as_ref());
        assert_eq!(q["sign"], want, "the DingTalk signature");
        assert_eq!(r.json()["msgtype"], "text");
    }
    // Webhook: the event as JSON, the configured header, the event id header.
    for (r, (state, id)) in receiver.received("/hook").iter().zip(&ids) {
        assert_eq!(r.headers["authorization"], "Bearer x");
        assert_eq!(&r.headers["x-wattdb-event-id"], id);
        let v = r.json();
        assert_eq!(v["event_id"], id.as_str());
        assert_eq!(v["state"], state.as_str());
        assert_eq!(v["severity"], "critical");
        assert_eq!(v["series"], "pid=a");
    }
    let sent: i64 = c
        .query_one(
            "SELECT count(*) FROM system.notifications WHERE status = 'sent'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(sent, 6);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn throttled_and_down_receivers_get_it_later_also_after_kill_9() {
    // A robot that throttles its first two requests.
    let robot = Receiver::start(
        0,
        Arc::new(|_: &str, n| {
            if n < 2 {
                (
                    200,
                    r#"{"errcode":45009,"errmsg":"api freq out of limit"}"#.to_string(),
                )
            } else {
                ok_errcode()
            }
        }),
    )
    .await;
    // A webhook receiver that is down: its port is reserved and closed.
    let down_port = common::free_port();
    let mut server = Server::new().start();
    let c = server.client().await;
    setup_table(&c).await;
    c.simple_query(&format!(
        "SELECT create_channel('ops', 'wecom', '{{\"url\": \"{}\"}}')",
        robot.url("/send")
    ))
    .await
    .unwrap();
    c.simple_query(&format!(
        "SELECT create_channel('hook', 'webhook', '{{\"url\": \"http://127.0.0.1:{down_port}/hook\"}}')"
    ))
    .await
    .unwrap();
    c.simple_query(
        "SELECT create_alarm('hot', 'm', 'v > 10', '{\"channels\": [\"ops\", \"hook\"]}')",
    )
    .await
    .unwrap();
    c.batch_execute("INSERT INTO m VALUES ('2026-11-24T00:00:00Z', 'a', 20.5)")
        .await
        .unwrap();
    wait_until("the throttled robot accepts", &server, || {
        robot.received("/send").len() >= 3
    })
    .await;
    let id = event_ids(&c).await[0].1.clone();
    let content = robot.received("/send")[2].json()["text"]["content"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(content.contains(&id), "{content}");
    // The webhook keeps failing meanwhile, with the reason.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let row = c
            .query_one(
                "SELECT status, attempts, last_error FROM system.notifications WHERE channel = 'hook'",
                &[],
            )
            .await
            .unwrap();
        let (status, attempts): (String, i64) = (row.get(0), row.get(1));
        if attempts >= 2 {
            assert_eq!(status, "pending");
            assert!(row.get::<_, Option<String>>(2).is_some());
            break;
        }
        assert!(Instant::now() < deadline, "no retries of the webhook");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // kill -9, the receiver comes up, wattdb restarts: the pending notification is sent.
    server.kill9();
    let hook = Receiver::start(down_port, Arc::new(|_: &str, _| (204, String::new()))).await;
    server.spawn();
    wait_until("the webhook after the restart", &server, || {
        !hook.received("/hook").is_empty()
    })
    .await;
    let c = server.client().await;
    let got = hook.received("/hook");
    assert_eq!(got[0].headers["x-wattdb-event-id"], id);
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(hook.received("/hook").len(), 1, "delivered once");
    assert_eq!(
        robot.received("/send").len(),
        3,
        "the robot is not notified again"
    );
    let rows = c
        .query(
            "SELECT channel, status FROM system.notifications ORDER BY channel",
            &[],
        )
        .await
        .unwrap();
    let statuses: Vec<(String, String)> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
    assert_eq!(
        statuses,
        vec![
            ("hook".into(), "sent".into()),
            ("ops".into(), "sent".into())
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn more_than_the_rate_becomes_one_digest() {
    let robot = Receiver::start(0, Arc::new(|_: &str, _| ok_errcode())).await;
    let server = Server::new().start();
    let c = server.client().await;
    setup_table(&c).await;
    c.simple_query(&format!(
        "SELECT create_channel('ops', 'wecom', '{{\"url\": \"{}\", \"rate_per_minute\": 2}}')",
        robot.url("/send")
    ))
    .await
    .unwrap();
    c.simple_query("SELECT create_alarm('hot', 'm', 'v > 10', '{\"channels\": [\"ops\"]}')")
        .await
        .unwrap();
    // Six meters over the threshold in one statement.
    c.batch_execute(
        "INSERT INTO m VALUES ('2026-11-24T00:00:00Z', 'a', 11), ('2026-11-24T00:00:00Z', 'b', 12), \
         ('2026-11-24T00:00:00Z', 'c', 13), ('2026-11-24T00:00:00Z', 'd', 14), \
         ('2026-11-24T00:00:00Z', 'e', 15), ('2026-11-24T00:00:00Z', 'f', 16)",
    )
    .await
    .unwrap();
    wait_until("the digest", &server, || {
        !robot.received("/send").is_empty()
    })
    .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let got = robot.received("/send");
    assert_eq!(got.len(), 1, "one request for six events");
    let content = got[0].json()["text"]["content"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(content.starts_with("6 alarms:"), "{content}");
    for (_, id) in event_ids(&c).await {
        assert!(content.contains(&id), "{id} in {content}");
    }
}

/// A storm: more than 50 series of one alarm change state at once (a concentrator went
/// away) — one grouped notification instead of one per series, even on a webhook with
/// no rate limit; every transition is still a row of `alarm_events`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_storm_of_one_alarm_is_one_notification() {
    let (hook, server, c) = with_webhook().await;
    c.simple_query(
        "SELECT create_gap_alarm('silent', 'm', '1 second', '{\"channels\": [\"hook\"]}')",
    )
    .await
    .unwrap();
    let values: Vec<String> = (0..60)
        .map(|i| format!("('2026-11-24T00:00:00Z', 'meter-{i:02}', 1.0)"))
        .collect();
    c.batch_execute(&format!("INSERT INTO m VALUES {}", values.join(", ")))
        .await
        .unwrap();
    wait_until("the grouped notification", &server, || {
        !hook.received("/hook").is_empty()
    })
    .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let got = hook.received("/hook");
    assert_eq!(got.len(), 1, "one request for the storm");
    let v = got[0].json();
    assert_eq!(v["digest"], true);
    let events = v["events"].as_array().unwrap();
    assert_eq!(events.len(), 60);
    let rows: i64 = c
        .query_one(
            "SELECT count(*) FROM alarm_events WHERE state = 'firing'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(rows, 60);
}

/// `repeat`: while an alarm stays firing its channels are reminded every `repeat`, each
/// reminder with its own event id; once it resolves the reminders stop.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_firing_alarm_is_repeated_until_it_resolves() {
    let (hook, server, c) = with_webhook().await;
    c.simple_query(
        "SELECT create_alarm('hot', 'm', 'v > 10', '{\"channels\": [\"hook\"], \"repeat\": \"2 seconds\"}')",
    )
    .await
    .unwrap();
    c.batch_execute("INSERT INTO m VALUES ('2026-11-24T00:00:00Z', 'a', 20)")
        .await
        .unwrap();
    wait_until("the firing and two reminders", &server, || {
        hook.received("/hook").len() >= 3
    })
    .await;
    c.batch_execute("INSERT INTO m VALUES ('2026-11-24T00:01:00Z', 'a', 1)")
        .await
        .unwrap();
    wait_until("the resolution", &server, || {
        hook.received("/hook")
            .iter()
            .any(|r| r.json()["state"] == "resolved")
    })
    .await;
    let before = hook.received("/hook").len();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let got = hook.received("/hook");
    assert_eq!(got.len(), before, "no reminder after the resolution");
    let messages: Vec<String> = got
        .iter()
        .map(|r| r.json()["message"].as_str().unwrap().to_string())
        .collect();
    assert!(
        messages[1].contains("still firing") && messages[1].contains("reminder 1"),
        "{messages:?}"
    );
    assert!(messages[2].contains("reminder 2"), "{messages:?}");
    let mut ids: Vec<String> = got
        .iter()
        .map(|r| r.json()["event_id"].as_str().unwrap().to_string())
        .collect();
    ids.sort();
    ids.dedup();
    assert_eq!(
        ids.len(),
        got.len(),
        "each notification has its own event id"
    );
    // Transitions only in alarm_events: firing and resolved.
    let n: i64 = c
        .query_one("SELECT count(*) FROM alarm_events", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 2);
}

/// `silence_alarm`: series under maintenance change state and get their `alarm_events`
/// rows, but their channels are not notified until the silence ends.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silenced_series_are_recorded_but_not_notified() {
    let (hook, server, c) = with_webhook().await;
    c.simple_query("SELECT create_alarm('hot', 'm', 'v > 10', '{\"channels\": [\"hook\"]}')")
        .await
        .unwrap();
    for (sql, code) in [
        ("SELECT silence_alarm('hot', 'v > 1', '1 hour')", "22023"),
        (
            "SELECT silence_alarm('hot', 'pid = ''a''', 'soon')",
            "22023",
        ),
        (
            "SELECT silence_alarm('nope', 'pid = ''a''', '1 hour')",
            "42704",
        ),
        ("SELECT silence_alarm('hot', 'pid = ', '1 hour')", "42601"),
    ] {
        let err = c.simple_query(sql).await.unwrap_err();
        assert_eq!(sqlstate(&err), code, "{sql}: {err:?}");
    }
    c.simple_query("SELECT silence_alarm('hot', 'pid = ''a''', '1 hour')")
        .await
        .unwrap();
    let silences: String = c
        .query_one("SELECT silences FROM system.alarms", &[])
        .await
        .unwrap()
        .get(0);
    assert!(silences.starts_with("pid = 'a' until "), "{silences}");
    c.batch_execute(
        "INSERT INTO m VALUES ('2026-11-24T00:00:00Z', 'a', 20), ('2026-11-24T00:00:00Z', 'b', 20)",
    )
    .await
    .unwrap();
    wait_until("b's notification", &server, || {
        !hook.received("/hook").is_empty()
    })
    .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let got = hook.received("/hook");
    assert_eq!(got.len(), 1, "only the series not silenced");
    assert_eq!(got[0].json()["series"], "pid=b");
    let rows: Vec<String> = c
        .query("SELECT series FROM alarm_events ORDER BY series", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(rows, vec!["pid=a", "pid=b"], "both transitions recorded");
}

/// Subscribes to `<topic_root>/#` on the plain broker and records (topic, payload) of
/// what arrives; returns once the subscription is acknowledged.
async fn subscribe_all(
    host: &str,
    port: u16,
    topic_root: &str,
) -> (
    Arc<std::sync::Mutex<Vec<(String, String)>>>,
    tokio::task::JoinHandle<()>,
) {
    use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
    let mut opts = MqttOptions::new(format!("{topic_root}-sub"), host, port);
    opts.set_keep_alive(Duration::from_secs(10));
    let (sub, mut events) = AsyncClient::new(opts, 10);
    sub.subscribe(format!("{topic_root}/#"), QoS::AtLeastOnce)
        .await
        .unwrap();
    let received: Arc<std::sync::Mutex<Vec<(String, String)>>> = Arc::default();
    let r2 = received.clone();
    let (subscribed_tx, subscribed_rx) = tokio::sync::oneshot::channel();
    let poller = tokio::spawn(async move {
        let _keep = sub;
        let mut subscribed = Some(subscribed_tx);
        while let Ok(ev) = events.poll().await {
            match ev {
                Event::Incoming(Packet::SubAck(_)) => {
                    if let Some(tx) = subscribed.take() {
                        let _ = tx.send(());
                    }
                }
                Event::Incoming(Packet::Publish(p)) => r2.lock().unwrap().push((
                    p.topic.clone(),
                    String::from_utf8_lossy(&p.payload).to_string(),
                )),
                _ => {}
            }
        }
    });
    tokio::time::timeout(Duration::from_secs(10), subscribed_rx)
        .await
        .expect("subscribed")
        .unwrap();
    (received, poller)
}

/// The MQTT channel: each transition is published at QoS 1 to the channel's topic on an
/// external broker (the Mosquitto `.ci/run` starts), as the webhook's JSON.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_mqtt_channel_publishes_each_transition() {
    let Some((host, port)) = common::mqtt::broker_from_env() else {
        return;
    };
    let topic_root = format!("wattdb-test-alarms-{}", common::free_port());
    let (received, poller) = subscribe_all(&host, port, &topic_root).await;

    let server = Server::new().start();
    let c = server.client().await;
    setup_table(&c).await;
    c.simple_query(&format!(
        "SELECT create_channel('bus', 'mqtt', '{{\"url\": \"mqtt://{host}:{port}\", \"topic\": \"{topic_root}/{{alarm}}/{{state}}\"}}')"
    ))
    .await
    .unwrap();
    c.simple_query("SELECT create_alarm('hot', 'm', 'v > 10', '{\"channels\": [\"bus\"]}')")
        .await
        .unwrap();
    c.batch_execute(
        "INSERT INTO m VALUES ('2026-11-24T00:00:00Z', 'a', 20); \
         INSERT INTO m VALUES ('2026-11-24T00:01:00Z', 'a', 2)",
    )
    .await
    .unwrap();
    wait_until("two MQTT notifications", &server, || {
        received.lock().unwrap().len() >= 2
    })
    .await;
    let got = received.lock().unwrap().clone();
    let ids = event_ids(&c).await;
    assert_eq!(got.len(), 2, "{got:?}");
    for ((topic, payload), (state, id)) in got.iter().zip(&ids) {
        assert_eq!(topic, &format!("{topic_root}/hot/{state}"));
        let v: serde_json::Value = serde_json::from_str(payload).unwrap();
        assert_eq!(v["event_id"], id.as_str());
        assert_eq!(v["series"], "pid=a");
    }
    poller.abort();
}

/// The MQTT channel over TLS with a user name and password (the second Mosquitto
/// listener `.ci/run` starts, with a test CA and a password file): delivered with the
/// right password; with a wrong one the notification stays pending with the broker's
/// refusal as its last error; no view shows a password.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_mqtt_channel_over_tls_with_a_password() {
    let Some((host, port)) = common::mqtt::broker_from_env() else {
        return;
    };
    let Some(tls) = common::mqtt::tls_broker_from_env() else {
        return;
    };
    let topic_root = format!("wattdb-test-tls-{}", common::free_port());
    // Listeners share topics: subscribe on the plain one, publish through the TLS one.
    let (received, poller) = subscribe_all(&host, port, &topic_root).await;

    let server = Server::new().start();
    let c = server.client().await;
    setup_table(&c).await;
    let channel = |name: &str, password: &str| {
        format!(
            "SELECT create_channel('{name}', 'mqtt', '{{\"url\": \"mqtts://{user}:{password}@{host}:{port}\", \
             \"topic\": \"{topic_root}/{name}/{{alarm}}\", \"ca_file\": \"{ca}\"}}')",
            user = tls.user,
            host = tls.host,
            port = tls.port,
            ca = tls.ca_file.display(),
        )
    };
    c.simple_query(&channel("secure", &tls.password))
        .await
        .unwrap();
    c.simple_query(&channel("wrong", "not-the-password"))
        .await
        .unwrap();
    // A CA file that does not exist is refused when the channel is created.
    let err = c
        .simple_query(&format!(
            "SELECT create_channel('x', 'mqtt', '{{\"url\": \"mqtts://{}:{}\", \"topic\": \"t\", \
             \"ca_file\": \"/nonexistent/ca.pem\"}}')",
            tls.host, tls.port
        ))
        .await
        .unwrap_err();
    assert_eq!(common::sqlstate(&err), "22023", "{err}");
    c.simple_query(
        "SELECT create_alarm('hot', 'm', 'v > 10', '{\"channels\": [\"secure\", \"wrong\"]}')",
    )
    .await
    .unwrap();
    c.batch_execute("INSERT INTO m VALUES ('2026-11-24T00:00:00Z', 'a', 20)")
        .await
        .unwrap();
    wait_until("the notification over TLS", &server, || {
        !received.lock().unwrap().is_empty()
    })
    .await;
    let ids = event_ids(&c).await;
    let got = received.lock().unwrap().clone();
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0].0, format!("{topic_root}/secure/hot"));
    let v: serde_json::Value = serde_json::from_str(&got[0].1).unwrap();
    assert_eq!(v["event_id"], ids[0].1.as_str());

    let deadline = Instant::now() + Duration::from_secs(30);
    let (status, error) = loop {
        let row = c
            .query_one(
                "SELECT status, last_error FROM system.notifications WHERE channel = 'wrong'",
                &[],
            )
            .await
            .unwrap();
        let error: Option<String> = row.get(1);
        if let Some(error) = error {
            break (row.get::<_, String>(0), error);
        }
        assert!(
            Instant::now() < deadline,
            "no attempt on the wrong password"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(status, "pending");
    assert!(error.contains("NotAuthorized"), "{error}");
    assert!(!error.contains("not-the-password"), "{error}");
    for row in c
        .query("SELECT CAST(url AS TEXT) AS u FROM system.channels", &[])
        .await
        .unwrap()
    {
        let url: String = row.get(0);
        assert!(
            !url.contains(&tls.password) && !url.contains("not-the-password"),
            "{url}"
        );
    }
    poller.abort();
}

/// kill -9 while a notification is in flight (the receiver holds the request): after the
/// restart the notification is sent again with the same event id, so the receiver can
/// tell it is the same one, and the outbox ends `sent`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delivery_cut_by_kill_9_is_redelivered_with_the_same_event_id() {
    let hook = Receiver::start(
        0,
        Arc::new(|_: &str, n| {
            if n == 0 {
                // Hold the first request until wattdb is gone.
                std::thread::sleep(Duration::from_secs(3));
            }
            (200, String::new())
        }),
    )
    .await;
    let mut server = Server::new().start();
    let c = server.client().await;
    setup_table(&c).await;
    webhook_channel(&c, &hook).await;
    c.simple_query("SELECT create_alarm('hot', 'm', 'v > 10', '{\"channels\": [\"hook\"]}')")
        .await
        .unwrap();
    c.batch_execute("INSERT INTO m VALUES ('2026-11-24T00:00:00Z', 'a', 20)")
        .await
        .unwrap();
    wait_until("the first attempt", &server, || {
        !hook.received("/hook").is_empty()
    })
    .await;
    server.kill9();
    server.spawn();
    wait_until("the redelivery", &server, || {
        hook.received("/hook").len() >= 2
    })
    .await;
    let got = hook.received("/hook");
    assert_eq!(
        got[0].headers["x-wattdb-event-id"], got[1].headers["x-wattdb-event-id"],
        "the same event id"
    );
    let c = server.client().await;
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let status: String = c
            .query_one("SELECT status FROM system.notifications", &[])
            .await
            .unwrap()
            .get(0);
        if status == "sent" {
            break;
        }
        assert!(Instant::now() < deadline, "still {status}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A channel whose receiver hangs (accepts the connection, never answers) holds up no
/// other channel: the healthy webhook gets every later transition while the hanging
/// channel's first request is still waiting for its 10 s timeout (none of its entries
/// has a finished attempt yet).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hanging_channel_does_not_hold_up_the_others() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let hook = Receiver::start(0, Arc::new(|_: &str, _| (200, String::new()))).await;
    let stuck = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let stuck_port = stuck.local_addr().unwrap().port();
    let accepted = Arc::new(AtomicUsize::new(0));
    let a2 = accepted.clone();
    let hanger = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = stuck.accept().await {
            a2.fetch_add(1, Ordering::SeqCst);
            held.push(socket); // never read, never answered
        }
    });
    let server = Server::new().start();
    let c = server.client().await;
    setup_table(&c).await;
    webhook_channel(&c, &hook).await;
    c.simple_query(&format!(
        "SELECT create_channel('stuck', 'webhook', '{{\"url\": \"http://127.0.0.1:{stuck_port}/x\"}}')"
    ))
    .await
    .unwrap();
    c.simple_query(
        "SELECT create_alarm('hot', 'm', 'v > 10', '{\"channels\": [\"hook\", \"stuck\"]}')",
    )
    .await
    .unwrap();
    c.batch_execute("INSERT INTO m VALUES ('2026-11-24T00:00:00Z', 'a', 20)")
        .await
        .unwrap();
    wait_until("the first transition on both channels", &server, || {
        hook.received("/hook").len() == 1 && accepted.load(Ordering::SeqCst) >= 1
    })
    .await;
    c.batch_execute(
        "INSERT INTO m VALUES ('2026-11-24T00:01:00Z', 'a', 2); \
         INSERT INTO m VALUES ('2026-11-24T00:02:00Z', 'a', 30)",
    )
    .await
    .unwrap();
    wait_until(
        "the later transitions on the healthy channel",
        &server,
        || hook.received("/hook").len() == 3,
    )
    .await;
    let attempted: i64 = c
        .query_one(
            "SELECT CAST(sum(attempts) AS BIGINT) FROM system.notifications WHERE channel = 'stuck'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(
        attempted, 0,
        "the healthy channel waited for the hanging one's timeout"
    );
    let ids: Vec<String> = event_ids(&c).await.into_iter().map(|(_, id)| id).collect();
    let got: Vec<String> = hook
        .received("/hook")
        .iter()
        .map(|r| r.headers["x-wattdb-event-id"].clone())
        .collect();
    assert_eq!(got, ids, "every transition, in order");
    hanger.abort();
}

/// A channel's key never reaches a reader: a WeCom-style webhook whose URL carries the
/// key, to a port nobody listens on, fails its deliveries — and neither
/// `system.channels`, `system.notifications.last_error` nor the server log shows the key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_channel_shows_no_key() {
    const KEY: &str = "d1f8a0-secret-key-93b";
    let server = Server::new().start();
    let c = server.client().await;
    setup_table(&c).await;
    let port = common::free_port();
    c.simple_query(&format!(
        "SELECT create_channel('ops', 'wecom', '{{\"url\": \"http://127.0.0.1:{port}/cgi-bin/webhook/send?key={KEY}\"}}')"
    ))
    .await
    .unwrap();
    c.simple_query("SELECT create_alarm('hot', 'm', 'v > 10', '{\"channels\": [\"ops\"]}')")
        .await
        .unwrap();
    c.batch_execute("INSERT INTO m VALUES ('2026-11-24T00:00:00Z', 'meter-1', 11.0)")
        .await
        .unwrap();
    let mut last_error = String::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while last_error.is_empty() {
        assert!(
            Instant::now() < deadline,
            "no failed delivery\n{}",
            server.log()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
        let rows = c
            .query(
                "SELECT last_error FROM system.notifications WHERE last_error IS NOT NULL",
                &[],
            )
            .await
            .unwrap();
        if let Some(r) = rows.first() {
            last_error = r.get(0);
        }
    }
    assert!(last_error.contains("127.0.0.1"), "{last_error}");
    assert!(
        !last_error.contains(KEY),
        "the key in last_error: {last_error}"
    );
    for v in common::all_values(&c, "SELECT * FROM system.channels").await {
        assert!(!v.contains(KEY), "system.channels shows the key: {v}");
    }
    assert!(
        !server.log().contains(KEY),
        "the key in the log:\n{}",
        server.log()
    );
}
