//! File compaction: per (table, month), merge Parquet files into one file sorted by
//! (series, ts) with overwritten duplicates removed (`Storage::compact_files`).
//!
//! Policy: a background pass every `interval` merges, in each month, runs of `min_files`
//! consecutive files of similar size, and merges a month whole once it is cold (see
//! [`crate::tiering`]); `SELECT compact('<table>')` merges every month of a table that
//! has two or more files into one. The merge streams, so a month of any size can be
//! compacted. Old files are deleted `grace` after the swap, so queries planned before
//! it still find them.

use std::time::Duration;

use wattdb_storage::{CompactReport, Month, PartitionInfo, Storage};

use crate::tiering::{FileStat, plan_merges};

#[derive(Debug, Clone, Copy)]
pub struct CompactionPolicy {
    pub interval: Duration,
    /// Files of one size tier merged together (the tier's fan-in).
    pub min_files: usize,
    pub grace: Duration,
    /// A month that has ended is merged whole once no file was added for this long.
    pub cold_after: Duration,
}

impl Default for CompactionPolicy {
    fn default() -> Self {
        CompactionPolicy {
            interval: Duration::from_secs(600),
            min_files: 8,
            grace: Duration::from_secs(600),
            cold_after: Duration::from_secs(3600),
        }
    }
}

/// Compact every month of `table` holding at least `min_files` files, and every month
/// with DELETEs still to apply to its files.
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
    let mut months = months_to_compact(&storage.partitions(), table, min_files);
    months.extend(storage.months_with_deletes_due(table));
    months.sort();
    months.dedup();
    compact_months(storage, table, months, grace).await
}

/// One background pass over every table (one listing of the partitions for all).
pub async fn compact_all(storage: &Storage, policy: CompactionPolicy) -> Vec<CompactReport> {
    let parts = storage.partitions();
    let now_ms = chrono::Utc::now().timestamp_millis();
    let mut out = Vec::new();
    for def in storage.tables() {
        let months = months_to_compact(&parts, &def.name, 2);
        for &month in &months {
            match compact_tiers(storage, &def.name, month, policy, now_ms).await {
                Ok(r) => out.extend(r),
                Err(e) => {
                    tracing::warn!(table = %def.name, %month, error = %e, "compaction failed; will retry")
                }
            }
        }
        // A month that has ended and still has DELETEs to apply to a file is rewritten
        // whole (the live month's files fold them in as they merge in tiers).
        for month in storage.months_with_deletes_due(&def.name) {
            if month.end_micros() / 1000 > now_ms {
                continue;
            }
            match storage.compact_month(&def.name, month, policy.grace).await {
                Ok(r) => out.extend(r),
                Err(e) => {
                    tracing::warn!(table = %def.name, %month, error = %e, "applying DELETEs by compaction failed; will retry")
                }
            }
        }
    }
    out
}

/// The background policy for one month: the runs [`plan_merges`] picks, oldest first.
async fn compact_tiers(
    storage: &Storage,
    table: &str,
    month: Month,
    policy: CompactionPolicy,
    now_ms: i64,
) -> wattdb_storage::Result<Vec<CompactReport>> {
    let files = storage.month_files(table, month);
    let stats: Vec<FileStat> = files
        .iter()
        .map(|f| FileStat {
            rows: f.rows,
            created_at_ms: f.created_at_ms,
        })
        .collect();
    let runs = plan_merges(
        &stats,
        policy.min_files,
        month.end_micros() / 1000,
        now_ms,
        policy.cold_after.as_millis() as i64,
    );
    let mut out = Vec::new();
    for run in runs {
        let paths: Vec<String> = files[run].iter().map(|f| f.path.clone()).collect();
        if let Some(r) = storage
            .compact_files(table, month, Some(&paths), policy.grace)
            .await?
        {
            out.push(r);
        }
    }
    Ok(out)
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
