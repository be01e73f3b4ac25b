//! wattdb-compaction: background work on stored data. It owns continuous rollups
//! (15-minute/1-day summaries recomputed from deduplicated raw data whenever a write
//! marks a bucket dirty), retention (dropping expired month partitions) and file merge +
//! dedup per month partition, and will own the cold archive.
//!
//! It works through `wattdb_storage` (write-path hooks, range reads, rollup-table
//! writes, catalog swaps), never on WAL or buffer internals, and it must never make a
//! running query miss a file: new files are swapped in first, old ones deleted after a
//! grace period.
//!
//! Status: rollups (issue 4), retention and file compaction (issue 5); the cold archive
//! comes next.

pub mod compact;
pub mod error;
pub mod periodic;
pub mod retention;
pub mod rollup;
pub mod tiering;

pub use error::{Error, Result};

/// The SQL admin functions over this crate's work — rollups, retention, compaction and
/// the archive's restore — that the server's `compaction_admin` answers.
pub const ADMIN_FUNCTIONS: &[&str] = &[
    "rebuild_rollups",
    "set_rollup_intervals",
    "set_counters",
    "set_retention",
    "run_retention",
    "restore_partition",
    "compact",
];
