//! File compaction: per (table, month), merge the Parquet files into one file sorted by
//! (series, ts) with overwritten duplicates removed (`Storage::compact_month`).
//!
//! Policy: a background pass every `interval` compacts each month partition that has
//! `min_files` files or more into one; `SELECT compact('<table>')` compacts every month of
//! a table that has two or more. So between passes a month holds at most
//! `min_files - 1` files plus what the persister wrote since the last pass. Old files are
//! deleted `grace` after the swap, so queries planned before it still find them.

use std::time::Duration;

use wattdb_storage::{CompactReport, Storage};

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
    let months: Vec<_> = storage
        .partitions()
        .into_iter()
        .filter(|p| p.table == table && p.files >= min_files.max(2))
        .map(|p| p.month)
        .collect();
    if months.is_empty() && storage.table(table).is_none() {
        return Err(wattdb_storage::Error::TableNotFound {
            table: table.into(),
        });
    }
    let mut out = Vec::new();
    for month in months {
        if let Some(r) = storage.compact_month(table, month, grace).await? {
            out.push(r);
        }
    }
    Ok(out)
}

/// One background pass over every table.
pub async fn compact_all(storage: &Storage, policy: CompactionPolicy) -> Vec<CompactReport> {
    let mut out = Vec::new();
    for def in storage.tables() {
        match compact_table(storage, &def.name, policy.min_files, policy.grace).await {
            Ok(r) => out.extend(r),
            Err(e) => {
                tracing::warn!(table = %def.name, error = %e, "compaction failed; will retry")
            }
        }
    }
    out
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
