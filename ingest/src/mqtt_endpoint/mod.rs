//! The embedded MQTT endpoint: devices connect to wattdb itself and publish. wattdb is a
//! sink, not a broker: it speaks the publisher side of MQTT 3.1.1 and MQTT 5 on rumqttc's
//! packet codecs ([`codec`]), and a QoS 1 PUBACK (QoS 2 PUBREC) is sent only after the
//! message's rows (or its `rejected` entry) are durable in the WAL. Subscriptions are
//! refused (SUBACK failure). If storage fails, the connection is closed without an
//! acknowledgement, so the device publishes the message again.
//!
//! Each connection is a reader and a writer ([`connection`]): the reader decodes a
//! publish and queues its rows in the WAL, then goes on reading while the writer sends the
//! acknowledgements, in order, as their records become durable. So one connection keeps
//! many publishes in flight (up to [`codec::RECEIVE_MAXIMUM`]) instead of waiting one
//! fsync per message, and when the write buffer is over budget the reader stops reading
//! the socket.
//!
//! [`serve_tls`] serves the same protocol over TLS (`--mqtt-tls-listen`). With a
//! [`DeviceAuth`] (`--mqtt-auth`), a CONNECT must carry the user name and password of a
//! user that may write; others get a refusing CONNACK and the connection is closed.
//!
//! Sessions: a sink holds no subscriptions and nothing to deliver, so persistent and
//! clean sessions behave the same (CONNACK says "no session present"); the only state is
//! the keep-alive, enforced as 1.5× the client's interval.

pub mod codec;
mod connection;

use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

use crate::metrics::IngestMetrics;
use crate::pipeline::Ingestor;

pub use codec::MAX_PACKET_BYTES;

#[derive(Debug, thiserror::Error)]
pub enum EndpointError {
    #[error("I/O: {0}")]
    Io(#[from] std::io::Error),
    #[error("protocol: {0}")]
    Protocol(#[from] codec::CodecError),
    #[error("client went silent for longer than its keep-alive")]
    KeepAliveTimeout,
    #[error("first packet was not CONNECT")]
    NotConnect,
    #[error("topic is not UTF-8")]
    TopicNotUtf8,
    #[error("storage: {0}")]
    Storage(#[from] wattdb_storage::Error),
    #[error("TLS: {0}")]
    Tls(String),
}

/// Who may publish to the embedded endpoint, when devices must log in (`--mqtt-auth`):
/// checks a CONNECT's user name and password.
pub trait DeviceAuth: Send + Sync {
    fn check(&self, user: &str, password: &str) -> Result<(), LoginRefused>;
}

/// Why a device may not connect.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoginRefused {
    /// No such user, no credentials or a wrong password.
    BadLogin,
    /// The user may not write.
    NotAuthorized,
}

/// How long a client has to finish the TLS handshake.
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Accept plain MQTT connections on `listener` until `shutdown` flips to true; with
/// `auth`, devices must log in.
pub async fn serve(
    listener: TcpListener,
    ingestor: Arc<Ingestor>,
    auth: Option<Arc<dyn DeviceAuth>>,
    shutdown: tokio::sync::watch::Receiver<bool>,
) {
    accept_loop(listener, ingestor, None, auth, shutdown).await
}

/// Accept MQTT over TLS (`mqtts://`) on `listener` until `shutdown` flips to true.
pub async fn serve_tls(
    listener: TcpListener,
    ingestor: Arc<Ingestor>,
    tls: TlsAcceptor,
    auth: Option<Arc<dyn DeviceAuth>>,
    shutdown: tokio::sync::watch::Receiver<bool>,
) {
    accept_loop(listener, ingestor, Some(tls), auth, shutdown).await
}

async fn accept_loop(
    listener: TcpListener,
    ingestor: Arc<Ingestor>,
    tls: Option<TlsAcceptor>,
    auth: Option<Arc<dyn DeviceAuth>>,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    let _ = stream.set_nodelay(true);
                    let ing = ingestor.clone();
                    let metrics = ing.metrics().clone();
                    IngestMetrics::add(&metrics.connections_total, 1);
                    IngestMetrics::add(&metrics.connections_open, 1);
                    let tls = tls.clone();
                    let auth = auth.clone();
                    tokio::spawn(async move {
                        let result = match tls {
                            None => {
                                let (read, write) = stream.into_split();
                                connection::handle(read, write, ing, auth).await
                            }
                            Some(tls) => match tokio::time::timeout(
                                TLS_HANDSHAKE_TIMEOUT,
                                tls.accept(stream),
                            )
                            .await
                            {
                                Ok(Ok(stream)) => {
                                    let (read, write) = tokio::io::split(stream);
                                    connection::handle(read, write, ing, auth).await
                                }
                                Ok(Err(e)) => Err(EndpointError::Tls(e.to_string())),
                                Err(_) => Err(EndpointError::Tls("handshake timed out".into())),
                            },
                        };
                        match result {
                            Ok(()) | Err(EndpointError::Io(_)) => {}
                            Err(e) => tracing::debug!(%peer, error = %e, "MQTT connection closed"),
                        }
                        IngestMetrics::sub(&metrics.connections_open, 1);
                    });
                }
                Err(e) => {
                    tracing::warn!(error = %e, "MQTT accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            _ = shutdown.changed() => if *shutdown.borrow() { return },
        }
    }
}
