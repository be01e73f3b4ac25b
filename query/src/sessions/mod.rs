//! The server's SQL sessions: which connections may open ([`Sessions::open`]:
//! `max_connections`, the slots kept for admins, each user's `CONNECTION LIMIT`), and
//! what each one is doing, for `pg_stat_activity` ([`activity_table`]).
//!
//! A session is counted from its startup packet until the connection ends (the
//! [`SessionSlot`] lives in the connection's extensions); a client that never sends a
//! startup packet is not a session (the endpoint closes it after its startup timeout).
//! This module decides nothing about statements; the query path reports to it.

pub mod activity_table;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicI32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use crate::pg::sqlstate;

/// How many sessions may be open.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionLimits {
    /// Sessions open at once, admins included.
    pub max_connections: usize,
    /// Of those, how many only admins may take (PostgreSQL's
    /// `superuser_reserved_connections`), so an admin can always get in to look.
    pub reserved_for_admins: usize,
}

pub const DEFAULT_MAX_CONNECTIONS: usize = 100;
pub const DEFAULT_RESERVED_FOR_ADMINS: usize = 3;

impl Default for SessionLimits {
    fn default() -> Self {
        SessionLimits {
            max_connections: DEFAULT_MAX_CONNECTIONS,
            reserved_for_admins: DEFAULT_RESERVED_FOR_ADMINS,
        }
    }
}

/// A session refused: SQLSTATE and PostgreSQL's message.
#[derive(Debug, Clone, PartialEq)]
pub struct Refusal {
    pub code: &'static str,
    pub message: String,
}

/// What a session is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    Idle,
    Active,
}

impl State {
    pub fn name(self) -> &'static str {
        match self {
            State::Idle => "idle",
            State::Active => "active",
        }
    }
}

#[derive(Debug, Clone)]
struct Activity {
    state: State,
    query: String,
    query_start_micros: Option<i64>,
    state_change_micros: i64,
    /// Waiting for an execution slot.
    queued: bool,
    /// Bumped by every statement (a finished statement's mark leaves a newer one alone).
    statement: u64,
}

/// The longest query text kept (PostgreSQL's `track_activity_query_size` default).
const QUERY_TEXT_BYTES: usize = 1024;

fn now_micros() -> i64 {
    chrono::Utc::now().timestamp_micros()
}

/// One open session.
#[derive(Debug)]
pub struct Session {
    id: u64,
    pid: AtomicI32,
    user: String,
    admin: bool,
    application_name: String,
    client: SocketAddr,
    backend_start_micros: i64,
    activity: Mutex<Activity>,
}

impl Session {
    fn activity(&self) -> std::sync::MutexGuard<'_, Activity> {
        self.activity.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The backend process id the client was given (`BackendKeyData`), once known.
    pub fn set_pid(&self, pid: i32) {
        self.pid.store(pid, Ordering::Relaxed);
    }

    /// The session starts running `query`; it is `active` until the mark is dropped.
    pub fn begin(self: &Arc<Self>, query: &str) -> ActivityMark {
        let mut a = self.activity();
        let now = now_micros();
        a.statement += 1;
        a.state = State::Active;
        a.query = truncated(query).to_string();
        a.query_start_micros = Some(now);
        a.state_change_micros = now;
        a.queued = false;
        ActivityMark {
            session: self.clone(),
            statement: a.statement,
        }
    }
}

fn truncated(query: &str) -> &str {
    if query.len() <= QUERY_TEXT_BYTES {
        return query;
    }
    let mut end = QUERY_TEXT_BYTES;
    while !query.is_char_boundary(end) {
        end -= 1;
    }
    &query[..end]
}

/// A statement's line in `pg_stat_activity`: `active` while it lives, `idle` after.
#[derive(Debug)]
pub struct ActivityMark {
    session: Arc<Session>,
    statement: u64,
}

impl ActivityMark {
    /// The statement waits for an execution slot (`true`) or has one (`false`).
    pub fn set_queued(&self, queued: bool) {
        set_queued(&self.session, self.statement, queued);
    }

    /// [`ActivityMark::set_queued`] for the statement's running plan, which may wait for
    /// a slot again (it does not end the statement when dropped).
    pub fn queued_flag(&self) -> crate::execution::QueuedFlag {
        let (session, statement) = (self.session.clone(), self.statement);
        Box::new(move |queued| set_queued(&session, statement, queued))
    }
}

fn set_queued(session: &Session, statement: u64, queued: bool) {
    let mut a = session.activity();
    if a.statement == statement {
        a.queued = queued;
    }
}

impl Drop for ActivityMark {
    fn drop(&mut self) {
        let mut a = self.session.activity();
        if a.statement == self.statement {
            a.state = State::Idle;
            a.queued = false;
            a.state_change_micros = now_micros();
        }
    }
}

/// A session as `pg_stat_activity` shows it.
#[derive(Debug, Clone)]
pub struct SessionView {
    pub pid: i32,
    pub user: String,
    pub admin: bool,
    pub application_name: String,
    pub client: SocketAddr,
    pub backend_start_micros: i64,
    pub state: State,
    pub query: String,
    pub query_start_micros: Option<i64>,
    pub state_change_micros: i64,
    pub queued: bool,
}

/// The open sessions. Shared by the startup handler, the query path and the catalog.
#[derive(Debug, Default)]
pub struct Sessions {
    limits: SessionLimits,
    next_id: AtomicU64,
    open: Mutex<BTreeMap<u64, Arc<Session>>>,
    refused: AtomicU64,
}

/// What a connection holds while its session is open; dropping it closes the session.
#[derive(Debug)]
pub struct SessionSlot {
    sessions: Arc<Sessions>,
    session: Arc<Session>,
}

impl SessionSlot {
    pub fn session(&self) -> &Arc<Session> {
        &self.session
    }
}

impl Drop for SessionSlot {
    fn drop(&mut self) {
        self.sessions.lock().remove(&self.session.id);
    }
}

/// Who is asking to open a session.
#[derive(Debug, Clone)]
pub struct Opening<'a> {
    pub user: &'a str,
    pub admin: bool,
    /// The user's `CONNECTION LIMIT` (not applied to admins).
    pub connection_limit: Option<u32>,
    pub application_name: &'a str,
    pub client: SocketAddr,
}

impl Sessions {
    pub fn new(limits: SessionLimits) -> Arc<Sessions> {
        Arc::new(Sessions {
            limits,
            ..Sessions::default()
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<u64, Arc<Session>>> {
        self.open.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Open a session for `who`, or refuse it with `53300` as PostgreSQL does: beyond
    /// `max_connections`; beyond it less the reserved slots for a user who is not an
    /// admin; beyond the user's own `CONNECTION LIMIT`.
    pub fn open(self: &Arc<Self>, who: Opening<'_>) -> Result<SessionSlot, Refusal> {
        let mut open = self.lock();
        let count = open.len();
        let limits = self.limits;
        let refuse = |message: String| {
            self.refused.fetch_add(1, Ordering::Relaxed);
            Err(Refusal {
                code: sqlstate::TOO_MANY_CONNECTIONS,
                message,
            })
        };
        if count >= limits.max_connections {
            return refuse(format!(
                "sorry, too many clients already ({count} sessions open, max_connections is {})",
                limits.max_connections
            ));
        }
        if !who.admin && count + limits.reserved_for_admins >= limits.max_connections {
            return refuse(format!(
                "remaining connection slots are reserved for roles with the SUPERUSER attribute \
                 ({count} of max_connections {} open, {} kept for admins)",
                limits.max_connections, limits.reserved_for_admins
            ));
        }
        if !who.admin
            && let Some(limit) = who.connection_limit
        {
            let mine = open.values().filter(|s| s.user == who.user).count();
            if mine >= limit as usize {
                return refuse(format!(
                    "too many connections for role \"{}\" (CONNECTION LIMIT {limit})",
                    who.user
                ));
            }
        }
        let now = now_micros();
        let session = Arc::new(Session {
            id: self.next_id.fetch_add(1, Ordering::Relaxed),
            pid: AtomicI32::new(0),
            user: who.user.to_string(),
            admin: who.admin,
            application_name: who.application_name.to_string(),
            client: who.client,
            backend_start_micros: now,
            activity: Mutex::new(Activity {
                state: State::Idle,
                query: String::new(),
                query_start_micros: None,
                state_change_micros: now,
                queued: false,
                statement: 0,
            }),
        });
        open.insert(session.id, session.clone());
        Ok(SessionSlot {
            sessions: self.clone(),
            session,
        })
    }

    /// Sessions open now.
    pub fn count(&self) -> usize {
        self.lock().len()
    }

    /// Every open session, oldest first.
    pub fn snapshot(&self) -> Vec<SessionView> {
        let open: Vec<Arc<Session>> = self.lock().values().cloned().collect();
        open.iter()
            .map(|s| {
                let a = s.activity().clone();
                SessionView {
                    pid: s.pid.load(Ordering::Relaxed),
                    user: s.user.clone(),
                    admin: s.admin,
                    application_name: s.application_name.clone(),
                    client: s.client,
                    backend_start_micros: s.backend_start_micros,
                    state: a.state,
                    query: a.query,
                    query_start_micros: a.query_start_micros,
                    state_change_micros: a.state_change_micros,
                    queued: a.queued,
                }
            })
            .collect()
    }

    /// `/metrics`: name, help, type, value.
    pub fn metrics(&self) -> Vec<(&'static str, &'static str, &'static str, f64)> {
        vec![
            (
                "wattdb_sql_sessions",
                "SQL sessions open.",
                "gauge",
                self.count() as f64,
            ),
            (
                "wattdb_sql_max_connections",
                "SQL sessions allowed at once (--max-connections).",
                "gauge",
                self.limits.max_connections as f64,
            ),
            (
                "wattdb_sql_sessions_refused_total",
                "SQL sessions refused with 53300 (max_connections, reserved slots, CONNECTION LIMIT).",
                "counter",
                self.refused.load(Ordering::Relaxed) as f64,
            ),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn who(user: &str, admin: bool, limit: Option<u32>) -> Opening<'_> {
        Opening {
            user,
            admin,
            connection_limit: limit,
            application_name: "test",
            client: "127.0.0.1:5000".parse().unwrap(),
        }
    }

    #[test]
    fn the_last_slots_are_kept_for_admins() {
        let s = Sessions::new(SessionLimits {
            max_connections: 4,
            reserved_for_admins: 1,
        });
        let readers: Vec<_> = (0..3)
            .map(|_| s.open(who("r", false, None)).unwrap())
            .collect();
        let refused = s.open(who("r", false, None)).unwrap_err();
        assert_eq!(refused.code, "53300");
        assert!(refused.message.contains("reserved"), "{}", refused.message);
        let admin = s.open(who("wattdb", true, None)).unwrap();
        let full = s.open(who("wattdb", true, None)).unwrap_err();
        assert!(full.message.starts_with("sorry, too many clients already"));
        drop(admin);
        drop(readers);
        assert_eq!(s.count(), 0);
        assert!(s.open(who("r", false, None)).is_ok());
    }

    #[test]
    fn a_connection_limit_holds_for_its_user_only_and_not_for_admins() {
        let s = Sessions::new(SessionLimits::default());
        let a = s.open(who("meter", false, Some(2))).unwrap();
        let _b = s.open(who("meter", false, Some(2))).unwrap();
        let refused = s.open(who("meter", false, Some(2))).unwrap_err();
        assert_eq!(
            refused.message,
            "too many connections for role \"meter\" (CONNECTION LIMIT 2)"
        );
        assert!(s.open(who("other", false, Some(2))).is_ok());
        assert!(s.open(who("boss", true, Some(0))).is_ok());
        drop(a);
        assert!(s.open(who("meter", false, Some(2))).is_ok());
    }

    #[test]
    fn activity_follows_the_latest_statement() {
        let s = Sessions::new(SessionLimits::default());
        let slot = s.open(who("u", false, None)).unwrap();
        let first = slot.session().begin("SELECT 1");
        let second = slot.session().begin("SELECT 2");
        drop(first); // a finished earlier statement leaves the newer one active
        let view = &s.snapshot()[0];
        assert_eq!(
            (view.state, view.query.as_str()),
            (State::Active, "SELECT 2")
        );
        second.set_queued(true);
        assert!(s.snapshot()[0].queued);
        drop(second);
        let view = &s.snapshot()[0];
        assert_eq!((view.state, view.queued), (State::Idle, false));
        let long = "é".repeat(2000);
        let _mark = slot.session().begin(&long);
        assert!(s.snapshot()[0].query.len() <= QUERY_TEXT_BYTES);
    }
}
