//! Admission of statements that read data: at most `limit` of them plan and execute at
//! once (default: the number of cores); the others wait their turn in arrival order
//! (tokio's semaphore is fair: first come, first served) for at most the queue timeout.
//! A statement holds its slot ([`SlotLease`]) while it plans and while its plan runs; the
//! plan gives it back while it waits for the client to take its rows (a slow reader, a
//! portal suspended at its row limit, a cursor between `FETCH`es) and once it has made
//! its last batch, and takes one again in turn before it runs on.
//!
//! Statements that read no table — `SELECT 1`, `SHOW`, the catalog queries drivers send
//! on connecting — are not admitted here: they are bounded by the statement limits, and a
//! new client must get its answer while every slot is busy with long queries. A statement
//! waiting for a slot is stopped by its cancel request and its `statement_timeout` like
//! a running one.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::interrupt::{Interrupt, Interrupted};

/// How many statements run at once and how long others wait.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AdmissionSettings {
    /// Statements reading data that plan and execute at once (at least one).
    pub max_active: usize,
    /// Longest wait for a slot; `None`: as long as the statement's own timeout allows.
    pub queue_timeout: Option<Duration>,
}

/// The queue timeout when none is configured.
pub const DEFAULT_QUEUE_TIMEOUT: Duration = Duration::from_secs(60);

impl Default for AdmissionSettings {
    fn default() -> Self {
        AdmissionSettings {
            max_active: std::thread::available_parallelism().map_or(2, |n| n.get()),
            queue_timeout: Some(DEFAULT_QUEUE_TIMEOUT),
        }
    }
}

/// Why a statement got no slot.
#[derive(Debug, thiserror::Error)]
pub enum AdmissionError {
    #[error(transparent)]
    Interrupted(Interrupted),
    #[error(
        "canceling statement: it waited {waited_ms} ms for one of the {slots} execution slots \
         (statement_queue_timeout); the server is running {slots} statements and {queued} more are waiting"
    )]
    QueueTimeout {
        waited_ms: u128,
        slots: usize,
        queued: usize,
    },
}

/// The execution slots and what they report to `/metrics`.
#[derive(Debug)]
pub struct Admission {
    slots: Arc<Semaphore>,
    settings: AdmissionSettings,
    queued: AtomicUsize,
    admitted: AtomicU64,
    readmitted: AtomicU64,
    waited_micros: AtomicU64,
    timed_out: AtomicU64,
}

/// A statement's slot: given back when dropped.
#[derive(Debug)]
pub struct Slot {
    _permit: OwnedSemaphorePermit,
}

/// Told when a statement starts (`true`) and stops (`false`) waiting for a slot again
/// (its line in `pg_stat_activity`).
pub type QueuedFlag = Box<dyn Fn(bool) + Send + Sync>;

/// A statement's hold on its execution slot, shared by the statement and its running
/// plan (cheap to clone). The plan gives the slot back ([`SlotLease::give_back`]) while
/// it waits for the client to take its rows and when it has made its last batch, and
/// takes one again ([`SlotLease::take`]) before it runs on: a slot is held only while
/// the statement can use the query threads, so that a client reading slowly, a portal
/// suspended at its row limit or an open cursor keeps no other statement waiting.
#[derive(Clone)]
pub struct SlotLease {
    inner: Arc<Lease>,
}

struct Lease {
    admission: Arc<Admission>,
    slot: std::sync::Mutex<Option<Slot>>,
    on_queued: Option<QueuedFlag>,
}

impl std::fmt::Debug for SlotLease {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SlotLease")
            .field("holds", &self.holds())
            .finish()
    }
}

impl SlotLease {
    /// A lease holding `slot`, from `admission`.
    pub fn new(admission: Arc<Admission>, slot: Slot, on_queued: Option<QueuedFlag>) -> Self {
        SlotLease {
            inner: Arc::new(Lease {
                admission,
                slot: std::sync::Mutex::new(Some(slot)),
                on_queued,
            }),
        }
    }

    fn slot(&self) -> std::sync::MutexGuard<'_, Option<Slot>> {
        self.inner.slot.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether the statement holds a slot now.
    pub fn holds(&self) -> bool {
        self.slot().is_some()
    }

    /// Give the slot back (if held) to the next statement waiting.
    pub fn give_back(&self) {
        drop(self.slot().take());
    }

    /// Hold a slot: the one held, or a free one, or the next one in turn — until
    /// `interrupt` fires.
    pub async fn take(&self, interrupt: &Interrupt) -> Result<(), Interrupted> {
        if self.holds() {
            return Ok(());
        }
        let flag = |queued: bool| {
            if let Some(f) = &self.inner.on_queued {
                f(queued);
            }
        };
        flag(true);
        let slot = self.inner.admission.readmit(interrupt).await;
        flag(false);
        match slot {
            Ok(slot) => {
                *self.slot() = Some(slot);
                Ok(())
            }
            Err(AdmissionError::Interrupted(i)) => Err(i),
            // No queue timeout for a readmission.
            Err(AdmissionError::QueueTimeout { .. }) => Err(Interrupted(super::Reason::Canceled)),
        }
    }
}

/// Counts `queued` for as long as it lives (also when the waiting future is dropped).
struct Queued<'a>(&'a AtomicUsize);

impl<'a> Queued<'a> {
    fn enter(counter: &'a AtomicUsize) -> Self {
        counter.fetch_add(1, Ordering::Relaxed);
        Queued(counter)
    }
}

impl Drop for Queued<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Admission {
    pub fn new(settings: AdmissionSettings) -> Admission {
        let max_active = settings.max_active.max(1);
        Admission {
            slots: Arc::new(Semaphore::new(max_active)),
            settings: AdmissionSettings {
                max_active,
                ..settings
            },
            queued: AtomicUsize::new(0),
            admitted: AtomicU64::new(0),
            readmitted: AtomicU64::new(0),
            waited_micros: AtomicU64::new(0),
            timed_out: AtomicU64::new(0),
        }
    }

    /// A slot now, if one is free.
    pub fn try_admit(&self) -> Option<Slot> {
        let slot = self.free_slot()?;
        self.admitted.fetch_add(1, Ordering::Relaxed);
        Some(slot)
    }

    /// A free slot, if there is one and no statement is waiting (the semaphore hands
    /// released slots to the waiting first).
    fn free_slot(&self) -> Option<Slot> {
        let permit = self.slots.clone().try_acquire_owned().ok()?;
        Some(Slot { _permit: permit })
    }

    /// Wait for a slot in arrival order, until `interrupt` fires or the queue timeout
    /// passes.
    pub async fn admit(&self, interrupt: &Interrupt) -> Result<Slot, AdmissionError> {
        if let Some(slot) = self.try_admit() {
            return Ok(slot);
        }
        let slot = self.wait(interrupt, self.settings.queue_timeout).await;
        match &slot {
            Ok(_) => {
                self.admitted.fetch_add(1, Ordering::Relaxed);
            }
            Err(AdmissionError::QueueTimeout { .. }) => {
                self.timed_out.fetch_add(1, Ordering::Relaxed);
            }
            Err(AdmissionError::Interrupted(_)) => {}
        }
        slot
    }

    /// A slot for a running statement that gave its own back: at once if one is free,
    /// else in arrival order behind the statements already waiting, with no queue
    /// timeout (its rows have begun; only its interrupt stops the wait).
    async fn readmit(&self, interrupt: &Interrupt) -> Result<Slot, AdmissionError> {
        let slot = match self.free_slot() {
            Some(slot) => Ok(slot),
            None => self.wait(interrupt, None).await,
        };
        if slot.is_ok() {
            self.readmitted.fetch_add(1, Ordering::Relaxed);
        }
        slot
    }

    /// Queue for a slot until one is free, `interrupt` fires or `timeout` passes.
    async fn wait(
        &self,
        interrupt: &Interrupt,
        timeout: Option<Duration>,
    ) -> Result<Slot, AdmissionError> {
        let started = Instant::now();
        let queued = Queued::enter(&self.queued);
        let timeout = async {
            match timeout {
                Some(t) => tokio::time::sleep(t).await,
                None => std::future::pending::<()>().await,
            }
        };
        let outcome = tokio::select! {
            permit = self.slots.clone().acquire_owned() => match permit {
                Ok(permit) => Ok(Slot { _permit: permit }),
                // The semaphore is never closed.
                Err(_) => Err(AdmissionError::Interrupted(Interrupted(super::Reason::Canceled))),
            },
            reason = interrupt.fired() => Err(AdmissionError::Interrupted(Interrupted(reason))),
            _ = timeout => Err(AdmissionError::QueueTimeout {
                waited_ms: started.elapsed().as_millis(),
                slots: self.settings.max_active,
                queued: self.queued.load(Ordering::Relaxed).saturating_sub(1),
            }),
        };
        drop(queued);
        self.waited_micros
            .fetch_add(started.elapsed().as_micros() as u64, Ordering::Relaxed);
        outcome
    }

    /// Statements holding a slot now.
    pub fn active(&self) -> usize {
        self.settings.max_active - self.slots.available_permits()
    }

    /// Statements waiting for a slot now.
    pub fn queued(&self) -> usize {
        self.queued.load(Ordering::Relaxed)
    }

    /// `/metrics`: name, help, type, value.
    pub fn snapshot(&self) -> Vec<(&'static str, &'static str, &'static str, f64)> {
        vec![
            (
                "wattdb_statement_slots",
                "Statements reading data that may execute at once (--max-active-statements).",
                "gauge",
                self.settings.max_active as f64,
            ),
            (
                "wattdb_statements_active",
                "Statements holding an execution slot.",
                "gauge",
                self.active() as f64,
            ),
            (
                "wattdb_statements_queued",
                "Statements waiting for an execution slot.",
                "gauge",
                self.queued() as f64,
            ),
            (
                "wattdb_statements_admitted_total",
                "Statements given an execution slot.",
                "counter",
                self.admitted.load(Ordering::Relaxed) as f64,
            ),
            (
                "wattdb_statements_readmitted_total",
                "Times a running statement took a slot again after giving it back while its rows waited for the client.",
                "counter",
                self.readmitted.load(Ordering::Relaxed) as f64,
            ),
            (
                "wattdb_statement_queue_wait_seconds_total",
                "Time statements spent waiting for an execution slot.",
                "counter",
                self.waited_micros.load(Ordering::Relaxed) as f64 / 1e6,
            ),
            (
                "wattdb_statement_queue_timeouts_total",
                "Statements refused after waiting statement_queue_timeout for a slot.",
                "counter",
                self.timed_out.load(Ordering::Relaxed) as f64,
            ),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::execution::Reason;

    fn admission(max_active: usize, queue_timeout: Option<Duration>) -> Arc<Admission> {
        Arc::new(Admission::new(AdmissionSettings {
            max_active,
            queue_timeout,
        }))
    }

    #[tokio::test]
    async fn slots_are_given_in_arrival_order() {
        let a = admission(1, None);
        let first = a.admit(&Interrupt::default()).await.unwrap();
        let order = Arc::new(std::sync::Mutex::new(Vec::new()));
        let mut waiters = Vec::new();
        for i in 0..5 {
            let (waiter, order) = (a.clone(), order.clone());
            waiters.push(tokio::spawn(async move {
                let slot = waiter.admit(&Interrupt::default()).await.unwrap();
                order.lock().unwrap().push(i);
                tokio::task::yield_now().await;
                drop(slot);
            }));
            // Let each one join the queue before the next arrives.
            while a.queued() < i + 1 {
                tokio::task::yield_now().await;
            }
        }
        assert_eq!(a.active(), 1);
        drop(first);
        for w in waiters {
            w.await.unwrap();
        }
        assert_eq!(*order.lock().unwrap(), vec![0, 1, 2, 3, 4]);
        assert_eq!((a.active(), a.queued()), (0, 0));
    }

    #[tokio::test]
    async fn a_waiting_statement_is_stopped_by_its_interrupt_and_by_the_queue_timeout() {
        let a = admission(1, Some(Duration::from_millis(30)));
        let _held = a.admit(&Interrupt::default()).await.unwrap();
        match a.admit(&Interrupt::default()).await {
            Err(AdmissionError::QueueTimeout { slots: 1, .. }) => {}
            other => panic!("expected a queue timeout, got {other:?}"),
        }
        let a = admission(1, None);
        let _held = a.admit(&Interrupt::default()).await.unwrap();
        let interrupt = Interrupt::default();
        let waiting = {
            let (a, i) = (a.clone(), interrupt.clone());
            tokio::spawn(async move { a.admit(&i).await })
        };
        while a.queued() == 0 {
            tokio::task::yield_now().await;
        }
        interrupt.fire(Reason::TimedOut);
        match waiting.await.unwrap() {
            Err(AdmissionError::Interrupted(Interrupted(Reason::TimedOut))) => {}
            other => panic!("expected the timeout, got {other:?}"),
        }
        assert_eq!(a.queued(), 0);
        assert_eq!(a.active(), 1);
    }

    #[tokio::test]
    async fn a_lease_given_back_lets_the_next_in_and_queues_behind_it_to_go_on() {
        let a = admission(1, Some(Duration::from_millis(10)));
        let flags = Arc::new(std::sync::Mutex::new(Vec::new()));
        let seen = flags.clone();
        let lease = SlotLease::new(
            a.clone(),
            a.admit(&Interrupt::default()).await.unwrap(),
            Some(Box::new(move |q| seen.lock().unwrap().push(q))),
        );
        assert!(lease.holds());
        // Held: the next statement would wait (and here times out).
        assert!(a.admit(&Interrupt::default()).await.is_err());
        lease.give_back();
        assert!(!lease.holds());
        let other = a.admit(&Interrupt::default()).await.unwrap();
        // The lease waits for its turn — longer than the queue timeout, which does not
        // apply to it — and has the slot once the other statement is done.
        let again = {
            let lease = lease.clone();
            tokio::spawn(async move { lease.take(&Interrupt::default()).await })
        };
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!again.is_finished());
        assert_eq!(a.queued(), 1);
        drop(other);
        again.await.unwrap().unwrap();
        assert!(lease.holds());
        assert_eq!(*flags.lock().unwrap(), vec![true, false]);
        // Taking a held slot is at once; the interrupt stops a wait.
        lease.take(&Interrupt::default()).await.unwrap();
        lease.give_back();
        let _busy = a.admit(&Interrupt::default()).await.unwrap();
        let interrupt = Interrupt::default();
        interrupt.fire(Reason::Canceled);
        assert!(lease.take(&interrupt).await.is_err());
        drop(lease);
        assert_eq!((a.active(), a.queued()), (1, 0));
    }
}
