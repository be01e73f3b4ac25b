//! What the catalog records about rollups. Storage keeps these settings and marks, but
//! does not interpret them: which buckets exist and how they are computed is the
//! compaction crate's business.

use serde::{Deserialize, Serialize};

use super::TableId;

/// Rollup settings of a source table, set by config or SQL.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RollupSettings {
    /// Bucket widths such as `"15m"` and `"1d"`; `None` means the server's defaults.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub intervals: Option<Vec<String>>,
    /// Fields holding cumulative counters (energy in kWh): their rollups get `_delta`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub counters: Vec<String>,
    /// Set while the rollups are recomputed after a settings change (and left set by a
    /// crash in between, until the rebuild is resumed): queries must not be answered
    /// from rollup tables that may be incomplete.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub rebuilding: bool,
}

impl RollupSettings {
    pub fn is_default(&self) -> bool {
        *self == RollupSettings::default()
    }
}

/// Marks a table as a rollup that wattdb maintains (users read it, only wattdb writes it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RollupOf {
    /// The raw table it summarises.
    pub source: TableId,
    /// The bucket width, as written in the source's settings (`"15m"`, `"1d"`).
    pub interval: String,
}
