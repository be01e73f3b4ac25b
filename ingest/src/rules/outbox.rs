//! The durable outbox of notifications: one entry per (transition, channel), kept in a
//! sled database under `<data-dir>/rules/outbox` and flushed (fsync) on every change.
//! An entry is added only after its transition is durable in `alarm_events`; adding it
//! again (a transition re-derived after a crash) keeps the existing entry, so a sent
//! notification is never queued twice. Entries are `pending` until a channel accepts
//! them (`sent`) or they have failed for longer than [`GIVE_UP_MS`] (`failed`); sent and
//! failed entries are kept for [`KEEP_DONE_MS`] for `system.notifications`.
//!
//! Which entries are pending, and when each is due, is also kept in memory (rebuilt from
//! the entries at open), so the delivery loop's twice-a-second [`Outbox::due`] reads only
//! what is due — not every entry of the last week, which a channel down for hours would
//! make many.

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

use super::error::RuleError;
use super::state_file::AlarmEvent;

pub const OUTBOX_DIR: &str = "outbox";
/// Retries go on for at least a day.
pub const GIVE_UP_MS: i64 = 24 * 3600 * 1000;
const KEEP_DONE_MS: i64 = 7 * 24 * 3600 * 1000;
/// The longest wait between two attempts.
const MAX_BACKOFF_MS: i64 = 10 * 60 * 1000;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Notification {
    pub event: AlarmEvent,
    pub channel: String,
    /// `pending`, `sent` or `failed`.
    pub status: String,
    pub attempts: u32,
    pub last_error: Option<String>,
    pub created_ms: i64,
    pub next_attempt_ms: i64,
    pub sent_ms: Option<i64>,
}

impl Notification {
    pub fn key(&self) -> Vec<u8> {
        format!("{}/{}", self.event.event_id, self.channel).into_bytes()
    }

    /// A failed attempt at `now_ms`: back off exponentially (1 s, 2 s, 4 s … 10 min),
    /// or give up once the entry is older than [`GIVE_UP_MS`].
    pub fn failed(&mut self, error: String, now_ms: i64) {
        self.attempts += 1;
        self.last_error = Some(error);
        if now_ms - self.created_ms >= GIVE_UP_MS {
            self.status = "failed".into();
            return;
        }
        let backoff = 1000i64
            .saturating_mul(1i64 << self.attempts.min(20).saturating_sub(1))
            .min(MAX_BACKOFF_MS);
        self.next_attempt_ms = now_ms + backoff;
    }

    pub fn sent(&mut self, now_ms: i64) {
        self.attempts += 1;
        self.status = "sent".into();
        self.sent_ms = Some(now_ms);
        self.last_error = None;
    }
}

/// Version of the outbox entries' JSON (`{"v": 1, …}`); entries without `v` are version
/// 0, which has the same fields (storage/FORMATS.md).
pub const ENTRY_FORMAT_VERSION: u64 = 1;

#[derive(Serialize)]
struct Versioned<'a> {
    v: u64,
    #[serde(flatten)]
    entry: &'a Notification,
}

fn encode_entry(n: &Notification) -> serde_json::Result<Vec<u8>> {
    serde_json::to_vec(&Versioned {
        v: ENTRY_FORMAT_VERSION,
        entry: n,
    })
}

/// An entry, or why not: `Err(Some(v))` for a newer version this build does not read.
fn decode_entry(value: &[u8]) -> Result<Notification, (Option<u64>, String)> {
    #[derive(Deserialize)]
    struct Version {
        #[serde(default)]
        v: u64,
    }
    let version = serde_json::from_slice::<Version>(value).map_err(|e| (None, e.to_string()))?;
    if version.v > ENTRY_FORMAT_VERSION {
        return Err((
            Some(version.v),
            format!(
                "format version {} is newer than this build's {ENTRY_FORMAT_VERSION} (written by a newer wattdb)",
                version.v
            ),
        ));
    }
    serde_json::from_slice(value).map_err(|e| (None, e.to_string()))
}

pub struct Outbox {
    db: sled::Db,
    /// (next attempt, key) of every pending entry.
    pending: Mutex<BTreeSet<(i64, Vec<u8>)>>,
}

fn io(path: &Path, e: impl std::fmt::Display) -> RuleError {
    RuleError::State {
        path: path.to_path_buf(),
        reason: e.to_string(),
    }
}

impl Outbox {
    pub fn open(dir: &Path) -> Result<Outbox, RuleError> {
        let path = dir.join(OUTBOX_DIR);
        let db = sled::open(&path).map_err(|e| io(&path, e))?;
        let mut pending = BTreeSet::new();
        for kv in db.iter() {
            let (key, value) = kv.map_err(|e| io(&path, e))?;
            let n: Notification = match decode_entry(&value) {
                Ok(n) => n,
                // Written by a newer wattdb: sending or dropping it could both be wrong.
                Err((Some(_), reason)) => {
                    return Err(io(
                        &path,
                        format!("entry {}: {reason}", String::from_utf8_lossy(&key)),
                    ));
                }
                Err((None, e)) => {
                    // Never sendable; left in place for inspection, as before.
                    tracing::error!(entry = %String::from_utf8_lossy(&key), error = %e,
                        "undecodable notification outbox entry");
                    continue;
                }
            };
            if n.status == "pending" {
                pending.insert((n.next_attempt_ms, key.to_vec()));
            }
        }
        Ok(Outbox {
            db,
            pending: Mutex::new(pending),
        })
    }

    fn pending(&self) -> std::sync::MutexGuard<'_, BTreeSet<(i64, Vec<u8>)>> {
        self.pending.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn get(&self, key: &[u8]) -> Option<Notification> {
        let value = self.db.get(key).ok()??;
        decode_entry(&value).ok()
    }

    fn err(&self, e: impl std::fmt::Display) -> RuleError {
        RuleError::State {
            path: OUTBOX_DIR.into(),
            reason: e.to_string(),
        }
    }

    /// Queue a notification of each event to each of its channels (existing entries are
    /// kept as they are), durably.
    pub fn enqueue(&self, events: &[AlarmEvent], now_ms: i64) -> Result<usize, RuleError> {
        let mut added = 0;
        for e in events {
            for c in &e.channels {
                let n = Notification {
                    event: e.clone(),
                    channel: c.clone(),
                    status: "pending".into(),
                    attempts: 0,
                    last_error: None,
                    created_ms: now_ms,
                    next_attempt_ms: now_ms,
                    sent_ms: None,
                };
                let value = encode_entry(&n).map_err(|e| self.err(e))?;
                let prior = self
                    .db
                    .compare_and_swap(n.key(), None as Option<&[u8]>, Some(value))
                    .map_err(|e| self.err(e))?;
                if prior.is_ok() {
                    added += 1;
                    self.pending().insert((n.next_attempt_ms, n.key()));
                }
            }
        }
        if added > 0 {
            self.db.flush().map_err(|e| self.err(e))?;
        }
        Ok(added)
    }

    /// Every entry, in key order.
    pub fn all(&self) -> Vec<Notification> {
        self.db
            .iter()
            .filter_map(|kv| kv.ok())
            .filter_map(|(_, v)| decode_entry(&v).ok())
            .collect()
    }

    /// Pending entries whose next attempt is due, oldest first.
    pub fn due(&self, now_ms: i64) -> Vec<Notification> {
        let keys: Vec<Vec<u8>> = self
            .pending()
            .iter()
            .take_while(|(at, _)| *at <= now_ms)
            .map(|(_, key)| key.clone())
            .collect();
        let mut out: Vec<Notification> = keys
            .iter()
            .filter_map(|key| self.get(key))
            .filter(|n| n.status == "pending" && n.next_attempt_ms <= now_ms)
            .collect();
        out.sort_by_key(|n| (n.created_ms, n.event.ts));
        out
    }

    /// Store changed entries durably (blocks on an fsync: call from blocking code).
    pub fn update(&self, entries: &[Notification]) -> Result<(), RuleError> {
        for n in entries {
            let value = encode_entry(n).map_err(|e| self.err(e))?;
            let prior = self.db.insert(n.key(), value).map_err(|e| self.err(e))?;
            let mut pending = self.pending();
            if let Some(prior) = prior.and_then(|v| decode_entry(&v).ok()) {
                pending.remove(&(prior.next_attempt_ms, n.key()));
            }
            if n.status == "pending" {
                pending.insert((n.next_attempt_ms, n.key()));
            }
        }
        self.db.flush().map_err(|e| self.err(e))?;
        Ok(())
    }

    /// Forget sent and failed entries older than a week.
    pub fn prune(&self, now_ms: i64) -> Result<(), RuleError> {
        for n in self.all() {
            let done_at = n.sent_ms.unwrap_or(n.next_attempt_ms);
            if n.status != "pending" && now_ms - done_at > KEEP_DONE_MS {
                self.db.remove(n.key()).map_err(|e| self.err(e))?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(id: &str, channels: &[&str]) -> AlarmEvent {
        AlarmEvent {
            ts: 1,
            alarm: "hot".into(),
            tags: vec!["a".into()],
            series: "pid=a".into(),
            state: "firing".into(),
            severity: "major".into(),
            value: Some(1.0),
            message: "m".into(),
            event_id: id.into(),
            channels: channels.iter().map(|c| c.to_string()).collect(),
        }
    }

    /// The JSON of an entry is pinned: changing it needs a new format version
    /// (storage/FORMATS.md).
    #[test]
    fn entry_encoding_is_pinned() {
        let n = Notification {
            event: event("e1", &["ops"]),
            channel: "ops".into(),
            status: "pending".into(),
            attempts: 2,
            last_error: Some("HTTP 500".into()),
            created_ms: 10,
            next_attempt_ms: 20,
            sent_ms: None,
        };
        let json: serde_json::Value = serde_json::from_slice(&encode_entry(&n).unwrap()).unwrap();
        let want = serde_json::json!({
            "v": 1,
            "event": {"ts": 1, "alarm": "hot", "tags": ["a"], "series": "pid=a",
                      "state": "firing", "severity": "major", "value": 1.0, "message": "m",
                      "event_id": "e1", "channels": ["ops"]},
            "channel": "ops", "status": "pending", "attempts": 2, "last_error": "HTTP 500",
            "created_ms": 10, "next_attempt_ms": 20, "sent_ms": null
        });
        assert_eq!(json, want);
        // Version 0 (no "v") reads the same; a newer version stops the open.
        let mut v0 = want.clone();
        v0.as_object_mut().unwrap().remove("v");
        assert_eq!(decode_entry(&serde_json::to_vec(&v0).unwrap()).unwrap(), n);
        let dir = tempfile::tempdir().unwrap();
        {
            let db = sled::open(dir.path().join(OUTBOX_DIR)).unwrap();
            let mut v2 = want;
            v2["v"] = 2.into();
            db.insert(n.key(), serde_json::to_vec(&v2).unwrap())
                .unwrap();
            db.flush().unwrap();
        }
        let err = Outbox::open(dir.path()).err().unwrap().to_string();
        assert!(err.contains("format version 2"), "{err}");
    }

    /// `due` answers from the pending index: after enqueues, failures with backoff,
    /// sends and a reopen, it returns exactly the entries a scan of all would.
    #[test]
    fn due_matches_a_scan_of_every_entry_across_updates_and_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let scan = |o: &Outbox, now: i64| {
            let mut v: Vec<Vec<u8>> = o
                .all()
                .into_iter()
                .filter(|n| n.status == "pending" && n.next_attempt_ms <= now)
                .map(|n| n.key())
                .collect();
            v.sort();
            v
        };
        let keys = |v: Vec<Notification>| {
            let mut k: Vec<Vec<u8>> = v.iter().map(Notification::key).collect();
            k.sort();
            k
        };
        {
            let o = Outbox::open(dir.path()).unwrap();
            let events: Vec<AlarmEvent> = (0..20)
                .map(|i| event(&format!("e{i:02}"), &["a", "b"]))
                .collect();
            assert_eq!(o.enqueue(&events, 1_000).unwrap(), 40);
            assert_eq!(o.enqueue(&events, 2_000).unwrap(), 0, "queued once");
            let mut due = o.due(1_000);
            assert_eq!(due.len(), 40);
            for (i, n) in due.iter_mut().enumerate() {
                match i % 3 {
                    0 => n.sent(1_500),
                    1 => n.failed("down".into(), 1_500),
                    _ => {}
                }
            }
            o.update(&due).unwrap();
            for now in [1_000, 2_499, 2_500, 3_000, 10_000] {
                assert_eq!(keys(o.due(now)), scan(&o, now), "at {now}");
            }
        }
        let o = Outbox::open(dir.path()).unwrap();
        for now in [1_000, 2_500, 10_000] {
            assert_eq!(keys(o.due(now)), scan(&o, now), "reopened, at {now}");
        }
        assert_eq!(o.due(10_000).len(), 40 - 14, "the sent ones are not due");
    }
}
