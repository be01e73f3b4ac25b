//! The storage engine: wires catalog, WAL, write buffer, persister and object store, and
//! offers the operations the rest of wattdb uses (DDL, write, flush, consistent scan
//! snapshots, system-view listings). It is the only place that knows the order of the
//! write path: validate → WAL (fsync) → buffer → acknowledge; and of persistence:
//! Parquet file → catalog → WAL release.

mod archive;
mod compact;
mod deletes;
mod derived;
mod extension_views;
mod fulltext;
mod hooks;
mod persister;
mod put_table;
mod read_range;
mod recover;
mod retention;
mod row_deletes;
mod rules;
mod text_index_builder;
mod validate;
mod views;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use object_store::ObjectStore;
use object_store::ObjectStoreExt;
use object_store::path::Path as ObjectPath;

use crate::buffer::WriteBuffer;
use crate::catalog::manifest::MANIFEST_PATH;
use crate::catalog::{Catalog, CatalogOp, Manifest, ObjectPlace, SledCatalogStore};
use crate::error::{Error, Result};
use crate::metrics::StorageMetrics;
use crate::model::schema::FieldDef;
use crate::model::{TableDef, ValidRow, WriteBatch};
use crate::object_store_url::{ObjectStoreLocation, ObjectStoreTimeouts};
use crate::wal::{DurableObserver, EncodedRecord, Wal, WalConfig, WalRecord, WalSeq};

pub use archive::RestoreReport;
pub use compact::CompactReport;
pub use extension_views::ExtensionView;
pub use hooks::{CatalogReader, StorageHooks, WalReleaseGuard};
pub use persister::FlushReport;
pub use read_range::SeriesSet;
pub use recover::recover_catalog;
pub use retention::ExpireReport;
pub use validate::validate_row;
pub use views::{BufferedPartition, PartitionInfo, TableSnapshot};

#[derive(Debug, Clone)]
pub struct StorageConfig {
    pub data_dir: PathBuf,
    pub object_store: ObjectStoreLocation,
    /// Where retention copies expired month partitions before dropping them (`None`:
    /// they are deleted without a copy).
    pub archive: Option<ObjectStoreLocation>,
    /// Request timeouts of the object store and the archive (S3).
    pub object_store_timeouts: ObjectStoreTimeouts,
    /// Bytes of buffered (not yet persisted) data before writers are made to wait.
    pub buffer_budget_bytes: usize,
    /// A partition is persisted once its oldest buffered write is this old...
    pub persist_max_age: Duration,
    /// ...or once it holds this many bytes.
    pub persist_partition_bytes: usize,
    /// How often the persister looks for due partitions.
    pub persist_check_interval: Duration,
    /// Rollup settings given to tables of these names when they are created (config
    /// file); tables not listed get the defaults.
    pub rollup_settings: std::collections::BTreeMap<String, crate::model::RollupSettings>,
    /// Retention given to tables of these names when they are created (config file).
    pub retention_settings: std::collections::BTreeMap<String, String>,
    /// Memory all queries (and background reads) share; beyond it operators spill to
    /// `<data-dir>/spill` or the query fails with SQLSTATE 53200.
    pub query_memory_bytes: usize,
    /// Answer rollup-shaped queries from rollup tables where they are settled (the
    /// query session's default for `wattdb.rollup_rewrite`).
    pub rollup_rewrite: bool,
}

impl StorageConfig {
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        let data_dir = data_dir.into();
        StorageConfig {
            object_store: ObjectStoreLocation::default_for(&data_dir),
            archive: None,
            object_store_timeouts: ObjectStoreTimeouts::default(),
            data_dir,
            buffer_budget_bytes: 512 * 1024 * 1024,
            persist_max_age: Duration::from_secs(600),
            persist_partition_bytes: 64 * 1024 * 1024,
            persist_check_interval: Duration::from_secs(1),
            rollup_settings: Default::default(),
            retention_settings: Default::default(),
            query_memory_bytes: crate::read::DEFAULT_QUERY_MEMORY,
            rollup_rewrite: true,
        }
    }

    pub fn catalog_dir(&self) -> PathBuf {
        self.data_dir.join("catalog")
    }

    pub fn wal_dir(&self) -> PathBuf {
        self.data_dir.join("wal")
    }

    /// Where full-text indexes are built before they are uploaded (emptied at start).
    pub fn fulltext_scratch_dir(&self) -> PathBuf {
        self.data_dir.join("fulltext").join("build")
    }

    /// Where full-text indexes read from the object store are unpacked (a cache: any
    /// of it may be deleted while the server is stopped).
    pub fn fulltext_cache_dir(&self) -> PathBuf {
        self.data_dir.join("fulltext").join("cache")
    }
}

/// Rollup settings and retention the configuration file gives a table when it is
/// created (tables not listed get the defaults).
struct ConfiguredSettings {
    rollups: crate::model::RollupSettings,
    retention: Option<String>,
}

impl ConfiguredSettings {
    fn apply(self, mut def: TableDef) -> TableDef {
        def.rollups = self.rollups;
        def.retention = self.retention;
        def
    }
}

/// How a write treats rows that cannot be stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteMode {
    /// All rows or none (SQL INSERT): the first bad row fails the whole batch.
    AllOrNothing,
    /// Store the good rows, report the bad ones (MQTT: bad rows go to `rejected`).
    BestEffort,
}

/// A submitted write whose WAL record may not be durable yet (see [`Storage::submit`]).
/// Rows rejected by validation are known at once; nothing may be acknowledged before
/// [`PendingWrite::durable`] returns `Ok`.
/// Valid rows of one table with their WAL record encoded, not yet queued
/// ([`Storage::prepare_valid`]).
pub struct PreparedWrite {
    encoded: Option<EncodedRecord>,
    written: usize,
}

impl PreparedWrite {
    /// The number of rows it writes.
    pub fn rows(&self) -> usize {
        self.written
    }
}

#[must_use = "a submitted write is not durable until `durable()` resolves"]
pub struct PendingWrite {
    /// The queued WAL record and the counters to credit once it is durable; None when
    /// nothing was valid to write.
    durable: Option<(crate::wal::Durable, Arc<StorageMetrics>)>,
    written: usize,
    rejected: Vec<(usize, Error)>,
}

impl PendingWrite {
    fn nothing(rejected: Vec<(usize, Error)>) -> Self {
        PendingWrite {
            durable: None,
            written: 0,
            rejected,
        }
    }

    /// (index in the batch, reason) of each row that validation refused.
    pub fn rejected(&self) -> &[(usize, Error)] {
        &self.rejected
    }

    /// Wait until the rows are durable (fsynced WAL) and visible in the buffer.
    pub async fn durable(self) -> Result<WriteOutcome> {
        let seq = match self.durable {
            Some((d, metrics)) => {
                let seq = d.await?;
                StorageMetrics::add(&metrics.rows_written, self.written as u64);
                Some(seq)
            }
            None => None,
        };
        Ok(WriteOutcome {
            written: self.written,
            seq,
            rejected: self.rejected,
        })
    }
}

#[derive(Debug, Default)]
pub struct WriteOutcome {
    pub written: usize,
    pub seq: Option<WalSeq>,
    /// (index in the batch, reason) of each row that was not stored.
    pub rejected: Vec<(usize, Error)>,
}

pub(crate) struct Inner {
    config: StorageConfig,
    metrics: Arc<StorageMetrics>,
    catalog: Arc<Catalog>,
    buffer: Arc<WriteBuffer>,
    wal: Wal,
    store: Arc<dyn ObjectStore>,
    /// The archive store, when configured.
    archive: Option<Arc<dyn ObjectStore>>,
    /// One persist (or drop) at a time.
    persist_lock: tokio::sync::Mutex<()>,
    /// Manifest uploads in order, newest state last.
    manifest_lock: tokio::sync::Mutex<bool>,
    shutdown: tokio::sync::watch::Sender<bool>,
    persister: std::sync::Mutex<Option<tokio::task::JoinHandle<()>>>,
    release_guards: Vec<Arc<dyn WalReleaseGuard>>,
    /// One sweep of pending deletes at a time, and when failed ones may be tried again.
    sweep_lock: tokio::sync::Mutex<()>,
    delete_retry:
        std::sync::Mutex<std::collections::HashMap<(crate::catalog::ObjectPlace, String), i64>>,
    /// The latest compactions, newest last (for `system.compactions`).
    compactions: std::sync::Mutex<std::collections::VecDeque<(String, CompactReport)>>,
    /// DataFusion runtime of queries: the object store is registered under
    /// [`crate::read::STORE_URL`], its memory pool is the query budget.
    runtime: Arc<datafusion::execution::runtime_env::RuntimeEnv>,
    /// Session for reads outside SQL (rollups, compaction): the same runtime but for
    /// the memory pool (see [`crate::read::internal_runtime`]).
    read_session: datafusion::prelude::SessionContext,
    /// The newest row of every series, for tables that were asked for it.
    last_values: Arc<crate::read::LastValues>,
    rollup_view: Option<Arc<dyn crate::read::RollupView>>,
    small_files: Arc<crate::read::SmallFileCache>,
    /// Full-text indexes unpacked on local disk, and open.
    text_indexes: crate::fulltext::index_cache::IndexCache,
    /// What the background index builder is to build, and its task.
    text_index_state: text_index_builder::TextIndexState,
    index_builder: std::sync::Mutex<Option<tokio::task::JoinHandle<()>>>,
    /// `system` views of other subsystems, by name.
    extension_views: std::sync::RwLock<std::collections::BTreeMap<String, Arc<dyn ExtensionView>>>,
}

/// Handle to the storage engine. Cheap to clone.
#[derive(Clone)]
pub struct Storage {
    inner: Arc<Inner>,
}

impl Storage {
    /// Open (or create) the store under `config.data_dir`: load the catalog, replay the
    /// WAL into the buffer, start the WAL writer and the background persister.
    pub async fn open(config: StorageConfig) -> Result<Self> {
        Self::open_with(config, |_| StorageHooks::default()).await
    }

    /// [`Storage::open`] with extensions on the write path. `hooks` is called once the
    /// catalog is loaded and before the WAL is replayed, so its observers see every
    /// record the WAL still holds.
    pub async fn open_with(
        config: StorageConfig,
        hooks: impl FnOnce(CatalogReader) -> StorageHooks,
    ) -> Result<Self> {
        std::fs::create_dir_all(&config.data_dir).map_err(|source| Error::Io {
            path: config.data_dir.clone(),
            source,
        })?;
        // Indexes a crash left half-built are of no use.
        let scratch = config.fulltext_scratch_dir();
        if let Err(source) = std::fs::remove_dir_all(&scratch)
            && source.kind() != std::io::ErrorKind::NotFound
        {
            return Err(Error::Io {
                path: scratch,
                source,
            });
        }
        let store = config
            .object_store
            .open_with(config.object_store_timeouts)?;
        if let Some(a) = &config.archive
            && a.overlaps(&config.object_store)
        {
            return Err(Error::ObjectStoreUrl {
                url: a.to_string(),
                reason: format!(
                    "the archive must be apart from the object store {} (not the same place, not inside it, not around it)",
                    config.object_store
                ),
            });
        }
        let archive = config
            .archive
            .as_ref()
            .map(|a| a.open_with(config.object_store_timeouts))
            .transpose()?;
        let catalog_dir = config.catalog_dir();
        let catalog = tokio::task::spawn_blocking(move || {
            Catalog::open(Box::new(SledCatalogStore::open(&catalog_dir)?))
        })
        .await??;
        let buffer = WriteBuffer::new(catalog.clone(), config.buffer_budget_bytes);
        let wal_config = WalConfig::new(config.wal_dir());
        let min_next = WalSeq(catalog.max_seq().0 + 1);
        let StorageHooks {
            markers,
            observers,
            release_guards,
            rollup_view,
        } = hooks(CatalogReader(catalog.clone()));
        let last_values = Arc::new(crate::read::LastValues::default());
        let mut chain: Vec<Arc<dyn DurableObserver>> = markers;
        chain.extend([
            buffer.clone() as Arc<dyn DurableObserver>,
            last_values.clone(),
        ]);
        chain.extend(observers);
        let observer: Arc<dyn DurableObserver> = Arc::new(hooks::ObserverChain(chain));
        let b2 = buffer.clone();
        let metrics = Arc::new(StorageMetrics::default());
        let m2 = metrics.clone();
        let (wal, report) = tokio::task::spawn_blocking(move || {
            b2.set_replaying(true);
            let r = Wal::open(wal_config, observer, min_next, m2);
            b2.set_replaying(false);
            r
        })
        .await??;
        tracing::info!(
            records = report.records,
            segments = report.segments,
            truncated_segments = report.truncated_segments,
            tables = catalog.tables().len(),
            files = catalog.all_files().len(),
            object_store = %config.object_store,
            archive = %config.archive.as_ref().map(|a| a.to_string()).unwrap_or_else(|| "none".into()),
            "storage opened"
        );
        let (shutdown, _) = tokio::sync::watch::channel(false);
        let runtime =
            crate::read::query_runtime(&config.data_dir, config.query_memory_bytes, store.clone())?;
        let read_session = datafusion::prelude::SessionContext::new_with_config_rt(
            datafusion::prelude::SessionConfig::new(),
            crate::read::internal_runtime(&runtime),
        );
        let text_indexes =
            crate::fulltext::index_cache::IndexCache::new(config.fulltext_cache_dir());
        let storage = Storage {
            inner: Arc::new(Inner {
                config,
                metrics,
                catalog,
                buffer,
                wal,
                store,
                archive,
                persist_lock: tokio::sync::Mutex::new(()),
                manifest_lock: tokio::sync::Mutex::new(true),
                shutdown,
                persister: std::sync::Mutex::new(None),
                release_guards,
                sweep_lock: tokio::sync::Mutex::new(()),
                delete_retry: Default::default(),
                compactions: Default::default(),
                runtime,
                read_session,
                last_values,
                rollup_view,
                text_indexes,
                text_index_state: Default::default(),
                index_builder: std::sync::Mutex::new(None),
                small_files: Arc::new(crate::read::SmallFileCache::new(
                    crate::read::small_files::DEFAULT_BUDGET_BYTES,
                )),
                extension_views: Default::default(),
            }),
        };
        let handle = tokio::spawn(persister::run(storage.clone()));
        *storage
            .inner
            .persister
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = Some(handle);
        let handle = tokio::spawn(text_index_builder::run(storage.clone()));
        *storage
            .inner
            .index_builder
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = Some(handle);
        Ok(storage)
    }

    /// Bytes of writes waiting for the WAL's group commit (counted in the buffer budget).
    pub fn wal_queued_bytes(&self) -> usize {
        self.inner.buffer.queued_bytes()
    }

    pub fn metrics(&self) -> &StorageMetrics {
        &self.inner.metrics
    }

    pub fn config(&self) -> &StorageConfig {
        &self.inner.config
    }

    pub fn object_store(&self) -> Arc<dyn ObjectStore> {
        self.inner.store.clone()
    }

    /// The newest row of every series of `table` (greatest `ts`; of equal `ts`, the last
    /// write), sorted by tags: from the last-value cache, built on first use.
    /// Decoded small files queries read from memory.
    pub fn small_files(&self) -> &Arc<crate::read::SmallFileCache> {
        &self.inner.small_files
    }

    /// What the read path may know about rollups, when a rollup worker is attached.
    pub fn rollup_view(&self) -> Option<&Arc<dyn crate::read::RollupView>> {
        self.inner.rollup_view.as_ref()
    }

    pub async fn last_values(&self, table: &str) -> Result<arrow::record_batch::RecordBatch> {
        // A catalog lookup on every call; a snapshot (which locks the buffer) only to build.
        let def = self.table(table).ok_or_else(|| Error::TableNotFound {
            table: table.into(),
        })?;
        self.inner
            .last_values
            .rows(&def, || self.snapshot(table), &self.inner.read_session)
            .await
    }

    /// The DataFusion runtime queries run in (object store registered, memory pool).
    pub fn runtime_env(&self) -> Arc<datafusion::execution::runtime_env::RuntimeEnv> {
        self.inner.runtime.clone()
    }

    pub fn table(&self, name: &str) -> Option<TableDef> {
        self.inner.catalog.table(name)
    }

    /// The current definition of a table without copying it (for writers that validate
    /// rows themselves and hand them to [`Storage::submit_valid`]).
    pub fn shared_table(&self, name: &str) -> Option<Arc<TableDef>> {
        self.inner.catalog.shared_table(name)
    }

    /// Like [`Storage::shared_table`], by id.
    pub fn shared_table_by_id(&self, id: crate::model::TableId) -> Option<Arc<TableDef>> {
        self.inner.catalog.shared_table_by_id(id)
    }

    pub fn tables(&self) -> Vec<TableDef> {
        self.inner.catalog.tables()
    }

    /// `CREATE TABLE`: tags form the primary key with `ts`.
    pub async fn create_table(
        &self,
        name: &str,
        tags: Vec<String>,
        fields: Vec<FieldDef>,
        if_not_exists: bool,
    ) -> Result<(TableDef, bool)> {
        self.create_table_with_fulltext(name, tags, fields, Default::default(), if_not_exists)
            .await
    }

    /// [`Storage::create_table`] with text fields searchable by `matches()` from the
    /// start: part of the one catalog change that creates the table (an existing table
    /// is left as it is under `if_not_exists`).
    pub async fn create_table_with_fulltext(
        &self,
        name: &str,
        tags: Vec<String>,
        fields: Vec<FieldDef>,
        fulltext: std::collections::BTreeMap<String, crate::fulltext::Analyzer>,
        if_not_exists: bool,
    ) -> Result<(TableDef, bool)> {
        let catalog = self.inner.catalog.clone();
        let name2 = name.to_string();
        let configured = self.configured(name);
        let (def, created) = tokio::task::spawn_blocking(move || {
            catalog.create_table(
                &name2,
                |id| {
                    let mut def = TableDef::new(id, &name2, tags, fields)?;
                    def.fulltext = fulltext;
                    Ok(configured.apply(def.validated()?))
                },
                if_not_exists,
            )
        })
        .await??;
        if created {
            tracing::info!(table = %def.name, id = def.id.0, "table created");
            self.write_manifest().await;
        }
        Ok((def, created))
    }

    /// `DROP TABLE`: catalog entries go first (atomically, together with the table's
    /// rollup tables), then buffered rows, then files. Returns false when the table did
    /// not exist.
    pub async fn drop_table(&self, name: &str) -> Result<bool> {
        let _persist = self.inner.persist_lock.lock().await;
        let catalog = self.inner.catalog.clone();
        let name2 = name.to_string();
        let dropped = tokio::task::spawn_blocking(move || {
            let mut dropped = Vec::new();
            catalog.commit_checked(|state| {
                let Some(def) = state.tables.get(&name2).map(|t| (**t).clone()) else {
                    return Ok(vec![]);
                };
                let rollups = state
                    .tables
                    .values()
                    .filter(|t| t.rollup_of.as_ref().is_some_and(|r| r.source == def.id))
                    .map(|t| (**t).clone());
                let mut ops = Vec::new();
                for def in std::iter::once(def.clone()).chain(rollups) {
                    let files = state.files.get(&def.id).cloned().unwrap_or_default();
                    let archived: Vec<String> = state
                        .archived
                        .values()
                        .filter(|a| a.table_id == def.id)
                        .flat_map(|a| a.archive_paths())
                        .collect();
                    ops.extend(deletes::pending_deletes(
                        ObjectPlace::Store,
                        files.iter().flat_map(|f| f.objects()),
                        Duration::ZERO,
                        "dropped",
                    ));
                    ops.extend(deletes::pending_deletes(
                        ObjectPlace::Archive,
                        archived.iter().map(String::as_str),
                        Duration::ZERO,
                        "dropped",
                    ));
                    dropped.push((def.clone(), files.len()));
                    ops.push(CatalogOp::DropTable { def, files });
                }
                Ok(ops)
            })?;
            Ok::<_, Error>(dropped)
        })
        .await??;
        if dropped.is_empty() {
            return Ok(false);
        }
        for (def, files) in dropped {
            self.inner.buffer.drop_table(def.id);
            self.inner.last_values.forget(def.id);
            tracing::info!(table = %def.name, files, "table dropped");
        }
        self.sweep_deletes().await;
        self.write_manifest().await;
        self.release_wal().await;
        Ok(true)
    }

    /// Validate, log durably and buffer a batch. Returns once the rows are durable.
    pub async fn write(
        &self,
        batch: WriteBatch,
        mode: WriteMode,
        auto_create: bool,
    ) -> Result<WriteOutcome> {
        self.submit(batch, mode, auto_create).await?.durable().await
    }

    /// The first half of [`Storage::write`]: resolve the table (creating or growing it),
    /// validate, wait for room in the buffer and queue the WAL record, then return without
    /// waiting for the fsync. Batches submitted one after another by one caller are
    /// logged (and so win last-write-wins) in that order, which lets a connection keep
    /// many writes in flight and still acknowledge each only once
    /// [`PendingWrite::durable`] resolves.
    pub async fn submit(
        &self,
        batch: WriteBatch,
        mode: WriteMode,
        auto_create: bool,
    ) -> Result<PendingWrite> {
        let WriteBatch { table, rows } = batch;
        if rows.is_empty() {
            return Ok(PendingWrite::nothing(Vec::new()));
        }
        if self.shared_table(&table).is_some_and(|d| d.is_rollup()) {
            return Err(Error::ReadOnlyTable { table });
        }
        let def = self.resolve_table(&table, &rows, auto_create).await?;
        let mut valid = Vec::with_capacity(rows.len());
        let mut rejected = Vec::new();
        for (i, row) in rows.into_iter().enumerate() {
            match validate::validate_row(&def, row) {
                Ok(v) => valid.push(v),
                Err(e) if mode == WriteMode::AllOrNothing => {
                    return Err(match e {
                        Error::InvalidRow { table, reason } => Error::InvalidRow {
                            table,
                            reason: format!("row {}: {reason}", i + 1),
                        },
                        other => other,
                    });
                }
                Err(e) => rejected.push((i, e)),
            }
        }
        StorageMetrics::add(&self.inner.metrics.rows_rejected, rejected.len() as u64);
        if valid.is_empty() {
            return Ok(PendingWrite::nothing(rejected));
        }
        let mut pending = self.enqueue_valid(&def, valid).await?;
        pending.rejected = rejected;
        Ok(pending)
    }

    /// [`Storage::submit`] for rows already aligned to `def` by the caller (e.g. a decoder
    /// that reads a payload straight into a table's columns): no name lookups, no
    /// validation. `def` must come from [`Storage::shared_table`]; fields only ever get
    /// appended, so rows aligned to it stay valid if the table grows meanwhile (and are
    /// ignored, like any write, if it is dropped).
    pub async fn submit_valid(&self, def: &TableDef, rows: Vec<ValidRow>) -> Result<PendingWrite> {
        self.submit_prepared(self.prepare_valid(def, rows)?).await
    }

    /// The costly half of [`Storage::submit_valid`], without waiting for anything: check
    /// the table may be written and encode the WAL record. Callers with much to write
    /// (COPY) prepare on several threads, then submit in order.
    pub fn prepare_valid(&self, def: &TableDef, rows: Vec<ValidRow>) -> Result<PreparedWrite> {
        if def.is_rollup() {
            return Err(Error::ReadOnlyTable {
                table: def.name.clone(),
            });
        }
        Self::encode_valid(def, rows)
    }

    fn encode_valid(def: &TableDef, rows: Vec<ValidRow>) -> Result<PreparedWrite> {
        let written = rows.len();
        let encoded = if rows.is_empty() {
            None
        } else {
            Some(EncodedRecord::new(WalRecord::write(def.id, rows))?)
        };
        Ok(PreparedWrite { encoded, written })
    }

    /// Wait for room in the buffer and queue a prepared write; writes submitted one after
    /// another are logged in that order.
    pub async fn submit_prepared(&self, prepared: PreparedWrite) -> Result<PendingWrite> {
        let PreparedWrite { encoded, written } = prepared;
        let Some(encoded) = encoded else {
            return Ok(PendingWrite::nothing(Vec::new()));
        };
        let buffer = &self.inner.buffer;
        if buffer.used_bytes() >= buffer.budget_bytes() {
            let waited = std::time::Instant::now();
            buffer.wait_for_room().await;
            StorageMetrics::add_duration(
                &self.inner.metrics.backpressure_wait_micros,
                waited.elapsed(),
            );
        }
        // Until the WAL thread is done with it the record holds about twice its encoded
        // size (the bytes and the decoded rows): counted against the buffer's budget, so
        // writes arriving faster than the disk syncs wait here instead of piling up.
        let charge = buffer.charge_queued(2 * encoded.len());
        let durable = self
            .inner
            .wal
            .enqueue_charged(encoded, Some(Box::new(charge)))?;
        Ok(PendingWrite {
            durable: Some((durable, self.inner.metrics.clone())),
            written,
            rejected: Vec::new(),
        })
    }

    /// Wait for room in the buffer and queue the WAL record of already valid rows.
    pub(crate) async fn enqueue_valid(
        &self,
        def: &TableDef,
        rows: Vec<ValidRow>,
    ) -> Result<PendingWrite> {
        self.submit_prepared(Self::encode_valid(def, rows)?).await
    }

    /// What the configuration gives a new table of this name.
    fn configured(&self, table: &str) -> ConfiguredSettings {
        let config = &self.inner.config;
        ConfiguredSettings {
            rollups: config
                .rollup_settings
                .get(table)
                .cloned()
                .unwrap_or_default(),
            retention: config.retention_settings.get(table).cloned(),
        }
    }

    /// The table's definition, created from the rows or grown by their new fields.
    async fn resolve_table(
        &self,
        table: &str,
        rows: &[crate::model::Row],
        auto_create: bool,
    ) -> Result<Arc<TableDef>> {
        let existing = self.inner.catalog.shared_table(table);
        let needs_change = match &existing {
            None => true,
            Some(def) => !validate::new_fields(Some(def), rows).is_empty(),
        };
        if !needs_change {
            return existing.ok_or_else(|| Error::TableNotFound {
                table: table.into(),
            });
        }
        if existing.is_none() && !auto_create {
            return Err(Error::TableNotFound {
                table: table.into(),
            });
        }
        let table2 = table.to_string();
        let rows2: Vec<crate::model::Row> = rows.to_vec();
        let configured = self.configured(table);
        self.put_table(table, move |cur, new_id| match cur {
            None => Ok(configured.apply(validate::def_from_rows(new_id, &table2, &rows2)?)),
            Some(cur) => {
                let mut grown = cur.clone();
                grown.fields.extend(validate::new_fields(Some(cur), &rows2));
                Ok(grown)
            }
        })
        .await
    }

    /// Persist every buffered partition now (`SELECT flush()`).
    pub async fn flush(&self) -> Result<FlushReport> {
        persister::persist(self, true).await
    }

    /// Persist what is buffered, stop background work and close the WAL.
    pub async fn shutdown(&self) -> Result<()> {
        // send_replace: stores the value even if the persister has not subscribed yet.
        self.inner.shutdown.send_replace(true);
        let handle = self
            .inner
            .persister
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        if let Some(h) = handle {
            let _ = h.await;
        }
        // An index being built is dropped; it is built again after the restart.
        let builder = self
            .inner
            .index_builder
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        if let Some(h) = builder {
            h.abort();
            let _ = h.await;
        }
        let res = self.flush().await;
        self.inner.wal.shutdown().await;
        res.map(|_| ())
    }

    /// Upload the catalog snapshot. Failures are logged and retried on the next change or
    /// persister tick: the local catalog stays authoritative.
    pub(crate) async fn write_manifest(&self) {
        let mut ok = self.inner.manifest_lock.lock().await;
        let manifest = Manifest::from_state(
            &self.inner.catalog.state(),
            chrono::Utc::now().timestamp_millis(),
        );
        let result = match manifest.encode() {
            Ok(bytes) => self
                .inner
                .store
                .put(&ObjectPath::from(MANIFEST_PATH), bytes.into())
                .await
                .map(|_| ())
                .map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        };
        match result {
            Ok(()) => *ok = true,
            Err(e) => {
                *ok = false;
                tracing::warn!(error = %e, "could not write the catalog manifest; will retry");
            }
        }
    }

    pub(crate) async fn manifest_needs_retry(&self) -> bool {
        !*self.inner.manifest_lock.lock().await
    }

    pub(crate) async fn release_wal(&self) {
        // A DELETE must be in the catalog before the segment logging it goes.
        if let Err(e) = self.commit_tombstones().await {
            tracing::warn!(error = %e, "keeping WAL segments: DELETEs are not in the catalog yet");
            return;
        }
        // Every file registered so far must be durable in the catalog before the WAL
        // segments holding its rows go.
        let catalog = self.inner.catalog.clone();
        if !durable_before_release("the catalog", move || catalog.sync()).await {
            return;
        }
        let keep_from = self.inner.buffer.lock().keep_wal_from();
        // Tests hold the release here while writes arrive.
        fail::fail_point!("wal-release-after-keep-from");
        for guard in &self.inner.release_guards {
            let guard = guard.clone();
            if !durable_before_release("derived state", move || guard.before_wal_release()).await {
                return;
            }
        }
        match self.inner.wal.release(Some(keep_from)).await {
            Ok(n) if n > 0 => tracing::debug!(segments = n, "released WAL segments"),
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "could not release WAL segments"),
        }
    }

    pub(crate) fn inner(&self) -> &Inner {
        &self.inner
    }
}

/// Run a blocking step that must succeed before WAL segments may be deleted; false (with
/// a warning naming `what`) when it did not.
async fn durable_before_release(
    what: &str,
    step: impl FnOnce() -> Result<()> + Send + 'static,
) -> bool {
    match tokio::task::spawn_blocking(step).await {
        Ok(Ok(())) => true,
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "keeping WAL segments: {what} is not durable yet");
            false
        }
        Err(e) => {
            tracing::warn!(error = %e, "keeping WAL segments: making {what} durable failed");
            false
        }
    }
}
