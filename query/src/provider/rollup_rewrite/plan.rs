//! Building the rewritten plan (see the module above): one side per source of partial
//! aggregates — the level's rollup rows, the base rollup rows, aggregated raw rows — each
//! limited to its region, unioned under the raw table's name, then combined per the
//! query's groups and projected to the aggregate's columns.

use std::sync::Arc;

use arrow::datatypes::DataType;
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::common::{Column, Result, ScalarValue};
use datafusion::datasource::provider_as_source;
use datafusion::functions_aggregate::expr_fn::{count, max, min, sum};
use datafusion::functions_aggregate::first_last::{first_value_udaf, last_value_udaf};
use datafusion::logical_expr::expr::{AggregateFunction, NullTreatment, ScalarFunction};
use datafusion::logical_expr::{
    Aggregate, Expr, LogicalPlan, LogicalPlanBuilder, ScalarUDF, TableScan, cast, lit,
};
use wattdb_storage::read::RollupLevel;
use wattdb_storage::{Storage, TS_COLUMN, TS_TIMEZONE, TableDef, TableSnapshot};

use super::settlement::{BaseBucket, RegionFilter, Settlement, Side, coarsen};
use super::shape::{Func, Shape};
use crate::provider::table::WattTable;

/// Ranges handed to a side's scan for pruning (the region filters are exact).
const MAX_PRUNE_RANGES: usize = 64;
/// Up to this many unsettled series narrow the raw side by tag values.
const MAX_SERIES_FILTER: usize = 1000;

/// The rollup columns a function reads, by suffix.
pub(super) fn suffixes(func: Func) -> &'static [&'static str] {
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

/// One consistent view: raw, base and level snapshots plus the unsettled marks.
pub(super) struct View {
    pub raw: Arc<TableSnapshot>,
    pub base: Arc<TableSnapshot>,
    pub level: Arc<TableSnapshot>,
    pub settlement: Arc<Settlement>,
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

/// What the rewrite replaces and what it reads.
pub(super) struct Rewrite<'a> {
    pub storage: &'a Storage,
    /// The aggregate over the raw table, and the scan under it.
    pub agg: &'a Aggregate,
    pub scan: &'a TableScan,
    pub def: &'a TableDef,
    pub shape: &'a Shape,
    pub base: &'a RollupLevel,
    pub level: &'a RollupLevel,
}

/// The plan that answers `r.agg` from the rollups and raw rows of `view`, with the
/// aggregate's columns; `None` when there is nothing to read it from.
pub(super) fn build(r: Rewrite<'_>, view: View) -> Result<Option<LogicalPlan>> {
    let Rewrite {
        storage,
        agg,
        scan,
        def,
        shape,
        base,
        level,
    } = r;
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

    // A rollup side: the table's rows kept by `side`, as partial columns.
    let rollup_side = |l: &RollupLevel,
                       snapshot: Arc<TableSnapshot>,
                       side: Side,
                       ranges: Option<Vec<(i64, i64)>>|
     -> Result<Option<LogicalPlan>> {
        let mut filters = tag_filters.clone();
        if let Some(r) = &ranges {
            match in_ranges(r) {
                Some(e) => filters.push(e),
                None => return Ok(None),
            }
        }
        filters.push(region(side));
        // Read in the layout of the snapshot taken with the consistent view.
        let rdef = snapshot.def.clone();
        let table = WattTable::pinned(storage.clone(), rdef, snapshot, ranges);
        let mut projection = key_args.clone();
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
        let mut projection = key_args.clone();
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
