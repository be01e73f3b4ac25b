//! The durable outbox of notifications: one entry per (transition, channel), kept in a
//! sled database under `<data-dir>/rules/outbox` and flushed (fsync) on every change.
//! An entry is added only after its transition is durable in `alarm_events`; adding it
//! again (a transition re-derived after a crash) keeps the existing entry, so a sent
//! notification is never queued twice. Entries are `pending` until a channel accepts
//! them (`sent`) or they have failed for longer than [`GIVE_UP_MS`] (`failed`); sent and
//! failed entries are kept for [`KEEP_DONE_MS`] for `system.notifications`.

use std::path::Path;

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

pub struct Outbox {
    db: sled::Db,
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
        Ok(Outbox { db })
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
                let value = serde_json::to_vec(&n).map_err(|e| self.err(e))?;
                let prior = self
                    .db
                    .compare_and_swap(n.key(), None as Option<&[u8]>, Some(value))
                    .map_err(|e| self.err(e))?;
                if prior.is_ok() {
                    added += 1;
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
            .filter_map(|(_, v)| serde_json::from_slice(&v).ok())
            .collect()
    }

    /// Pending entries whose next attempt is due, oldest first.
    pub fn due(&self, now_ms: i64) -> Vec<Notification> {
        let mut out: Vec<Notification> = self
            .all()
            .into_iter()
            .filter(|n| n.status == "pending" && n.next_attempt_ms <= now_ms)
            .collect();
        out.sort_by_key(|n| (n.created_ms, n.event.ts));
        out
    }

    /// Store changed entries durably.
    pub fn update(&self, entries: &[Notification]) -> Result<(), RuleError> {
        for n in entries {
            let value = serde_json::to_vec(n).map_err(|e| self.err(e))?;
            self.db.insert(n.key(), value).map_err(|e| self.err(e))?;
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
