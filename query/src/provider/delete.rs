//! `DELETE FROM t WHERE …`: DataFusion hands the table provider the WHERE clause as
//! conjuncts (parameters bound, literals folded); they become one storage
//! [`DeletePredicate`] — conditions on tags (`=`, `<>`, `IN`, `NOT IN`, `OR` of
//! equalities on one tag) and on `ts` (comparisons, `BETWEEN`). Anything else is refused
//! with SQLSTATE 0A000 before anything is deleted. The [`DeleteExec`] plan counts the
//! matching rows and logs the delete when it runs (not when it is planned, so `EXPLAIN`
//! deletes nothing).

use std::fmt;
use std::sync::Arc;

use arrow::array::{ArrayRef, UInt64Array};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use arrow::record_batch::{RecordBatch, RecordBatchOptions};
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::common::{DFSchema, DataFusionError, Result as DfResult, ScalarValue};
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::logical_expr::execution_props::ExecutionProps;
use datafusion::logical_expr::{Between, BinaryExpr, Expr, Operator};
use datafusion::physical_expr::{EquivalenceProperties, PhysicalExpr};
use datafusion::physical_plan::execution_plan::{Boundedness, EmissionType};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, ExecutionPlan, Partitioning, PlanProperties,
    ReplaceChildrenOptions,
};
use wattdb_storage::{DeletePredicate, Storage, TS_COLUMN, TableDef, TagCondition};

/// The WHERE conjuncts of a DELETE as one predicate; `None` when they can match no row.
pub fn predicate_of(
    def: &TableDef,
    filters: &[Expr],
    props: &ExecutionProps,
) -> DfResult<Option<DeletePredicate>> {
    let refuse = |reason: String| {
        DataFusionError::External(Box::new(wattdb_storage::Error::InvalidDelete {
            table: def.name.clone(),
            reason,
        }))
    };
    let mut builder = Builder {
        def,
        props,
        pred: DeletePredicate::default(),
        empty: false,
    };
    for f in filters {
        builder.conjunct(f).map_err(refuse)?;
    }
    Ok((!builder.empty).then_some(builder.pred))
}

struct Builder<'a> {
    def: &'a TableDef,
    props: &'a ExecutionProps,
    pred: DeletePredicate,
    /// A conjunct that no row meets (`false`, `ts = <between two microseconds>`).
    empty: bool,
}

/// What a DELETE may test, for messages.
const SUPPORTED: &str = "DELETE supports conditions on tags (=, <>, IN, NOT IN, OR of = on one tag) and on ts (=, <, <=, >, >=, BETWEEN) joined by AND";

impl Builder<'_> {
    fn conjunct(&mut self, e: &Expr) -> Result<(), String> {
        match e {
            Expr::Literal(ScalarValue::Boolean(Some(true)), _) => Ok(()),
            Expr::Literal(ScalarValue::Boolean(_), _) => {
                self.empty = true;
                Ok(())
            }
            Expr::BinaryExpr(BinaryExpr {
                left,
                op: Operator::And,
                right,
            }) => {
                self.conjunct(left)?;
                self.conjunct(right)
            }
            Expr::BinaryExpr(BinaryExpr {
                op: Operator::Or, ..
            }) => {
                let (tag, values) = self.or_of_equalities(e)?;
                self.pred.tags.push(TagCondition {
                    tag,
                    values,
                    negated: false,
                });
                Ok(())
            }
            Expr::BinaryExpr(BinaryExpr { left, op, right }) => {
                let (column, op, value) = match (self.column(left), self.column(right)) {
                    (Some(c), None) => (c, *op, self.constant(right)?),
                    (None, Some(c)) => (
                        c,
                        op.swap().ok_or_else(|| format!("{SUPPORTED}; got {e}"))?,
                        self.constant(left)?,
                    ),
                    _ => return Err(format!("{SUPPORTED}; got {e}")),
                };
                self.comparison(&column, op, value, e)
            }
            Expr::InList(list) => {
                let column = self
                    .column(&list.expr)
                    .ok_or_else(|| format!("{SUPPORTED}; got {e}"))?;
                self.tag_column(&column, e)?;
                let values = self.texts(&list.list, e)?;
                self.pred.tags.push(TagCondition {
                    tag: column,
                    values,
                    negated: list.negated,
                });
                Ok(())
            }
            Expr::Between(Between {
                expr,
                negated: false,
                low,
                high,
            }) => {
                let column = self
                    .column(expr)
                    .ok_or_else(|| format!("{SUPPORTED}; got {e}"))?;
                let (low, high) = (self.constant(low)?, self.constant(high)?);
                self.comparison(&column, Operator::GtEq, low, e)?;
                self.comparison(&column, Operator::LtEq, high, e)
            }
            _ => Err(format!("{SUPPORTED}; got {e}")),
        }
    }

    /// `tag = 'a' OR tag = 'b' OR tag IN (…)`, all on one tag.
    fn or_of_equalities(&self, e: &Expr) -> Result<(String, Vec<String>), String> {
        let mut leaves = Vec::new();
        let mut stack = vec![e];
        while let Some(x) = stack.pop() {
            match x {
                Expr::BinaryExpr(BinaryExpr {
                    left,
                    op: Operator::Or,
                    right,
                }) => {
                    stack.push(right);
                    stack.push(left);
                }
                other => leaves.push(other),
            }
        }
        let mut tag: Option<String> = None;
        let mut values = Vec::new();
        for leaf in leaves {
            let (column, found) = match leaf {
                Expr::BinaryExpr(BinaryExpr {
                    left,
                    op: Operator::Eq,
                    right,
                }) => match (self.column(left), self.column(right)) {
                    (Some(c), None) => (c, vec![text(&self.constant(right)?, e)?]),
                    (None, Some(c)) => (c, vec![text(&self.constant(left)?, e)?]),
                    _ => return Err(format!("{SUPPORTED}; got {e}")),
                },
                Expr::InList(list) if !list.negated => {
                    let c = self
                        .column(&list.expr)
                        .ok_or_else(|| format!("{SUPPORTED}; got {e}"))?;
                    (c, self.texts(&list.list, e)?)
                }
                _ => {
                    return Err(format!(
                        "{SUPPORTED}; an OR may only join equalities on one tag, got {e}"
                    ));
                }
            };
            self.tag_column(&column, e)?;
            if tag.as_ref().is_some_and(|t| *t != column) {
                return Err(format!(
                    "{SUPPORTED}; an OR may only join equalities on one tag, got {e}"
                ));
            }
            tag = Some(column);
            values.extend(found);
        }
        let tag = tag.ok_or_else(|| format!("{SUPPORTED}; got {e}"))?;
        Ok((tag, values))
    }

    fn comparison(
        &mut self,
        column: &str,
        op: Operator,
        value: ScalarValue,
        e: &Expr,
    ) -> Result<(), String> {
        if column == TS_COLUMN {
            let Some((micros, exact)) = micros(&value) else {
                if value.is_null() {
                    self.empty = true; // a comparison with NULL is never true
                    return Ok(());
                }
                return Err(format!("ts must be compared with a timestamp; got {e}"));
            };
            // [from, to) bounds; `micros` is rounded up when the value had a fraction.
            let (from, to) = match op {
                Operator::Eq if exact => (Some(micros), Some(micros.saturating_add(1))),
                Operator::Eq => {
                    self.empty = true;
                    return Ok(());
                }
                Operator::GtEq => (Some(micros), None),
                Operator::Gt if exact => (Some(micros.saturating_add(1)), None),
                Operator::Gt => (Some(micros), None),
                Operator::Lt => (None, Some(micros)),
                Operator::LtEq if exact => (None, Some(micros.saturating_add(1))),
                Operator::LtEq => (None, Some(micros)),
                _ => return Err(format!("{SUPPORTED}; got {e}")),
            };
            if let Some(f) = from {
                self.pred.ts_from = Some(self.pred.ts_from.map_or(f, |x| x.max(f)));
            }
            if let Some(t) = to {
                self.pred.ts_to = Some(self.pred.ts_to.map_or(t, |x| x.min(t)));
            }
            if let (Some(f), Some(t)) = (self.pred.ts_from, self.pred.ts_to)
                && f >= t
            {
                self.empty = true;
            }
            return Ok(());
        }
        self.tag_column(column, e)?;
        if value.is_null() {
            self.empty = true;
            return Ok(());
        }
        let negated = match op {
            Operator::Eq => false,
            Operator::NotEq => true,
            _ => return Err(format!("{SUPPORTED}; tags take = and <>, got {e}")),
        };
        self.pred.tags.push(TagCondition {
            tag: column.to_string(),
            values: vec![text(&value, e)?],
            negated,
        });
        Ok(())
    }

    /// The text values of an `IN` list (of the conjunct `e`, for messages).
    fn texts(&self, list: &[Expr], e: &Expr) -> Result<Vec<String>, String> {
        list.iter()
            .map(|v| self.constant(v).and_then(|v| text(&v, e)))
            .collect()
    }

    /// The column an expression names, if it is a plain column.
    fn column(&self, e: &Expr) -> Option<String> {
        match e {
            Expr::Column(c) => Some(c.name.clone()),
            _ => None,
        }
    }

    fn tag_column(&self, column: &str, e: &Expr) -> Result<(), String> {
        if self.def.tags.iter().any(|t| t == column) {
            return Ok(());
        }
        if column == TS_COLUMN {
            return Err(format!("{SUPPORTED}; ts takes comparisons, got {e}"));
        }
        Err(format!(
            "rows are deleted by key: conditions may use the tags ({}) and ts, not the field {column} (in {e})",
            self.def.tags.join(", ")
        ))
    }

    /// The value of an expression without columns (a literal, a cast, `now() - …`).
    fn constant(&self, e: &Expr) -> Result<ScalarValue, String> {
        if let Expr::Literal(v, _) = e {
            return Ok(v.clone());
        }
        if !e.column_refs().is_empty() {
            return Err(format!("{SUPPORTED}; got {e}"));
        }
        let empty = DFSchema::empty();
        let physical = datafusion::physical_expr::create_physical_expr(
            e,
            &empty,
            self.props,
            &Default::default(),
        )
        .map_err(|err| format!("cannot evaluate {e}: {err}"))?;
        let one_row = RecordBatch::try_new_with_options(
            Arc::new(Schema::empty()),
            vec![],
            &RecordBatchOptions::new().with_row_count(Some(1)),
        )
        .map_err(|err| err.to_string())?;
        let value = physical
            .evaluate(&one_row)
            .and_then(|v| v.into_array(1))
            .and_then(|a| ScalarValue::try_from_array(&a, 0))
            .map_err(|err| format!("cannot evaluate {e}: {err}"))?;
        Ok(value)
    }
}

/// A text value for a tag condition.
fn text(v: &ScalarValue, e: &Expr) -> Result<String, String> {
    match v {
        ScalarValue::Utf8(Some(s))
        | ScalarValue::Utf8View(Some(s))
        | ScalarValue::LargeUtf8(Some(s)) => Ok(s.clone()),
        other => Err(format!(
            "tags are text; cannot compare with {other} (in {e})"
        )),
    }
}

/// A timestamp value in microseconds, rounded up, and whether it was exact.
fn micros(v: &ScalarValue) -> Option<(i64, bool)> {
    let up = |v: i64, per: i64| {
        let q = v.div_euclid(per);
        let exact = v.rem_euclid(per) == 0;
        (if exact { q } else { q + 1 }, exact)
    };
    match v {
        ScalarValue::TimestampSecond(Some(s), _) => Some((s.saturating_mul(1_000_000), true)),
        ScalarValue::TimestampMillisecond(Some(ms), _) => Some((ms.saturating_mul(1_000), true)),
        ScalarValue::TimestampMicrosecond(Some(us), _) => Some((*us, true)),
        ScalarValue::TimestampNanosecond(Some(ns), _) => Some(up(*ns, 1_000)),
        _ => None,
    }
}

/// Counts the rows a DELETE matches and logs it, when executed; one row `count`.
pub struct DeleteExec {
    storage: Storage,
    table: String,
    predicate: Option<DeletePredicate>,
    schema: SchemaRef,
    properties: Arc<PlanProperties>,
}

impl DeleteExec {
    pub fn new(storage: Storage, table: String, predicate: Option<DeletePredicate>) -> Self {
        let schema = Arc::new(Schema::new(vec![Field::new(
            "count",
            DataType::UInt64,
            false,
        )]));
        let properties = PlanProperties::new(
            EquivalenceProperties::new(schema.clone()),
            Partitioning::UnknownPartitioning(1),
            EmissionType::Final,
            Boundedness::Bounded,
        );
        DeleteExec {
            storage,
            table,
            predicate,
            schema,
            properties: Arc::new(properties),
        }
    }
}

impl fmt::Debug for DeleteExec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DeleteExec({})", self.table)
    }
}

impl DisplayAs for DeleteExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.predicate {
            Some(p) => write!(
                f,
                "WattdbDelete: table={} where={}",
                self.table,
                p.to_expr()
            ),
            None => write!(f, "WattdbDelete: table={} matches nothing", self.table),
        }
    }
}

impl ExecutionPlan for DeleteExec {
    fn name(&self) -> &str {
        "WattdbDelete"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.properties
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![]
    }

    fn apply_expressions(
        &self,
        _f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> DfResult<TreeNodeRecursion>,
    ) -> DfResult<TreeNodeRecursion> {
        Ok(TreeNodeRecursion::Continue)
    }

    fn replace_children(
        self: Arc<Self>,
        _children: Vec<Arc<dyn ExecutionPlan>>,
        _options: ReplaceChildrenOptions,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        Ok(self)
    }

    #[allow(deprecated)]
    fn with_new_children(
        self: Arc<Self>,
        _children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        Ok(self)
    }

    fn execute(
        &self,
        _partition: usize,
        _context: Arc<TaskContext>,
    ) -> DfResult<SendableRecordBatchStream> {
        let (storage, table, predicate, schema) = (
            self.storage.clone(),
            self.table.clone(),
            self.predicate.clone(),
            self.schema.clone(),
        );
        let run = async move {
            let count = match predicate {
                None => 0,
                Some(p) => {
                    let predicates = vec![p];
                    // The rows visible now that the delete removes; none: nothing to log.
                    let count = storage.count_matching(&table, &predicates).await?;
                    if count > 0 {
                        storage.delete(&table, predicates).await?;
                    }
                    count
                }
            };
            let column: ArrayRef = Arc::new(UInt64Array::from(vec![count]));
            Ok::<_, DataFusionError>(RecordBatch::try_new(schema, vec![column])?)
        };
        Ok(Box::pin(RecordBatchStreamAdapter::new(
            self.schema.clone(),
            futures::stream::once(run),
        )))
    }
}
