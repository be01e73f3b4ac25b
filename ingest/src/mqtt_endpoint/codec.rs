//! One packet vocabulary for both protocol versions the endpoint speaks. MQTT 3.1.1 and
//! MQTT 5 are read and written with rumqttc's codecs (`mqttbytes::v4`, `v5::mqttbytes::v5`);
//! the connection logic only sees [`Inbound`] and [`Outbound`], the few packets a sink
//! receives and sends.

use bytes::{Bytes, BytesMut};
use rumqttc::mqttbytes::v4;
use rumqttc::mqttbytes::{Error as V4Error, QoS};
use rumqttc::v5::mqttbytes::v5;
use rumqttc::v5::mqttbytes::{Error as V5Error, QoS as V5QoS};

/// Largest packet accepted (the pipeline's payload limit applies on top).
pub const MAX_PACKET_BYTES: usize = 16 * 1024 * 1024;

/// How many QoS 1/2 publishes a client may have waiting for their acknowledgement
/// (advertised to MQTT 5 clients as Receive Maximum; enforced for all).
pub const RECEIVE_MAXIMUM: u16 = 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    V311,
    V5,
}

#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    #[error("need more bytes")]
    Incomplete,
    #[error("MQTT protocol level {0} is not supported")]
    UnsupportedVersion(u8),
    #[error("malformed MQTT 3.1.1 packet: {0:?}")]
    V311(V4Error),
    #[error("malformed MQTT 5 packet: {0:?}")]
    V5(V5Error),
    #[error("topic aliases are not accepted (Topic Alias Maximum is 0)")]
    TopicAlias,
}

#[derive(Debug)]
pub struct Connect {
    pub version: Version,
    pub client_id: String,
    pub keep_alive_secs: u16,
    /// User name and password, when the client sent them.
    pub login: Option<(String, String)>,
}

#[derive(Debug)]
pub enum Inbound {
    Connect(Connect),
    Publish {
        topic: Bytes,
        payload: Bytes,
        qos: u8,
        pkid: u16,
    },
    PubRel {
        pkid: u16,
    },
    Subscribe {
        pkid: u16,
        filters: usize,
    },
    Unsubscribe {
        pkid: u16,
        filters: usize,
    },
    PingReq,
    Disconnect,
    /// Acknowledgements and other packets a sink never asked for; ignored.
    Other,
}

#[derive(Debug, Clone)]
pub enum Outbound {
    /// MQTT 5 clients that connected with an empty client id are told the one assigned.
    ConnAckAccepted {
        assigned_client_id: Option<String>,
    },
    ConnAckBadVersion,
    /// Refused: no or wrong credentials (`bad_login`), or a user that may not publish.
    ConnAckRefused {
        bad_login: bool,
    },
    PubAck {
        pkid: u16,
    },
    PubRec {
        pkid: u16,
    },
    PubComp {
        pkid: u16,
    },
    /// Every filter refused: wattdb is a sink, not a broker.
    SubAckRefused {
        pkid: u16,
        filters: usize,
    },
    UnsubAck {
        pkid: u16,
        filters: usize,
    },
    PingResp,
}

/// Read the first packet (CONNECT), detecting the protocol version from it.
pub fn read_connect(buf: &mut BytesMut) -> Result<Inbound, CodecError> {
    // rumqttc's 3.1.1 codec also accepts level 5 (and then misreads the properties), so
    // the level byte is looked at here first.
    match protocol_level(buf)? {
        4 => read(Version::V311, buf),
        5 => read(Version::V5, buf),
        n => Err(CodecError::UnsupportedVersion(n)),
    }
}

/// The protocol level byte of a CONNECT at the start of `buf`: after the fixed header
/// (type byte, 1-4 byte remaining length) and the length-prefixed protocol name.
fn protocol_level(buf: &[u8]) -> Result<u8, CodecError> {
    let mut i = 1;
    loop {
        let b = *buf.get(i).ok_or(CodecError::Incomplete)?;
        i += 1;
        if b & 0x80 == 0 {
            break;
        }
        if i > 4 {
            return Err(CodecError::V311(V4Error::MalformedRemainingLength));
        }
    }
    let name_len = match (buf.get(i), buf.get(i + 1)) {
        (Some(&hi), Some(&lo)) => u16::from_be_bytes([hi, lo]) as usize,
        _ => return Err(CodecError::Incomplete),
    };
    buf.get(i + 2 + name_len)
        .copied()
        .ok_or(CodecError::Incomplete)
}

/// Read the next packet of an established connection.
pub fn read(version: Version, buf: &mut BytesMut) -> Result<Inbound, CodecError> {
    match version {
        Version::V311 => match v4::Packet::read(buf, MAX_PACKET_BYTES) {
            Ok(p) => Ok(from_v4(p)),
            Err(V4Error::InsufficientBytes(_)) => Err(CodecError::Incomplete),
            Err(e) => Err(CodecError::V311(e)),
        },
        Version::V5 => match v5::Packet::read(buf, Some(MAX_PACKET_BYTES as u32)) {
            Ok(p) => from_v5(p),
            Err(V5Error::InsufficientBytes(_)) => Err(CodecError::Incomplete),
            Err(e) => Err(CodecError::V5(e)),
        },
    }
}

fn qos_v4(q: QoS) -> u8 {
    q as u8
}

fn from_v4(p: v4::Packet) -> Inbound {
    match p {
        v4::Packet::Connect(c) => Inbound::Connect(Connect {
            version: Version::V311,
            client_id: c.client_id,
            keep_alive_secs: c.keep_alive,
            login: c.login.map(|l| (l.username, l.password)),
        }),
        v4::Packet::Publish(p) => Inbound::Publish {
            topic: Bytes::from(p.topic.into_bytes()),
            payload: p.payload,
            qos: qos_v4(p.qos),
            pkid: p.pkid,
        },
        v4::Packet::PubRel(r) => Inbound::PubRel { pkid: r.pkid },
        v4::Packet::Subscribe(s) => Inbound::Subscribe {
            pkid: s.pkid,
            filters: s.filters.len(),
        },
        v4::Packet::Unsubscribe(u) => Inbound::Unsubscribe {
            pkid: u.pkid,
            filters: u.topics.len(),
        },
        v4::Packet::PingReq => Inbound::PingReq,
        v4::Packet::Disconnect => Inbound::Disconnect,
        _ => Inbound::Other,
    }
}

fn from_v5(p: v5::Packet) -> Result<Inbound, CodecError> {
    Ok(match p {
        v5::Packet::Connect(c, _, login) => Inbound::Connect(Connect {
            version: Version::V5,
            client_id: c.client_id,
            keep_alive_secs: c.keep_alive,
            login: login.map(|l| (l.username, l.password)),
        }),
        v5::Packet::Publish(p) => {
            if p.properties
                .as_ref()
                .is_some_and(|pr| pr.topic_alias.is_some())
            {
                return Err(CodecError::TopicAlias);
            }
            Inbound::Publish {
                topic: p.topic,
                payload: p.payload,
                qos: match p.qos {
                    V5QoS::AtMostOnce => 0,
                    V5QoS::AtLeastOnce => 1,
                    V5QoS::ExactlyOnce => 2,
                },
                pkid: p.pkid,
            }
        }
        v5::Packet::PubRel(r) => Inbound::PubRel { pkid: r.pkid },
        v5::Packet::Subscribe(s) => Inbound::Subscribe {
            pkid: s.pkid,
            filters: s.filters.len(),
        },
        v5::Packet::Unsubscribe(u) => Inbound::Unsubscribe {
            pkid: u.pkid,
            filters: u.filters.len(),
        },
        v5::Packet::PingReq(_) => Inbound::PingReq,
        v5::Packet::Disconnect(_) => Inbound::Disconnect,
        _ => Inbound::Other,
    })
}

/// Append `packet`, encoded for `version`, to `out`.
pub fn write(version: Version, packet: Outbound, out: &mut BytesMut) -> Result<(), CodecError> {
    match version {
        Version::V311 => to_v4(packet)
            .write(out, MAX_PACKET_BYTES)
            .map(|_| ())
            .map_err(CodecError::V311),
        Version::V5 => to_v5(packet)
            .write(out, Some(MAX_PACKET_BYTES as u32))
            .map(|_| ())
            .map_err(CodecError::V5),
    }
}

fn to_v4(p: Outbound) -> v4::Packet {
    match p {
        Outbound::ConnAckAccepted { .. } => {
            v4::Packet::ConnAck(v4::ConnAck::new(v4::ConnectReturnCode::Success, false))
        }
        Outbound::ConnAckBadVersion => v4::Packet::ConnAck(v4::ConnAck::new(
            v4::ConnectReturnCode::RefusedProtocolVersion,
            false,
        )),
        Outbound::ConnAckRefused { bad_login } => v4::Packet::ConnAck(v4::ConnAck::new(
            if bad_login {
                v4::ConnectReturnCode::BadUserNamePassword
            } else {
                v4::ConnectReturnCode::NotAuthorized
            },
            false,
        )),
        Outbound::PubAck { pkid } => v4::Packet::PubAck(v4::PubAck::new(pkid)),
        Outbound::PubRec { pkid } => v4::Packet::PubRec(v4::PubRec::new(pkid)),
        Outbound::PubComp { pkid } => v4::Packet::PubComp(v4::PubComp::new(pkid)),
        Outbound::SubAckRefused { pkid, filters } => v4::Packet::SubAck(v4::SubAck::new(
            pkid,
            vec![v4::SubscribeReasonCode::Failure; filters],
        )),
        Outbound::UnsubAck { pkid, .. } => v4::Packet::UnsubAck(v4::UnsubAck::new(pkid)),
        Outbound::PingResp => v4::Packet::PingResp,
    }
}

fn to_v5(p: Outbound) -> v5::Packet {
    match p {
        Outbound::ConnAckAccepted { assigned_client_id } => v5::Packet::ConnAck(v5::ConnAck {
            session_present: false,
            code: v5::ConnectReturnCode::Success,
            properties: Some(v5::ConnAckProperties {
                session_expiry_interval: None,
                receive_max: Some(RECEIVE_MAXIMUM),
                max_qos: None,
                retain_available: Some(0),
                max_packet_size: Some(MAX_PACKET_BYTES as u32),
                assigned_client_identifier: assigned_client_id,
                topic_alias_max: None,
                reason_string: None,
                user_properties: vec![],
                wildcard_subscription_available: Some(0),
                subscription_identifiers_available: Some(0),
                shared_subscription_available: Some(0),
                server_keep_alive: None,
                response_information: None,
                server_reference: None,
                authentication_method: None,
                authentication_data: None,
            }),
        }),
        Outbound::ConnAckBadVersion => v5::Packet::ConnAck(v5::ConnAck {
            session_present: false,
            code: v5::ConnectReturnCode::UnsupportedProtocolVersion,
            properties: None,
        }),
        Outbound::ConnAckRefused { bad_login } => v5::Packet::ConnAck(v5::ConnAck {
            session_present: false,
            code: if bad_login {
                v5::ConnectReturnCode::BadUserNamePassword
            } else {
                v5::ConnectReturnCode::NotAuthorized
            },
            properties: None,
        }),
        Outbound::PubAck { pkid } => v5::Packet::PubAck(v5::PubAck::new(pkid, None)),
        Outbound::PubRec { pkid } => v5::Packet::PubRec(v5::PubRec::new(pkid, None)),
        Outbound::PubComp { pkid } => v5::Packet::PubComp(v5::PubComp::new(pkid, None)),
        Outbound::SubAckRefused { pkid, filters } => v5::Packet::SubAck(v5::SubAck {
            pkid,
            return_codes: vec![v5::SubscribeReasonCode::ImplementationSpecific; filters],
            properties: None,
        }),
        Outbound::UnsubAck { pkid, filters } => v5::Packet::UnsubAck(v5::UnsubAck {
            pkid,
            reasons: vec![v5::UnsubAckReason::NoSubscriptionExisted; filters],
            properties: None,
        }),
        Outbound::PingResp => v5::Packet::PingResp(v5::PingResp),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn connect_bytes(level: u8) -> BytesMut {
        // CONNECT, protocol "MQTT", given level, clean session, keep-alive 30, client "c1"
        // (MQTT 5 adds an empty property block).
        let mut body = vec![0, 4, b'M', b'Q', b'T', b'T', level, 0x02, 0, 30];
        if level == 5 {
            body.push(0);
        }
        body.extend_from_slice(&[0, 2, b'c', b'1']);
        let mut out = vec![0x10, body.len() as u8];
        out.extend(body);
        BytesMut::from(&out[..])
    }

    #[test]
    fn connect_detects_version() {
        for (level, version) in [(4, Version::V311), (5, Version::V5)] {
            let mut buf = connect_bytes(level);
            match read_connect(&mut buf).unwrap() {
                Inbound::Connect(c) => {
                    assert_eq!(c.version, version);
                    assert_eq!(c.client_id, "c1");
                    assert_eq!(c.keep_alive_secs, 30);
                }
                other => panic!("not a connect: {other:?}"),
            }
            assert!(buf.is_empty(), "the CONNECT was consumed");
        }
        let mut buf = connect_bytes(3);
        assert!(matches!(
            read_connect(&mut buf),
            Err(CodecError::UnsupportedVersion(3))
        ));
        let mut partial = connect_bytes(5);
        partial.truncate(6);
        assert!(matches!(
            read_connect(&mut partial),
            Err(CodecError::Incomplete)
        ));
    }

    #[test]
    fn acks_round_trip_through_the_client_codecs() {
        let mut out = BytesMut::new();
        write(Version::V5, Outbound::PubAck { pkid: 7 }, &mut out).unwrap();
        match v5::Packet::read(&mut out, None).unwrap() {
            v5::Packet::PubAck(a) => assert_eq!(a.pkid, 7),
            other => panic!("{other:?}"),
        }
        write(Version::V311, Outbound::PubRec { pkid: 9 }, &mut out).unwrap();
        match v4::Packet::read(&mut out, 1024).unwrap() {
            v4::Packet::PubRec(a) => assert_eq!(a.pkid, 9),
            other => panic!("{other:?}"),
        }
        let assigned_client_id = Some("wattdb-1".to_string());
        write(
            Version::V5,
            Outbound::ConnAckAccepted { assigned_client_id },
            &mut out,
        )
        .unwrap();
        match v5::Packet::read(&mut out, None).unwrap() {
            v5::Packet::ConnAck(c) => {
                assert_eq!(c.code, v5::ConnectReturnCode::Success);
                let p = c.properties.unwrap();
                assert_eq!(p.receive_max, Some(RECEIVE_MAXIMUM));
                assert_eq!(p.assigned_client_identifier.as_deref(), Some("wattdb-1"));
            }
            other => panic!("{other:?}"),
        }
    }
}
