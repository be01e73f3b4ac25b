//! Deleting objects the catalog no longer lists (compacted, expired, dropped, replaced
//! archive copies). Each is recorded as a [`PendingDelete`] in the same commit that
//! unlists it, and deleted once due by [`Storage::sweep_deletes`] — right away for
//! expired and dropped files, after the grace period for compacted ones. The persister
//! sweeps on every round, so a crash inside a grace period or a failed delete (S3 away)
//! leaves nothing behind for good: the entry stays until the object is gone.

use std::time::Duration;

use object_store::ObjectStoreExt;
use object_store::path::Path as ObjectPath;

use crate::catalog::{CatalogOp, CatalogState, ObjectPlace, PendingDelete};

use super::Storage;

/// How long a failed delete waits before it is tried again.
const RETRY_AFTER: Duration = Duration::from_secs(30);

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// Catalog ops recording `paths` of `place` for deletion `delay` from now.
pub(super) fn pending_deletes<'a>(
    place: ObjectPlace,
    paths: impl IntoIterator<Item = &'a str>,
    delay: Duration,
    reason: &str,
) -> Vec<CatalogOp> {
    let due_ms = now_ms().saturating_add(delay.as_millis().min(i64::MAX as u128) as i64);
    paths
        .into_iter()
        .map(|p| {
            CatalogOp::AddPendingDelete(PendingDelete {
                place,
                path: p.to_string(),
                due_ms,
                reason: reason.to_string(),
            })
        })
        .collect()
}

/// The op taking `path` off the delete list, if it is on it: for an object that is
/// listed again (restored, or part of a new archive copy).
pub(super) fn keep_listed(
    state: &CatalogState,
    place: ObjectPlace,
    path: String,
) -> Option<CatalogOp> {
    state
        .pending_deletes
        .contains_key(&(place, path.clone()))
        .then_some(CatalogOp::RemovePendingDelete { place, path })
}

impl Storage {
    /// Objects recorded for deletion and not deleted yet.
    pub fn pending_delete_count(&self) -> usize {
        self.inner.catalog.pending_delete_count()
    }

    /// Delete every due object and forget it; a failure is logged and retried later.
    /// Returns how many objects were deleted (or found gone).
    pub async fn sweep_deletes(&self) -> usize {
        let now = now_ms();
        let due = self.inner.catalog.due_deletes(now);
        if due.is_empty() {
            return 0;
        }
        let _one_at_a_time = self.inner.sweep_lock.lock().await;
        let mut done = Vec::new();
        for d in due {
            let key = d.key();
            {
                let retry = self
                    .inner
                    .delete_retry
                    .lock()
                    .unwrap_or_else(|p| p.into_inner());
                if retry.get(&key).is_some_and(|at| *at > now) {
                    continue;
                }
            }
            let store = match d.place {
                ObjectPlace::Store => &self.inner.store,
                ObjectPlace::Archive => match &self.inner.archive {
                    Some(a) => a,
                    // The archive is no longer configured: kept until it is again.
                    None => continue,
                },
            };
            match store.delete(&ObjectPath::from(d.path.as_str())).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => {
                    self.inner.small_files.forget(&d.path);
                    self.inner.text_indexes.forget(&d.path);
                    done.push(key)
                }
                Err(e) => {
                    tracing::warn!(file = %d.path, reason = %d.reason, error = %e,
                        "could not delete an unlisted file; will retry");
                    self.inner
                        .delete_retry
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .insert(key, now + RETRY_AFTER.as_millis() as i64);
                }
            }
        }
        if done.is_empty() {
            return 0;
        }
        {
            let mut retry = self
                .inner
                .delete_retry
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            for k in &done {
                retry.remove(k);
            }
        }
        let n = done.len();
        let catalog = self.inner.catalog.clone();
        let ops: Vec<CatalogOp> = done
            .into_iter()
            .map(|(place, path)| CatalogOp::RemovePendingDelete { place, path })
            .collect();
        match tokio::task::spawn_blocking(move || catalog.commit(ops)).await {
            Ok(Ok(())) => {}
            // The objects are gone; their entries are deleted again (NotFound) next time.
            Ok(Err(e)) => tracing::warn!(error = %e, "could not forget deleted files"),
            Err(e) => tracing::warn!(error = %e, "could not forget deleted files"),
        }
        n
    }

    /// Sweep once `delay` has passed, unless the storage is gone by then (the persister
    /// of the next start sweeps instead).
    pub(super) fn sweep_after(&self, delay: Duration) {
        let inner = std::sync::Arc::downgrade(&self.inner);
        tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            if let Some(inner) = inner.upgrade()
                && !*inner.shutdown.borrow()
            {
                Storage { inner }.sweep_deletes().await;
            }
        });
    }
}
