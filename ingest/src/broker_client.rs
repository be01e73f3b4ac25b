//! External-broker mode: wattdb subscribes to an existing MQTT broker (Mosquitto, EMQX,
//! ...) as an MQTT 5 client (rumqttc) and stores what it receives.
//!
//! Nothing the broker handed over may be lost, so the session is **persistent** (stable
//! client id, `clean_start = false`, session expiry "never"), subscriptions are QoS 1, and
//! acknowledgements are **manual**: a PUBACK goes to the broker only after the message's
//! WAL record is durable. If wattdb crashes or restarts, the broker redelivers everything
//! that was not acknowledged (and queues what arrives meanwhile); redelivered rows
//! replace themselves under last-write-wins, so nothing is stored twice.
//!
//! Several wattdb nodes can split one topic space with a shared subscription group
//! (`$share/<group>/<filter>`). The connection is retried with exponential backoff; user
//! name/password come from the URL or the config, TLS from an `mqtts://` URL (system
//! roots, or a CA file).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::mqttbytes::v5::{Packet, Publish};
use rumqttc::v5::{AsyncClient, Event, EventLoop, MqttOptions};
use rumqttc::{TlsConfiguration, Transport};
use tokio::sync::mpsc;

use crate::metrics::IngestMetrics;
use crate::pipeline::{DurableMessage, Ingestor};

/// How many unacknowledged messages the broker may send us at once (Receive Maximum).
pub const RECEIVE_MAXIMUM: u16 = 1024;
/// Largest packet we accept from the broker (the pipeline's payload limit applies on
/// top: larger payloads up to this go to `rejected`; the broker drops bigger ones).
pub const MAX_PACKET_BYTES: u32 = 16 * 1024 * 1024;
const BACKOFF_MIN: Duration = Duration::from_millis(200);
const BACKOFF_MAX: Duration = Duration::from_secs(30);

#[derive(Debug, thiserror::Error)]
pub enum BrokerConfigError {
    #[error("MQTT broker URL \"{url}\": {reason}")]
    Url { url: String, reason: String },
    #[error("reading the MQTT CA file {path}: {source}")]
    CaFile {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// One broker to subscribe to.
#[derive(Debug, Clone)]
pub struct BrokerConfig {
    /// `mqtt://[user:password@]host[:1883]` or `mqtts://...[:8883]`.
    pub url: String,
    /// Must be stable across restarts: the broker keeps the session under it.
    pub client_id: String,
    /// Topic filters to subscribe to (QoS 1).
    pub topics: Vec<String>,
    /// Shared subscription group: filters become `$share/<group>/<filter>`.
    pub share_group: Option<String>,
    /// Used when the URL carries no credentials.
    pub username: Option<String>,
    pub password: Option<String>,
    /// PEM CA certificate(s) for `mqtts://`; the system roots when absent.
    pub ca_file: Option<PathBuf>,
    pub keep_alive: Duration,
}

impl BrokerConfig {
    /// The subscription filters as sent to the broker.
    pub fn filters(&self) -> Vec<String> {
        self.topics
            .iter()
            .map(|t| match &self.share_group {
                Some(g) => format!("$share/{g}/{t}"),
                None => t.clone(),
            })
            .collect()
    }

    /// rumqttc options for this broker (validates the URL).
    pub fn mqtt_options(&self) -> Result<MqttOptions, BrokerConfigError> {
        let mut opts = connection_options(
            &self.url,
            self.client_id.clone(),
            self.username.clone(),
            self.password.clone(),
            self.ca_file.as_deref(),
        )?;
        opts.set_keep_alive(self.keep_alive);
        opts.set_clean_start(false);
        opts.set_session_expiry_interval(Some(u32::MAX));
        opts.set_manual_acks(true);
        opts.set_receive_maximum(Some(RECEIVE_MAXIMUM));
        opts.set_max_packet_size(Some(MAX_PACKET_BYTES));
        // Room for every acknowledgement of a full receive window, so acking never waits
        // on the event loop.
        opts.set_request_channel_capacity(RECEIVE_MAXIMUM as usize * 4);
        Ok(opts)
    }
}

/// rumqttc options for connecting to the broker at `url` — `mqtt://[user:password@]host
/// [:1883]` or `mqtts://…[:8883]` (TLS with the system roots, or the PEM CA certificates
/// in `ca_file`) — as `client_id`; `username`/`password` are used when the URL carries
/// none. Shared by the subscriber and the alarms' MQTT channel.
pub fn connection_options(
    url: &str,
    client_id: String,
    username: Option<String>,
    password: Option<String>,
    ca_file: Option<&Path>,
) -> Result<MqttOptions, BrokerConfigError> {
    let bad = |reason: &str| BrokerConfigError::Url {
        url: redact(url),
        reason: reason.into(),
    };
    let parsed = url::Url::parse(url).map_err(|e| bad(&e.to_string()))?;
    let tls = match parsed.scheme() {
        "mqtt" | "tcp" => false,
        "mqtts" | "ssl" | "tls" => true,
        other => {
            return Err(bad(&format!(
                "scheme \"{other}\" is not mqtt:// or mqtts://"
            )));
        }
    };
    let host = parsed.host_str().ok_or_else(|| bad("no host"))?;
    let port = parsed.port().unwrap_or(if tls { 8883 } else { 1883 });
    let mut opts = MqttOptions::new(client_id, host, port);
    let user = (!parsed.username().is_empty()).then(|| decode(parsed.username()));
    let pass = parsed.password().map(decode);
    match (user.or(username), pass.or(password)) {
        (Some(u), p) => {
            opts.set_credentials(u, p.unwrap_or_default());
        }
        (None, Some(_)) => return Err(bad("a password needs a user name")),
        (None, None) => {}
    }
    if tls {
        let config = match ca_file {
            Some(path) => TlsConfiguration::Simple {
                ca: std::fs::read(path).map_err(|source| BrokerConfigError::CaFile {
                    path: path.to_path_buf(),
                    source,
                })?,
                alpn: None,
                client_auth: None,
            },
            None => TlsConfiguration::default(),
        };
        // rustls needs a process-wide crypto provider (ring is the one built in).
        let _ = rustls::crypto::ring::default_provider().install_default();
        opts.set_transport(Transport::tls_with_config(config));
    }
    Ok(opts)
}

fn decode(s: &str) -> String {
    url::form_urlencoded::parse(format!("x={s}").as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())
        .unwrap_or_else(|| s.to_string())
}

/// The URL without its password, for logs and errors.
pub fn redact(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) if u.password().is_some() => {
            let _ = u.set_password(Some("***"));
            u.to_string()
        }
        _ => url.to_string(),
    }
}

/// A received message on its way to the WAL, with what is needed to acknowledge it.
struct InFlight {
    durable: DurableMessage,
    publish: Publish,
    connection: u64,
}

/// Subscribe to one broker and store what arrives until `shutdown` turns true.
pub async fn run(
    config: BrokerConfig,
    ingestor: Arc<Ingestor>,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) -> Result<(), BrokerConfigError> {
    // rustls needs a process-wide crypto provider for mqtts:// (ring is the one built in).
    let _ = rustls::crypto::ring::default_provider().install_default();
    let opts = config.mqtt_options()?;
    let (client, mut eventloop) = AsyncClient::new(opts, RECEIVE_MAXIMUM as usize * 4);
    let metrics = ingestor.metrics().clone();
    // Acknowledgements belong to the connection that delivered the message: after a
    // reconnect the broker redelivers what was not acked, and a stale ack could hit a
    // different message that reuses the packet id.
    let connection = Arc::new(AtomicU64::new(0));
    // Unbounded on purpose: the acknowledger waits on the event loop's request channel,
    // so the event loop must never wait on the acknowledger (that cycle deadlocks). What
    // is in flight is bounded by the broker's flow control (our Receive Maximum) and by
    // the write buffer's backpressure in `submit`.
    let (tx, rx) = mpsc::unbounded_channel::<InFlight>();
    let acker = tokio::spawn(acknowledge(client.clone(), rx, connection.clone()));
    let url = redact(&config.url);
    let mut backoff = BACKOFF_MIN;
    let mut up = false;
    loop {
        let event = tokio::select! {
            e = eventloop.poll() => e,
            _ = shutdown.changed() => if *shutdown.borrow() { break } else { continue },
        };
        match event {
            Ok(Event::Incoming(Packet::ConnAck(ack))) => {
                let generation = connection.fetch_add(1, Ordering::SeqCst) + 1;
                backoff = BACKOFF_MIN;
                if !up {
                    up = true;
                    IngestMetrics::add(&metrics.broker_sessions_up, 1);
                }
                tracing::info!(broker = %url, session_present = ack.session_present, generation, "connected to MQTT broker");
                // Re-subscribing is harmless when the session was kept and needed when not.
                for filter in config.filters() {
                    if let Err(e) = client.subscribe(filter.clone(), QoS::AtLeastOnce).await {
                        tracing::warn!(broker = %url, %filter, error = %e, "could not subscribe");
                    }
                }
            }
            Ok(Event::Incoming(Packet::SubAck(s))) => {
                for code in &s.return_codes {
                    if !matches!(
                        code,
                        rumqttc::v5::mqttbytes::v5::SubscribeReasonCode::Success(_)
                    ) {
                        tracing::error!(broker = %url, ?code, "the broker refused a subscription");
                    }
                }
            }
            Ok(Event::Incoming(Packet::Publish(p))) => {
                let Ok(topic) = std::str::from_utf8(&p.topic) else {
                    tracing::warn!(broker = %url, "dropping a message whose topic is not UTF-8");
                    let _ = client.ack(&p).await;
                    continue;
                };
                // Waits here (and so stops reading from the broker) while the write
                // buffer is over budget.
                let submitted = ingestor.submit(topic, &p.payload).await;
                match submitted {
                    Ok(pending) => {
                        let item = InFlight {
                            durable: Box::pin(pending.durable()),
                            publish: p,
                            connection: connection.load(Ordering::SeqCst),
                        };
                        if tx.send(item).is_err() {
                            break;
                        }
                    }
                    Err(e) => {
                        // Not stored, so not acknowledged: the broker redelivers it after
                        // the reconnect this forces.
                        tracing::error!(broker = %url, %topic, error = %e, "could not store an MQTT message; reconnecting");
                        let _ = client.disconnect().await;
                    }
                }
            }
            Ok(_) => {}
            Err(e) => {
                if up {
                    up = false;
                    IngestMetrics::sub(&metrics.broker_sessions_up, 1);
                }
                IngestMetrics::add(&metrics.broker_reconnects, 1);
                tracing::warn!(broker = %url, error = %e, retry_in = ?backoff, "MQTT broker connection failed");
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => {}
                    _ = shutdown.changed() => if *shutdown.borrow() { break },
                }
                backoff = (backoff * 2).min(BACKOFF_MAX);
            }
        }
    }
    drop(tx);
    let _ = acker.await;
    let _ = client.disconnect().await;
    // Let the event loop send the queued acknowledgements and the DISCONNECT.
    let _ = tokio::time::timeout(Duration::from_secs(2), drain(&mut eventloop)).await;
    if up {
        IngestMetrics::sub(&metrics.broker_sessions_up, 1);
    }
    Ok(())
}

async fn drain(eventloop: &mut EventLoop) {
    while eventloop.poll().await.is_ok() {}
}

/// Acknowledge messages in arrival order once they are durable.
async fn acknowledge(
    client: AsyncClient,
    mut rx: mpsc::UnboundedReceiver<InFlight>,
    current: Arc<AtomicU64>,
) {
    while let Some(item) = rx.recv().await {
        match item.durable.await {
            Ok(_) if item.connection == current.load(Ordering::SeqCst) => {
                if let Err(e) = client.ack(&item.publish).await {
                    tracing::warn!(error = %e, "could not queue an MQTT acknowledgement");
                }
            }
            // Stored, but delivered on an earlier connection: the broker redelivers it
            // and that copy is acknowledged.
            Ok(_) => {}
            Err(e) => {
                tracing::error!(error = %e, "an MQTT message did not become durable; reconnecting so the broker redelivers it");
                let _ = client.disconnect().await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(url: &str) -> BrokerConfig {
        BrokerConfig {
            url: url.into(),
            client_id: "wattdb-test".into(),
            topics: vec!["wattdb/#".into(), "tele/+/SENSOR".into()],
            share_group: None,
            username: None,
            password: None,
            ca_file: None,
            keep_alive: Duration::from_secs(30),
        }
    }

    #[test]
    fn urls_are_validated() {
        assert!(config("mqtt://127.0.0.1:1883").mqtt_options().is_ok());
        assert!(config("mqtt://broker").mqtt_options().is_ok());
        let e = config("http://broker").mqtt_options().unwrap_err();
        assert!(e.to_string().contains("not mqtt://"), "{e}");
        let e = config("mqtt://:pw@broker").mqtt_options().unwrap_err();
        assert!(e.to_string().contains("user name"), "{e}");
        let e = config("not a url").mqtt_options().unwrap_err();
        assert!(e.to_string().contains("not a url"), "{e}");
        let mut c = config("mqtts://broker");
        c.ca_file = Some("/nonexistent/ca.pem".into());
        let e = c.mqtt_options().unwrap_err();
        assert!(e.to_string().contains("/nonexistent/ca.pem"), "{e}");
    }

    #[test]
    fn credentials_and_share_group() {
        let opts = config("mqtt://meter%40site:p%2Fw@broker:1884")
            .mqtt_options()
            .unwrap();
        assert_eq!(opts.broker_address(), ("broker".to_string(), 1884));
        let login = opts.credentials().unwrap();
        assert_eq!(
            (login.username.as_str(), login.password.as_str()),
            ("meter@site", "p/w")
        );
        assert!(!opts.clean_start());
        assert_eq!(redact("mqtt://u:secret@b:1"), "mqtt://u:***@b:1");
        let mut c = config("mqtt://broker");
        c.share_group = Some("ingest".into());
        assert_eq!(
            c.filters(),
            vec!["$share/ingest/wattdb/#", "$share/ingest/tele/+/SENSOR"]
        );
    }
}
