//! Background persistence: every tick (or when the buffer is over budget) write the due
//! partitions to Parquet, register the files, drop the persisted rows from the buffer and
//! release WAL segments nothing needs any more; then delete unlisted files that are due.

use crate::catalog::CatalogOp;
use crate::error::Result;
use crate::metrics::StorageMetrics;
use crate::persist::persist_chunks;

use super::Storage;

#[derive(Debug, Default, Clone)]
pub struct FlushReport {
    pub files: usize,
    pub rows: u64,
    pub bytes: u64,
    pub failed: usize,
}

pub(super) async fn run(storage: Storage) {
    let inner = storage.inner();
    let mut shutdown = inner.shutdown.subscribe();
    let interval = inner.config.persist_check_interval;
    loop {
        if *shutdown.borrow_and_update() {
            return;
        }
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = inner.buffer.persist_wanted() => {}
            _ = shutdown.changed() => return,
        }
        if *shutdown.borrow() {
            return;
        }
        if let Err(e) = persist(&storage, false).await {
            tracing::warn!(error = %e, "background persist failed; will retry");
        }
        if storage.manifest_needs_retry().await {
            storage.write_manifest().await;
        }
        // Compacted files whose grace period ended, and deletes that failed before
        // (also those recorded before a restart).
        storage.sweep_deletes().await;
    }
}

/// Persist due partitions (all of them when `force`). A partition that fails stays in the
/// buffer (and the WAL) and is retried later; the error of the first failure is returned
/// after the others have been tried.
pub(super) async fn persist(storage: &Storage, force: bool) -> Result<FlushReport> {
    let inner = storage.inner();
    let _guard = inner.persist_lock.lock().await;
    let due = inner.buffer.due_partitions(
        inner.config.persist_max_age,
        inner.config.persist_partition_bytes,
        force,
    );
    let mut report = FlushReport::default();
    if due.is_empty() {
        return Ok(report);
    }
    let mut first_error = None;
    for (table_id, month) in due {
        let Some(def) = inner.catalog.shared_table_by_id(table_id) else {
            inner.buffer.drop_table(table_id);
            continue;
        };
        // A large partition goes out in several files, each at most the freeze limit,
        // so the persister's working copy stays within the budget.
        loop {
            match persist_round(storage, &def, month, &mut report).await {
                Ok(true) => {}
                Ok(false) => break,
                Err(e) => {
                    tracing::warn!(table = %def.name, %month, error = %e, "persisting partition failed");
                    report.failed += 1;
                    StorageMetrics::add(&inner.metrics.persist_failures, 1);
                    first_error.get_or_insert(e);
                    break;
                }
            }
            let more = inner
                .buffer
                .lock()
                .partitions
                .get(&(table_id, month))
                .is_some_and(|p| p.has_active());
            if !more {
                break;
            }
        }
    }
    if report.files > 0 {
        storage.write_manifest().await;
    }
    storage.release_wal().await;
    inner.buffer.notify_room();
    match first_error {
        Some(e) if force => Err(e),
        Some(e) if report.files == 0 => Err(e),
        _ => Ok(report),
    }
}

/// Freeze up to the freeze limit of one partition, write it as a file, register the file
/// and drop the frozen rows. Ok(false): nothing was left to write, or the table is gone.
pub(super) async fn persist_round(
    storage: &Storage,
    def: &crate::model::TableDef,
    month: crate::model::Month,
    report: &mut FlushReport,
) -> Result<bool> {
    let inner = storage.inner();
    let table_id = def.id;
    let chunks = {
        let mut state = inner.buffer.lock();
        match state.partitions.get_mut(&(table_id, month)) {
            Some(p) => p.freeze(inner.buffer.freeze_limit_bytes()),
            None => return Ok(false),
        }
    };
    let frozen_bytes = chunks.iter().map(|c| c.bytes).sum();
    let reservation = inner.buffer.reserve_for_persist(frozen_bytes);
    let Some(meta) = persist_chunks(
        &inner.store,
        def,
        month,
        &chunks,
        &inner.config.fulltext_scratch_dir(),
    )
    .await?
    else {
        return Ok(false);
    };
    drop(chunks);
    crate::metrics::StorageMetrics::add(
        &inner.metrics.text_indexes_built,
        meta.fulltext.len() as u64,
    );
    // Register the file and drop the frozen rows in one critical section of the buffer
    // lock, so a concurrent snapshot sees them in exactly one place. The WAL thread
    // takes that lock for every group commit, so the catalog's fsync comes after it.
    let registered = {
        let mut state = inner.buffer.lock();
        let ops = inner.catalog.commit_checked_unsynced(|cat| {
            if cat.tables.values().any(|t| t.id == table_id) {
                Ok(vec![CatalogOp::AddFile(meta.clone())])
            } else {
                Ok(vec![])
            }
        });
        match ops {
            Ok(ops) if !ops.is_empty() => {
                if let Some(p) = state.partitions.get_mut(&(table_id, month)) {
                    p.release_frozen();
                    if p.is_empty() {
                        state.partitions.remove(&(table_id, month));
                    }
                }
                true
            }
            Ok(_) => false,
            Err(e) => {
                tracing::error!(table = %def.name, %month, error = %e, "could not register persisted file");
                return Err(e);
            }
        }
    };
    drop(reservation);
    // Durable before the rows' WAL segments may go (release_wal syncs again first).
    let catalog = inner.catalog.clone();
    tokio::task::spawn_blocking(move || catalog.sync()).await??;
    if !registered {
        // Table dropped meanwhile: the file is garbage.
        let _ = object_store::ObjectStoreExt::delete(
            &*inner.store,
            &object_store::path::Path::from(meta.path.as_str()),
        )
        .await;
        return Ok(false);
    }
    tracing::debug!(table = %def.name, %month, file = %meta.path, rows = meta.rows, bytes = meta.bytes, "persisted partition");
    report.files += 1;
    report.rows += meta.rows;
    report.bytes += meta.bytes;
    StorageMetrics::add(&inner.metrics.persisted_files, 1);
    StorageMetrics::add(&inner.metrics.persisted_bytes, meta.bytes);
    Ok(true)
}
