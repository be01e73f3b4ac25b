//! Admission of statements that read data: at most `limit` of them plan and execute at
//! once (default: the number of cores); the others wait their turn in arrival order
//! (tokio's semaphore is fair: first come, first served) for at most the queue timeout.
//! A statement keeps its slot until its last row is sent.
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
    waited_micros: AtomicU64,
    timed_out: AtomicU64,
}

/// A statement's slot: given back when dropped.
#[derive(Debug)]
pub struct Slot {
    _permit: OwnedSemaphorePermit,
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
            waited_micros: AtomicU64::new(0),
            timed_out: AtomicU64::new(0),
        }
    }

    /// A slot now, if one is free.
    pub fn try_admit(&self) -> Option<Slot> {
        let permit = self.slots.clone().try_acquire_owned().ok()?;
        self.admitted.fetch_add(1, Ordering::Relaxed);
        Some(Slot { _permit: permit })
    }

    /// Wait for a slot in arrival order, until `interrupt` fires or the queue timeout
    /// passes.
    pub async fn admit(&self, interrupt: &Interrupt) -> Result<Slot, AdmissionError> {
        if let Some(slot) = self.try_admit() {
            return Ok(slot);
        }
        let started = Instant::now();
        let queued = Queued::enter(&self.queued);
        let timeout = async {
            match self.settings.queue_timeout {
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
        match &outcome {
            Ok(_) => {
                self.admitted.fetch_add(1, Ordering::Relaxed);
            }
            Err(AdmissionError::QueueTimeout { .. }) => {
                self.timed_out.fetch_add(1, Ordering::Relaxed);
            }
            Err(AdmissionError::Interrupted(_)) => {}
        }
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
}
