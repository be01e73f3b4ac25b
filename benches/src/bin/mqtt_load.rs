//! MQTT ingest load generator: N simulated meters publish three-phase readings (10 values
//! each, canonical JSON on `wattdb/<table>`) at QoS 1 over many connections with a window
//! of publishes in flight, flat out or at a given rate. It reports the messages and values
//! per second that were acknowledged (PUBACK = durable in wattdb's WAL), how long until
//! all of them were queryable over SQL, how long until the 15-minute and 1-day rollups
//! reflected all of them (rollup freshness), and the server's peak RSS. With `--influx` it
//! writes the same readings to InfluxDB 1.x over HTTP line protocol (batches of 5,000) in
//! the same run, for a side-by-side figure.
//!
//! Payloads are generated before the clock starts, so the figure is the server's, not the
//! generator's JSON formatting.
//!
//! ```text
//! cargo run --release -p wattdb-benches --bin mqtt_load -- \
//!     --mqtt 127.0.0.1:1883 --meters 1000 --readings 2000000 --batch 1 \
//!     --server-pid $(pgrep -x wattdb) --influx 127.0.0.1:8086 --influx-pid $(pgrep -x influxd)
//! ```

use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use bytes::{Bytes, BytesMut};
use clap::Parser;
use rumqttc::mqttbytes::v4::{Connect, Packet, Publish};
use rumqttc::mqttbytes::{Error as CodecError, QoS};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use wattdb_benches::meter_data::{FIELDS, json, line, reading_of};

#[derive(Parser, Debug)]
struct Args {
    /// MQTT address to publish to: wattdb's embedded endpoint or a broker it subscribes to.
    #[arg(long, default_value = "127.0.0.1:1883")]
    mqtt: String,
    /// Simulated meters.
    #[arg(long, default_value_t = 1000)]
    meters: usize,
    /// Number of the first meter (meter-NNNNN): a second run with an offset adds another
    /// fleet for the same days (e.g. a gateway's backlog).
    #[arg(long, default_value_t = 0)]
    first_meter: usize,
    /// MQTT connections (default: one per meter; fewer = gateways carrying several meters).
    #[arg(long)]
    connections: Option<usize>,
    /// Total readings (10 values each).
    #[arg(long, default_value_t = 1_000_000)]
    readings: usize,
    /// Readings per message (1 = one reading per message).
    #[arg(long, default_value_t = 1)]
    batch: usize,
    /// QoS 1 publishes in flight per connection.
    #[arg(long, default_value_t = 32)]
    inflight: usize,
    /// Messages per second over all connections; 0 = flat out.
    #[arg(long, default_value_t = 0)]
    rate: u64,
    /// Table the readings go to (topic wattdb/<table>).
    #[arg(long, default_value = "mqtt_bench")]
    table: String,
    /// wattdb SQL endpoint, to wait until every reading is queryable.
    #[arg(
        long,
        default_value = "host=127.0.0.1 port=5433 user=wattdb dbname=wattdb"
    )]
    pg: String,
    /// Do not wait for the rollups (`<table>_15m`, `<table>_1d`) to catch up.
    #[arg(long)]
    no_rollup_check: bool,
    /// PID of the wattdb server, for its peak RSS (VmHWM).
    #[arg(long)]
    server_pid: Option<u32>,
    /// InfluxDB 1.x HTTP address: also write the same readings there (line protocol).
    #[arg(long)]
    influx: Option<String>,
    /// PID of influxd, for its peak RSS.
    #[arg(long)]
    influx_pid: Option<u32>,
    /// Points per InfluxDB write request.
    #[arg(long, default_value_t = 5000)]
    influx_batch: usize,
    /// Concurrent InfluxDB write connections.
    #[arg(long, default_value_t = 4)]
    influx_connections: usize,
}

fn peak_rss_mib(pid: u32) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

/// Each connection's payloads: its meters' readings (meter % conns == connection),
/// `batch` per message.
fn payloads(args: &Args, conns: usize) -> Vec<Vec<(Bytes, usize)>> {
    let mut per_conn = vec![Vec::new(); conns];
    for i in 0..args.readings {
        per_conn[(i % args.meters) % conns].push(i);
    }
    per_conn.iter().map(|mine| messages(mine, args)).collect()
}

fn messages(mine: &[usize], args: &Args) -> Vec<(Bytes, usize)> {
    mine.chunks(args.batch)
        .map(|chunk| {
            let mut s = String::with_capacity(chunk.len() * 220 + 2);
            if args.batch > 1 {
                s.push('[');
            }
            for (k, &i) in chunk.iter().enumerate() {
                if k > 0 {
                    s.push(',');
                }
                json(&reading_of(i, args.meters, args.first_meter), &mut s);
            }
            if args.batch > 1 {
                s.push(']');
            }
            (Bytes::from(s), chunk.len())
        })
        .collect()
}

async fn connect(addr: &str, id: &str) -> Result<(TcpStream, BytesMut)> {
    let mut stream = TcpStream::connect(addr)
        .await
        .with_context(|| format!("connecting to {addr}"))?;
    stream.set_nodelay(true)?;
    let mut out = BytesMut::new();
    let mut c = Connect::new(id);
    c.keep_alive = 120;
    Packet::Connect(c)
        .write(&mut out, 1 << 20)
        .map_err(|e| anyhow::anyhow!("{e:?}"))?;
    stream.write_all(&out).await?;
    let mut buf = BytesMut::with_capacity(64 * 1024);
    loop {
        match Packet::read(&mut buf, 1 << 20) {
            Ok(Packet::ConnAck(_)) => return Ok((stream, buf)),
            Ok(other) => bail!("expected CONNACK, got {other:?}"),
            Err(CodecError::InsufficientBytes(_)) => {}
            Err(e) => bail!("{e:?}"),
        }
        if stream.read_buf(&mut buf).await? == 0 {
            bail!("connection closed before CONNACK");
        }
    }
}

/// Publish every payload at QoS 1 with up to `inflight` unacknowledged (one message per
/// `interval` when rate-limited); returns the number of readings acknowledged and each
/// message's time from being written to the socket to its PUBACK, in µs.
async fn publish_all(
    mut stream: TcpStream,
    mut buf: BytesMut,
    topic: String,
    msgs: Vec<(Bytes, usize)>,
    inflight: usize,
    interval: Option<Duration>,
) -> Result<(usize, Vec<u32>)> {
    let mut out = BytesMut::with_capacity(256 * 1024);
    let mut latencies = Vec::with_capacity(msgs.len());
    let mut sizes = std::collections::VecDeque::with_capacity(inflight);
    let (mut next, mut acked_readings, mut pkid) = (0usize, 0usize, 0u16);
    let mut ticker = tokio::time::interval(interval.unwrap_or(Duration::from_secs(3600)));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut encode = |next: &mut usize, out: &mut BytesMut| -> Result<(usize, Instant)> {
        pkid = if pkid == u16::MAX { 1 } else { pkid + 1 };
        let (payload, n) = &msgs[*next];
        let mut p = Publish::from_bytes(&topic, QoS::AtLeastOnce, payload.clone());
        p.pkid = pkid;
        Packet::Publish(p)
            .write(out, 1 << 24)
            .map_err(|e| anyhow::anyhow!("{e:?}"))?;
        *next += 1;
        Ok((*n, Instant::now()))
    };
    while next < msgs.len() || !sizes.is_empty() {
        if interval.is_none() {
            while sizes.len() < inflight && next < msgs.len() {
                sizes.push_back(encode(&mut next, &mut out)?);
            }
        }
        if !out.is_empty() {
            stream.write_all(&out).await?;
            out.clear();
        }
        let can_send = interval.is_some() && sizes.len() < inflight && next < msgs.len();
        tokio::select! {
            r = stream.read_buf(&mut buf), if !sizes.is_empty() => {
                if r? == 0 {
                    bail!("server closed the connection");
                }
                loop {
                    match Packet::read(&mut buf, 1 << 20) {
                        // Acknowledgements come in publish order.
                        Ok(Packet::PubAck(_)) => {
                            if let Some((n, sent)) = sizes.pop_front() {
                                acked_readings += n;
                                latencies.push(sent.elapsed().as_micros().min(u32::MAX as u128) as u32);
                            }
                        }
                        Ok(_) => {}
                        Err(CodecError::InsufficientBytes(_)) => break,
                        Err(e) => bail!("{e:?}"),
                    }
                }
            }
            _ = ticker.tick(), if can_send => sizes.push_back(encode(&mut next, &mut out)?),
        }
    }
    Ok((acked_readings, latencies))
}

/// p50, p90, p99, p99.9 and max of `lat` (µs), as text in ms.
fn latency_summary(lat: &mut [u32]) -> String {
    if lat.is_empty() {
        return "no acknowledgements".into();
    }
    lat.sort_unstable();
    let at = |q: f64| lat[((lat.len() - 1) as f64 * q).round() as usize] as f64 / 1000.0;
    format!(
        "p50 {:.2} ms, p90 {:.2} ms, p99 {:.2} ms, p99.9 {:.2} ms, max {:.2} ms ({} messages)",
        at(0.5),
        at(0.9),
        at(0.99),
        at(0.999),
        at(1.0),
        lat.len()
    )
}

async fn run_mqtt(args: &Args) -> Result<()> {
    let conns = args.connections.unwrap_or(args.meters).max(1);
    let topic = format!("wattdb/{}", args.table);
    println!(
        "generating {} readings of {} meters, {} per message, over {conns} connections",
        args.readings, args.meters, args.batch
    );
    let per_conn = payloads(args, conns);
    let messages: usize = per_conn.iter().map(|m| m.len()).sum();
    let payload_bytes: usize = per_conn.iter().flatten().map(|(b, _)| b.len()).sum();
    let mut streams = Vec::with_capacity(conns);
    for c in 0..conns {
        streams.push(connect(&args.mqtt, &format!("load-{c}")).await?);
    }
    let interval =
        (args.rate > 0).then(|| Duration::from_secs_f64(conns as f64 / args.rate as f64));
    let (pg, conn) = tokio_postgres::connect(&args.pg, tokio_postgres::NoTls)
        .await
        .context("connecting to wattdb's SQL endpoint")?;
    tokio::spawn(conn);
    let before = count(&pg, &args.table).await;
    let rollups_before = rollup_counts(&pg, &args.table).await;

    let start = Instant::now();
    let mut tasks = Vec::new();
    for ((stream, buf), msgs) in streams.into_iter().zip(per_conn) {
        tasks.push(tokio::spawn(publish_all(
            stream,
            buf,
            topic.clone(),
            msgs,
            args.inflight,
            interval,
        )));
    }
    let mut acked = 0;
    let mut latencies = Vec::new();
    for t in tasks {
        let (n, lat) = t.await??;
        acked += n;
        latencies.extend(lat);
    }
    let secs = start.elapsed().as_secs_f64();
    let values = acked * FIELDS.len();
    println!(
        "wattdb: {messages} messages ({:.1} MiB payload), {acked} readings = {values} values acknowledged in {secs:.2}s",
        payload_bytes as f64 / 1048576.0
    );
    println!(
        "wattdb: {:.0} messages/s, {:.0} readings/s, {:.0} values/s durable (PUBACK after fsync)",
        messages as f64 / secs,
        acked as f64 / secs,
        values as f64 / secs
    );
    println!(
        "wattdb: publish-to-PUBACK latency {}",
        latency_summary(&mut latencies)
    );
    // Memory while ingesting, before the verification query below (a count(*) over
    // millions of buffered rows deduplicates them all, which needs memory of its own).
    if let Some(rss) = args.server_pid.and_then(peak_rss_mib) {
        println!("wattdb: server peak RSS while ingesting {rss:.0} MiB");
    }
    // Freshness: time from the last PUBACK until both rollups count every reading.
    if !args.no_rollup_check {
        let t = Instant::now();
        let want = (
            rollups_before.0 + acked as i64,
            rollups_before.1 + acked as i64,
        );
        loop {
            let got = rollup_counts(&pg, &args.table).await;
            if got.0 >= want.0 && got.1 >= want.1 {
                println!(
                    "wattdb: rollups {t}_15m and {t}_1d reflect every reading {:.3}s after the last PUBACK",
                    t.elapsed().as_secs_f64(),
                    t = args.table
                );
                break;
            }
            if t.elapsed() > Duration::from_secs(300) {
                bail!("rollups count {got:?} of {want:?} readings after 300 s");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    // Every acknowledged reading must be queryable.
    let want = before + acked as i64;
    let t = Instant::now();
    loop {
        let n = count(&pg, &args.table).await;
        if n >= want {
            println!(
                "wattdb: all {acked} readings queryable {:.2}s after the last PUBACK (count(*) = {n})",
                t.elapsed().as_secs_f64()
            );
            break;
        }
        if t.elapsed() > Duration::from_secs(120) {
            bail!("only {n} of {want} rows queryable after 120 s");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    if let Some(rss) = args.server_pid.and_then(peak_rss_mib) {
        println!("wattdb: server peak RSS including the count(*) checks {rss:.0} MiB");
    }
    // Persist now, so wattdb is idle (not competing for the CPU) during what comes next.
    let t = Instant::now();
    pg.batch_execute("SELECT flush()").await?;
    println!(
        "wattdb: flush() to Parquet took {:.2}s",
        t.elapsed().as_secs_f64()
    );
    Ok(())
}

/// Readings the rollups account for: `sum(ua_count)` of `<table>_15m` and `<table>_1d`.
async fn rollup_counts(pg: &tokio_postgres::Client, table: &str) -> (i64, i64) {
    let sum = |level: &'static str| {
        let sql = format!("SELECT CAST(coalesce(sum(ua_count), 0) AS BIGINT) FROM {table}_{level}");
        async move {
            pg.query_one(&sql, &[])
                .await
                .map(|r| r.get::<_, i64>(0))
                .unwrap_or(0)
        }
    };
    (sum("15m").await, sum("1d").await)
}

async fn count(pg: &tokio_postgres::Client, table: &str) -> i64 {
    pg.query_one(&format!("SELECT count(*) FROM {table}"), &[])
        .await
        .map(|r| r.get(0))
        .unwrap_or(0)
}

/// One HTTP/1.1 request on a keep-alive connection; returns the status code.
async fn http(stream: &mut TcpStream, host: &str, path: &str, body: &[u8]) -> Result<u16> {
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await?;
    stream.write_all(body).await?;
    let mut buf = Vec::with_capacity(1024);
    loop {
        let mut chunk = [0u8; 4096];
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            bail!("InfluxDB closed the connection");
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).to_string();
            let status: u16 = head
                .split_whitespace()
                .nth(1)
                .and_then(|s| s.parse().ok())
                .unwrap_or(0);
            let len: usize = head
                .lines()
                .find_map(|l| {
                    let (k, v) = l.split_once(':')?;
                    k.eq_ignore_ascii_case("content-length")
                        .then(|| v.trim().parse().ok())?
                })
                .unwrap_or(0);
            while buf.len() < end + 4 + len {
                let n = stream.read(&mut chunk).await?;
                if n == 0 {
                    break;
                }
                buf.extend_from_slice(&chunk[..n]);
            }
            if status >= 300 {
                bail!(
                    "InfluxDB answered {status}: {}",
                    String::from_utf8_lossy(&buf[end + 4..])
                );
            }
            return Ok(status);
        }
    }
}

async fn run_influx(args: &Args, addr: &str) -> Result<()> {
    let db = "wattdb_bench";
    let mut admin = TcpStream::connect(addr).await?;
    http(
        &mut admin,
        addr,
        &format!("/query?q=DROP%20DATABASE%20{db}"),
        b"",
    )
    .await?;
    http(
        &mut admin,
        addr,
        &format!("/query?q=CREATE%20DATABASE%20{db}"),
        b"",
    )
    .await?;
    let batches: Vec<Vec<u8>> = (0..args.readings)
        .collect::<Vec<_>>()
        .chunks(args.influx_batch)
        .map(|chunk| {
            let mut s = String::with_capacity(chunk.len() * 200);
            for &i in chunk {
                line(
                    &args.table,
                    &reading_of(i, args.meters, args.first_meter),
                    &mut s,
                );
            }
            s.into_bytes()
        })
        .collect();
    let n = batches.len();
    let start = Instant::now();
    let shared = std::sync::Arc::new(batches);
    let mut tasks = Vec::new();
    for w in 0..args.influx_connections {
        let (addr, batches) = (addr.to_string(), shared.clone());
        let conns = args.influx_connections;
        tasks.push(tokio::spawn(async move {
            let mut s = TcpStream::connect(&addr).await?;
            for b in (w..n).step_by(conns) {
                http(
                    &mut s,
                    &addr,
                    &format!("/write?db={db}&precision=ms"),
                    &batches[b],
                )
                .await?;
            }
            Ok::<(), anyhow::Error>(())
        }));
    }
    for t in tasks {
        t.await??;
    }
    let secs = start.elapsed().as_secs_f64();
    let values = args.readings * FIELDS.len();
    println!(
        "influxdb: {} readings = {values} values in {n} writes of {} in {secs:.2}s: {:.0} values/s (HTTP 204 = in its WAL)",
        args.readings,
        args.influx_batch,
        values as f64 / secs
    );
    if let Some(rss) = args.influx_pid.and_then(peak_rss_mib) {
        println!("influxdb: influxd peak RSS {rss:.0} MiB");
    }
    Ok(())
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    run_mqtt(&args).await?;
    if let Some(addr) = args.influx.clone() {
        run_influx(&args, &addr).await?;
    }
    Ok(())
}
