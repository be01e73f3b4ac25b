//! Where statements run: planning and execution on a runtime of their own (the query
//! threads), apart from the runtime that accepts connections, speaks pgwire and MQTT and
//! writes the WAL — as InfluxDB IOx's `DedicatedExecutor` does — so that queries busy
//! on every query thread cannot keep a new client from connecting or a device from
//! getting its PUBACK. Every statement runs under an [`Interrupt`]: a cancel request or
//! its deadline stops it while it plans, while it executes (also inside CPU-bound
//! operators, see [`checks`]) and while its rows are streamed.

pub mod admission;
pub mod checks;
pub mod interrupt;
pub mod planning_checks;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

pub use admission::{Admission, AdmissionError, AdmissionSettings, QueuedFlag, Slot, SlotLease};
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::error::{DataFusionError, Result as DfResult};
use datafusion::execution::SendableRecordBatchStream;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::prelude::DataFrame;
use futures::StreamExt;
pub use interrupt::{Interrupt, Interrupted, Reason, StatementGuard};
use tokio::sync::mpsc;

/// Stack of every query thread: planning recurses over the statement (bounded by the
/// statement limits) and some catalog queries clients send recurse deeply.
const QUERY_THREAD_STACK_BYTES: usize = 64 * 1024 * 1024;

/// Batches buffered between a running plan and the connection that sends its rows.
const STREAM_BUFFER: usize = 2;

/// The query threads. Cheap to clone.
#[derive(Clone)]
pub struct QueryExecutor {
    inner: Arc<Runtime>,
}

struct Runtime {
    runtime: Option<tokio::runtime::Runtime>,
    handle: tokio::runtime::Handle,
    threads: usize,
    /// The execution slots of statements that read data.
    admission: Arc<Admission>,
    /// Off only to measure what the checks cost (`WATTDB_INTERRUPT_CHECKS=off`): the
    /// timeout and cancel then stop a statement only between batches of its output.
    checks: bool,
}

impl Drop for Runtime {
    fn drop(&mut self) {
        // Dropping a runtime blocks until its tasks end, which is not allowed inside
        // another runtime; whatever still runs is abandoned with the process.
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }
}

impl std::fmt::Debug for QueryExecutor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QueryExecutor")
            .field("threads", &self.inner.threads)
            .finish()
    }
}

impl QueryExecutor {
    /// A runtime of `threads` query threads (at least one), with as many execution
    /// slots as cores.
    pub fn new(threads: usize) -> std::io::Result<QueryExecutor> {
        Self::with_admission(threads, AdmissionSettings::default())
    }

    /// A runtime of `threads` query threads and `admission`'s execution slots.
    pub fn with_admission(
        threads: usize,
        admission: AdmissionSettings,
    ) -> std::io::Result<QueryExecutor> {
        let threads = threads.max(1);
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads)
            .thread_name("wattdb-query")
            .thread_stack_size(QUERY_THREAD_STACK_BYTES)
            .enable_all()
            .build()?;
        let handle = runtime.handle().clone();
        let checks = std::env::var("WATTDB_INTERRUPT_CHECKS").map_or(true, |v| v != "off");
        if !checks {
            tracing::warn!("WATTDB_INTERRUPT_CHECKS=off: statements stop only between batches");
        }
        Ok(QueryExecutor {
            inner: Arc::new(Runtime {
                runtime: Some(runtime),
                handle,
                threads,
                admission: Arc::new(Admission::new(admission)),
                checks,
            }),
        })
    }

    /// The number of query threads.
    pub fn threads(&self) -> usize {
        self.inner.threads
    }

    /// The execution slots.
    pub fn admission(&self) -> &Arc<Admission> {
        &self.inner.admission
    }

    /// Run `work` on the query threads; stops waiting for it with [`Interrupted`] once
    /// `interrupt` fires (the task is aborted at its next await; synchronous work in it,
    /// such as a plan's optimisation, finishes in the background).
    pub async fn run<T, F>(&self, interrupt: &Interrupt, work: F) -> Result<T, RunError>
    where
        T: Send + 'static,
        F: std::future::Future<Output = T> + Send + 'static,
    {
        if let Some(r) = interrupt.reason() {
            return Err(RunError::Interrupted(Interrupted(r)));
        }
        let mut task = self
            .inner
            .handle
            .spawn(planning_checks::with_interrupt(interrupt.clone(), work));
        tokio::select! {
            done = &mut task => done.map_err(|e| RunError::Failed(e.to_string())),
            reason = interrupt.fired() => {
                task.abort();
                Err(RunError::Interrupted(Interrupted(reason)))
            }
        }
    }

    /// Plan `df` physically and execute it on the query threads; the returned stream
    /// hands its batches over to the caller's task. The plan stops — its operators
    /// dropped, their memory and spill files released — when `interrupt` fires (the
    /// stream then ends with [`Interrupted`]) or when the stream is dropped. With a
    /// `lease`, the plan holds the statement's execution slot only while it runs: it
    /// gives it back while its batches wait for the caller and after its last one.
    pub async fn execute(
        &self,
        interrupt: &Interrupt,
        df: DataFrame,
        analysis: Analysis,
        lease: Option<SlotLease>,
    ) -> DfResult<SendableRecordBatchStream> {
        let checked = interrupt.clone();
        let with_checks = self.inner.checks;
        let started = self
            .run(interrupt, async move {
                let task = Arc::new(df.task_ctx());
                let mut plan = physical_plan(df, analysis).await?;
                if with_checks {
                    plan = checks::instrument(plan, &checked)?;
                }
                datafusion::physical_plan::execute_stream(plan, task)
            })
            .await
            .map_err(RunError::into_datafusion)??;
        let schema = started.schema();
        let (tx, rx) = mpsc::channel(STREAM_BUFFER);
        let finished = Arc::new(AtomicBool::new(false));
        self.inner.handle.spawn(pump(
            started,
            tx,
            interrupt.clone(),
            finished.clone(),
            lease,
        ));
        Ok(receiving(schema, rx, interrupt.clone(), finished))
    }
}

/// Whether a DataFrame's plan still needs the analyzer (type coercion, function
/// rewrites) before it is optimised.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Analysis {
    /// Analyzed as it was planned, and not changed since but for projections of
    /// columns and casts (the session's time zone): optimised as it is. Analysing a
    /// plan again costs as much as the first time — for a long expression chain, a
    /// large share of its planning.
    Done,
    /// Built without analysis (`SessionContext::sql`, placeholders replaced by values):
    /// analyzed, then optimised.
    Needed,
}

/// `df`'s physical plan: its logical plan analyzed (unless done), optimised and planned.
/// An `EXPLAIN` is analyzed again in any case: its output shows the analyzer's passes.
async fn physical_plan(
    df: DataFrame,
    analysis: Analysis,
) -> DfResult<Arc<dyn datafusion::physical_plan::ExecutionPlan>> {
    let (state, plan) = df.into_parts();
    let optimized = match (analysis, &plan) {
        (Analysis::Done, p) if !matches!(p, datafusion::logical_expr::LogicalPlan::Explain(_)) => {
            state.optimizer().optimize(plan, &state, |_, _| {})?
        }
        _ => state.optimize(&plan)?,
    };
    state
        .query_planner()
        .create_physical_plan(&optimized, &state)
        .await
}

/// Why [`QueryExecutor::run`] returned no result.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Interrupted(Interrupted),
    /// The task panicked or was aborted.
    #[error("the statement's task failed: {0}")]
    Failed(String),
}

impl RunError {
    pub fn into_datafusion(self) -> DataFusionError {
        match self {
            RunError::Interrupted(i) => DataFusionError::External(Box::new(i)),
            RunError::Failed(m) => DataFusionError::Internal(m),
        }
    }
}

/// Polls the plan's stream on the query threads and sends its batches on; stops at the
/// interrupt, at the first error, or when the receiver is gone. With a `lease` it holds
/// the execution slot while it polls: when the receiver has not taken the batches
/// buffered it gives the slot back until there is room, and takes one again (in turn)
/// before polling on; after the last batch it gives it back for good.
async fn pump(
    mut stream: SendableRecordBatchStream,
    tx: mpsc::Sender<DfResult<RecordBatch>>,
    interrupt: Interrupt,
    finished: Arc<AtomicBool>,
    lease: Option<SlotLease>,
) {
    let _given_back = lease.clone().map(GiveBackOnDrop);
    loop {
        if let Some(lease) = &lease
            && lease.take(&interrupt).await.is_err()
        {
            return;
        }
        let next = tokio::select! {
            biased;
            _ = interrupt.fired() => return,
            next = stream.next() => next,
        };
        let Some(item) = next else {
            finished.store(true, Ordering::Release);
            return;
        };
        let failed = item.is_err();
        let room = match tx.try_reserve() {
            Ok(room) => room,
            Err(mpsc::error::TrySendError::Closed(())) => return,
            Err(mpsc::error::TrySendError::Full(())) => {
                if let Some(lease) = &lease {
                    lease.give_back();
                }
                tokio::select! {
                    biased;
                    _ = interrupt.fired() => return,
                    room = tx.reserve() => match room {
                        Ok(room) => room,
                        Err(_) => return,
                    },
                }
            }
        };
        room.send(item);
        if failed {
            finished.store(true, Ordering::Release);
            return;
        }
    }
}

/// Gives a lease's slot back when the pump ends, however it ends.
struct GiveBackOnDrop(SlotLease);

impl Drop for GiveBackOnDrop {
    fn drop(&mut self) {
        self.0.give_back();
    }
}

/// [`Interrupted`] once the interrupt fired, else `e`.
fn or_interrupted(interrupt: &Interrupt, e: DataFusionError) -> DataFusionError {
    match interrupt.reason() {
        Some(r) => DataFusionError::External(Box::new(Interrupted(r))),
        None => e,
    }
}

/// The caller's end of [`pump`]: the batches, then the end — or [`Interrupted`] when the
/// plan was stopped (any error after the interrupt fired is reported as the interrupt).
fn receiving(
    schema: SchemaRef,
    rx: mpsc::Receiver<DfResult<RecordBatch>>,
    interrupt: Interrupt,
    finished: Arc<AtomicBool>,
) -> SendableRecordBatchStream {
    let stream = futures::stream::unfold(Some((rx, interrupt, finished)), |state| async move {
        let (mut rx, interrupt, finished) = state?;
        match rx.recv().await {
            Some(Ok(batch)) => Some((Ok(batch), Some((rx, interrupt, finished)))),
            Some(Err(e)) => Some((Err(or_interrupted(&interrupt, e)), None)),
            None if finished.load(Ordering::Acquire) => None,
            None => {
                let early = DataFusionError::Internal("the query's task ended early".into());
                Some((Err(or_interrupted(&interrupt, early)), None))
            }
        }
    });
    Box::pin(RecordBatchStreamAdapter::new(schema, stream))
}
