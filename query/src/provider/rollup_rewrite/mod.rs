//! Real-time rollup rewrite: a query over a raw table that groups by a time bucket
//! (`time_bucket`/`date_bin`/`date_trunc`) which is a whole number of rollup buckets,
//! computing `min/max/sum/count/avg/first/last` of numeric fields and filtered only by
//! tags and a `ts` range, is answered from the rollup tables for the buckets the rollup
//! worker has settled and from raw rows for the rest — the same answer as the raw
//! query. The rewritten plan is
//!
//! ```text
//! Projection (the aggregate's columns, combined: avg = sum of sums / sum of counts)
//!   Aggregate (the query's groups, over partial aggregates)
//!     SubqueryAlias <table>
//!       Union
//!         <table>_<level>, its settled buckets            (rollup_region_level)
//!         <table>_<base>, settled buckets of unsettled level buckets (rollup_region_base)
//!         Aggregate by (tags, rollup_bucket(ts)) over raw rows of unsettled base buckets
//!                                                          (rollup_region_raw)
//! ```
//!
//! so `EXPLAIN` shows which tables a query read. All sides read one consistent view
//! (see `wattdb_storage::read::RollupView`): snapshots pinned at planning time.
//! `SET wattdb.rollup_rewrite = false` (or the server's `--rollup-rewrite false`) turns
//! it off. Float sums and averages may differ from the raw query's in the last bits:
//! floating-point addition depends on order, which DataFusion's parallel raw
//! aggregation does not fix either.

mod settlement;
mod shape;

use std::any::Any;
use std::sync::Arc;

use arrow::datatypes::DataType;
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::common::{Column, Result, ScalarValue};
use datafusion::datasource::{provider_as_source, source_as_provider};
use datafusion::functions_aggregate::expr_fn::{count, max, min, sum};
use datafusion::functions_aggregate::first_last::{first_value_udaf, last_value_udaf};
use datafusion::logical_expr::expr::{AggregateFunction, NullTreatment, ScalarFunction};
use datafusion::logical_expr::{
    Aggregate, Expr, LogicalPlan, LogicalPlanBuilder, ScalarUDF, TableScan, cast, lit,
};
use datafusion::optimizer::optimizer::ApplyOrder;
use datafusion::optimizer::{OptimizerConfig, OptimizerRule};
use wattdb_storage::read::{RollupLayout, RollupLevel};
use wattdb_storage::{Storage, TS_COLUMN, TS_TIMEZONE, TableDef, TableSnapshot};

use self::settlement::{BaseBucket, RegionFilter, Settlement, Side, coarsen, normalize};
use self::shape::{Func, Shape, match_shape};
use super::table::WattTable;

datafusion::common::extensions_options! {
    /// wattdb's settings, `SET wattdb.<name> = <value>`.
    pub struct WattdbOptions {
        /// Answer rollup-shaped queries from the rollup tables where they are settled.
        pub rollup_rewrite: bool, default = true
    }
}

impl datafusion::common::config::ConfigExtension for WattdbOptions {
    const PREFIX: &'static str = "wattdb";
}

/// Ranges handed to a side's scan for pruning (the region filters are exact).
const MAX_PRUNE_RANGES: usize = 64;
/// Up to this many unsettled series narrow the raw side by tag values.
const MAX_SERIES_FILTER: usize = 1000;
/// Views taken before giving up (the rollup worker finished marks each time).
const VIEW_ATTEMPTS: usize = 3;

#[derive(Debug)]
pub struct RollupRewrite {
    storage: StorageHandle,
}

struct StorageHandle(Storage);

impl std::fmt::Debug for StorageHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Storage")
    }
}

impl RollupRewrite {
    pub fn new(storage: Storage) -> Self {
        RollupRewrite {
            storage: StorageHandle(storage),
        }
    }
}

impl OptimizerRule for RollupRewrite {
    fn name(&self) -> &str {
        "wattdb_rollup_rewrite"
    }

    fn apply_order(&self) -> Option<ApplyOrder> {
        Some(ApplyOrder::BottomUp)
    }

    fn rewrite(
        &self,
        plan: LogicalPlan,
        config: &dyn OptimizerConfig,
    ) -> Result<Transformed<LogicalPlan>> {
        let enabled = config
            .options()
            .extensions
            .get::<WattdbOptions>()
            .is_none_or(|o| o.rollup_rewrite);
        let LogicalPlan::Aggregate(agg) = &plan else {
            return Ok(Transformed::no(plan));
        };
        if !enabled {
            return Ok(Transformed::no(plan));
        }
        match self.try_rewrite(agg)? {
            Some(new) => Ok(Transformed::yes(new)),
            None => Ok(Transformed::no(plan)),
        }
    }
}

/// The raw table scanned under an aggregate, and the predicate above it.
fn scan_under(agg: &Aggregate) -> Option<(&TableScan, Option<&Expr>, TableDef)> {
    // The optimizer may put a projection of plain columns in between.
    let mut input = agg.input.as_ref();
    if let LogicalPlan::Projection(p) = input {
        if !p.expr.iter().all(|e| matches!(e, Expr::Column(_))) {
            return None;
        }
        input = p.input.as_ref();
    }
    let (predicate, scan) = match input {
        LogicalPlan::TableScan(s) => (None, s),
        LogicalPlan::Filter(f) => match f.input.as_ref() {
            LogicalPlan::TableScan(s) => (Some(&f.predicate), s),
            _ => return None,
        },
        _ => return None,
    };
    // Filters the scan applies exactly would be invisible here; wattdb's are inexact.
    if predicate.is_none() && !scan.filters.is_empty() || scan.fetch.is_some() {
        return None;
    }
    let provider = source_as_provider(&scan.source).ok()?;
    let any: &dyn Any = provider.as_ref();
    let table = any.downcast_ref::<WattTable>()?;
    if table.is_pinned() || table.def().is_rollup() {
        return None;
    }
    Some((scan, predicate, table.def().clone()))
}

/// The rollup columns a function reads, by suffix.
fn suffixes(func: Func) -> &'static [&'static str] {
    match func {
        Func::Min => &["min"],
        Func::Max => &["max"],
        Func::Sum => &["sum"],
        Func::Count => &["count"],
        Func::Avg => &["sum", "count"],
        Func::First => &["first"],
        Func::Last => &["last"],
    }
}

fn partial_name(field: &str, suffix: &str) -> String {
    format!("__{field}_{suffix}")
}

fn column(name: &str) -> Expr {
    Expr::Column(Column::new_unqualified(name))
}

fn ts_lit(v: i64) -> Expr {
    lit(ScalarValue::TimestampMicrosecond(
        Some(v),
        Some(TS_TIMEZONE.into()),
    ))
}

fn udf(f: impl datafusion::logical_expr::ScalarUDFImpl + 'static, args: Vec<Expr>) -> Expr {
    Expr::ScalarFunction(ScalarFunction::new_udf(
        Arc::new(ScalarUDF::new_from_impl(f)),
        args,
    ))
}

fn first_last(first: bool, value: Expr, order: Expr) -> Expr {
    let f = if first {
        first_value_udaf()
    } else {
        last_value_udaf()
    };
    Expr::AggregateFunction(AggregateFunction::new_udf(
        f,
        vec![value],
        false,
        None,
        vec![order.sort(true, false)],
        Some(NullTreatment::IgnoreNulls),
    ))
}

/// `OR` of `start <= ts < end` over `ranges`.
fn in_ranges(ranges: &[(i64, i64)]) -> Option<Expr> {
    ranges
        .iter()
        .map(|(a, b)| {
            column(TS_COLUMN)
                .gt_eq(ts_lit(*a))
                .and(column(TS_COLUMN).lt(ts_lit(*b)))
        })
        .reduce(Expr::or)
}

fn strip_qualifiers(e: &Expr) -> Result<Expr> {
    e.clone()
        .transform(|e| {
            Ok(match e {
                Expr::Column(c) => Transformed::yes(Expr::Column(Column::new_unqualified(c.name))),
                e => Transformed::no(e),
            })
        })
        .map(|t| t.data)
}

fn months(snapshot: &TableSnapshot) -> Vec<(i64, i64)> {
    let m = snapshot
        .files
        .iter()
        .map(|f| f.month)
        .chain(snapshot.buffered.iter().map(|p| p.month))
        .map(|m| (m.start_micros(), m.end_micros()))
        .collect();
    normalize(m)
}

/// One consistent view: raw, base and level snapshots plus the unsettled marks.
struct View {
    raw: Arc<TableSnapshot>,
    base: Arc<TableSnapshot>,
    level: Arc<TableSnapshot>,
    settlement: Arc<Settlement>,
}

impl RollupRewrite {
    fn try_rewrite(&self, agg: &Aggregate) -> Result<Option<LogicalPlan>> {
        let Some((scan, predicate, def)) = scan_under(agg) else {
            return Ok(None);
        };
        let storage = &self.storage.0;
        let Some(view) = storage.rollup_view() else {
            return Ok(None);
        };
        let Some(layout) = view.layout(&def) else {
            return Ok(None);
        };
        let Some(shape) = match_shape(agg, predicate, &def, &layout.fields) else {
            return Ok(None);
        };
        let Some((base, level)) = choose_levels(&layout, &shape) else {
            return Ok(None);
        };
        // Both rollup tables must exist with every column the query needs.
        for l in [&base, &level] {
            let Some(rdef) = storage.table(&l.table) else {
                return Ok(None);
            };
            let has_all = shape.aggs.iter().all(|(f, field)| {
                suffixes(*f)
                    .iter()
                    .all(|s| rdef.field_index(&format!("{field}_{s}")).is_some())
            });
            if !has_all || rdef.tags != def.tags {
                return Ok(None);
            }
        }
        let Some(v) = self.take_view(&def, &shape, &base, &level)? else {
            tracing::debug!(table = %def.name, "rollup rewrite skipped: the rollups kept changing");
            return Ok(None);
        };
        build(storage, agg, scan, &def, &shape, &base, &level, v)
    }

    /// Epoch, raw snapshot, rollup snapshots, unsettled marks, epoch again: unchanged
    /// epoch means every bucket not unsettled has rollup rows matching the raw snapshot.
    fn take_view(
        &self,
        def: &TableDef,
        shape: &Shape,
        base: &RollupLevel,
        level: &RollupLevel,
    ) -> Result<Option<View>> {
        let storage = &self.storage.0;
        let Some(view) = storage.rollup_view() else {
            return Ok(None);
        };
        let from = if shape.lo == i64::MIN {
            i64::MIN
        } else {
            level.interval.bucket_start(shape.lo)
        };
        for _ in 0..VIEW_ATTEMPTS {
            let epoch = view.epoch();
            let raw = Arc::new(storage.snapshot(&def.name)?);
            let base_snap = Arc::new(storage.snapshot(&base.table)?);
            let level_snap = if level.table == base.table {
                base_snap.clone()
            } else {
                Arc::new(storage.snapshot(&level.table)?)
            };
            let unsettled = view.unsettled(def.id, from, shape.hi);
            if view.epoch() != epoch {
                continue;
            }
            let settlement = Settlement::new(
                base.interval,
                level.interval,
                shape.lo,
                shape.hi,
                unsettled,
                months(&raw),
                months(&base_snap),
                months(&level_snap),
            );
            return Ok(Some(View {
                raw,
                base: base_snap,
                level: level_snap,
                settlement: Arc::new(settlement),
            }));
        }
        Ok(None)
    }
}

/// The base level and the coarsest level whose buckets the query's buckets are made of.
fn choose_levels(layout: &RollupLayout, shape: &Shape) -> Option<(RollupLevel, RollupLevel)> {
    let base = layout.levels.first()?;
    if !shape.bucket.is_aligned(base.interval) {
        return None;
    }
    let level = layout
        .levels
        .iter()
        .rev()
        .find(|l| shape.bucket.is_aligned(l.interval))?;
    Some((base.clone(), level.clone()))
}

/// The partial columns every side produces, in order: (field, suffix).
fn partials(shape: &Shape) -> Vec<(String, &'static str)> {
    let mut out: Vec<(String, &'static str)> = Vec::new();
    for (f, field) in &shape.aggs {
        for s in suffixes(*f) {
            if !out.iter().any(|(n, x)| n == field && x == s) {
                out.push((field.clone(), s));
            }
        }
    }
    out
}

#[allow(clippy::too_many_arguments)]
fn build(
    storage: &Storage,
    agg: &Aggregate,
    scan: &TableScan,
    def: &TableDef,
    shape: &Shape,
    base: &RollupLevel,
    level: &RollupLevel,
    view: View,
) -> Result<Option<LogicalPlan>> {
    let settlement = view.settlement.clone();
    let parts = partials(shape);
    let tag_filters: Vec<Expr> = shape
        .tag_filters
        .iter()
        .map(strip_qualifiers)
        .collect::<Result<_>>()?;
    let mut bounds = Vec::new();
    if shape.lo != i64::MIN {
        bounds.push(column(TS_COLUMN).gt_eq(ts_lit(shape.lo)));
    }
    if shape.hi != i64::MAX {
        bounds.push(column(TS_COLUMN).lt_eq(ts_lit(shape.hi)));
    }
    let key_args: Vec<Expr> = def
        .tags
        .iter()
        .map(|t| column(t))
        .chain([column(TS_COLUMN)])
        .collect();
    let region = |side: Side| {
        udf(
            RegionFilter::new(settlement.clone(), side),
            key_args.clone(),
        )
    };
    let output_keys: Vec<Expr> = key_args.clone();

    // A rollup side: the table's rows kept by `side`, as partial columns.
    let rollup_side = |l: &RollupLevel,
                       snapshot: Arc<TableSnapshot>,
                       side: Side,
                       ranges: Option<Vec<(i64, i64)>>|
     -> Result<Option<LogicalPlan>> {
        let Some(rdef) = storage.table(&l.table) else {
            return Ok(None);
        };
        let mut filters = tag_filters.clone();
        if let Some(r) = &ranges {
            match in_ranges(r) {
                Some(e) => filters.push(e),
                None => return Ok(None),
            }
        }
        filters.push(region(side));
        let table = WattTable::pinned(storage.clone(), rdef, snapshot, ranges);
        let mut projection = output_keys.clone();
        projection.extend(
            parts
                .iter()
                .map(|(f, s)| column(&format!("{f}_{s}")).alias(partial_name(f, s))),
        );
        let plan =
            LogicalPlanBuilder::scan(l.table.as_str(), provider_as_source(Arc::new(table)), None)?
                .filter(conjunction(filters))?
                .project(projection)?
                .build()?;
        Ok(Some(plan))
    };

    let mut sides: Vec<LogicalPlan> = Vec::new();
    let level_range = if shape.lo == i64::MIN && shape.hi == i64::MAX {
        None
    } else {
        let from = if shape.lo == i64::MIN {
            i64::MIN
        } else {
            level.interval.bucket_start(shape.lo)
        };
        Some(vec![(from, shape.hi.saturating_add(1))])
    };
    let level_side = if level.table == base.table {
        Side::Base
    } else {
        Side::Level
    };
    if let Some(p) = rollup_side(level, view.level.clone(), level_side, level_range)? {
        sides.push(p);
    }
    if level.table != base.table {
        let ranges = coarsen(settlement.base_ranges(), MAX_PRUNE_RANGES);
        if !ranges.is_empty()
            && let Some(p) = rollup_side(base, view.base.clone(), Side::Base, Some(ranges))?
        {
            sides.push(p);
        }
    }
    let raw_ranges = coarsen(settlement.raw_ranges(), MAX_PRUNE_RANGES);
    if let Some(in_raw) = in_ranges(&raw_ranges) {
        let mut filters = tag_filters.clone();
        filters.extend(bounds.iter().cloned());
        filters.push(in_raw);
        if !settlement.raw_needs_all_series() && settlement.unsettled.len() <= MAX_SERIES_FILTER {
            for (i, tag) in def.tags.iter().enumerate() {
                let mut values: Vec<&str> = settlement
                    .unsettled
                    .keys()
                    .filter_map(|s| s.get(i).map(String::as_str))
                    .collect();
                values.sort_unstable();
                values.dedup();
                filters.push(column(tag).in_list(values.into_iter().map(lit).collect(), false));
            }
        }
        filters.push(region(Side::Raw));
        let table = WattTable::pinned(
            storage.clone(),
            def.clone(),
            view.raw.clone(),
            Some(raw_ranges),
        );
        let mut group: Vec<Expr> = def.tags.iter().map(|t| column(t)).collect();
        group.push(udf(BaseBucket::new(base.interval), vec![column(TS_COLUMN)]).alias(TS_COLUMN));
        let aggs: Vec<Expr> = parts
            .iter()
            .map(|(f, s)| {
                let v = column(f);
                let e = match *s {
                    "min" => min(v),
                    "max" => max(v),
                    "sum" => sum(v),
                    "count" => count(v),
                    "first" => first_last(true, v, column(TS_COLUMN)),
                    _ => first_last(false, v, column(TS_COLUMN)),
                };
                e.alias(partial_name(f, s))
            })
            .collect();
        let mut projection = output_keys.clone();
        projection.extend(parts.iter().map(|(f, s)| column(&partial_name(f, s))));
        let plan = LogicalPlanBuilder::scan(
            scan.table_name.clone(),
            provider_as_source(Arc::new(table)),
            None,
        )?
        .filter(conjunction(filters))?
        .aggregate(group, aggs)?
        .project(projection)?
        .build()?;
        sides.push(plan);
    }
    let mut sides = sides.into_iter();
    let Some(first) = sides.next() else {
        return Ok(None);
    };
    let mut union = LogicalPlanBuilder::from(first);
    for s in sides {
        union = union.union(s)?;
    }
    let input = union.alias(scan.table_name.clone())?.build()?;

    // Combine the partials per the query's groups.
    let mut finals: Vec<Expr> = Vec::new();
    let mut outputs: Vec<Expr> = Vec::new();
    let n_group = agg.group_expr.len();
    for (i, (func, field)) in shape.aggs.iter().enumerate() {
        let p = |s: &str| column(&partial_name(field, s));
        let name = |k: &str| format!("__a{i}_{k}");
        let out = match func {
            Func::Min => {
                finals.push(min(p("min")).alias(name("v")));
                column(&name("v"))
            }
            Func::Max => {
                finals.push(max(p("max")).alias(name("v")));
                column(&name("v"))
            }
            Func::Sum => {
                finals.push(sum(p("sum")).alias(name("v")));
                column(&name("v"))
            }
            Func::Count => {
                finals.push(sum(p("count")).alias(name("v")));
                datafusion::functions::expr_fn::coalesce(vec![column(&name("v")), lit(0i64)])
            }
            Func::Avg => {
                finals.push(sum(p("sum")).alias(name("s")));
                finals.push(sum(p("count")).alias(name("c")));
                cast(column(&name("s")), DataType::Float64)
                    / cast(column(&name("c")), DataType::Float64)
            }
            Func::First => {
                finals.push(first_last(true, p("first"), column(TS_COLUMN)).alias(name("v")));
                column(&name("v"))
            }
            Func::Last => {
                finals.push(first_last(false, p("last"), column(TS_COLUMN)).alias(name("v")));
                column(&name("v"))
            }
        };
        let field = agg.schema.field(n_group + i);
        outputs.push(out.alias(field.name()));
    }
    let combined = LogicalPlanBuilder::from(input)
        .aggregate(agg.group_expr.clone(), finals)?
        .build()?;
    let mut projection: Vec<Expr> = (0..n_group)
        .map(|i| {
            let (q, f) = agg.schema.qualified_field(i);
            Expr::Column(Column::new(q.cloned(), f.name()))
        })
        .collect();
    projection.extend(outputs);
    let plan = LogicalPlanBuilder::from(combined)
        .project(projection)?
        .build()?;
    // Same columns and types as the aggregate it replaces.
    if !plan
        .schema()
        .logically_equivalent_names_and_types(&agg.schema)
    {
        return datafusion::common::internal_err!(
            "rollup rewrite changed the schema: {} vs {}",
            plan.schema(),
            agg.schema
        );
    }
    Ok(Some(plan))
}

fn conjunction(filters: Vec<Expr>) -> Expr {
    datafusion::logical_expr::utils::conjunction(filters).unwrap_or_else(|| lit(true))
}
