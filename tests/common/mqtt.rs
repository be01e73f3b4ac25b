//! MQTT helpers for tests: the Mosquitto broker from the environment, and a QoS 1
//! publisher that keeps many messages in flight and reports which ones were acknowledged.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rumqttc::{AsyncClient, Event, MqttOptions, Outgoing, Packet, QoS};

/// Meter `meter`'s reading at minute `minute` as (pid, epoch ms, ua): every key distinct,
/// so a test can recompute what it published. The `/ 100.0` gives values such as
/// 236.17000000000002 whose last bit matters.
pub fn reading(meter: usize, minute: i64) -> (String, i64, f64) {
    (
        format!("m{meter}"),
        1_793_491_200_000 + minute * 60_000,
        220.0 + meter as f64 + minute as f64 / 100.0,
    )
}

/// The canonical JSON payload of a [`reading`].
pub fn payload((pid, ts, ua): &(String, i64, f64)) -> String {
    format!(r#"{{"ts": {ts}, "tags": {{"pid": "{pid}"}}, "fields": {{"ua": {ua}}}}}"#)
}

/// `host:port` of the Mosquitto broker started by `.ci/run` (`WATTDB_TEST_MQTT_BROKER`).
/// None when unset, unless `WATTDB_REQUIRE_MOSQUITTO=1` makes that a failure.
pub fn broker_from_env() -> Option<(String, u16)> {
    let Ok(addr) = std::env::var("WATTDB_TEST_MQTT_BROKER") else {
        assert!(
            std::env::var("WATTDB_REQUIRE_MOSQUITTO").as_deref() != Ok("1"),
            "WATTDB_REQUIRE_MOSQUITTO=1 but WATTDB_TEST_MQTT_BROKER is not set"
        );
        eprintln!("skipping: set WATTDB_TEST_MQTT_BROKER=host:port to run broker tests");
        return None;
    };
    let (host, port) = addr
        .rsplit_once(':')
        .expect("WATTDB_TEST_MQTT_BROKER is host:port");
    Some((host.to_string(), port.parse().expect("a port number")))
}

/// The TLS listener with a password file that `.ci/run` starts beside the plain one.
pub struct TlsBroker {
    pub host: String,
    pub port: u16,
    pub ca_file: std::path::PathBuf,
    pub user: String,
    pub password: String,
}

/// `WATTDB_TEST_MQTTS_BROKER` (host:port), `WATTDB_TEST_MQTTS_CA` (PEM file) and
/// `WATTDB_TEST_MQTTS_LOGIN` (user:password); None when unset, unless
/// `WATTDB_REQUIRE_MOSQUITTO=1` makes that a failure.
pub fn tls_broker_from_env() -> Option<TlsBroker> {
    let vars = (
        std::env::var("WATTDB_TEST_MQTTS_BROKER"),
        std::env::var("WATTDB_TEST_MQTTS_CA"),
        std::env::var("WATTDB_TEST_MQTTS_LOGIN"),
    );
    let (Ok(addr), Ok(ca), Ok(login)) = vars else {
        assert!(
            std::env::var("WATTDB_REQUIRE_MOSQUITTO").as_deref() != Ok("1"),
            "WATTDB_REQUIRE_MOSQUITTO=1 but WATTDB_TEST_MQTTS_* are not set"
        );
        eprintln!("skipping: set WATTDB_TEST_MQTTS_BROKER/_CA/_LOGIN to run the TLS test");
        return None;
    };
    let (host, port) = addr.rsplit_once(':').expect("host:port");
    let (user, password) = login.split_once(':').expect("user:password");
    Some(TlsBroker {
        host: host.to_string(),
        port: port.parse().expect("a port number"),
        ca_file: ca.into(),
        user: user.to_string(),
        password: password.to_string(),
    })
}

/// Publish every `(topic, payload, item)` at QoS 1 over one MQTT 3.1.1 connection, up to
/// 100 in flight, `per_tick` messages every `tick` (flat out when `tick` is zero).
/// `on_ack` gets each item whose PUBACK arrived. Returns when all are acknowledged or the
/// connection fails (then the unacknowledged ones were not accepted).
pub async fn publish_qos1<T: Send + 'static>(
    host: &str,
    port: u16,
    client_id: &str,
    messages: Vec<(String, String, T)>,
    per_tick: usize,
    tick: Duration,
    mut on_ack: impl FnMut(T),
) -> usize {
    let mut opts = MqttOptions::new(client_id, host, port);
    opts.set_keep_alive(Duration::from_secs(10));
    opts.set_inflight(100);
    opts.set_max_packet_size(1 << 20, 1 << 20);
    let (client, mut el) = AsyncClient::new(opts, 200);
    let total = messages.len();
    // Items in the order they were handed to the client; the event loop sends them in
    // that order, so each Outgoing::Publish(pkid) belongs to the next one queued.
    let queued: Arc<Mutex<VecDeque<T>>> = Arc::default();
    let q2 = queued.clone();
    let publisher = tokio::spawn(async move {
        let mut n = 0;
        for (topic, payload, item) in messages {
            q2.lock().unwrap().push_back(item);
            if client
                .publish(topic, QoS::AtLeastOnce, false, payload)
                .await
                .is_err()
            {
                return;
            }
            n += 1;
            if !tick.is_zero() && n % per_tick.max(1) == 0 {
                tokio::time::sleep(tick).await;
            }
        }
    });
    let mut in_flight = std::collections::HashMap::new();
    let mut acked = 0;
    while acked < total {
        match tokio::time::timeout(Duration::from_secs(30), el.poll()).await {
            Ok(Ok(Event::Outgoing(Outgoing::Publish(pkid)))) => {
                let item = queued.lock().unwrap().pop_front().expect("a queued item");
                in_flight.insert(pkid, item);
            }
            Ok(Ok(Event::Incoming(Packet::PubAck(a)))) => {
                if let Some(item) = in_flight.remove(&a.pkid) {
                    on_ack(item);
                    acked += 1;
                }
            }
            Ok(Ok(_)) => {}
            Ok(Err(_)) | Err(_) => break,
        }
    }
    publisher.abort();
    acked
}
