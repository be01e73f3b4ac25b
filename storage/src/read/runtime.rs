//! The DataFusion runtime every read runs in: wattdb's object store registered under
//! [`STORE_URL`], one memory pool for all queries (the query budget; operators that can
//! spill — sorts, aggregations, joins — spill to `<data-dir>/spill` when it is reached,
//! and a query that still cannot fit fails with "resources exhausted", SQLSTATE 53200),
//! and the Parquet footer cache.

use std::num::NonZeroUsize;
use std::path::Path;
use std::sync::Arc;

use datafusion::execution::disk_manager::{DiskManagerBuilder, DiskManagerMode};
use datafusion::execution::memory_pool::{FairSpillPool, TrackConsumersPool, UnboundedMemoryPool};
use datafusion::execution::runtime_env::{RuntimeEnv, RuntimeEnvBuilder};
use object_store::ObjectStore;

use super::STORE_URL;
use crate::error::{Error, Result};

/// Default query memory budget: 1 GiB.
pub const DEFAULT_QUERY_MEMORY: usize = 1 << 30;

/// Build the runtime. Spill files left by a previous process (killed mid-query) are
/// removed first.
pub fn query_runtime(
    data_dir: &Path,
    query_memory: usize,
    store: Arc<dyn ObjectStore>,
) -> Result<Arc<RuntimeEnv>> {
    let spill = data_dir.join("spill");
    if spill.exists() {
        std::fs::remove_dir_all(&spill).map_err(|source| Error::Io {
            path: spill.clone(),
            source,
        })?;
    }
    std::fs::create_dir_all(&spill).map_err(|source| Error::Io {
        path: spill.clone(),
        source,
    })?;
    let pool = TrackConsumersPool::new(
        FairSpillPool::new(query_memory),
        NonZeroUsize::new(3).unwrap_or(NonZeroUsize::MIN),
    );
    let runtime = RuntimeEnvBuilder::new()
        .with_memory_pool(Arc::new(pool))
        .with_disk_manager_builder(
            DiskManagerBuilder::default().with_mode(DiskManagerMode::Directories(vec![spill])),
        )
        .build_arc()
        .map_err(|e| Error::Task(format!("building the query runtime: {e}")))?;
    let url = url::Url::parse(STORE_URL).map_err(|e| Error::ObjectStoreUrl {
        url: STORE_URL.into(),
        reason: e.to_string(),
    })?;
    runtime.register_object_store(&url, store);
    Ok(runtime)
}

/// The runtime of the engine's own reads — the rollup worker's ranges, compaction's
/// merges, the last-value cache's first build: `runtime`'s store, spill directory and
/// footer cache, but not its memory pool. They are not queries: failing them when
/// queries fill the budget would stall rollups and compaction, and their memory is
/// bounded by their own design (a merge holds a row group per input file).
pub fn internal_runtime(runtime: &RuntimeEnv) -> Arc<RuntimeEnv> {
    Arc::new(RuntimeEnv {
        memory_pool: Arc::new(UnboundedMemoryPool::default()),
        disk_manager: runtime.disk_manager.clone(),
        cache_manager: runtime.cache_manager.clone(),
        object_store_registry: runtime.object_store_registry.clone(),
    })
}
