//! Interrupt checks inside operators, PostgreSQL's `CHECK_FOR_INTERRUPTS` for DataFusion.
//!
//! The plan's stream is polled batch by batch by a task that also watches the interrupt,
//! but one poll can run for minutes: an operator that consumes its input in a loop (a
//! sort's top-k, an aggregation, a window, a filter) does not return while its input
//! keeps producing, and a cross join produces without waiting for anything. So
//! [`instrument`] puts a [`CheckedExec`] above every operator, whose stream fails with
//! [`Interrupted`] at the next batch once the interrupt fired — every loop over an input
//! stops within a batch. A nested-loop join probes every left row against a right batch
//! inside one poll until a full batch of output is ready, without touching its inputs;
//! its join filter (and every filter's predicate) is wrapped in [`Checked`], which fails
//! the evaluation, done every few thousand row pairs. The check is an atomic load per
//! batch.
//!
//! Under `EXPLAIN ANALYZE` only the predicates are checked: its output prints the plan
//! it ran, which must be the plan as planned.

use std::any::Any;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::sync::Arc;

use datafusion::arrow::datatypes::{FieldRef, Schema};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::logical_expr::ColumnarValue;
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_plan::analyze::AnalyzeExec;
use datafusion::physical_plan::execution_plan::{ChildrenPropertiesMode, ReplaceChildrenOptions};
use datafusion::physical_plan::filter::{FilterExec, FilterExecBuilder};
use datafusion::physical_plan::joins::NestedLoopJoinExec;
use datafusion::physical_plan::joins::utils::JoinFilter;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{DisplayAs, DisplayFormatType, ExecutionPlan, PlanProperties};
use futures::StreamExt;

use super::interrupt::{Interrupt, Interrupted};

/// `inner`, failing once `interrupt` fired.
#[derive(Debug)]
pub struct Checked {
    inner: Arc<dyn PhysicalExpr>,
    interrupt: Interrupt,
}

impl Checked {
    pub fn wrap(inner: Arc<dyn PhysicalExpr>, interrupt: &Interrupt) -> Arc<dyn PhysicalExpr> {
        Arc::new(Checked {
            inner,
            interrupt: interrupt.clone(),
        })
    }
}

impl fmt::Display for Checked {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.inner, f)
    }
}

impl PartialEq for Checked {
    fn eq(&self, other: &Self) -> bool {
        self.inner.as_ref() == other.inner.as_ref()
    }
}

impl Eq for Checked {}

impl Hash for Checked {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.inner.hash(state);
    }
}

impl PhysicalExpr for Checked {
    fn return_field(&self, input_schema: &Schema) -> Result<FieldRef> {
        self.inner.return_field(input_schema)
    }

    fn evaluate(&self, batch: &RecordBatch) -> Result<ColumnarValue> {
        self.interrupt
            .check()
            .map_err(|e: Interrupted| DataFusionError::External(Box::new(e)))?;
        self.inner.evaluate(batch)
    }

    fn children(&self) -> Vec<&Arc<dyn PhysicalExpr>> {
        vec![&self.inner]
    }

    fn with_new_children(
        self: Arc<Self>,
        children: Vec<Arc<dyn PhysicalExpr>>,
    ) -> Result<Arc<dyn PhysicalExpr>> {
        match <[Arc<dyn PhysicalExpr>; 1]>::try_from(children) {
            Ok([inner]) => Ok(Checked::wrap(inner, &self.interrupt)),
            Err(c) => Err(DataFusionError::Internal(format!(
                "interrupt check takes one child, got {}",
                c.len()
            ))),
        }
    }

    fn fmt_sql(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.inner.fmt_sql(f)
    }
}

/// `plan` with every operator's output and the predicates of its filters and nested-loop
/// joins checked, in one pass from the leaves up.
pub fn instrument(
    plan: Arc<dyn ExecutionPlan>,
    interrupt: &Interrupt,
) -> Result<Arc<dyn ExecutionPlan>> {
    let analyze = (plan.as_ref() as &dyn Any).is::<AnalyzeExec>();
    plan.transform_up(|node| {
        let node = check_predicates(node, interrupt)?;
        if analyze {
            return Ok(Transformed::yes(node));
        }
        Ok(Transformed::yes(
            Arc::new(CheckedExec::new(node, interrupt)) as Arc<dyn ExecutionPlan>,
        ))
    })
    .map(|t| t.data)
}

/// `node` itself with its predicate checked, if it is a filter or a nested-loop join
/// with a join filter.
fn check_predicates(
    node: Arc<dyn ExecutionPlan>,
    interrupt: &Interrupt,
) -> Result<Arc<dyn ExecutionPlan>> {
    if let Some(filter) = (node.as_ref() as &dyn Any).downcast_ref::<FilterExec>() {
        let checked = FilterExecBuilder::from(filter)
            .with_predicate(Checked::wrap(filter.predicate().clone(), interrupt))
            .build()?;
        return Ok(Arc::new(checked));
    }
    if let Some(join) = (node.as_ref() as &dyn Any).downcast_ref::<NestedLoopJoinExec>()
        && let Some(filter) = join.filter()
    {
        let checked = JoinFilter::new(
            Checked::wrap(filter.expression().clone(), interrupt),
            filter.column_indices().to_vec(),
            filter.schema().clone(),
        );
        let rebuilt = NestedLoopJoinExec::try_new(
            join.left().clone(),
            join.right().clone(),
            Some(checked),
            join.join_type(),
            join.projection().as_ref().map(|p| p.to_vec()),
        )?;
        return Ok(Arc::new(rebuilt));
    }
    Ok(node)
}

/// An operator's output, failing with [`Interrupted`] at the next batch once the
/// interrupt fired. Transparent otherwise: same properties, schema and metrics as its
/// input, and it prints as nothing of its own.
#[derive(Debug)]
pub struct CheckedExec {
    input: Arc<dyn ExecutionPlan>,
    interrupt: Interrupt,
}

impl CheckedExec {
    fn new(input: Arc<dyn ExecutionPlan>, interrupt: &Interrupt) -> Self {
        CheckedExec {
            input,
            interrupt: interrupt.clone(),
        }
    }
}

impl DisplayAs for CheckedExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CheckedExec")
    }
}

impl ExecutionPlan for CheckedExec {
    fn name(&self) -> &str {
        "CheckedExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        self.input.properties()
    }

    fn maintains_input_order(&self) -> Vec<bool> {
        vec![true]
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![&self.input]
    }

    fn apply_expressions(
        &self,
        _f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> Result<TreeNodeRecursion>,
    ) -> Result<TreeNodeRecursion> {
        Ok(TreeNodeRecursion::Continue)
    }

    fn replace_children(
        self: Arc<Self>,
        children: Vec<Arc<dyn ExecutionPlan>>,
        _options: ReplaceChildrenOptions,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        match <[Arc<dyn ExecutionPlan>; 1]>::try_from(children) {
            Ok([input]) => Ok(Arc::new(CheckedExec::new(input, &self.interrupt))),
            Err(c) => Err(DataFusionError::Internal(format!(
                "CheckedExec takes one child, got {}",
                c.len()
            ))),
        }
    }

    #[allow(deprecated)]
    fn with_new_children(
        self: Arc<Self>,
        children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        self.replace_children(
            children,
            ReplaceChildrenOptions::new(ChildrenPropertiesMode::Keep),
        )
    }

    fn execute(
        &self,
        partition: usize,
        context: Arc<TaskContext>,
    ) -> Result<SendableRecordBatchStream> {
        self.interrupt
            .check()
            .map_err(|e| DataFusionError::External(Box::new(e)))?;
        let inner = self.input.execute(partition, context)?;
        let schema = inner.schema();
        let interrupt = self.interrupt.clone();
        let checked = futures::stream::unfold(Some(inner), move |inner| {
            let interrupt = interrupt.clone();
            async move {
                let mut inner = inner?;
                if let Err(e) = interrupt.check() {
                    return Some((Err(DataFusionError::External(Box::new(e))), None));
                }
                let next = inner.next().await?;
                Some((next, Some(inner)))
            }
        });
        Ok(Box::pin(RecordBatchStreamAdapter::new(schema, checked)))
    }
}
