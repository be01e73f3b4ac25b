//! The embedded MQTT endpoint: devices connect to wattdb itself and publish. wattdb is a
//! sink, not a broker: it speaks the publisher side of MQTT 3.1.1 on rumqttc's packet
//! codec, and a QoS 1 PUBACK (QoS 2 PUBREC) is sent only after the message's rows (or its
//! `rejected` entry) are durable in the WAL. Subscriptions are refused (SUBACK failure).
//! If storage fails, the connection is closed without an acknowledgement, so the device
//! publishes the message again.
//!
//! Sessions: a sink holds no subscriptions and nothing to deliver, so persistent and
//! clean sessions behave the same; the only state is the keep-alive, enforced as 1.5×
//! the client's interval. MQTT 5 CONNECTs are refused with "unacceptable protocol
//! version" for now.

use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use rumqttc::mqttbytes::v4::{
    ConnAck, ConnectReturnCode, Packet, PubAck, PubComp, PubRec, SubAck, SubscribeReasonCode,
    UnsubAck,
};
use rumqttc::mqttbytes::{Error as CodecError, QoS};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::pipeline::Ingestor;

/// Largest packet accepted (the payload limit of the pipeline applies on top).
pub const MAX_PACKET_BYTES: usize = 16 * 1024 * 1024;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum EndpointError {
    #[error("I/O: {0}")]
    Io(#[from] std::io::Error),
    #[error("protocol: {0:?}")]
    Protocol(CodecError),
    #[error("client went silent for longer than its keep-alive")]
    KeepAliveTimeout,
    #[error("first packet was not CONNECT")]
    NotConnect,
    #[error("storage: {0}")]
    Storage(#[from] wattdb_storage::Error),
}

pub async fn serve(
    listener: TcpListener,
    ingestor: Arc<Ingestor>,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    let _ = stream.set_nodelay(true);
                    let ing = ingestor.clone();
                    tokio::spawn(async move {
                        match handle(stream, ing).await {
                            Ok(()) | Err(EndpointError::Io(_)) => {}
                            Err(e) => tracing::debug!(%peer, error = %e, "MQTT connection closed"),
                        }
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

struct Conn {
    stream: TcpStream,
    read: BytesMut,
    write: BytesMut,
}

impl Conn {
    async fn next_packet(
        &mut self,
        timeout: Option<Duration>,
    ) -> Result<Option<Packet>, EndpointError> {
        loop {
            match Packet::read(&mut self.read, MAX_PACKET_BYTES) {
                Ok(p) => return Ok(Some(p)),
                Err(CodecError::InsufficientBytes(_)) => {}
                Err(e) => return Err(EndpointError::Protocol(e)),
            }
            let n = match timeout {
                Some(t) => tokio::time::timeout(t, self.stream.read_buf(&mut self.read))
                    .await
                    .map_err(|_| EndpointError::KeepAliveTimeout)??,
                None => self.stream.read_buf(&mut self.read).await?,
            };
            if n == 0 {
                return Ok(None);
            }
        }
    }

    async fn send(&mut self, packet: Packet) -> Result<(), EndpointError> {
        self.write.clear();
        packet
            .write(&mut self.write, MAX_PACKET_BYTES)
            .map_err(EndpointError::Protocol)?;
        self.stream.write_all(&self.write).await?;
        Ok(())
    }
}

async fn handle(stream: TcpStream, ingestor: Arc<Ingestor>) -> Result<(), EndpointError> {
    let mut conn = Conn {
        stream,
        read: BytesMut::with_capacity(64 * 1024),
        write: BytesMut::with_capacity(64),
    };
    let connect = match conn.next_packet(Some(CONNECT_TIMEOUT)).await {
        Ok(Some(Packet::Connect(c))) => c,
        Err(EndpointError::Protocol(
            CodecError::InvalidProtocolLevel(_) | CodecError::InvalidProtocol,
        )) => {
            let _ = conn
                .send(Packet::ConnAck(ConnAck::new(
                    ConnectReturnCode::RefusedProtocolVersion,
                    false,
                )))
                .await;
            return Ok(());
        }
        Ok(Some(_)) => return Err(EndpointError::NotConnect),
        Ok(None) => return Ok(()),
        Err(e) => return Err(e),
    };
    conn.send(Packet::ConnAck(ConnAck::new(
        ConnectReturnCode::Success,
        false,
    )))
    .await?;
    let keep_alive =
        (connect.keep_alive > 0).then(|| Duration::from_millis(connect.keep_alive as u64 * 1500));
    tracing::debug!(client = %connect.client_id, "MQTT client connected");
    while let Some(packet) = conn.next_packet(keep_alive).await? {
        match packet {
            Packet::Publish(p) => {
                // Store first; acknowledge only what is durable.
                ingestor.ingest(&p.topic, &p.payload).await?;
                match p.qos {
                    QoS::AtMostOnce => {}
                    QoS::AtLeastOnce => conn.send(Packet::PubAck(PubAck::new(p.pkid))).await?,
                    QoS::ExactlyOnce => conn.send(Packet::PubRec(PubRec::new(p.pkid))).await?,
                }
            }
            Packet::PubRel(r) => conn.send(Packet::PubComp(PubComp::new(r.pkid))).await?,
            Packet::Subscribe(s) => {
                let codes = vec![SubscribeReasonCode::Failure; s.filters.len()];
                conn.send(Packet::SubAck(SubAck::new(s.pkid, codes)))
                    .await?
            }
            Packet::Unsubscribe(u) => conn.send(Packet::UnsubAck(UnsubAck::new(u.pkid))).await?,
            Packet::PingReq => conn.send(Packet::PingResp).await?,
            Packet::Disconnect => return Ok(()),
            Packet::Connect(_) => return Err(EndpointError::NotConnect),
            _ => {} // acks from a client that we never sent anything to: ignore
        }
    }
    Ok(())
}
