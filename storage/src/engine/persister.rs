//! Background persistence: every tick (or when the buffer is over budget) write the due
//! partitions to Parquet, register the files, drop the persisted rows from the buffer and
//! release WAL segments nothing needs any more.

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
        let Some(def) = inner.catalog.table_by_id(table_id) else {
            inner.buffer.drop_table(table_id);
            continue;
        };
        let chunks = {
            let mut state = inner.buffer.lock();
            match state.partitions.get_mut(&(table_id, month)) {
                Some(p) => p.freeze(),
                None => continue,
            }
        };
        let meta = match persist_chunks(&inner.store, &def, month, &chunks).await {
            Ok(Some(meta)) => meta,
            Ok(None) => continue,
            Err(e) => {
                tracing::warn!(table = %def.name, %month, error = %e, "persisting partition failed");
                report.failed += 1;
                StorageMetrics::add(&inner.metrics.persist_failures, 1);
                first_error.get_or_insert(e);
                continue;
            }
        };
        // Register the file and drop the frozen rows in one critical section of the buffer
        // lock, so a concurrent snapshot sees them in exactly one place.
        let committed = {
            let mut state = inner.buffer.lock();
            let res = inner.catalog.commit_checked(|cat| {
                if cat.tables.values().any(|t| t.id == table_id) {
                    Ok(vec![CatalogOp::AddFile(meta.clone())])
                } else {
                    Ok(vec![])
                }
            });
            match res {
                Ok(ops) if !ops.is_empty() => {
                    if let Some(p) = state.partitions.get_mut(&(table_id, month)) {
                        p.release_frozen();
                        if p.is_empty() {
                            state.partitions.remove(&(table_id, month));
                        }
                    }
                    Ok(true)
                }
                Ok(_) => Ok(false),
                Err(e) => Err(e),
            }
        };
        match committed {
            Ok(true) => {
                tracing::debug!(table = %def.name, %month, file = %meta.path, rows = meta.rows, bytes = meta.bytes, "persisted partition");
                report.files += 1;
                report.rows += meta.rows;
                report.bytes += meta.bytes;
                StorageMetrics::add(&inner.metrics.persisted_files, 1);
                StorageMetrics::add(&inner.metrics.persisted_bytes, meta.bytes);
            }
            Ok(false) => {
                // Table dropped meanwhile: the file is garbage.
                let _ = object_store::ObjectStoreExt::delete(
                    &*inner.store,
                    &object_store::path::Path::from(meta.path.as_str()),
                )
                .await;
            }
            Err(e) => {
                tracing::error!(table = %def.name, %month, error = %e, "could not register persisted file");
                report.failed += 1;
                first_error.get_or_insert(e);
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
