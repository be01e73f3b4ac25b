//! Full-text indexes on local disk: a file's packed index is fetched from the object
//! store once, checked (CRC) and unpacked under `<data_dir>/fulltext/cache/<object path>`,
//! and kept open for the next queries (a bounded number of them).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt};

use super::file_indexes::TextIndexObject;
use super::index::{FileIndex, IndexError, unpack};
use crate::error::{Error, Result};
use crate::metrics::StorageMetrics;

/// Open indexes kept in memory (each holds a few file handles and maps).
const OPEN_INDEXES: usize = 512;

pub struct IndexCache {
    dir: PathBuf,
    open: Mutex<HashMap<String, Arc<FileIndex>>>,
}

impl IndexCache {
    pub fn new(dir: PathBuf) -> IndexCache {
        IndexCache {
            dir,
            open: Mutex::new(HashMap::new()),
        }
    }

    fn local(&self, path: &str) -> PathBuf {
        self.dir.join(path)
    }

    /// The index `obj`, opened: from memory, from the local folder, or fetched from
    /// `store` and unpacked there. A damaged object is an error (the caller reads the
    /// file without it); a damaged local copy is fetched again.
    pub async fn get(
        &self,
        store: &Arc<dyn ObjectStore>,
        obj: &TextIndexObject,
    ) -> Result<Arc<FileIndex>> {
        if let Some(ix) = self.lock().get(&obj.path) {
            return Ok(ix.clone());
        }
        let local = self.local(&obj.path);
        let opened = if local.is_dir() {
            let (l, a) = (local.clone(), obj.analyzer);
            match blocking(move || FileIndex::open(&l, a)).await {
                Ok(ix) => Some(ix),
                Err(e) => {
                    tracing::warn!(index = %obj.path, error = %e,
                        "the local copy of a full-text index is unreadable; fetching it again");
                    remove_dir(&local);
                    None
                }
            }
        } else {
            None
        };
        let index = match opened {
            Some(ix) => ix,
            None => {
                let packed = store
                    .get(&ObjectPath::from(obj.path.as_str()))
                    .await
                    .map_err(Error::object_store(&obj.path))?
                    .bytes()
                    .await
                    .map_err(Error::object_store(&obj.path))?;
                let (obj2, local2) = (obj.clone(), local.clone());
                blocking(move || install(&packed, &local2, &obj2)).await?
            }
        };
        let index = Arc::new(index);
        let mut open = self.lock();
        if open.len() >= OPEN_INDEXES {
            // Any one goes: the next query that needs it opens it from disk again.
            if let Some(k) = open.keys().next().cloned() {
                open.remove(&k);
            }
        }
        open.insert(obj.path.clone(), index.clone());
        Ok(index)
    }

    /// Run `f` over the index `obj` (opened as [`Self::get`] does) on a blocking thread.
    pub async fn with_index<T: Send + 'static>(
        &self,
        store: &Arc<dyn ObjectStore>,
        obj: &TextIndexObject,
        f: impl FnOnce(&FileIndex) -> std::result::Result<T, IndexError> + Send + 'static,
    ) -> Result<T> {
        let index = self.get(store, obj).await?;
        blocking(move || f(&index)).await
    }

    /// The index `obj` failed with `error` and is not used: counted, logged (with what
    /// is done `instead`), and its local copy dropped, so it is fetched again next time.
    pub fn unusable(
        &self,
        metrics: &StorageMetrics,
        obj: &TextIndexObject,
        error: &Error,
        instead: &str,
    ) {
        StorageMetrics::add(&metrics.text_index_failures, 1);
        tracing::warn!(index = %obj.path, error = %error, instead,
            "full-text index unusable");
        self.forget(&obj.path);
    }

    /// Drop the local copy of the index `path` (its object was deleted or replaced).
    pub fn forget(&self, path: &str) {
        self.lock().remove(path);
        let local = self.local(path);
        if local.exists() {
            remove_dir(&local);
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<FileIndex>>> {
        self.open.lock().unwrap_or_else(|p| p.into_inner())
    }
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> std::result::Result<T, IndexError> + Send + 'static,
) -> Result<T> {
    Ok(tokio::task::spawn_blocking(f).await??)
}

/// Unpack `packed` into a fresh folder beside `local`, then move it into place, so a
/// crash never leaves a half-written index where one is expected.
fn install(
    packed: &[u8],
    local: &Path,
    obj: &TextIndexObject,
) -> std::result::Result<FileIndex, IndexError> {
    let io = |source| IndexError::Io {
        path: local.display().to_string(),
        source,
    };
    let parent = local.parent().unwrap_or(local);
    std::fs::create_dir_all(parent).map_err(io)?;
    let tmp = tempfile::Builder::new()
        .prefix(".unpacking-")
        .tempdir_in(parent)
        .map_err(io)?;
    unpack(packed, tmp.path(), &obj.path)?;
    // A concurrent query may have installed it first: its copy is as good.
    if std::fs::rename(tmp.path(), local).is_err() && !local.is_dir() {
        return Err(IndexError::Io {
            path: local.display().to_string(),
            source: std::io::Error::other("could not move the unpacked index into place"),
        });
    }
    FileIndex::open(local, obj.analyzer)
}

fn remove_dir(dir: &Path) {
    if let Err(e) = std::fs::remove_dir_all(dir)
        && e.kind() != std::io::ErrorKind::NotFound
    {
        tracing::warn!(dir = %dir.display(), error = %e, "could not remove a full-text index copy");
    }
}
