//! Malformed input from many connections at once: 100,000 mangled MQTT packets and
//! 100,000 mangled PostgreSQL protocol messages (well-framed packets with garbage inside,
//! and byte-level mutations of valid ones: flipped bits, cut short, wrong lengths,
//! random bytes). The server must not panic, and a device and a SQL client working at
//! the same time must not notice: every reading the device published is acknowledged and
//! stored, every statement of the client answers correctly.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::Server;
use common::mqtt::{payload, publish_qos1, reading};
use common::rng::Rng;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const PACKETS_PER_PROTOCOL: usize = 100_000;
const TASKS: usize = 4;
const PER_CONNECTION: usize = 100;

/// A byte-level mutation of `valid`.
fn mutate(rng: &mut Rng, valid: &[u8]) -> Vec<u8> {
    let mut b = valid.to_vec();
    match rng.below(6) {
        0 => {
            for _ in 0..1 + rng.below(4) {
                let i = rng.below(b.len());
                b[i] ^= 1 << rng.below(8);
            }
        }
        1 => b.truncate(rng.below(b.len())),
        2 => {
            let at = rng.below(b.len() + 1);
            let extra = rng.bytes(1, 16);
            b.splice(at..at, extra);
        }
        3 => {
            // A length or header byte set to something extreme.
            let i = rng.below(b.len().min(6));
            b[i] = [0x00, 0x7f, 0x80, 0xff][rng.below(4)];
        }
        4 => b = rng.bytes(1, 64),
        _ => {
            let from = rng.below(b.len());
            let piece = b[from..].to_vec();
            b.extend(piece);
        }
    }
    b
}

fn mqtt_remaining_length(mut n: usize, out: &mut Vec<u8>) {
    loop {
        let mut byte = (n % 128) as u8;
        n /= 128;
        if n > 0 {
            byte |= 0x80;
        }
        out.push(byte);
        if n == 0 {
            break;
        }
    }
}

fn mqtt_packet(first: u8, body: &[u8]) -> Vec<u8> {
    let mut p = vec![first];
    mqtt_remaining_length(body.len(), &mut p);
    p.extend_from_slice(body);
    p
}

fn mqtt_str(s: &[u8], out: &mut Vec<u8>) {
    out.extend_from_slice(&(s.len() as u16).to_be_bytes());
    out.extend_from_slice(s);
}

fn mqtt_connect(id: &str) -> Vec<u8> {
    let mut body = Vec::new();
    mqtt_str(b"MQTT", &mut body);
    body.extend_from_slice(&[4, 0x02, 0, 60]);
    mqtt_str(id.as_bytes(), &mut body);
    mqtt_packet(0x10, &body)
}

fn mqtt_publish(topic: &[u8], payload: &[u8], qos1_pkid: Option<u16>) -> Vec<u8> {
    let mut body = Vec::new();
    mqtt_str(topic, &mut body);
    if let Some(pkid) = qos1_pkid {
        body.extend_from_slice(&pkid.to_be_bytes());
    }
    body.extend_from_slice(payload);
    mqtt_packet(if qos1_pkid.is_some() { 0x32 } else { 0x30 }, &body)
}

/// One mangled MQTT packet for a connection that sent a valid CONNECT.
fn mangled_mqtt(rng: &mut Rng, n: u16) -> Vec<u8> {
    let json = br#"{"ts": 1793491200000, "tags": {"pid": "x"}, "fields": {"ua": 1.5}}"#;
    let line = b"fuzz,pid=x ua=1.5 1793491200000000000";
    match rng.below(8) {
        // Well framed, garbage inside: the decoders and the rejected table get it.
        0 => mqtt_publish(b"wattdb/fuzz", &mutate(rng, json), Some(n)),
        1 => mqtt_publish(b"wattdb/line", &mutate(rng, line), None),
        2 => mqtt_publish(&rng.bytes(1, 12), json, Some(n)),
        3 => mqtt_publish(b"wattdb/fuzz", &rng.bytes(0, 200), None),
        // Byte-level mutations of valid packets.
        4 => mutate(rng, &mqtt_publish(b"wattdb/fuzz", json, Some(n))),
        5 => mutate(rng, &mqtt_packet(0x82, &[0, 1, 0, 3, b'a', b'/', b'b', 1])),
        6 => mutate(rng, &[0xc0, 0x00]),
        _ => mutate(rng, &mqtt_connect("again")),
    }
}

fn pg_message(tag: u8, body: &[u8]) -> Vec<u8> {
    let mut m = vec![tag];
    m.extend_from_slice(&((body.len() + 4) as u32).to_be_bytes());
    m.extend_from_slice(body);
    m
}

fn pg_startup() -> Vec<u8> {
    let mut body = 196_608u32.to_be_bytes().to_vec();
    body.extend_from_slice(b"user\0wattdb\0database\0wattdb\0\0");
    let mut m = ((body.len() + 4) as u32).to_be_bytes().to_vec();
    m.extend_from_slice(&body);
    m
}

/// One mangled PostgreSQL message for a connection past its startup.
fn mangled_pg(rng: &mut Rng) -> Vec<u8> {
    let sql = b"SELECT count(*) FROM pg_catalog.pg_class WHERE relname = 'x'\0";
    match rng.below(8) {
        // Well framed, garbage SQL: an error with a SQLSTATE each, the session goes on.
        0 | 1 => pg_message(b'Q', &mutate(rng, sql)),
        2 => {
            let mut text = rng.bytes(0, 80);
            text.push(0);
            pg_message(b'Q', &text)
        }
        // Extended protocol with garbage bodies.
        3 => pg_message(b'P', &mutate(rng, b"s1\0SELECT $1\0\0\x01\0\0\0\x17")),
        4 => pg_message(b'B', &rng.bytes(0, 40)),
        5 => pg_message(
            [b'E', b'D', b'S', b'C', b'H', b'd', b'f'][rng.below(7)],
            &rng.bytes(0, 20),
        ),
        // Byte-level mutations of valid messages (lengths included).
        6 => mutate(rng, &pg_message(b'Q', b"SELECT 1\0")),
        _ => mutate(rng, &pg_startup()),
    }
}

/// Send `count` mangled packets over connections of `PER_CONNECTION` each, draining
/// whatever the server answers; the server may close a connection at any point.
async fn pound(port: u16, seed: u64, count: usize, mqtt: bool) -> usize {
    let mut rng = Rng(seed);
    let mut sent = 0;
    let mut conn = 0u32;
    while sent < count {
        conn += 1;
        let Ok(stream) = TcpStream::connect(("127.0.0.1", port)).await else {
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        };
        let (mut rd, mut wr) = stream.into_split();
        let drain = tokio::spawn(async move {
            let mut buf = vec![0u8; 64 * 1024];
            while let Ok(Ok(n)) =
                tokio::time::timeout(Duration::from_secs(5), rd.read(&mut buf)).await
            {
                if n == 0 {
                    break;
                }
            }
        });
        // Mostly a valid handshake, so that what follows is read as packets at all.
        let hello = if rng.below(10) < 8 {
            if mqtt {
                mqtt_connect(&format!("fuzz-{seed}-{conn}"))
            } else {
                pg_startup()
            }
        } else if mqtt {
            mutate(&mut rng, &mqtt_connect("fuzz"))
        } else {
            mutate(&mut rng, &pg_startup())
        };
        let mut out = hello;
        for i in 0..PER_CONNECTION.min(count - sent) {
            out.extend(if mqtt {
                mangled_mqtt(&mut rng, (i + 1) as u16)
            } else {
                mangled_pg(&mut rng)
            });
        }
        let n = PER_CONNECTION.min(count - sent);
        if wr.write_all(&out).await.is_ok() {
            let _ = wr.shutdown().await;
        }
        sent += n;
        let _ = drain.await;
    }
    sent
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mangled_mqtt_and_pgwire_from_many_connections_do_not_disturb_a_device_or_a_client() {
    let mut server = Server::new().start();
    let c = server.client().await;
    c.batch_execute(
        "CREATE TABLE t (ts TIMESTAMPTZ NOT NULL, k TEXT NOT NULL, v DOUBLE PRECISION, PRIMARY KEY (k, ts))",
    )
    .await
    .unwrap();

    // A fixed seed in CI; WATTDB_FUZZ_SEED=<n> explores others.
    let base: u64 = std::env::var("WATTDB_FUZZ_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x5eed_0000);
    eprintln!("seed {base}");
    let mut attackers = Vec::new();
    for t in 0..TASKS {
        let seed = base + t as u64;
        let per_task = PACKETS_PER_PROTOCOL / TASKS;
        attackers.push(tokio::spawn(pound(server.mqtt_port, seed, per_task, true)));
        attackers.push(tokio::spawn(pound(
            server.pg_port,
            seed << 8,
            per_task,
            false,
        )));
    }

    // A device and a SQL client at the same time.
    let readings: Vec<_> = (0..2000)
        .map(|i| reading(i % 10, (i / 10) as i64))
        .collect();
    let msgs = readings
        .iter()
        .map(|r| ("wattdb/electric".to_string(), payload(r), r.clone()))
        .collect();
    let device = tokio::spawn({
        let port = server.mqtt_port;
        async move {
            let mut acked = Vec::new();
            publish_qos1(
                "127.0.0.1",
                port,
                "good-device",
                msgs,
                1,
                Duration::ZERO,
                |r| acked.push(r),
            )
            .await;
            acked
        }
    });
    for i in 0..300i64 {
        let n = c
            .execute(
                "INSERT INTO t VALUES (to_timestamp($1::bigint), 'good', $2::double precision)",
                &[&(1_793_491_200 + i * 60), &(i as f64)],
            )
            .await
            .unwrap();
        assert_eq!(n, 1);
    }
    let mut sent = 0;
    for a in attackers {
        sent += a.await.unwrap();
    }
    assert_eq!(sent, 2 * PACKETS_PER_PROTOCOL);
    let acked = device.await.unwrap();
    assert_eq!(
        acked.len(),
        readings.len(),
        "the device's readings were not all acknowledged"
    );

    assert!(server.is_running(), "server died; log:\n{}", server.log());
    let log = server.log();
    assert!(!log.contains("panicked"), "a panic in the log:\n{log}");
    let row = c
        .query_one("SELECT count(*), sum(v) FROM t WHERE k = 'good'", &[])
        .await
        .unwrap();
    assert_eq!(row.get::<_, i64>(0), 300);
    assert_eq!(row.get::<_, f64>(1), (0..300).sum::<i64>() as f64);
    let stored = common::keyed_values(
        &server,
        "SELECT pid, CAST(extract(epoch FROM ts) * 1000 AS BIGINT), ua FROM electric",
    )
    .await;
    let want: BTreeMap<(String, i64), f64> = readings
        .iter()
        .map(|(p, ts, v)| ((p.clone(), *ts), *v))
        .collect();
    assert_eq!(stored, want);
    server.stop();
}

/// The crash the test above found (pgwire 0.41.1): a Bind whose parameter length points
/// past the message made `split_to` panic in the connection's task. Now an error, and
/// the server goes on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bind_with_a_parameter_longer_than_its_message_is_an_error_not_a_panic() {
    let server = Server::new().start();
    let mut stream = TcpStream::connect(("127.0.0.1", server.pg_port))
        .await
        .unwrap();
    let mut bind = b"\0\0".to_vec(); // portal "", statement ""
    bind.extend([0, 0]); // no parameter formats
    bind.extend([0, 1]); // one parameter
    bind.extend(0x4d2a_2a2au32.to_be_bytes()); // of 1.29 GB, in a 20-byte message
    bind.extend(b"abcd");
    let mut out = pg_startup();
    out.extend(pg_message(b'B', &bind));
    out.extend(pg_message(b'S', &[]));
    stream.write_all(&out).await.unwrap();
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut answer)).await;
    assert!(answer.contains(&b'E'), "no error response: {answer:?}");
    let log = server.log();
    assert!(!log.contains("panicked"), "a panic in the log:\n{log}");
    let c = server.client().await;
    assert_eq!(
        common::first_column_text(&c, "SELECT 1").await,
        vec!["1".to_string()]
    );
}
