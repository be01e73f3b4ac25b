//! MQTT ingest through the embedded endpoint with a real MQTT client (rumqttc): values
//! arrive, bad payloads go to `rejected`, and every PUBACKed message survives kill -9.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::Server;
use common::mqtt::{payload, reading};
use rumqttc::{AsyncClient, Event, EventLoop, MqttOptions, Packet, QoS};

async fn connect(port: u16, id: &str) -> (AsyncClient, EventLoop) {
    let mut opts = MqttOptions::new(id, "127.0.0.1", port);
    opts.set_keep_alive(Duration::from_secs(5));
    opts.set_clean_session(false);
    let (client, mut eventloop) = AsyncClient::new(opts, 10);
    loop {
        match eventloop.poll().await {
            Ok(Event::Incoming(Packet::ConnAck(_))) => return (client, eventloop),
            Ok(_) => {}
            Err(e) => panic!("MQTT connect failed: {e}"),
        }
    }
}

/// Publish at QoS 1 and wait for the PUBACK. Err when the connection breaks first.
async fn publish_acked(
    client: &AsyncClient,
    el: &mut EventLoop,
    topic: &str,
    payload: String,
) -> Result<(), String> {
    client
        .publish(topic, QoS::AtLeastOnce, false, payload)
        .await
        .map_err(|e| e.to_string())?;
    loop {
        match tokio::time::timeout(Duration::from_secs(20), el.poll()).await {
            Ok(Ok(Event::Incoming(Packet::PubAck(_)))) => return Ok(()),
            Ok(Ok(_)) => {}
            Ok(Err(e)) => return Err(e.to_string()),
            Err(_) => return Err("no PUBACK within 20 s".into()),
        }
    }
}

async fn stored(server: &Server) -> BTreeMap<(String, i64), f64> {
    common::keyed_values(
        server,
        "SELECT pid, CAST(extract(epoch FROM ts) * 1000 AS BIGINT), ua FROM electric",
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn published_values_are_queryable_and_bad_payloads_rejected() {
    let server = Server::new().start();
    let (client, mut el) = connect(server.mqtt_port, "meter-gw-1").await;
    let mut expected = BTreeMap::new();
    for minute in 0..20 {
        for meter in 0..3 {
            let r = reading(meter, minute);
            publish_acked(&client, &mut el, "wattdb/electric", payload(&r))
                .await
                .unwrap();
            expected.insert((r.0, r.1), r.2);
        }
    }
    // One batch message with two readings, and line protocol.
    let batch = format!("[{}, {}]", payload(&reading(7, 0)), payload(&reading(7, 1)));
    publish_acked(&client, &mut el, "wattdb/electric", batch)
        .await
        .unwrap();
    for m in [0, 1] {
        let r = reading(7, m);
        expected.insert((r.0, r.1), r.2);
    }
    publish_acked(
        &client,
        &mut el,
        "wattdb/line",
        "electric,pid=m9 ua=230.5 1793491200000000000".into(),
    )
    .await
    .unwrap();
    expected.insert(("m9".into(), 1_793_491_200_000), 230.5);
    // Poison: acknowledged (stored in rejected), never blocks the stream.
    publish_acked(&client, &mut el, "wattdb/electric", "{broken".into())
        .await
        .unwrap();
    publish_acked(
        &client,
        &mut el,
        "wattdb/electric",
        r#"{"ts": 1, "tags": {"pid": "x"}, "fields": {"ua": "high"}}"#.into(),
    )
    .await
    .unwrap();
    // Subscriptions are refused cleanly; the connection stays usable.
    client
        .subscribe("wattdb/#", QoS::AtLeastOnce)
        .await
        .unwrap();
    publish_acked(&client, &mut el, "wattdb/electric", payload(&reading(8, 0)))
        .await
        .unwrap();
    let r = reading(8, 0);
    expected.insert((r.0, r.1), r.2);

    assert_eq!(stored(&server).await, expected);
    let c = server.client().await;
    let rejected = c
        .query("SELECT topic, error FROM rejected ORDER BY ts", &[])
        .await
        .unwrap();
    assert_eq!(rejected.len(), 2);
    assert!(rejected[0].get::<_, &str>(1).contains("invalid JSON"));
    assert!(rejected[1].get::<_, &str>(1).contains("ua"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_acknowledged_message_survives_kill_9() {
    let mut server = Server::new().start();
    let port = server.mqtt_port;
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let publisher = tokio::spawn(async move {
        let (client, mut el) = connect(port, "crash-test").await;
        for minute in 0.. {
            let r = reading(minute as usize % 5, minute);
            match publish_acked(&client, &mut el, "wattdb/electric", payload(&r)).await {
                Ok(()) => {
                    if tx.send(r).is_err() {
                        return;
                    }
                }
                Err(_) => return, // server killed: this message was not acknowledged
            }
        }
    });
    let mut acked = BTreeMap::new();
    while acked.len() < 300 {
        let r = rx.recv().await.expect("publisher stopped early");
        acked.insert((r.0, r.1), r.2);
    }
    server.kill9();
    let _ = publisher.await;
    while let Ok(r) = rx.try_recv() {
        acked.insert((r.0, r.1), r.2);
    }
    server.spawn();
    let got = stored(&server).await;
    // Every acknowledged message is there; at most the one in flight at the kill extra.
    for (k, v) in &acked {
        assert_eq!(got.get(k), Some(v), "acknowledged reading {k:?} lost");
    }
    assert!(
        got.len() <= acked.len() + 1,
        "{} stored vs {} acked",
        got.len(),
        acked.len()
    );
}

/// MQTT 5 with many publishes in flight on one connection (the client sends up to the
/// server's Receive Maximum before waiting): every PUBACKed reading survives kill -9,
/// nothing is stored twice, and nothing appears that was never sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mqtt5_pipelined_publishes_survive_kill_9() {
    use rumqttc::Outgoing;
    use rumqttc::v5::mqttbytes::QoS as QoS5;
    use rumqttc::v5::mqttbytes::v5::Packet as Packet5;
    use rumqttc::v5::{AsyncClient as Client5, Event as Event5, MqttOptions as Options5};
    use std::collections::{HashMap, VecDeque};
    use std::sync::{Arc, Mutex};

    let mut server = Server::new().start();
    let mut opts = Options5::new("pipelined-v5", "127.0.0.1", server.mqtt_port);
    opts.set_keep_alive(Duration::from_secs(5));
    opts.set_outgoing_inflight_upper_limit(200);
    let (client, mut el) = Client5::new(opts, 500);
    // Readings in the order they were handed to the client; the event loop sends them in
    // that order, so each Outgoing::Publish(pkid) belongs to the next one in the queue.
    let queued: Arc<Mutex<VecDeque<(String, i64, f64)>>> = Arc::default();
    let q2 = queued.clone();
    let publisher = tokio::spawn(async move {
        for minute in 0.. {
            let r = reading(minute as usize % 7, minute);
            let body = payload(&r);
            q2.lock().unwrap().push_back(r);
            if client
                .publish("wattdb/electric", QoS5::AtLeastOnce, false, body)
                .await
                .is_err()
            {
                return;
            }
        }
    });
    let mut sent: BTreeMap<(String, i64), f64> = BTreeMap::new();
    let mut in_flight: HashMap<u16, (String, i64, f64)> = HashMap::new();
    let mut acked: BTreeMap<(String, i64), f64> = BTreeMap::new();
    let mut max_in_flight = 0;
    let mut killed = false;
    loop {
        match tokio::time::timeout(Duration::from_secs(20), el.poll()).await {
            Ok(Ok(Event5::Outgoing(Outgoing::Publish(pkid)))) => {
                let r = queued
                    .lock()
                    .unwrap()
                    .pop_front()
                    .expect("a queued reading");
                sent.insert((r.0.clone(), r.1), r.2);
                in_flight.insert(pkid, r);
                max_in_flight = max_in_flight.max(in_flight.len());
            }
            Ok(Ok(Event5::Incoming(Packet5::PubAck(a)))) => {
                let r = in_flight
                    .remove(&a.pkid)
                    .expect("ack for a publish in flight");
                acked.insert((r.0, r.1), r.2);
                if acked.len() >= 3000 && !killed {
                    server.kill9();
                    killed = true;
                }
            }
            Ok(Ok(_)) => {}
            Ok(Err(_)) if killed => break,
            Ok(Err(e)) => panic!("connection failed before the kill: {e}"),
            Err(_) => panic!("no progress for 20 s"),
        }
    }
    publisher.abort();
    assert!(
        max_in_flight > 10,
        "publishes were not pipelined (at most {max_in_flight} in flight)"
    );
    server.spawn();
    let got = stored(&server).await;
    for (k, v) in &acked {
        assert_eq!(got.get(k), Some(v), "acknowledged reading {k:?} lost");
    }
    for (k, v) in &got {
        assert_eq!(sent.get(k), Some(v), "stored reading {k:?} was never sent");
    }
}

/// With a write buffer far smaller than what is published, wattdb slows the publisher
/// down (stops reading, delays PUBACKs) instead of growing or dropping: every message is
/// acknowledged and stored, and the backpressure shows in /metrics.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_small_buffer_budget_slows_publishers_and_loses_nothing() {
    let mut server = Server::new();
    server.extra_args = vec![
        "--buffer-budget-bytes".into(),
        "131072".into(),
        "--persist-partition-bytes".into(),
        "65536".into(),
    ];
    let server = server.start();
    let mut expected = BTreeMap::new();
    let mut msgs = Vec::new();
    for i in 0..20_000 {
        let r = reading(i % 10, (i / 10) as i64);
        msgs.push(("wattdb/electric".to_string(), payload(&r), ()));
        expected.insert((r.0, r.1), r.2);
    }
    let acked = common::mqtt::publish_qos1(
        "127.0.0.1",
        server.mqtt_port,
        "pressure",
        msgs,
        1,
        Duration::ZERO,
        |_| {},
    )
    .await;
    assert_eq!(acked, 20_000);
    assert_eq!(stored(&server).await, expected);
    let (_, metrics) = common::http_get(server.http_port, "/metrics");
    let waited: f64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("wattdb_backpressure_wait_seconds_total "))
        .and_then(|v| v.parse().ok())
        .expect("backpressure metric");
    assert!(
        waited > 0.0,
        "writers never waited for buffer room:\n{metrics}"
    );
    assert!(
        common::file_count(&server).await > 1,
        "the persister made room"
    );
}

/// MQTT 5 at every QoS: QoS 0 and 2 messages land too (QoS 2 completes PUBREC → PUBREL →
/// PUBCOMP), and a subscription is refused with a failure reason code.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mqtt5_all_qos_levels_land_and_subscriptions_are_refused() {
    use rumqttc::v5::mqttbytes::QoS as QoS5;
    use rumqttc::v5::mqttbytes::v5::{Packet as Packet5, SubscribeReasonCode};
    use rumqttc::v5::{AsyncClient as Client5, Event as Event5, MqttOptions as Options5};

    let server = Server::new().start();
    let mut opts = Options5::new("v5-qos", "127.0.0.1", server.mqtt_port);
    opts.set_keep_alive(Duration::from_secs(5));
    let (client, mut el) = Client5::new(opts, 10);
    let mut expected = BTreeMap::new();
    let qos = [QoS5::AtMostOnce, QoS5::AtLeastOnce, QoS5::ExactlyOnce];
    for (i, q) in qos.into_iter().enumerate() {
        let r = reading(20 + i, 0);
        client
            .publish("wattdb/electric", q, false, payload(&r))
            .await
            .unwrap();
        expected.insert((r.0, r.1), r.2);
    }
    client
        .subscribe("wattdb/#", QoS5::AtLeastOnce)
        .await
        .unwrap();
    let (mut pubcomp, mut suback) = (false, None);
    while !(pubcomp && suback.is_some()) {
        match tokio::time::timeout(Duration::from_secs(20), el.poll()).await {
            Ok(Ok(Event5::Incoming(Packet5::PubComp(_)))) => pubcomp = true,
            Ok(Ok(Event5::Incoming(Packet5::SubAck(s)))) => suback = Some(s),
            Ok(Ok(_)) => {}
            Ok(Err(e)) => panic!("connection failed: {e}"),
            Err(_) => panic!("no PUBCOMP/SUBACK within 20 s"),
        }
    }
    let codes = suback.unwrap().return_codes;
    assert!(
        codes
            .iter()
            .all(|c| !matches!(c, SubscribeReasonCode::Success(_))),
        "{codes:?}"
    );
    // QoS 0 has no acknowledgement: wait for the rows rather than for a packet.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let got = stored(&server).await;
        if got == expected || std::time::Instant::now() > deadline {
            assert_eq!(got, expected);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
