//! External-broker mode against a real Mosquitto (started by `.ci/run`): wattdb subscribes
//! with a persistent session and acknowledges only durable messages, so values arrive,
//! poison goes to `rejected`, a kill -9 loses nothing the broker accepted, and a shared
//! subscription group splits the messages between two nodes.

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use common::Server;
use common::mqtt::{broker_from_env, payload, publish_qos1, reading};

type Readings = BTreeMap<(String, i64), f64>;

fn broker_server(
    host: &str,
    port: u16,
    client_id: &str,
    table: &str,
    group: Option<&str>,
) -> Server {
    let mut s = Server::new();
    s.extra_args = vec![
        "--mqtt-url".into(),
        format!("mqtt://{host}:{port}"),
        "--mqtt-client-id".into(),
        client_id.into(),
        "--mqtt-topic".into(),
        format!("wattdb/{table}"),
    ];
    if let Some(g) = group {
        s.extra_args.extend(["--mqtt-share-group".into(), g.into()]);
    }
    s.start()
}

async fn stored(server: &Server, table: &str) -> Readings {
    common::keyed_values(
        server,
        &format!(
            "SELECT pid, CAST(extract(epoch FROM ts) * 1000 AS BIGINT), ua FROM {table} \
             WHERE pid NOT LIKE 'probe%'"
        ),
    )
    .await
}

/// Rows stored (0 while the table does not exist yet).
async fn count(server: &Server, table: &str, filter: &str) -> i64 {
    let c = server.client().await;
    match c
        .query_one(&format!("SELECT count(*) FROM {table} WHERE {filter}"), &[])
        .await
    {
        Ok(r) => r.get(0),
        Err(_) => 0,
    }
}

/// Publish probe readings until every server has stored one: then their subscriptions
/// are active (a QoS 1 message published before that would have no subscriber).
async fn wait_subscribed(host: &str, port: u16, servers: &[&Server], table: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    for n in 0.. {
        assert!(Instant::now() < deadline, "wattdb never received a probe");
        let probe = (format!("probe{n}"), 0, 0.0);
        let msgs = vec![(format!("wattdb/{table}"), payload(&probe), ())];
        publish_qos1(
            host,
            port,
            &format!("probe-{table}"),
            msgs,
            1,
            Duration::ZERO,
            |_| {},
        )
        .await;
        tokio::time::sleep(Duration::from_millis(200)).await;
        let mut all = true;
        for s in servers {
            all &= count(s, table, "pid LIKE 'probe%'").await > 0;
        }
        if all {
            return;
        }
    }
}

async fn wait_for_count(servers: &[&Server], table: &str, want: i64) -> i64 {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let mut n = 0;
        for s in servers {
            n += count(s, table, "pid NOT LIKE 'probe%'").await;
        }
        if n >= want || Instant::now() > deadline {
            return n;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broker_messages_are_stored_and_poison_is_rejected() {
    let Some((host, port)) = broker_from_env() else {
        return;
    };
    let table = format!("bk_{}", common::free_port());
    let server = broker_server(&host, port, &format!("wattdb-{table}"), &table, None);
    wait_subscribed(&host, port, &[&server], &table).await;

    let mut expected = Readings::new();
    let mut msgs = Vec::new();
    for minute in 0..100 {
        for meter in 0..5 {
            let r = reading(meter, minute);
            msgs.push((format!("wattdb/{table}"), payload(&r), ()));
            expected.insert((r.0.clone(), r.1), r.2);
        }
    }
    // One message carrying a batch, and poison.
    let batch = format!("[{}, {}]", payload(&reading(9, 0)), payload(&reading(9, 1)));
    msgs.push((format!("wattdb/{table}"), batch, ()));
    for m in [0, 1] {
        let r = reading(9, m);
        expected.insert((r.0, r.1), r.2);
    }
    msgs.push((format!("wattdb/{table}"), "{broken".into(), ()));
    let n = msgs.len();
    let acked = publish_qos1(&host, port, "pub-basic", msgs, 1, Duration::ZERO, |_| {}).await;
    assert_eq!(acked, n, "Mosquitto accepted every message");

    let got = wait_for_count(&[&server], &table, expected.len() as i64).await;
    assert_eq!(got, expected.len() as i64);
    assert_eq!(stored(&server, &table).await, expected);
    let c = server.client().await;
    let rejected = c
        .query(
            "SELECT error FROM rejected WHERE topic = $1",
            &[&format!("wattdb/{table}")],
        )
        .await
        .unwrap();
    assert_eq!(rejected.len(), 1);
    assert!(rejected[0].get::<_, &str>(0).contains("invalid JSON"));
    // Connected and counted in /metrics.
    let (_, metrics) = common::http_get(server.http_port, "/metrics");
    assert!(
        metrics.contains("wattdb_mqtt_broker_sessions 1"),
        "{metrics}"
    );
}

/// wattdb is killed while a publisher streams to the broker; after the restart every
/// message the broker accepted (PUBACK to the publisher) is stored, once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_message_the_broker_accepted_arrives_after_kill_9() {
    let Some((host, port)) = broker_from_env() else {
        return;
    };
    let table = format!("bk_{}", common::free_port());
    let client_id = format!("wattdb-{table}");
    let mut server = broker_server(&host, port, &client_id, &table, None);
    wait_subscribed(&host, port, &[&server], &table).await;

    let total = 8000;
    let mut msgs = Vec::new();
    for i in 0..total {
        let r = reading(i % 10, (i / 10) as i64);
        msgs.push((format!("wattdb/{table}"), payload(&r), r));
    }
    let (h2, t2) = (host.clone(), table.clone());
    let publisher = tokio::spawn(async move {
        let mut accepted = Readings::new();
        // About 2,000 messages/s, so the kill lands mid-stream.
        publish_qos1(
            &h2,
            port,
            &format!("pub-{t2}"),
            msgs,
            20,
            Duration::from_millis(10),
            |r| {
                accepted.insert((r.0, r.1), r.2);
            },
        )
        .await;
        accepted
    });
    while count(&server, &table, "pid NOT LIKE 'probe%'").await < 1000 {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    server.kill9();
    assert!(!publisher.is_finished(), "the kill should land mid-stream");
    let accepted = publisher.await.unwrap();
    assert_eq!(accepted.len(), total, "Mosquitto accepted every message");
    server.spawn();

    let got = wait_for_count(&[&server], &table, total as i64).await;
    if got != total as i64 {
        let log = server.log();
        let tail: Vec<&str> = log.lines().rev().take(40).collect();
        panic!(
            "{got} of {total} stored (duplicates would count twice); log tail:\n{}",
            tail.into_iter().rev().collect::<Vec<_>>().join("\n")
        );
    }
    assert_eq!(stored(&server, &table).await, accepted);
}

/// Two nodes in one shared subscription group split the messages: each message is stored
/// by exactly one of them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_share_group_splits_messages_between_nodes() {
    let Some((host, port)) = broker_from_env() else {
        return;
    };
    let table = format!("bk_{}", common::free_port());
    let group = format!("g{table}");
    let a = broker_server(&host, port, &format!("a-{table}"), &table, Some(&group));
    let b = broker_server(&host, port, &format!("b-{table}"), &table, Some(&group));
    wait_subscribed(&host, port, &[&a, &b], &table).await;

    let mut expected = Readings::new();
    let mut msgs = Vec::new();
    for i in 0..1000 {
        let r = reading(i % 10, (i / 10) as i64);
        msgs.push((format!("wattdb/{table}"), payload(&r), ()));
        expected.insert((r.0.clone(), r.1), r.2);
    }
    let acked = publish_qos1(
        &host,
        port,
        &format!("pub-{table}"),
        msgs,
        1,
        Duration::ZERO,
        |_| {},
    )
    .await;
    assert_eq!(acked, 1000);
    assert_eq!(wait_for_count(&[&a, &b], &table, 1000).await, 1000);
    let (ra, rb) = (stored(&a, &table).await, stored(&b, &table).await);
    assert!(
        !ra.is_empty() && !rb.is_empty(),
        "both nodes got a share: {} / {}",
        ra.len(),
        rb.len()
    );
    assert!(
        ra.keys().all(|k| !rb.contains_key(k)),
        "a message reached both nodes"
    );
    let mut union = ra;
    union.extend(rb);
    assert_eq!(union, expected);
}

/// The subscriber over TLS with a user name and password (the Mosquitto listener `.ci/run`
/// starts with a throw-away CA and a password file): what is published to the broker
/// arrives, once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_subscriber_works_over_tls_with_a_password() {
    let Some((host, port)) = broker_from_env() else {
        return;
    };
    let Some(tls) = common::mqtt::tls_broker_from_env() else {
        return;
    };
    let table = format!("bk_tls_{}", common::free_port());
    let mut s = Server::new();
    s.extra_args = vec![
        "--mqtt-url".into(),
        format!(
            "mqtts://{}:{}@{}:{}",
            tls.user, tls.password, tls.host, tls.port
        ),
        "--mqtt-ca-file".into(),
        tls.ca_file.display().to_string(),
        "--mqtt-client-id".into(),
        format!("wattdb-{table}"),
        "--mqtt-topic".into(),
        format!("wattdb/{table}"),
    ];
    let server = s.start();
    // Listeners share topics: publish on the plain one.
    wait_subscribed(&host, port, &[&server], &table).await;
    let mut expected = Readings::new();
    let mut msgs = Vec::new();
    for minute in 0..20 {
        let r = reading(3, minute);
        msgs.push((format!("wattdb/{table}"), payload(&r), ()));
        expected.insert((r.0.clone(), r.1), r.2);
    }
    let n = msgs.len();
    let acked = publish_qos1(&host, port, "pub-tls", msgs, 1, Duration::ZERO, |_| {}).await;
    assert_eq!(acked, n);
    assert_eq!(
        wait_for_count(&[&server], &table, expected.len() as i64).await,
        expected.len() as i64
    );
    assert_eq!(stored(&server, &table).await, expected);
    assert!(
        !server.log().contains(&tls.password),
        "the password reached the log"
    );
}
