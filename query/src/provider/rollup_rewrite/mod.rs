//! Real-time rollup rewrite: a query over a raw table that groups by a time bucket
//! (`time_bucket`/`date_bin`/`date_trunc`) which is a whole number of rollup buckets, or
//! by no time bucket (then by tags only, or not at all),
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

mod plan;
mod settlement;
mod shape;

use std::any::Any;
use std::sync::Arc;

use datafusion::common::Result;
use datafusion::common::tree_node::Transformed;
use datafusion::datasource::source_as_provider;
use datafusion::logical_expr::{Aggregate, Expr, LogicalPlan, TableScan};
use datafusion::optimizer::optimizer::ApplyOrder;
use datafusion::optimizer::{OptimizerConfig, OptimizerRule};
use wattdb_storage::read::{RollupLayout, RollupLevel, RollupView};
use wattdb_storage::{Storage, TableDef, TableSnapshot};

use self::plan::{Rewrite, View, build, suffixes};
use self::settlement::{Settlement, normalize};
use self::shape::{Shape, match_shape};
use super::StorageHandle;
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

/// Views taken before giving up (the rollup worker finished marks each time).
const VIEW_ATTEMPTS: usize = 3;

#[derive(Debug)]
pub struct RollupRewrite {
    storage: StorageHandle,
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
        let Some(v) = self.take_view(view.as_ref(), &def, &shape, &base, &level)? else {
            tracing::debug!(table = %def.name, "rollup rewrite skipped: the rollups kept changing");
            return Ok(None);
        };
        build(
            Rewrite {
                storage,
                agg,
                scan,
                def: &def,
                shape: &shape,
                base: &base,
                level: &level,
            },
            v,
        )
    }

    /// Epoch, raw snapshot, rollup snapshots, unsettled marks, epoch again: unchanged
    /// epoch means every bucket not unsettled has rollup rows matching the raw snapshot.
    fn take_view(
        &self,
        view: &dyn RollupView,
        def: &TableDef,
        shape: &Shape,
        base: &RollupLevel,
        level: &RollupLevel,
    ) -> Result<Option<View>> {
        let storage = &self.storage.0;
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
            // A DELETE whose buckets are not marked yet: only raw rows are exact.
            if view.deletes_pending(def.id) {
                return Ok(None);
            }
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
