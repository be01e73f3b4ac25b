//! What other subsystems attach to the engine when it opens: observers of each durable
//! WAL group — markers that must see a write before readers can (rollup dirty marks),
//! then the buffer, then the rest (rules) — guards that must make their derived state
//! durable before WAL segments are deleted, and the view of the rollups the read path
//! may answer queries from.

use std::sync::Arc;

use crate::catalog::Catalog;
use crate::error::Result;
use crate::wal::{DurableObserver, WalRecord, WalSeq};

/// Called before WAL segments are deleted. Observers that keep state derived from WAL
/// records in memory (e.g. rollup dirty marks) make it durable here: after the release,
/// a restart can no longer rebuild it by replay. An error keeps the segments.
pub trait WalReleaseGuard: Send + Sync + 'static {
    fn before_wal_release(&self) -> Result<()>;
}

/// Extensions to install when the engine opens (see [`super::Storage::open_with`]).
#[derive(Default)]
pub struct StorageHooks {
    /// See every durable group before the buffer makes its rows visible to readers, also
    /// during WAL replay at open.
    pub markers: Vec<Arc<dyn DurableObserver>>,
    /// See every durable group after the buffer has, also during WAL replay at open.
    pub observers: Vec<Arc<dyn DurableObserver>>,
    pub release_guards: Vec<Arc<dyn WalReleaseGuard>>,
    /// What the read path may know about rollups (see [`crate::read::RollupView`]).
    pub rollup_view: Option<Arc<dyn crate::read::RollupView>>,
}

/// Markers, the buffer, then each other extension, in order.
pub(super) struct ObserverChain(pub Vec<Arc<dyn DurableObserver>>);

impl DurableObserver for ObserverChain {
    fn on_durable(&self, seq: WalSeq, record: &WalRecord) {
        for o in &self.0 {
            o.on_durable(seq, record);
        }
    }

    fn on_durable_group(&self, records: &[(WalSeq, &WalRecord)]) {
        for o in &self.0 {
            o.on_durable_group(records);
        }
    }
}

/// The catalog as extensions see it while the engine opens (before a `Storage` exists):
/// table definitions by id, read-only.
#[derive(Clone)]
pub struct CatalogReader(pub(super) Arc<Catalog>);

impl CatalogReader {
    pub fn table_by_id(&self, id: crate::model::TableId) -> Option<Arc<crate::model::TableDef>> {
        self.0.shared_table_by_id(id)
    }

    pub fn table(&self, name: &str) -> Option<Arc<crate::model::TableDef>> {
        self.0.shared_table(name)
    }

    /// Rule objects of `kind` (see [`crate::catalog::RuleEntry`]).
    pub fn rules(&self, kind: &str) -> Vec<crate::catalog::RuleEntry> {
        self.0.rules(kind)
    }
}
