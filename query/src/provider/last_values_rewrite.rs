//! Serving `SELECT DISTINCT ON (<all tags>) … FROM t ORDER BY <tags>, ts DESC` from the
//! last-value cache: without a filter on `ts` (filters on tags are fine: they select
//! whole series), that query picks the newest row of every series, which is exactly what
//! the cache holds. The rule replaces it with its select list over `last_values(t)`
//! sorted as the query asks (one row per series: nothing left to make distinct).
//! It is an analyzer rule because the optimizer turns `DISTINCT ON` into an aggregate.

use std::any::Any;
use std::collections::HashSet;
use std::sync::Arc;

use datafusion::common::Result;
use datafusion::common::config::ConfigOptions;
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::datasource::{provider_as_source, source_as_provider};
use datafusion::logical_expr::{
    Distinct, DistinctOn, Expr, LogicalPlan, LogicalPlanBuilder, Projection, TableScan,
};
use datafusion::optimizer::AnalyzerRule;
use wattdb_storage::Storage;

use super::StorageHandle;
use super::last_values::LastValuesTable;
use super::table::WattTable;

#[derive(Debug)]
pub struct DistinctOnLastValues {
    storage: StorageHandle,
}

impl DistinctOnLastValues {
    pub fn new(storage: Storage) -> Self {
        DistinctOnLastValues {
            storage: StorageHandle(storage),
        }
    }

    /// The wattdb table under `scan`, if it is one.
    fn table_of(scan: &TableScan) -> Option<wattdb_storage::TableDef> {
        let provider = source_as_provider(&scan.source).ok()?;
        let any: &dyn Any = provider.as_ref();
        any.downcast_ref::<WattTable>().map(|t| t.def().clone())
    }

    fn rewrite(&self, on: &DistinctOn) -> Option<LogicalPlan> {
        // The input: the table, possibly under a filter on tags only.
        let (filter, scan) = match on.input.as_ref() {
            LogicalPlan::TableScan(s) => (None, s),
            LogicalPlan::Filter(f) => match f.input.as_ref() {
                LogicalPlan::TableScan(s) => (Some(f), s),
                _ => return None,
            },
            _ => return None,
        };
        if !scan.filters.is_empty() {
            return None;
        }
        let def = Self::table_of(scan)?;
        let tags: HashSet<&str> = def.tags.iter().map(String::as_str).collect();
        if let Some(f) = filter {
            let cols = f.predicate.column_refs();
            if cols.is_empty() || !cols.iter().all(|c| tags.contains(c.name.as_str())) {
                return None;
            }
        }
        // DISTINCT ON exactly the tags...
        let on_cols: Vec<&str> = on
            .on_expr
            .iter()
            .map(|e| match e {
                Expr::Column(c) => Some(c.name.as_str()),
                _ => None,
            })
            .collect::<Option<_>>()?;
        let on_set: HashSet<&str> = on_cols.iter().copied().collect();
        if on_set != tags || on_cols.len() != tags.len() {
            return None;
        }
        // ...ordered by them, then ts descending.
        let sorts = on.sort_expr.as_ref()?;
        let ts = sorts.get(def.tags.len())?;
        let is_ts = matches!(&ts.expr, Expr::Column(c) if c.name == "ts");
        if !is_ts || ts.asc {
            return None;
        }
        let provider = Arc::new(LastValuesTable::new(
            self.storage.0.clone(),
            def.name.clone(),
            def.arrow_schema(),
        ));
        let new_scan = LogicalPlan::TableScan(TableScan {
            source: provider_as_source(provider),
            ..scan.clone()
        });
        let input = match filter {
            None => new_scan,
            Some(f) => LogicalPlan::Filter(
                datafusion::logical_expr::Filter::try_new(f.predicate.clone(), Arc::new(new_scan))
                    .ok()?,
            ),
        };
        // The cache holds one row per series, so the DISTINCT ON keeps every row: what is
        // left of it is its order and its select list.
        let sorted = LogicalPlanBuilder::from(input)
            .sort(sorts.clone())
            .ok()?
            .build()
            .ok()?;
        Projection::try_new_with_schema(on.select_expr.clone(), Arc::new(sorted), on.schema.clone())
            .ok()
            .map(LogicalPlan::Projection)
    }
}

impl AnalyzerRule for DistinctOnLastValues {
    fn analyze(&self, plan: LogicalPlan, _config: &ConfigOptions) -> Result<LogicalPlan> {
        plan.transform_up(|node| {
            if let LogicalPlan::Distinct(Distinct::On(on)) = &node
                && let Some(new) = self.rewrite(on)
            {
                return Ok(Transformed::yes(new));
            }
            Ok(Transformed::no(node))
        })
        .map(|t| t.data)
    }

    fn name(&self) -> &str {
        "wattdb_distinct_on_last_values"
    }
}
