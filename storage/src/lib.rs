//! wattdb-storage: the base of wattdb. It owns the data model (tables = `ts` + tags +
//! fields, primary key tags + `ts`, last write wins, `DELETE`s by key as WAL records and
//! tombstones), the catalog (sled, with a manifest snapshot in the object store), the
//! write-ahead log, the write buffer, persistence of
//! month partitions as Parquet through `object_store`, and the read path ([`read`]: the
//! streaming last-write-wins merge as a DataFusion plan, shared by queries, rollups and
//! compaction, and the runtime with the query memory budget).
//!
//! It must not know about SQL text, MQTT, the PostgreSQL protocol or the CLI: the query
//! and ingest crates talk to it through [`Storage`] (writes, DDL, flush,
//! [`TableSnapshot`]s, [`read::plan_scan`]).
//! For background work it offers primitives — hooks on each durable WAL group, range
//! reads of deduplicated rows, rollup-table writes, dropping months before a cutoff,
//! merging a month's files — while the policies (which buckets, which months, when) live
//! in the compaction crate.
//!
//! Layout under `--data-dir`: `catalog/` (sled), `wal/` (segments), and, with the default
//! local object store, `objects/` (`rollup-marks/` belongs to the compaction crate). In
//! the object store: `_wattdb/manifest.json` and `<table>/month=YYYY-MM/<file-id>.parquet`.

pub mod batch;
pub mod buffer;
pub mod catalog;
pub mod engine;
pub mod error;
pub mod failpoints;
#[cfg(feature = "failpoints")]
pub mod faulty_store;
pub mod fulltext;
pub mod metrics;
pub mod model;
pub mod object_store_url;
pub mod persist;
pub mod read;
pub mod wal;

pub use catalog::{ArchivedPartition, FileMeta, RuleEntry};
pub use engine::{
    BufferedPartition, CatalogReader, CompactReport, ExpireReport, ExtensionView, FlushReport,
    PartitionInfo, PendingWrite, PreparedWrite, SeriesSet, Storage, StorageConfig, StorageHooks,
    TableSnapshot, WalReleaseGuard, WriteMode, WriteOutcome, recover_catalog, validate_row,
};
pub use error::{Error, Result};
pub use metrics::StorageMetrics;
pub use model::schema::FieldDef;
pub use model::{
    BucketCache, DeletePredicate, FieldType, FieldValue, Interval, Month, RollupOf, RollupSettings,
    Row, TS_COLUMN, TS_TIMEZONE, TableDef, TableId, TagCondition, Tombstone, ValidRow, WriteBatch,
};
pub use object_store_url::{ObjectStoreLocation, ObjectStoreTimeouts};
