//! Continuous rollups: for each raw table with numeric fields, `<table>_<interval>`
//! tables (15m and 1d by default) with one row per (series, bucket) holding each numeric
//! field's min, max, avg, sum, count, first and last (and `_delta` for counters).
//!
//! - [`marks`]: every durable write marks (series, base bucket) dirty; marks survive a
//!   restart.
//! - [`maintainer`]: recomputes dirty base buckets from deduplicated raw rows and
//!   composes the coarser levels from the base level, then upserts.
//! - [`aggregate`], [`spec`]: the arithmetic and the layout (bucket intervals are
//!   storage's [`wattdb_storage::Interval`]: the read path needs them too).

pub mod aggregate;
pub mod maintainer;
pub mod marks;
pub mod marks_log;
pub mod spec;

use std::path::Path;
use std::sync::Arc;

use chrono_tz::Tz;
use wattdb_storage::{CatalogReader, Storage, StorageConfig, StorageHooks};

pub use maintainer::{CycleReport, RollupMaintainer, RollupMetrics};
pub use marks::DirtyMarks;
pub use spec::{RollupSpec, check_settings};

use crate::error::{Error, Result};

/// Directory (under the data dir) of the durable dirty marks.
pub const MARKS_DIR: &str = "rollup-marks";

/// Parse a time zone name (`Asia/Shanghai`, `UTC`).
pub fn parse_timezone(name: &str) -> Result<Tz> {
    name.parse::<Tz>().map_err(|e| Error::Settings {
        table: "*".into(),
        reason: format!("unknown time zone \"{name}\": {e}"),
    })
}

/// Open storage with rollup marks attached to its write path (so WAL replay re-marks
/// what was not yet summarised), and the maintainer that works them off. Start the
/// maintainer's background loop with [`RollupMaintainer::spawn`].
pub async fn open_storage(
    config: StorageConfig,
    tz: Tz,
) -> Result<(Storage, Arc<RollupMaintainer>)> {
    open_storage_with(config, tz, |_| StorageHooks::default()).await
}

/// [`open_storage`] with more hooks: `extra`'s observers run after the rollup marks and
/// the buffer, its release guards after the marks'.
pub async fn open_storage_with(
    config: StorageConfig,
    tz: Tz,
    extra: impl FnOnce(CatalogReader) -> StorageHooks,
) -> Result<(Storage, Arc<RollupMaintainer>)> {
    let dir = config.data_dir.join(MARKS_DIR);
    std::fs::create_dir_all(&config.data_dir).map_err(|source| {
        Error::Storage(wattdb_storage::Error::Io {
            path: config.data_dir.clone(),
            source,
        })
    })?;
    let marks_dir: &Path = &dir;
    let marks = DirtyMarks::open(marks_dir, tz).map_err(|source| Error::Marks {
        path: dir.clone(),
        source,
    })?;
    let m2 = marks.clone();
    let storage = Storage::open_with(config, move |catalog| {
        m2.attach(catalog.clone());
        let more = extra(catalog);
        let mut release_guards: Vec<Arc<dyn wattdb_storage::WalReleaseGuard>> = vec![m2.clone()];
        release_guards.extend(more.release_guards);
        let mut markers: Vec<Arc<dyn wattdb_storage::wal::DurableObserver>> = vec![m2.clone()];
        markers.extend(more.markers);
        StorageHooks {
            // Before the buffer: a bucket is marked before a reader can see the write
            // (what the read path's rollup rewrite relies on).
            markers,
            observers: more.observers,
            release_guards,
            rollup_view: Some(m2),
        }
    })
    .await?;
    Ok((storage.clone(), RollupMaintainer::new(storage, marks)))
}
