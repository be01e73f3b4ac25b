//! `ORDER BY score(msg, '…')`: DataFusion plans asynchronous functions (`score()` is one)
//! in projections, filters and aggregates, but not in sort keys. This analyzer rule
//! computes such a key in a projection below the sort, sorts by that column, and drops
//! it again above the sort — the plan DataFusion makes for `SELECT score(…) AS s … ORDER
//! BY s`.

use std::sync::Arc;

use datafusion::common::config::ConfigOptions;
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::common::{Column, Result};
use datafusion::logical_expr::async_udf::AsyncScalarUDF;
use datafusion::logical_expr::{Expr, LogicalPlan, Projection, Sort, SortExpr};
use datafusion::optimizer::AnalyzerRule;

#[derive(Debug, Default)]
pub struct AsyncSortKeys;

/// Whether `e` calls an asynchronous function.
fn calls_async(e: &Expr) -> bool {
    e.exists(|e| {
        Ok(matches!(e, Expr::ScalarFunction(f)
            if f.func.inner().downcast_ref::<AsyncScalarUDF>().is_some()))
    })
    .unwrap_or(false)
}

fn rewrite(sort: Sort) -> Result<LogicalPlan> {
    let Sort { expr, input, fetch } = sort;
    let kept: Vec<Expr> = input
        .schema()
        .columns()
        .into_iter()
        .map(Expr::Column)
        .collect();
    let mut below = kept.clone();
    let mut keys = Vec::with_capacity(expr.len());
    for (i, key) in expr.into_iter().enumerate() {
        if calls_async(&key.expr) {
            let name = format!("__wattdb_sort_key_{i}");
            below.push(key.expr.alias(&name));
            keys.push(SortExpr {
                expr: Expr::Column(Column::from_name(name)),
                asc: key.asc,
                nulls_first: key.nulls_first,
            });
        } else {
            keys.push(key);
        }
    }
    let computed = LogicalPlan::Projection(Projection::try_new(below, input)?);
    let sorted = LogicalPlan::Sort(Sort {
        expr: keys,
        input: Arc::new(computed),
        fetch,
    });
    Ok(LogicalPlan::Projection(Projection::try_new(
        kept,
        Arc::new(sorted),
    )?))
}

impl AnalyzerRule for AsyncSortKeys {
    fn analyze(&self, plan: LogicalPlan, _config: &ConfigOptions) -> Result<LogicalPlan> {
        plan.transform_up(|node| match node {
            LogicalPlan::Sort(sort) if sort.expr.iter().any(|k| calls_async(&k.expr)) => {
                Ok(Transformed::yes(rewrite(sort)?))
            }
            other => Ok(Transformed::no(other)),
        })
        .map(|t| t.data)
    }

    fn name(&self) -> &str {
        "wattdb_async_sort_keys"
    }
}
