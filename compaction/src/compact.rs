//! File compaction: per (table, month), merge the Parquet files into one file sorted by
//! (series, ts) with overwritten duplicates removed (`Storage::compact_month`).
//!
//! Policy: a background pass every `interval` compacts each month partition that has
//! `min_files` files or more into one; `SELECT compact('<table>')` compacts every month of
//! a table that has two or more. So between passes a month holds at most
//! `min_files - 1` files plus what the persister wrote since the last pass, however the
//! rows arrived (late data and backfill land in their month's partition like any other).
//! The merge streams, so a month of any size can be compacted. Old files are deleted
//! `grace` after the swap, so queries planned before it still find them.

use std::time::Duration;

use wattdb_storage::{CompactReport, Month, PartitionInfo, Storage};

#[derive(Debug, Clone, Copy)]
pub struct CompactionPolicy {
    pub interval: Duration,
    pub min_files: usize,
    pub grace: Duration,
}

impl Default for CompactionPolicy {
    fn default() -> Self {
        CompactionPolicy {
            interval: Duration::from_secs(600),
            min_files: 4,
            grace: Duration::from_secs(600),
        }
    }
}

/// Compact every month of `table` holding at least `min_files` files.
pub async fn compact_table(
    storage: &Storage,
    table: &str,
    min_files: usize,
    grace: Duration,
) -> wattdb_storage::Result<Vec<CompactReport>> {
    if storage.table(table).is_none() {
        return Err(wattdb_storage::Error::TableNotFound {
            table: table.into(),
        });
    }
    let months = months_to_compact(&storage.partitions(), table, min_files);
    compact_months(storage, table, months, grace).await
}

/// One background pass over every table (one listing of the partitions for all).
pub async fn compact_all(storage: &Storage, policy: CompactionPolicy) -> Vec<CompactReport> {
    let parts = storage.partitions();
    let mut out = Vec::new();
    for def in storage.tables() {
        let months = months_to_compact(&parts, &def.name, policy.min_files);
        match compact_months(storage, &def.name, months, policy.grace).await {
            Ok(r) => out.extend(r),
            Err(e) => {
                tracing::warn!(table = %def.name, error = %e, "compaction failed; will retry")
            }
        }
    }
    out
}

/// The months of `table` with at least `min_files` files.
fn months_to_compact(parts: &[PartitionInfo], table: &str, min_files: usize) -> Vec<Month> {
    parts
        .iter()
        .filter(|p| p.table == table && p.files >= min_files.max(2))
        .map(|p| p.month)
        .collect()
}

async fn compact_months(
    storage: &Storage,
    table: &str,
    months: Vec<Month>,
    grace: Duration,
) -> wattdb_storage::Result<Vec<CompactReport>> {
    let mut out = Vec::new();
    for month in months {
        if let Some(r) = storage.compact_month(table, month, grace).await? {
            out.push(r);
        }
    }
    Ok(out)
}

/// Run [`compact_all`] every `policy.interval` until `shutdown`.
pub fn spawn_compactor(
    storage: Storage,
    policy: CompactionPolicy,
    shutdown: tokio::sync::watch::Receiver<bool>,
) -> tokio::task::JoinHandle<()> {
    crate::periodic::spawn_periodic(policy.interval, shutdown, move || {
        let storage = storage.clone();
        async move {
            compact_all(&storage, policy).await;
        }
    })
}
