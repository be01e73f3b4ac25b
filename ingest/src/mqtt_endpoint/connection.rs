//! One client connection: CONNECT, then a reader that stores publishes and a writer that
//! acknowledges them in order once they are durable.

use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;

use super::codec::{self, CodecError, Inbound, Outbound, RECEIVE_MAXIMUM, Version};
use super::{DeviceAuth, EndpointError, LoginRefused};
use crate::pipeline::{DurableMessage, IngestOutcome, Ingestor};

const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// What the writer sends, in the order the reader queued it.
enum Reply {
    /// Wait for the message to be durable, then send the acknowledgement (none for QoS 0).
    AfterDurable(DurableMessage, Option<Outbound>),
    Now(Outbound),
}

struct Reader<R> {
    stream: R,
    buf: BytesMut,
}

impl<R: AsyncRead + Unpin> Reader<R> {
    async fn next(
        &mut self,
        version: Option<Version>,
        timeout: Option<Duration>,
    ) -> Result<Option<Inbound>, EndpointError> {
        loop {
            let parsed = match version {
                None => codec::read_connect(&mut self.buf),
                Some(v) => codec::read(v, &mut self.buf),
            };
            match parsed {
                Ok(p) => return Ok(Some(p)),
                Err(CodecError::Incomplete) => {}
                Err(e) => return Err(e.into()),
            }
            let n = match timeout {
                Some(t) => tokio::time::timeout(t, self.stream.read_buf(&mut self.buf))
                    .await
                    .map_err(|_| EndpointError::KeepAliveTimeout)??,
                None => self.stream.read_buf(&mut self.buf).await?,
            };
            if n == 0 {
                return Ok(None);
            }
        }
    }
}

async fn send_now<W: AsyncWrite + Unpin>(
    stream: &mut W,
    version: Version,
    packet: Outbound,
) -> Result<(), EndpointError> {
    let mut out = BytesMut::with_capacity(64);
    codec::write(version, packet, &mut out)?;
    stream.write_all(&out).await?;
    Ok(())
}

/// Serve one connection, read from `read` and answered on `write` (a TCP socket's
/// halves, or a TLS stream's).
pub(super) async fn handle<R, W>(
    read: R,
    mut write: W,
    ingestor: Arc<Ingestor>,
    auth: Option<Arc<dyn DeviceAuth>>,
) -> Result<(), EndpointError>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin + Send + 'static,
{
    let mut reader = Reader {
        stream: read,
        buf: BytesMut::with_capacity(64 * 1024),
    };
    let connect = match reader.next(None, Some(CONNECT_TIMEOUT)).await {
        Ok(Some(Inbound::Connect(c))) => c,
        Err(EndpointError::Protocol(CodecError::UnsupportedVersion(_))) => {
            let _ = send_now(&mut write, Version::V311, Outbound::ConnAckBadVersion).await;
            return Ok(());
        }
        Ok(Some(_)) => return Err(EndpointError::NotConnect),
        Ok(None) => return Ok(()),
        Err(e) => return Err(e),
    };
    let version = connect.version;
    if let Some(auth) = &auth {
        let verdict = match connect.login.clone() {
            // Password hashing is slow on purpose: off the I/O threads.
            Some((user, password)) => {
                let auth = auth.clone();
                tokio::task::spawn_blocking(move || auth.check(&user, &password))
                    .await
                    .unwrap_or(Err(LoginRefused::BadLogin))
            }
            None => Err(LoginRefused::BadLogin),
        };
        if let Err(refused) = verdict {
            tracing::info!(client = %connect.client_id, user = ?connect.login.as_ref().map(|l| &l.0), ?refused, "MQTT login refused");
            let bad_login = refused == LoginRefused::BadLogin;
            send_now(&mut write, version, Outbound::ConnAckRefused { bad_login }).await?;
            return Ok(());
        }
    }
    let assigned_client_id = (version == Version::V5 && connect.client_id.is_empty())
        .then(|| format!("wattdb-{}", uuid::Uuid::now_v7().simple()));
    send_now(
        &mut write,
        version,
        Outbound::ConnAckAccepted { assigned_client_id },
    )
    .await?;
    let keep_alive = (connect.keep_alive_secs > 0)
        .then(|| Duration::from_millis(connect.keep_alive_secs as u64 * 1500));
    tracing::debug!(client = %connect.client_id, ?version, "MQTT client connected");

    let (tx, rx) = mpsc::channel(RECEIVE_MAXIMUM as usize);
    let writer = tokio::spawn(write_replies(write, version, rx));
    let read_result = read_loop(&mut reader, version, keep_alive, &ingestor, &tx).await;
    drop(tx);
    // Let the writer acknowledge everything already queued before the connection closes.
    let write_result = writer
        .await
        .map_err(|e| EndpointError::Io(std::io::Error::other(e.to_string())))?;
    read_result.and(write_result)
}

async fn read_loop<R: AsyncRead + Unpin>(
    reader: &mut Reader<R>,
    version: Version,
    keep_alive: Option<Duration>,
    ingestor: &Ingestor,
    tx: &mpsc::Sender<Reply>,
) -> Result<(), EndpointError> {
    loop {
        let packet = tokio::select! {
            p = reader.next(Some(version), keep_alive) => p?,
            // The writer stopped (storage or socket error): stop reading too.
            _ = tx.closed() => return Ok(()),
        };
        let Some(packet) = packet else { return Ok(()) };
        let reply = match packet {
            Inbound::Publish {
                topic,
                payload,
                qos,
                pkid,
            } => {
                let topic = std::str::from_utf8(&topic).map_err(|_| EndpointError::TopicNotUtf8)?;
                // Queues the rows in the WAL (waiting here when the buffer is over budget,
                // which stops reading this socket); the writer acknowledges once durable.
                let pending = ingestor.submit(topic, &payload).await?;
                let ack = match qos {
                    1 => Some(Outbound::PubAck { pkid }),
                    2 => Some(Outbound::PubRec { pkid }),
                    _ => None,
                };
                Reply::AfterDurable(Box::pin(pending.durable()), ack)
            }
            Inbound::PubRel { pkid } => Reply::Now(Outbound::PubComp { pkid }),
            Inbound::Subscribe { pkid, filters } => {
                Reply::Now(Outbound::SubAckRefused { pkid, filters })
            }
            Inbound::Unsubscribe { pkid, filters } => {
                Reply::Now(Outbound::UnsubAck { pkid, filters })
            }
            Inbound::PingReq => Reply::Now(Outbound::PingResp),
            Inbound::Disconnect => return Ok(()),
            Inbound::Connect(_) => return Err(EndpointError::NotConnect),
            Inbound::Other => continue,
        };
        if tx.send(reply).await.is_err() {
            return Ok(());
        }
    }
}

/// Sends replies in queue order. Acknowledgements whose records became durable together
/// go out in one socket write.
async fn write_replies<W: AsyncWrite + Unpin>(
    mut stream: W,
    version: Version,
    mut rx: mpsc::Receiver<Reply>,
) -> Result<(), EndpointError> {
    let mut out = BytesMut::with_capacity(4096);
    while let Some(first) = rx.recv().await {
        let mut next = Some(first);
        while let Some(reply) = next.take() {
            let packet = match reply {
                Reply::Now(p) => Some(p),
                Reply::AfterDurable(mut durable, ack) => {
                    let done = match poll_now(&mut durable) {
                        Poll::Ready(r) => r,
                        Poll::Pending => {
                            // Not durable yet: send what is ready before waiting.
                            flush(&mut stream, &mut out).await?;
                            durable.await
                        }
                    };
                    // Not durable: close without acknowledging, so the client resends.
                    done?;
                    ack
                }
            };
            if let Some(p) = packet {
                codec::write(version, p, &mut out)?;
            }
            next = rx.try_recv().ok();
        }
        flush(&mut stream, &mut out).await?;
    }
    Ok(())
}

fn poll_now(fut: &mut DurableMessage) -> Poll<Result<IngestOutcome, wattdb_storage::Error>> {
    fut.as_mut().poll(&mut Context::from_waker(Waker::noop()))
}

async fn flush<W: AsyncWrite + Unpin>(
    stream: &mut W,
    out: &mut BytesMut,
) -> Result<(), EndpointError> {
    if !out.is_empty() {
        stream.write_all(out).await?;
        out.clear();
    }
    Ok(())
}
