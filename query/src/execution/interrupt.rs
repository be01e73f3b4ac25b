//! One statement's interrupt: fired by a cancel request or when its deadline
//! (`statement_timeout`) passes, read by everything that runs the statement — the
//! planning and execution tasks on the query runtime and the checks inside operators'
//! expression evaluation ([`super::checks`]) — so that the statement stops wherever it
//! is, also in the middle of a CPU-bound operator.

use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::Duration;

use futures::channel::oneshot;
use tokio::sync::Notify;

/// Why a statement was stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// A cancel request from the client, or the client went away.
    Canceled,
    /// `statement_timeout` passed.
    TimedOut,
}

impl Reason {
    /// PostgreSQL's message for it.
    pub fn message(self) -> &'static str {
        match self {
            Reason::Canceled => "canceling statement due to user request",
            Reason::TimedOut => "canceling statement due to statement timeout",
        }
    }

    fn code(self) -> u8 {
        match self {
            Reason::Canceled => 1,
            Reason::TimedOut => 2,
        }
    }

    fn from_code(code: u8) -> Option<Reason> {
        match code {
            1 => Some(Reason::Canceled),
            2 => Some(Reason::TimedOut),
            _ => None,
        }
    }
}

/// The error a stopped statement ends with: carried through DataFusion as an external
/// error, answered as `57014` with [`Reason::message`].
#[derive(Debug, Clone, Copy, thiserror::Error)]
#[error("{}", .0.message())]
pub struct Interrupted(pub Reason);

#[derive(Default)]
struct Inner {
    reason: AtomicU8,
    notify: Notify,
}

/// Cheap to clone and to check: an atomic load.
#[derive(Clone, Default)]
pub struct Interrupt {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Interrupt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Interrupt").field(&self.reason()).finish()
    }
}

impl Interrupt {
    /// Stop the statement (the first reason wins).
    pub fn fire(&self, reason: Reason) {
        if self
            .inner
            .reason
            .compare_exchange(0, reason.code(), Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
        {
            self.inner.notify.notify_waiters();
        }
    }

    /// Why it was stopped, if it was.
    pub fn reason(&self) -> Option<Reason> {
        Reason::from_code(self.inner.reason.load(Ordering::Acquire))
    }

    /// `Err(Interrupted)` once stopped.
    pub fn check(&self) -> Result<(), Interrupted> {
        match self.reason() {
            Some(r) => Err(Interrupted(r)),
            None => Ok(()),
        }
    }

    /// Resolves when the statement is stopped.
    pub async fn fired(&self) -> Reason {
        loop {
            let notified = self.inner.notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if let Some(r) = self.reason() {
                return r;
            }
            notified.await;
        }
    }
}

/// A running statement's interrupt and what fires it: a watcher task that fires it on a
/// cancel request or at the deadline. Dropping the guard ends the statement: the watcher
/// stops, and whatever of the statement still runs is stopped too (the connection gave
/// up on it: its task was dropped, or the client stopped reading its rows).
pub struct StatementGuard {
    interrupt: Interrupt,
    watcher: Option<tokio::task::JoinHandle<()>>,
    /// What the statement holds until its last row is sent: its line in
    /// `pg_stat_activity`.
    held: Vec<Box<dyn std::any::Any + Send + Sync>>,
    /// Its execution slot ([`super::admission`]), shared with its running plan.
    lease: Option<super::SlotLease>,
}

impl StatementGuard {
    /// `cancel`: resolves `Ok` on a cancel request for this statement (an `Err` — the
    /// sender replaced by the next statement's — is not a cancel); `timeout`: the
    /// statement's `statement_timeout`.
    pub fn start(cancel: Option<oneshot::Receiver<()>>, timeout: Option<Duration>) -> Self {
        Self::start_watching(cancel, timeout, None)
    }

    /// [`StatementGuard::start`], also fired (as a cancel) when `client_gone` resolves:
    /// the client went away.
    pub fn start_watching(
        cancel: Option<oneshot::Receiver<()>>,
        timeout: Option<Duration>,
        client_gone: Option<futures::future::BoxFuture<'static, ()>>,
    ) -> Self {
        let interrupt = Interrupt::default();
        if cancel.is_none() && timeout.is_none() && client_gone.is_none() {
            return StatementGuard {
                interrupt,
                watcher: None,
                held: Vec::new(),
                lease: None,
            };
        }
        let fired = interrupt.clone();
        let watcher = tokio::spawn(async move {
            let cancelled = async {
                match cancel {
                    Some(rx) => {
                        if rx.await.is_err() {
                            std::future::pending::<()>().await;
                        }
                    }
                    None => std::future::pending::<()>().await,
                }
            };
            let deadline = async {
                match timeout {
                    Some(t) => tokio::time::sleep(t).await,
                    None => std::future::pending::<()>().await,
                }
            };
            let gone = async {
                match client_gone {
                    Some(gone) => gone.await,
                    None => std::future::pending::<()>().await,
                }
            };
            tokio::select! {
                _ = cancelled => fired.fire(Reason::Canceled),
                _ = deadline => fired.fire(Reason::TimedOut),
                _ = gone => {
                    tracing::debug!("the client went away: stopping its statement");
                    fired.fire(Reason::Canceled)
                }
            }
        });
        StatementGuard {
            interrupt,
            watcher: Some(watcher),
            held: Vec::new(),
            lease: None,
        }
    }

    pub fn interrupt(&self) -> &Interrupt {
        &self.interrupt
    }

    /// Keep `thing` until the statement ends (the guard is dropped).
    pub fn hold(&mut self, thing: impl std::any::Any + Send + Sync) {
        self.held.push(Box::new(thing));
    }

    /// The statement's execution slot, held until it ends or its plan gives it back.
    pub fn hold_slot(&mut self, lease: super::SlotLease) {
        self.lease = Some(lease);
    }

    /// The statement's execution slot, for its plan (see [`super::QueryExecutor::execute`]).
    pub fn lease(&self) -> Option<super::SlotLease> {
        self.lease.clone()
    }
}

impl Drop for StatementGuard {
    fn drop(&mut self) {
        if let Some(w) = self.watcher.take() {
            w.abort();
        }
        self.interrupt.fire(Reason::Canceled);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_first_reason_wins_and_wakes_waiters() {
        let i = Interrupt::default();
        assert!(i.check().is_ok());
        let waiter = tokio::spawn({
            let i = i.clone();
            async move { i.fired().await }
        });
        tokio::task::yield_now().await;
        i.fire(Reason::TimedOut);
        i.fire(Reason::Canceled);
        assert_eq!(waiter.await.unwrap(), Reason::TimedOut);
        assert_eq!(i.reason(), Some(Reason::TimedOut));
        assert_eq!(
            i.check().unwrap_err().to_string(),
            "canceling statement due to statement timeout"
        );
    }

    #[tokio::test]
    async fn the_guard_fires_on_cancel_and_on_timeout_but_not_on_a_replaced_sender() {
        let (tx, rx) = oneshot::channel();
        let g = StatementGuard::start(Some(rx), None);
        tx.send(()).unwrap();
        assert_eq!(g.interrupt().fired().await, Reason::Canceled);

        let g = StatementGuard::start(None, Some(Duration::from_millis(20)));
        assert_eq!(g.interrupt().fired().await, Reason::TimedOut);

        let (tx, rx) = oneshot::channel::<()>();
        let g = StatementGuard::start(Some(rx), Some(Duration::from_millis(50)));
        drop(tx); // the next statement replaced the sender: not a cancel
        assert_eq!(g.interrupt().fired().await, Reason::TimedOut);
    }
}
