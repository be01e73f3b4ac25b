//! Decoded small Parquet files kept in memory. A rollup table's month is a small file
//! (a day row per series), and a query over years of them would otherwise spend its time
//! opening files, not reading rows. Files are immutable and never reuse a name, so a
//! decoded copy stays valid until the file is deleted. The scan uses a copy when it is
//! there and asks for the missing ones to be loaded in the background, so the next query
//! finds them; the least recently used go when the budget is full.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use arrow::record_batch::RecordBatch;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

/// Files of up to this many rows and bytes (in the object store) are cached: where a
/// file holds little, opening it costs more than reading it.
pub const MAX_CACHED_FILE_ROWS: u64 = 8192;
pub const MAX_CACHED_FILE_BYTES: u64 = 1024 * 1024;
/// Decoded bytes all cached files may take together.
pub const DEFAULT_BUDGET_BYTES: usize = 64 * 1024 * 1024;

struct Entry {
    batches: Arc<[RecordBatch]>,
    bytes: usize,
    used: u64,
}

#[derive(Default)]
struct State {
    entries: HashMap<String, Entry>,
    loading: HashSet<String>,
    bytes: usize,
    clock: u64,
}

pub struct SmallFileCache {
    state: Mutex<State>,
    budget: usize,
}

impl std::fmt::Debug for SmallFileCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let s = self.lock();
        f.debug_struct("SmallFileCache")
            .field("files", &s.entries.len())
            .field("bytes", &s.bytes)
            .field("budget", &self.budget)
            .finish()
    }
}

impl SmallFileCache {
    pub fn new(budget: usize) -> Self {
        SmallFileCache {
            state: Mutex::new(State::default()),
            budget,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether a file of `rows` and `bytes` is worth caching.
    pub fn wants(&self, rows: u64, bytes: u64) -> bool {
        rows <= MAX_CACHED_FILE_ROWS
            && bytes <= MAX_CACHED_FILE_BYTES
            && (bytes as usize) < self.budget / 8
    }

    pub fn get(&self, path: &str) -> Option<Arc<[RecordBatch]>> {
        let mut s = self.lock();
        s.clock += 1;
        let now = s.clock;
        let e = s.entries.get_mut(path)?;
        e.used = now;
        Some(e.batches.clone())
    }

    /// (files, decoded bytes) held.
    pub fn usage(&self) -> (usize, usize) {
        let s = self.lock();
        (s.entries.len(), s.bytes)
    }

    fn insert(&self, path: String, batches: Vec<RecordBatch>) {
        let bytes: usize = batches.iter().map(|b| b.get_array_memory_size()).sum();
        let mut s = self.lock();
        s.loading.remove(&path);
        if bytes > self.budget / 8 {
            return;
        }
        while s.bytes + bytes > self.budget {
            let Some(oldest) = s
                .entries
                .iter()
                .min_by_key(|(_, e)| e.used)
                .map(|(p, _)| p.clone())
            else {
                break;
            };
            if let Some(e) = s.entries.remove(&oldest) {
                s.bytes -= e.bytes;
            }
        }
        s.clock += 1;
        let used = s.clock;
        s.bytes += bytes;
        if let Some(old) = s.entries.insert(
            path,
            Entry {
                batches: batches.into(),
                bytes,
                used,
            },
        ) {
            s.bytes -= old.bytes;
        }
    }

    /// A deleted file's copy goes.
    pub fn forget(&self, path: &str) {
        let mut s = self.lock();
        if let Some(e) = s.entries.remove(path) {
            s.bytes -= e.bytes;
        }
    }

    /// Load `files` (path, size) that are neither cached nor being loaded, on a
    /// background task. Failures are only logged: the scan reads the file itself.
    pub fn load_in_background(
        self: &Arc<Self>,
        store: Arc<dyn ObjectStore>,
        files: Vec<(String, u64)>,
    ) {
        let files: Vec<(String, u64)> = {
            let mut s = self.lock();
            files
                .into_iter()
                .filter(|(p, _)| !s.entries.contains_key(p) && s.loading.insert(p.clone()))
                .collect()
        };
        if files.is_empty() {
            return;
        }
        let Ok(handle) = tokio::runtime::Handle::try_current() else {
            let mut s = self.lock();
            for (p, _) in &files {
                s.loading.remove(p);
            }
            return;
        };
        let this = self.clone();
        handle.spawn(async move {
            for (path, _) in files {
                match read_whole(store.clone(), &path).await {
                    Ok(batches) => this.insert(path, batches),
                    Err(e) => {
                        this.lock().loading.remove(&path);
                        tracing::debug!(file = %path, error = %e, "small file not cached");
                    }
                }
            }
        });
    }
}

/// The whole (small) object, decoded.
async fn read_whole(store: Arc<dyn ObjectStore>, path: &str) -> Result<Vec<RecordBatch>, String> {
    let bytes = store
        .get(&ObjectPath::from(path))
        .await
        .map_err(|e| e.to_string())?
        .bytes()
        .await
        .map_err(|e| e.to_string())?;
    let builder = ParquetRecordBatchReaderBuilder::try_new(bytes).map_err(|e| e.to_string())?;
    crate::persist::check_file_format(builder.metadata().file_metadata(), path)?;
    builder
        .build()
        .map_err(|e| e.to_string())?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::Int64Array;
    use arrow::datatypes::{DataType, Field, Schema};

    fn batch(rows: usize) -> Vec<RecordBatch> {
        let schema = Arc::new(Schema::new(vec![Field::new("x", DataType::Int64, false)]));
        let a = Int64Array::from_iter_values(0..rows as i64);
        vec![RecordBatch::try_new(schema, vec![Arc::new(a)]).unwrap()]
    }

    #[test]
    fn least_recently_used_go_first() {
        let one = batch(1000)[0].get_array_memory_size();
        let cache = SmallFileCache::new(one * 8);
        for p in ["a", "b", "c"] {
            cache.insert(p.into(), batch(1000));
        }
        assert!(cache.get("a").is_some()); // b is now the least recently used
        for i in 0..6 {
            cache.insert(format!("x{i}"), batch(1000));
            assert!(cache.usage().1 <= one * 8);
        }
        assert!(cache.get("b").is_none());
        assert!(cache.get("a").is_some() && cache.get("c").is_some());
        cache.forget("x5");
        assert!(cache.get("x5").is_none());
        assert_eq!(cache.usage(), (7, one * 7));
    }
}
