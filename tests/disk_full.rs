//! A real full disk: the data directory on a small tmpfs (mounting needs root, as CI
//! runs; elsewhere the test is skipped unless `WATTDB_REQUIRE_TMPFS=1`) is filled while
//! a device publishes over MQTT. Writes are refused — the MQTT connection is closed
//! without PUBACK, SQL gets SQLSTATE 53100 — reads keep working, and once space is freed
//! writing resumes without a restart. After kill -9 every acknowledged reading is there.
//! (That a refused write never comes back is shown with failpoints, where it can be told
//! apart: `storage/tests/wal_faults.rs`.)

mod common;

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::Server;
use common::mqtt::{payload, publish_qos1, reading};

/// A tmpfs mounted for the test, unmounted when dropped.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(at: &Path, size: &str) -> Option<Tmpfs> {
        std::fs::create_dir_all(at).unwrap();
        let mounted = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(at)
            .output();
        match mounted {
            Ok(out) if out.status.success() => Some(Tmpfs(at.to_path_buf())),
            other => {
                assert!(
                    std::env::var("WATTDB_REQUIRE_TMPFS").as_deref() != Ok("1"),
                    "WATTDB_REQUIRE_TMPFS=1 but mounting a tmpfs failed: {other:?}"
                );
                eprintln!("skipping: mounting a tmpfs needs root ({other:?})");
                None
            }
        }
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// Fill the file system with `filler` until it is full, then free `leave` bytes.
fn fill(filler: &Path, leave: u64) {
    let mut f = std::fs::File::create(filler).unwrap();
    let chunk = vec![0x5au8; 64 * 1024];
    loop {
        if let Err(e) = f.write_all(&chunk) {
            assert_eq!(e.raw_os_error(), Some(28), "expected ENOSPC: {e}");
            break;
        }
    }
    let _ = f.flush();
    let len = f.metadata().unwrap().len();
    f.set_len(len.saturating_sub(leave)).unwrap();
}

async fn stored(server: &Server) -> BTreeMap<(String, i64), f64> {
    common::keyed_values(
        server,
        "SELECT pid, CAST(extract(epoch FROM ts) * 1000 AS BIGINT), ua FROM electric",
    )
    .await
}

type Reading = (String, i64, f64);

/// Publish `readings` over one connection; returns those acknowledged and the rest.
async fn publish(
    server: &Server,
    id: &str,
    readings: Vec<Reading>,
) -> (Vec<Reading>, Vec<Reading>) {
    let msgs = readings
        .iter()
        .map(|r| ("wattdb/electric".to_string(), payload(r), r.clone()))
        .collect();
    let mut acked = Vec::new();
    publish_qos1(
        "127.0.0.1",
        server.mqtt_port,
        id,
        msgs,
        1,
        Duration::ZERO,
        |r| acked.push(r),
    )
    .await;
    let rest = readings
        .into_iter()
        .filter(|r| !acked.contains(r))
        .collect();
    (acked, rest)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_refuses_writes_keeps_reads_and_writing_resumes_when_space_returns() {
    let mut server = Server::new();
    let Some(_tmpfs) = Tmpfs::mount(&server.data_dir, "48m") else {
        return;
    };
    server.spawn();
    let all: Vec<Reading> = (0..30_000)
        .map(|i| reading(i % 20, (i / 20) as i64))
        .collect();
    let (mut acked, _) = publish(&server, "fill-0", all[..1000].to_vec()).await;
    assert_eq!(acked.len(), 1000, "log:\n{}", server.log());

    // The disk fills up while the device publishes: at most a few hundred KiB fit.
    let filler = server.data_dir.join("filler");
    fill(&filler, 256 * 1024);
    let (first, refused) = publish(&server, "fill-1", all[1000..].to_vec()).await;
    assert!(
        !refused.is_empty(),
        "the disk never filled up ({} acknowledged)",
        first.len()
    );
    acked.extend(first);

    // SQL writes are refused with disk_full; reads keep working and see every
    // acknowledged reading.
    let c = server.client().await;
    let err = c
        .execute(
            "INSERT INTO electric (ts, pid, ua) VALUES (now(), 'sql', 1.0)",
            &[],
        )
        .await
        .expect_err("no room for the WAL");
    assert_eq!(common::sqlstate(&err), "53100", "{err}");
    check(&stored(&server).await, &acked, &all);

    // Space comes back: the device re-sends what was refused and it is acknowledged, with
    // no restart.
    std::fs::remove_file(&filler).unwrap();
    let mut pending = refused;
    for round in 0..50 {
        let (ok, rest) = publish(&server, &format!("resend-{round}"), pending).await;
        acked.extend(ok);
        pending = rest;
        if pending.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(
        pending.is_empty(),
        "{} readings still refused after space was freed; log:\n{}",
        pending.len(),
        server.log()
    );
    c.execute(
        "INSERT INTO electric (ts, pid, ua) VALUES (to_timestamp(0), 'sql', 1.0)",
        &[],
    )
    .await
    .expect("SQL writes resume too");

    // kill -9: every acknowledged reading comes back.
    server.kill9();
    server.spawn();
    let sql_row = ("sql".to_string(), 0, 1.0);
    acked.push(sql_row.clone());
    let mut published = all.clone();
    published.push(sql_row);
    check(&stored(&server).await, &acked, &published);
}

/// Every acknowledged reading is stored with its value, and nothing else is stored but
/// readings that were published (a message in flight when the connection closed may have
/// been written without its PUBACK going out; the device re-sends it, the key is the same).
fn check(got: &BTreeMap<(String, i64), f64>, acked: &[Reading], published: &[Reading]) {
    let missing: Vec<&Reading> = acked
        .iter()
        .filter(|(p, ts, v)| got.get(&(p.clone(), *ts)) != Some(v))
        .collect();
    assert!(
        missing.is_empty(),
        "{} of {} acknowledged readings missing or wrong, e.g. {:?}",
        missing.len(),
        acked.len(),
        &missing[..missing.len().min(5)]
    );
    let published: BTreeMap<(String, i64), f64> = published
        .iter()
        .map(|(p, ts, v)| ((p.clone(), *ts), *v))
        .collect();
    let foreign: Vec<_> = got
        .iter()
        .filter(|(k, v)| published.get(*k) != Some(*v))
        .collect();
    assert!(foreign.is_empty(), "rows never published: {foreign:?}");
}
