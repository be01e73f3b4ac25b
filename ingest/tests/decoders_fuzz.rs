//! Byte fuzzing of every decoder that reads what devices send (proptest, a bounded
//! number of cases so it runs in the suite): the MQTT packet codec (CONNECT of 3.1.1 and
//! 5, then every packet type), canonical JSON, line protocol and the route decoders
//! (every preset). Random bytes and random edits of valid inputs must come back as a
//! value or an error, never a panic. A case that fails is kept by proptest in
//! `decoders_fuzz.proptest-regressions` and replayed first from then on.

use bytes::BytesMut;
use proptest::prelude::*;
use wattdb_ingest::decode::{canonical_json, line_protocol};
use wattdb_ingest::mqtt_endpoint::codec::{self, Version};
use wattdb_ingest::route::{Route, RouteConfig};

/// (position, operation, byte): flip, insert, delete or cut at a position.
fn edits() -> impl Strategy<Value = Vec<(usize, u8, u8)>> {
    proptest::collection::vec((any::<usize>(), 0u8..4, any::<u8>()), 0..8)
}

fn apply(valid: &[u8], edits: &[(usize, u8, u8)]) -> Vec<u8> {
    let mut b = valid.to_vec();
    for &(pos, op, byte) in edits {
        let at = if b.is_empty() { 0 } else { pos % (b.len() + 1) };
        match op {
            0 if at < b.len() => b[at] ^= byte | 1,
            1 => b.insert(at, byte),
            2 if at < b.len() => {
                b.remove(at);
            }
            3 => b.truncate(at),
            _ => {}
        }
    }
    b
}

fn packet(first: u8, body: &[u8]) -> Vec<u8> {
    let mut p = vec![first];
    let mut n = body.len();
    loop {
        let mut byte = (n % 128) as u8;
        n /= 128;
        if n > 0 {
            byte |= 0x80;
        }
        p.push(byte);
        if n == 0 {
            break;
        }
    }
    p.extend_from_slice(body);
    p
}

fn connect(level: u8) -> Vec<u8> {
    let mut body = vec![0, 4, b'M', b'Q', b'T', b'T', level, 0xc2, 0, 30];
    if level == 5 {
        body.extend([5, 0x11, 0, 0, 0, 10]); // session expiry property
    }
    body.extend([0, 2, b'c', b'1', 0, 1, b'u', 0, 1, b'p']);
    packet(0x10, &body)
}

/// Valid packets a connected client sends, for the given level.
fn packets(v5: bool) -> Vec<Vec<u8>> {
    let props: &[u8] = if v5 { &[0] } else { &[] };
    let publish = |first: u8, pkid: bool| {
        let mut body = vec![0, 11];
        body.extend_from_slice(b"wattdb/elec");
        if pkid {
            body.extend([0, 7]);
        }
        body.extend_from_slice(props);
        body.extend_from_slice(br#"{"ts": 1, "fields": {"v": 2.5}}"#);
        packet(first, &body)
    };
    let mut subscribe = vec![0, 9];
    subscribe.extend_from_slice(props);
    subscribe.extend([0, 3, b'a', b'/', b'#', 1]);
    let mut unsubscribe = vec![0, 9];
    unsubscribe.extend_from_slice(props);
    unsubscribe.extend([0, 3, b'a', b'/', b'#']);
    vec![
        publish(0x30, false),
        publish(0x32, true),
        publish(0x34, true),
        packet(0x82, &subscribe),
        packet(0xa2, &unsubscribe),
        packet(0x62, &[0, 7]),
        packet(0x40, &[0, 7]),
        vec![0xc0, 0],
        vec![0xe0, 0],
    ]
}

/// Read packets until the codec wants more bytes or refuses; it must never panic.
fn read_all(version: Version, data: &[u8]) {
    let mut buf = BytesMut::from(data);
    for _ in 0..64 {
        let before = buf.len();
        if codec::read(version, &mut buf).is_err() || buf.len() == before {
            break;
        }
    }
}

fn routes() -> Vec<Route> {
    ["tasmota", "shelly_gen1", "shelly_gen2", "thingsboard"]
        .into_iter()
        .map(|p| {
            Route::from_config(RouteConfig {
                preset: Some(p.into()),
                ..Default::default()
            })
            .unwrap()
        })
        .collect()
}

const TOPICS: [&str; 5] = [
    "tele/plug1/SENSOR",
    "shellies/plug1/relay/0/power",
    "shellyplus1pm-a8/status/switch:0",
    "v1/devices/me/telemetry",
    "a",
];

const JSON: &[u8] = br#"[{"ts": "2026-11-01T00:00:00Z", "tags": {"pid": "m1"}, "fields": {"ua": 230.5, "on": true, "s": "x"}}, {"ts": 1793491200000, "fields": {"ua": 1e3}}]"#;
const LINE: &[u8] =
    b"electric,pid=m1 ua=230.5,on=t,s=\"a b\",n=3i 1793491200000000000\nelectric ua=1";
const PRESET_JSON: &[u8] = br#"{"Time":"2026-11-01T00:00:00","ENERGY":{"Power":12.5,"Voltage":230},"apower":3.5,"ts":1793491200000,"values":{"v":1}}"#;

proptest! {
    #![proptest_config(ProptestConfig::with_cases(20_000))]

    #[test]
    fn mqtt_packets_with_random_edits_never_panic(which in 0usize..10, v5 in any::<bool>(), e in edits()) {
        let level = if v5 { 5 } else { 4 };
        let mut data = connect(level);
        if which < 9 {
            data.extend(packets(v5).swap_remove(which));
        }
        let data = apply(&data, &e);
        let mut buf = BytesMut::from(&data[..]);
        let version = if v5 { Version::V5 } else { Version::V311 };
        if codec::read_connect(&mut buf).is_ok() {
            read_all(version, &buf);
        }
        // And the same bytes as packets after a CONNECT.
        read_all(version, &data);
    }

    #[test]
    fn random_bytes_never_panic_any_decoder(bytes in proptest::collection::vec(any::<u8>(), 0..300), topic in 0usize..5) {
        read_all(Version::V311, &bytes);
        read_all(Version::V5, &bytes);
        let _ = codec::read_connect(&mut BytesMut::from(&bytes[..]));
        let _ = canonical_json::decode("t", &bytes);
        let _ = line_protocol::decode(&bytes, line_protocol::Precision::default(), 0);
        for r in routes() {
            let _ = r.decode(TOPICS[topic], &bytes, 0);
        }
    }

    #[test]
    fn payloads_with_random_edits_never_panic_a_decoder(e in edits(), topic in 0usize..5) {
        let _ = canonical_json::decode("t", &apply(JSON, &e));
        let _ = line_protocol::decode(&apply(LINE, &e), line_protocol::Precision::default(), 0);
        let payload = apply(PRESET_JSON, &e);
        for r in routes() {
            let _ = r.decode(TOPICS[topic], &payload, 0);
            let _ = r.decode(&String::from_utf8_lossy(&apply(TOPICS[topic].as_bytes(), &e)), PRESET_JSON, 0);
        }
    }
}
