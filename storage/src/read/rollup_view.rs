//! What the read path may know about a table's rollups, to answer rollup-shaped queries
//! from them ([`RollupView`]). The rollup worker (another crate) owns the rollups and
//! implements this; storage only carries it from the worker to the query planner.
//!
//! The contract that makes answers exact: a (series, base bucket) that is not
//! [unsettled](RollupView::unsettled) has a rollup row equal to the aggregate of its raw
//! rows, at least as of every write a reader could already see. Writes mark their
//! buckets before they become visible (the rollup marks are a
//! [`StorageHooks::markers`](crate::StorageHooks) observer), and a bucket stops being
//! unsettled only after its recomputed rollup rows are visible; every such step bumps
//! [`RollupView::epoch`]. A reader that takes the epoch, then its raw snapshot, then the
//! rollup snapshots, then the unsettled marks, and finds the epoch unchanged, holds a
//! consistent view.

use std::collections::HashMap;

use crate::model::{Interval, TableDef, TableId};

/// One rollup level of a source table: the rollup table and its bucket interval.
#[derive(Debug, Clone, PartialEq)]
pub struct RollupLevel {
    pub table: String,
    pub interval: Interval,
}

/// The rollups of a source table as the read path may use them.
#[derive(Debug, Clone, PartialEq)]
pub struct RollupLayout {
    /// Finest first; `levels[0]` (the base) is computed from raw rows, coarser levels are
    /// composed from it.
    pub levels: Vec<RollupLevel>,
    /// Fields summarised (numeric), with `<field>_min|_max|_sum|_count|_first|_last`.
    pub fields: Vec<String>,
}

/// Unsettled base buckets of one table: series (tag values) → bucket starts, sorted.
pub type Unsettled = HashMap<Vec<String>, Vec<i64>>;

pub trait RollupView: Send + Sync {
    /// The usable rollups of `def`; `None` when it has none or they are being rebuilt
    /// (then no bucket may be answered from them).
    fn layout(&self, def: &TableDef) -> Option<RollupLayout>;

    /// Bumped whenever a bucket may stop being unsettled.
    fn epoch(&self) -> u64;

    /// The (series, base bucket) marks of `table` whose rollup rows may be stale: waiting
    /// or being recomputed. Only buckets starting in `[lo, hi]` are needed.
    fn unsettled(&self, table: TableId, lo: i64, hi: i64) -> Unsettled;

    /// A `DELETE` of `table` is logged whose changed buckets are not marked yet: no
    /// bucket of the table may be answered from its rollups until it clears (it is set
    /// before the delete becomes visible and cleared after its buckets are marked).
    fn deletes_pending(&self, _table: TableId) -> bool {
        false
    }
}
