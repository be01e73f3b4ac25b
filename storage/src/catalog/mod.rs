//! The catalog: table definitions and the file manifest, kept in memory for readers and
//! made durable through a [`CatalogStore`] (sled by default) before any change is visible.
//!
//! Every persisted entry carries a format version. A snapshot of the whole catalog
//! ([`Manifest`]) is also written to the object store after each change (by the engine), so
//! `wattdb recover` can rebuild a node's catalog from the bucket alone.

pub mod manifest;
pub mod sled_store;
#[cfg(test)]
mod test_samples;

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
pub use crate::fulltext::file_indexes::TextIndexObject;
use crate::model::{Month, TableDef, TableId, Tombstone};
use crate::wal::WalSeq;

pub use manifest::Manifest;
pub use sled_store::SledCatalogStore;

/// One immutable Parquet file of a table's month partition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileMeta {
    pub table_id: TableId,
    pub month: Month,
    /// Object-store path relative to the store root: `<table>/month=YYYY-MM/<id>.parquet`.
    pub path: String,
    pub min_ts: i64,
    pub max_ts: i64,
    pub rows: u64,
    pub bytes: u64,
    /// Highest WAL sequence number of any row in the file. Orders overlapping files for
    /// last-write-wins (a higher `max_seq` holds newer writes) and marks what WAL replay
    /// may skip.
    pub max_seq: WalSeq,
    pub created_at_ms: i64,
    /// Tombstones up to this sequence number are applied to the file's rows (compaction
    /// wrote it after them); 0 for a persisted file (see [`Tombstone::applies_to`]).
    #[serde(default, skip_serializing_if = "WalSeq::is_zero")]
    pub deletes_applied: WalSeq,
    /// Full-text indexes of the file's columns, stored beside it (absent: none built).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub fulltext: Vec<TextIndexObject>,
}

impl FileMeta {
    /// Every object of the file in its store: the Parquet file, then its indexes.
    pub fn objects(&self) -> impl Iterator<Item = &str> {
        std::iter::once(self.path.as_str()).chain(self.fulltext.iter().map(|i| i.path.as_str()))
    }

    /// The file's index of `column`, if it has one built with `analyzer`.
    pub fn text_index(
        &self,
        column: &str,
        analyzer: crate::fulltext::Analyzer,
    ) -> Option<&TextIndexObject> {
        self.fulltext
            .iter()
            .find(|i| i.column == column && i.analyzer == analyzer)
    }
}

/// Name of the manifest beside an archived month's files.
pub const ARCHIVE_PARTITION_FILE: &str = "_partition.json";

/// A month partition retention copied to the archive store before dropping it. Its files
/// keep their paths (relative to the archive root).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArchivedPartition {
    pub table_id: TableId,
    /// The table's name when the month was archived (its folder in the archive).
    pub table: String,
    pub month: Month,
    pub files: Vec<FileMeta>,
    pub archived_at_ms: i64,
}

impl ArchivedPartition {
    pub fn rows(&self) -> u64 {
        self.files.iter().map(|f| f.rows).sum()
    }

    pub fn bytes(&self) -> u64 {
        self.files.iter().map(|f| f.bytes).sum()
    }

    /// The partition's manifest in the archive (it describes the month without the
    /// catalog): `<table>/month=YYYY-MM/_partition.json`.
    pub fn manifest_path(&self) -> String {
        format!(
            "{}/month={}/{ARCHIVE_PARTITION_FILE}",
            self.table, self.month
        )
    }

    /// Every object of the partition in the archive, its manifest last.
    pub fn archive_paths(&self) -> Vec<String> {
        let mut out: Vec<String> = self
            .files
            .iter()
            .flat_map(|f| f.objects().map(str::to_string))
            .collect();
        out.push(self.manifest_path());
        out
    }
}

/// Which store an object to delete lives in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ObjectPlace {
    Store,
    Archive,
}

/// An object the catalog no longer lists, to be deleted from its store once `due_ms`
/// has passed. Recorded in the same commit that unlists it, so a crash or a failed
/// delete cannot leave it behind unnoticed: the engine deletes due entries (and retries
/// failures) until they are gone.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingDelete {
    pub place: ObjectPlace,
    pub path: String,
    pub due_ms: i64,
    /// Why it goes: `compacted`, `expired`, `dropped`, `re-archived`.
    pub reason: String,
}

impl PendingDelete {
    pub fn key(&self) -> (ObjectPlace, String) {
        (self.place, self.path.clone())
    }
}

/// A named rule object of another subsystem (an alarm, a notification channel), kept by
/// the catalog as an opaque JSON document so it survives restarts and `wattdb recover`.
/// Storage does not interpret `body`; the owner validates it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RuleEntry {
    /// What it is, e.g. `alarm` or `channel`.
    pub kind: String,
    pub name: String,
    pub body: serde_json::Value,
}

/// A change to the catalog, applied atomically with the others in the same commit.
#[derive(Debug, Clone)]
pub enum CatalogOp {
    PutTable(TableDef),
    DropTable {
        def: TableDef,
        files: Vec<FileMeta>,
    },
    AddFile(FileMeta),
    RemoveFile(FileMeta),
    /// Replace the entry of a listed file (same path) with this one: its full-text
    /// indexes changed.
    UpdateFile(FileMeta),
    /// Record (or replace) the archive copy of a month.
    PutArchived(ArchivedPartition),
    /// Objects to delete (see [`PendingDelete`]).
    AddPendingDelete(PendingDelete),
    /// An object deleted (or found gone).
    RemovePendingDelete {
        place: ObjectPlace,
        path: String,
    },
    /// Record a `DELETE` (see [`Tombstone`]); idempotent.
    AddTombstone(Tombstone),
    /// Store (or replace) a rule object.
    PutRule(RuleEntry),
    DropRule {
        kind: String,
        name: String,
    },
}

/// The whole catalog in memory.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CatalogState {
    /// Shared, so the write path looks a definition up per write without copying it.
    pub tables: BTreeMap<String, Arc<TableDef>>,
    pub files: BTreeMap<TableId, Vec<FileMeta>>,
    pub archived: BTreeMap<(TableId, Month), ArchivedPartition>,
    pub pending_deletes: BTreeMap<(ObjectPlace, String), PendingDelete>,
    /// Rule objects by (kind, name).
    pub rules: BTreeMap<(String, String), RuleEntry>,
    /// `DELETE`s by table and WAL position.
    pub tombstones: BTreeMap<(TableId, WalSeq), Tombstone>,
    pub next_table_id: u64,
}

impl CatalogState {
    fn apply(&mut self, op: &CatalogOp) {
        match op {
            CatalogOp::PutTable(def) => {
                self.next_table_id = self.next_table_id.max(def.id.0 + 1);
                self.tables.insert(def.name.clone(), Arc::new(def.clone()));
            }
            CatalogOp::DropTable { def, .. } => {
                self.tables.remove(&def.name);
                self.files.remove(&def.id);
                self.archived.retain(|(t, _), _| *t != def.id);
                self.tombstones.retain(|(t, _), _| *t != def.id);
            }
            CatalogOp::AddFile(f) => self.files.entry(f.table_id).or_default().push(f.clone()),
            CatalogOp::UpdateFile(f) => {
                if let Some(cur) = self
                    .files
                    .get_mut(&f.table_id)
                    .and_then(|files| files.iter_mut().find(|x| x.path == f.path))
                {
                    *cur = f.clone();
                }
            }
            CatalogOp::RemoveFile(f) => {
                if let Some(files) = self.files.get_mut(&f.table_id) {
                    files.retain(|x| x.path != f.path);
                }
            }
            CatalogOp::PutArchived(a) => {
                self.archived.insert((a.table_id, a.month), a.clone());
            }
            CatalogOp::AddPendingDelete(d) => {
                self.pending_deletes.insert(d.key(), d.clone());
            }
            CatalogOp::RemovePendingDelete { place, path } => {
                self.pending_deletes.remove(&(*place, path.clone()));
            }
            CatalogOp::AddTombstone(t) => {
                self.tombstones.insert((t.table_id, t.seq), t.clone());
            }
            CatalogOp::PutRule(r) => {
                self.rules
                    .insert((r.kind.clone(), r.name.clone()), r.clone());
            }
            CatalogOp::DropRule { kind, name } => {
                self.rules.remove(&(kind.clone(), name.clone()));
            }
        }
    }

    /// Highest WAL sequence number the catalog refers to (files and tombstones): new
    /// writes must be numbered above it, or a tombstone would take them for older rows.
    pub fn max_seq(&self) -> WalSeq {
        self.files
            .values()
            .flatten()
            .map(|f| f.max_seq)
            .chain(self.tombstones.keys().map(|(_, s)| *s))
            .max()
            .unwrap_or(WalSeq(0))
    }
}

/// Durable backing of the catalog. Kept behind a trait so sled can be swapped.
pub trait CatalogStore: Send + Sync {
    fn load(&self) -> Result<CatalogState>;
    /// Apply `ops` atomically; durable only after [`CatalogStore::sync`].
    fn write(&self, ops: &[CatalogOp]) -> Result<()>;
    /// Make everything written so far durable (fsync).
    fn sync(&self) -> Result<()>;
}

pub struct Catalog {
    store: Box<dyn CatalogStore>,
    state: RwLock<CatalogState>,
    /// Serialises commits so the store and the in-memory state change in the same order.
    commit_lock: std::sync::Mutex<()>,
}

impl Catalog {
    pub fn open(store: Box<dyn CatalogStore>) -> Result<Arc<Self>> {
        let state = store.load()?;
        Ok(Arc::new(Catalog {
            store,
            state: RwLock::new(state),
            commit_lock: std::sync::Mutex::new(()),
        }))
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, CatalogState> {
        self.state.read().unwrap_or_else(|p| p.into_inner())
    }

    pub fn table(&self, name: &str) -> Option<TableDef> {
        self.shared_table(name).map(|t| (*t).clone())
    }

    /// The current definition of a table, shared (no copy): for the write path.
    pub fn shared_table(&self, name: &str) -> Option<Arc<TableDef>> {
        self.read().tables.get(name).cloned()
    }

    /// Like [`Catalog::shared_table`], by id.
    pub fn shared_table_by_id(&self, id: TableId) -> Option<Arc<TableDef>> {
        self.read().tables.values().find(|t| t.id == id).cloned()
    }

    pub fn tables(&self) -> Vec<TableDef> {
        self.read().tables.values().map(|t| (**t).clone()).collect()
    }

    pub fn files(&self, table: TableId) -> Vec<FileMeta> {
        self.read().files.get(&table).cloned().unwrap_or_default()
    }

    /// Every archived month partition, by table id then month.
    pub fn archived(&self) -> Vec<ArchivedPartition> {
        self.read().archived.values().cloned().collect()
    }

    /// Rule objects of `kind`, by name.
    pub fn rules(&self, kind: &str) -> Vec<RuleEntry> {
        self.read()
            .rules
            .values()
            .filter(|r| r.kind == kind)
            .cloned()
            .collect()
    }

    /// Objects waiting to be deleted whose time has come at `now_ms`.
    pub fn due_deletes(&self, now_ms: i64) -> Vec<PendingDelete> {
        self.read()
            .pending_deletes
            .values()
            .filter(|d| d.due_ms <= now_ms)
            .cloned()
            .collect()
    }

    pub fn pending_delete_count(&self) -> usize {
        self.read().pending_deletes.len()
    }

    pub fn archived_partition(&self, table: TableId, month: Month) -> Option<ArchivedPartition> {
        self.read().archived.get(&(table, month)).cloned()
    }

    pub fn all_files(&self) -> Vec<FileMeta> {
        self.read().files.values().flatten().cloned().collect()
    }

    pub fn next_table_id(&self) -> TableId {
        TableId(self.read().next_table_id.max(1))
    }

    pub fn max_seq(&self) -> WalSeq {
        self.read().max_seq()
    }

    /// Highest WAL sequence already persisted for one month partition of a table.
    pub fn persisted_seq(&self, table: TableId, month: Month) -> WalSeq {
        self.read()
            .files
            .get(&table)
            .into_iter()
            .flatten()
            .filter(|f| f.month == month)
            .map(|f| f.max_seq)
            .max()
            .unwrap_or(WalSeq(0))
    }

    /// How many `DELETE`s are recorded.
    pub fn tombstone_count(&self) -> usize {
        self.read().tombstones.len()
    }

    /// Is the `DELETE` logged at `seq` for `table` recorded?
    pub fn has_tombstone(&self, table: TableId, seq: WalSeq) -> bool {
        self.read().tombstones.contains_key(&(table, seq))
    }

    /// Every recorded `DELETE`, oldest first per table.
    pub fn tombstones(&self) -> Vec<Tombstone> {
        self.read().tombstones.values().cloned().collect()
    }

    pub fn state(&self) -> CatalogState {
        self.read().clone()
    }

    /// Make `ops` durable, then visible. `check` runs under the commit lock against the
    /// current state and may refuse the change (e.g. a table created concurrently).
    pub fn commit_checked(
        &self,
        check: impl FnOnce(&CatalogState) -> Result<Vec<CatalogOp>>,
    ) -> Result<Vec<CatalogOp>> {
        self.commit_inner(check, true)
    }

    /// [`Catalog::commit_checked`] without the fsync: the change is visible at once and
    /// durable after the next [`Catalog::sync`] (or any synced commit). For a caller
    /// holding a lock others wait for, which syncs once it let go; it must not depend on
    /// the change being durable (e.g. release WAL segments) before that.
    pub fn commit_checked_unsynced(
        &self,
        check: impl FnOnce(&CatalogState) -> Result<Vec<CatalogOp>>,
    ) -> Result<Vec<CatalogOp>> {
        self.commit_inner(check, false)
    }

    /// Make every commit so far durable.
    pub fn sync(&self) -> Result<()> {
        self.store.sync()
    }

    fn commit_inner(
        &self,
        check: impl FnOnce(&CatalogState) -> Result<Vec<CatalogOp>>,
        sync: bool,
    ) -> Result<Vec<CatalogOp>> {
        let _guard = self.commit_lock.lock().unwrap_or_else(|p| p.into_inner());
        let ops = check(&self.read())?;
        if ops.is_empty() {
            return Ok(ops);
        }
        self.store.write(&ops)?;
        if sync {
            self.store.sync()?;
        }
        let mut state = self.state.write().unwrap_or_else(|p| p.into_inner());
        for op in &ops {
            state.apply(op);
        }
        Ok(ops)
    }

    pub fn commit(&self, ops: Vec<CatalogOp>) -> Result<()> {
        self.commit_checked(move |_| Ok(ops)).map(|_| ())
    }

    /// Create a table, or return the existing one with the same name when `if_not_exists`.
    pub fn create_table(
        &self,
        name: &str,
        build: impl FnOnce(TableId) -> Result<TableDef>,
        if_not_exists: bool,
    ) -> Result<(TableDef, bool)> {
        let mut created = None;
        let mut existing = None;
        self.commit_checked(|state| {
            if let Some(t) = state.tables.get(name) {
                if if_not_exists {
                    existing = Some((**t).clone());
                    return Ok(vec![]);
                }
                return Err(Error::TableExists { table: name.into() });
            }
            let def = build(TableId(state.next_table_id.max(1)))?;
            created = Some(def.clone());
            Ok(vec![CatalogOp::PutTable(def)])
        })?;
        match (created, existing) {
            (Some(def), _) => Ok((def, true)),
            (None, Some(def)) => Ok((def, false)),
            (None, None) => Err(Error::Task("create_table produced nothing".into())),
        }
    }
}
