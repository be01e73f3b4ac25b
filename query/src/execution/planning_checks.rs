//! A statement's interrupt, checked between the planner's passes: the work that runs
//! on the query threads ([`super::QueryExecutor::run`]) carries the statement's
//! [`Interrupt`] in a task-local, and a rule placed before every analyzer, optimizer
//! and physical optimizer rule ends planning with [`Interrupted`] once it has fired —
//! so that a cancel or a timeout during planning stops the planning itself (within the
//! time of one rule), instead of leaving it to run to its end in the background. SQL
//! parsing and the conversion of the statement to its first logical plan have no such
//! points: they are bounded by the statement limits (`pg/limits.rs`).

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use datafusion::common::config::ConfigOptions;
use datafusion::common::tree_node::Transformed;
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::session_state::{SessionState, SessionStateBuilder};
use datafusion::logical_expr::LogicalPlan;
use datafusion::optimizer::analyzer::AnalyzerRule;
use datafusion::optimizer::{ApplyOrder, OptimizerConfig, OptimizerRule};
use datafusion::physical_optimizer::PhysicalOptimizerRule;
use datafusion::physical_plan::ExecutionPlan;

use super::{Interrupt, Interrupted};

tokio::task_local! {
    static STATEMENT: Interrupt;
}

/// `work` run with `interrupt` as the statement's, for the checks.
pub fn with_interrupt<F: Future>(interrupt: Interrupt, work: F) -> impl Future<Output = F::Output> {
    STATEMENT.scope(interrupt, work)
}

/// Plannings the checks stopped, for `/metrics`.
static STOPPED: AtomicU64 = AtomicU64::new(0);

/// `/metrics`: name, help, type, value.
pub fn snapshot() -> Vec<(&'static str, &'static str, &'static str, f64)> {
    vec![(
        "wattdb_plannings_stopped_total",
        "Statements whose planning a cancel, timeout or departed client stopped between the planner's rules.",
        "counter",
        STOPPED.load(Ordering::Relaxed) as f64,
    )]
}

/// The error planning stops with, when the running statement's interrupt has fired.
fn stopped() -> Result<()> {
    match STATEMENT.try_with(|i| i.reason()).ok().flatten() {
        Some(reason) => {
            STOPPED.fetch_add(1, Ordering::Relaxed);
            Err(DataFusionError::External(Box::new(Interrupted(reason))))
        }
        None => Ok(()),
    }
}

/// The check, as a rule of each of the planner's three kinds.
#[derive(Debug, Default)]
pub struct StopIfInterrupted;

const NAME: &str = "wattdb_stop_if_interrupted";

impl AnalyzerRule for StopIfInterrupted {
    fn analyze(&self, plan: LogicalPlan, _: &ConfigOptions) -> Result<LogicalPlan> {
        stopped().map(|()| plan)
    }

    fn name(&self) -> &str {
        NAME
    }
}

impl OptimizerRule for StopIfInterrupted {
    fn name(&self) -> &str {
        NAME
    }

    fn apply_order(&self) -> Option<ApplyOrder> {
        None
    }

    fn supports_rewrite(&self) -> bool {
        true
    }

    fn rewrite(
        &self,
        plan: LogicalPlan,
        _: &dyn OptimizerConfig,
    ) -> Result<Transformed<LogicalPlan>> {
        stopped().map(|()| Transformed::no(plan))
    }
}

impl PhysicalOptimizerRule for StopIfInterrupted {
    fn optimize(
        &self,
        plan: Arc<dyn ExecutionPlan>,
        _: &ConfigOptions,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        stopped().map(|()| plan)
    }

    fn name(&self) -> &str {
        NAME
    }

    fn schema_check(&self) -> bool {
        true
    }
}

/// `rules` with the check before each of them.
fn interleaved<R: ?Sized>(rules: &[Arc<R>], check: Arc<R>) -> Vec<Arc<R>> {
    rules
        .iter()
        .flat_map(|r| [check.clone(), r.clone()])
        .collect()
}

/// `state` with the check before each of its planner rules (call it once, after the
/// last rule was added).
pub fn install(state: SessionState) -> SessionState {
    let check = Arc::new(StopIfInterrupted);
    let analyzer = interleaved(&state.analyzer().rules, check.clone() as _);
    let optimizer = interleaved(state.optimizers(), check.clone() as _);
    let physical = interleaved(state.physical_optimizers(), check as _);
    SessionStateBuilder::new_from_existing(state)
        .with_analyzer_rules(analyzer)
        .with_optimizer_rules(optimizer)
        .with_physical_optimizer_rules(physical)
        .build()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::execution::Reason;
    use datafusion::prelude::SessionContext;

    #[tokio::test]
    async fn planning_stops_once_the_interrupt_fired() {
        let ctx = SessionContext::new_with_state(install(SessionContext::new().state()));
        let sql = "SELECT a.column1 + b.column1 FROM (VALUES (1), (2)) a, (VALUES (3)) b";
        // Not fired: plans as ever.
        let df = with_interrupt(Interrupt::default(), ctx.sql(sql)).await;
        assert!(
            with_interrupt(Interrupt::default(), df.unwrap().create_physical_plan())
                .await
                .is_ok()
        );
        // Fired: the first check stops it, with the interrupt's reason.
        let fired = Interrupt::default();
        fired.fire(Reason::TimedOut);
        let df = ctx.sql(sql).await.unwrap();
        let e = with_interrupt(fired, df.create_physical_plan())
            .await
            .expect_err("stopped");
        assert!(e.to_string().contains("statement timeout"), "{e}");
        // Outside a statement (no interrupt in scope) nothing is checked.
        let df = ctx.sql(sql).await.unwrap();
        assert!(df.create_physical_plan().await.is_ok());
    }
}
