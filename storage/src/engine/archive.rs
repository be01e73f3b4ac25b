//! Cold archive primitives: copying a month partition's files to the archive store
//! (files first, then a `_partition.json` manifest that describes the month without the
//! catalog) before retention drops it, and bringing an archived month back with
//! [`Storage::restore_partition`]. When retention runs is the compaction crate's janitor.

use std::sync::Arc;

use futures::StreamExt;
use object_store::buffered::BufWriter;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use serde::{Deserialize, Serialize};
use tokio::io::AsyncWriteExt;

use crate::catalog::{ArchivedPartition, CatalogOp, FileMeta, ObjectPlace};
use crate::error::{Error, Result};
use crate::model::{Month, TableDef};

use super::Storage;
use super::deletes::keep_listed;

const PARTITION_MANIFEST_VERSION: u32 = 1;

/// `<table>/month=YYYY-MM/_partition.json` in the archive.
#[derive(Debug, Serialize, Deserialize)]
struct PartitionManifest {
    format_version: u32,
    table: TableDef,
    partition: ArchivedPartition,
}

/// What `restore_partition` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RestoreReport {
    pub files: usize,
    pub rows: u64,
    pub bytes: u64,
    /// Retention leaves the month alone until then (ms since the epoch).
    pub until_ms: i64,
    /// The month was already restored; only its hold was changed.
    pub already_restored: bool,
}

/// Copy `path` from `from` to the same path in `to`, streaming (a month's file can be
/// large). An object already there with the same size is taken as copied before.
async fn copy_object(
    from: &Arc<dyn ObjectStore>,
    to: &Arc<dyn ObjectStore>,
    path: &str,
    size: u64,
) -> Result<()> {
    let location = ObjectPath::from(path);
    if let Ok(meta) = to.head(&location).await
        && meta.size == size
    {
        return Ok(());
    }
    let mut stream = from
        .get(&location)
        .await
        .map_err(Error::object_store(path))?
        .into_stream();
    let mut sink = BufWriter::new(to.clone(), location);
    let copied = async {
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(Error::object_store(path))?;
            sink.write_all(&chunk).await.map_err(|e| Error::Io {
                path: path.into(),
                source: e,
            })?;
        }
        Ok(())
    }
    .await;
    if copied.is_err() {
        let _ = sink.abort().await;
        return copied;
    }
    // Not aborted when it fails: object_store's BufWriter panics on an abort after its
    // shutdown began (see `merge_files`); nothing appears at the path either way.
    sink.shutdown().await.map_err(|e| Error::Io {
        path: path.into(),
        source: e,
    })
}

/// Copy the full-text indexes of `f` along with it; an index that cannot be copied is
/// left behind (logged): the file is read without it, and it is built again.
async fn copy_indexes(
    from: &Arc<dyn ObjectStore>,
    to: &Arc<dyn ObjectStore>,
    f: &FileMeta,
) -> Vec<crate::catalog::TextIndexObject> {
    let mut copied = Vec::with_capacity(f.fulltext.len());
    for ix in &f.fulltext {
        match copy_object(from, to, &ix.path, ix.bytes).await {
            Ok(()) => copied.push(ix.clone()),
            Err(e) => tracing::warn!(file = %f.path, index = %ix.path, error = %e,
                "full-text index not copied; the file goes without it"),
        }
    }
    copied
}

impl Storage {
    /// Every archived month partition, with the table's current definition (for its
    /// name and restore state); partitions of dropped tables are not listed.
    pub fn archived_partitions(&self) -> Vec<(TableDef, ArchivedPartition)> {
        let tables = self.inner.catalog.tables();
        self.inner
            .catalog
            .archived()
            .into_iter()
            .filter_map(|a| {
                let def = tables.iter().find(|t| t.id == a.table_id)?;
                Some((def.clone(), a))
            })
            .collect()
    }

    /// Copy `files` (all of `def`'s `month`) to the archive and write the month's
    /// manifest there. The caller records the returned entry in the catalog.
    pub(super) async fn copy_to_archive(
        &self,
        def: &TableDef,
        month: Month,
        mut files: Vec<FileMeta>,
    ) -> Result<ArchivedPartition> {
        let archive = self.inner.archive.as_ref().ok_or(Error::NoArchive)?;
        for f in &mut files {
            copy_object(&self.inner.store, archive, &f.path, f.bytes).await?;
            f.fulltext = copy_indexes(&self.inner.store, archive, f).await;
        }
        let partition = ArchivedPartition {
            table_id: def.id,
            table: def.name.clone(),
            month,
            files,
            archived_at_ms: chrono::Utc::now().timestamp_millis(),
        };
        let manifest = PartitionManifest {
            format_version: PARTITION_MANIFEST_VERSION,
            table: def.clone(),
            partition: partition.clone(),
        };
        let path = partition.manifest_path();
        let json = serde_json::to_vec_pretty(&manifest).map_err(|e| Error::Manifest {
            path: path.clone(),
            reason: e.to_string(),
        })?;
        archive
            .put(&ObjectPath::from(path.as_str()), PutPayload::from(json))
            .await
            .map_err(Error::object_store(&path))?;
        Ok(partition)
    }

    /// Bring `month` of `table` back from the archive: its files are copied into the
    /// store and listed again, the month accepts writes again, and retention leaves it
    /// alone until `until_ms`. Restoring a month that is already restored only moves
    /// its hold to `until_ms`.
    pub async fn restore_partition(
        &self,
        table: &str,
        month: Month,
        until_ms: i64,
    ) -> Result<RestoreReport> {
        let _persist = self.inner.persist_lock.lock().await;
        let archive = self.inner.archive.clone().ok_or(Error::NoArchive)?;
        let def = self.table(table).ok_or_else(|| Error::TableNotFound {
            table: table.into(),
        })?;
        let Some(entry) = self.inner.catalog.archived_partition(def.id, month) else {
            let hint = if def.is_month_expired(month) {
                " (it expired without an archive copy)".to_string()
            } else {
                " (it has not expired; its rows are in the table)".to_string()
            };
            return Err(Error::NotArchived {
                table: def.name.clone(),
                month,
                hint,
            });
        };
        let already_restored = def.restored.contains_key(&month);
        let mut files = entry.files.clone();
        if !already_restored {
            for f in &mut files {
                copy_object(&archive, &self.inner.store, &f.path, f.bytes).await?;
                f.fulltext = copy_indexes(&archive, &self.inner.store, f).await;
            }
        }
        let catalog = self.inner.catalog.clone();
        let name = def.name.clone();
        tokio::task::spawn_blocking(move || {
            catalog.commit_checked(|state| {
                let cur = state
                    .tables
                    .get(&name)
                    .ok_or_else(|| Error::TableNotFound {
                        table: name.clone(),
                    })?;
                let mut def = (**cur).clone();
                let mut ops = Vec::new();
                if !def.restored.contains_key(&month) {
                    let listed = state.files.get(&def.id);
                    for f in files {
                        // The expired copy may still wait for its delete (S3 was away):
                        // it is the restored file now, so it must stay.
                        ops.extend(
                            f.objects().filter_map(|p| {
                                keep_listed(state, ObjectPlace::Store, p.to_string())
                            }),
                        );
                        if !listed.is_some_and(|l| l.iter().any(|x| x.path == f.path)) {
                            ops.push(CatalogOp::AddFile(f));
                        }
                    }
                }
                def.restored.insert(month, until_ms);
                ops.push(CatalogOp::PutTable(def));
                Ok(ops)
            })
        })
        .await??;
        drop(_persist);
        // The restored rows may hold series' newest rows: built again on next use.
        self.inner.last_values.forget(def.id);
        self.write_manifest().await;
        let report = RestoreReport {
            files: entry.files.len(),
            rows: entry.rows(),
            bytes: entry.bytes(),
            until_ms,
            already_restored,
        };
        tracing::info!(
            table = %def.name,
            %month,
            files = report.files,
            rows = report.rows,
            until_ms,
            already_restored,
            "restored month from the archive"
        );
        Ok(report)
    }
}
