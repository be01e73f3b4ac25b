//! Building the full-text indexes files lack, in the background: files written before
//! their column was declared full-text (`set_fulltext` on a table with data), files
//! whose index was declared with another analyzer, files whose index could not be built
//! or stored when they were written, and indexes a scan found missing or damaged.
//!
//! One file at a time: its Parquet file is read (only the indexed columns, in its row
//! order, DELETEs not applied — an index numbers the file's rows as they are), the
//! indexes are built and stored beside it, and the file's catalog entry is updated —
//! if the file is still listed (compaction or retention may have replaced it meanwhile;
//! then the new objects are deleted again). Progress shows in `system.fulltext`.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use futures::StreamExt;

use super::Storage;
use super::deletes::pending_deletes;
use crate::catalog::{CatalogOp, FileMeta, ObjectPlace, TextIndexObject};
use crate::error::{Error, Result};
use crate::fulltext::file_indexes::{FileIndexer, IndexerTask};
use crate::metrics::StorageMetrics;
use crate::model::TableDef;
use crate::read::stored_rows::stored_rows;

/// How long a file whose index could not be built waits before the next attempt.
const RETRY_AFTER: Duration = Duration::from_secs(60);
/// An index object still unlisted this long after its build began is deleted (a crash
/// or failure came in between); far longer than any build takes.
const UNLISTED_AFTER: Duration = Duration::from_secs(24 * 3600);

/// What the builder is told by the rest of the engine.
#[derive(Default)]
pub(crate) struct TextIndexState {
    /// Index objects a scan could not use (missing, damaged): built again.
    damaged: Mutex<HashSet<String>>,
    /// Files whose build failed, and when they may be tried again.
    retry_at: Mutex<HashMap<String, Instant>>,
    /// Something to build may have appeared.
    wanted: tokio::sync::Notify,
}

impl TextIndexState {
    pub(crate) fn report_damaged(&self, index_paths: impl IntoIterator<Item = String>) {
        let mut damaged = self.damaged.lock().unwrap_or_else(|p| p.into_inner());
        let before = damaged.len();
        damaged.extend(index_paths);
        if damaged.len() > before {
            self.wanted.notify_one();
        }
    }

    pub(crate) fn wake(&self) {
        self.wanted.notify_one();
    }

    fn is_damaged(&self, index_path: &str) -> bool {
        self.damaged
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains(index_path)
    }

    fn may_try(&self, file: &str) -> bool {
        self.retry_at
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(file)
            .is_none_or(|at| Instant::now() >= *at)
    }
}

/// The full-text columns of `def` that `f` has no usable index of.
fn missing_columns(state: &TextIndexState, def: &TableDef, f: &FileMeta) -> Vec<String> {
    def.fulltext
        .iter()
        .filter(|(column, analyzer)| {
            f.text_index(column, **analyzer)
                .is_none_or(|ix| state.is_damaged(&ix.path))
        })
        .map(|(c, _)| c.clone())
        .collect()
}

pub(super) async fn run(storage: Storage) {
    let inner = storage.inner();
    let mut shutdown = inner.shutdown.subscribe();
    let idle = inner.config.persist_check_interval;
    loop {
        if *shutdown.borrow_and_update() {
            return;
        }
        let wait = match storage.build_next_text_index().await {
            Ok(true) => Duration::ZERO,
            Ok(false) => idle,
            Err(e) => {
                tracing::warn!(error = %e, "building a full-text index failed; will retry");
                idle
            }
        };
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = inner.text_index_state.wanted.notified() => {}
            _ = shutdown.changed() => return,
        }
    }
}

impl Storage {
    /// Build the missing indexes of one file. Returns whether there was one to build.
    pub async fn build_next_text_index(&self) -> Result<bool> {
        let state = &self.inner.text_index_state;
        let next = self
            .inner
            .catalog
            .tables()
            .into_iter()
            .filter(|def| !def.fulltext.is_empty())
            .find_map(|def| {
                self.inner
                    .catalog
                    .files(def.id)
                    .into_iter()
                    .find_map(|f| {
                        let missing = missing_columns(state, &def, &f);
                        (!missing.is_empty() && state.may_try(&f.path)).then_some((f, missing))
                    })
                    .map(|(f, missing)| (def, f, missing))
            });
        let Some((def, file, columns)) = next else {
            return Ok(false);
        };
        match self.index_file(&def, &file, &columns).await {
            Ok(()) => {
                state
                    .retry_at
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .remove(&file.path);
                Ok(true)
            }
            Err(e) => {
                state
                    .retry_at
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .insert(file.path.clone(), Instant::now() + RETRY_AFTER);
                Err(e)
            }
        }
    }

    /// Build the indexes of `columns` of `file`, store them and list them.
    async fn index_file(&self, def: &TableDef, file: &FileMeta, columns: &[String]) -> Result<()> {
        let scratch = self.inner.config.fulltext_scratch_dir();
        let Some(indexer) = FileIndexer::for_columns(def, &file.path, &scratch, |c| {
            columns.iter().any(|x| x == c)
        })?
        else {
            return Ok(());
        };
        // Recorded for deletion before they exist, and taken off that list when they are
        // listed: a crash in between leaves nothing behind for good.
        let planned = indexer.planned_paths();
        let catalog = self.inner.catalog.clone();
        let intent = pending_deletes(
            ObjectPlace::Store,
            planned.iter().map(String::as_str),
            UNLISTED_AFTER,
            "index being built",
        );
        tokio::task::spawn_blocking(move || catalog.commit(intent)).await??;
        let mut task = IndexerTask::spawn(indexer);
        let schema = def.arrow_schema();
        let positions: Vec<usize> = columns
            .iter()
            .filter_map(|c| schema.column_with_name(c).map(|(i, _)| i))
            .collect();
        let mut stream = stored_rows(
            &self.inner.read_session,
            &def.name,
            schema,
            file,
            &positions,
        )?;
        while let Some(batch) = stream.next().await {
            task.add(&batch.map_err(Error::read(&def.name))?).await;
        }
        let built = task.finish().await?.upload(&self.inner.store).await?;
        StorageMetrics::add(&self.inner.metrics.text_indexes_built, built.len() as u64);
        let new_paths: Vec<String> = built.iter().map(|i| i.path.clone()).collect();
        let catalog = self.inner.catalog.clone();
        let (table_id, path) = (def.id, file.path.clone());
        let listed = tokio::task::spawn_blocking(move || {
            catalog.commit_checked(|state| Ok(update_ops(state, table_id, &path, built)))
        })
        .await??;
        let state = &self.inner.text_index_state;
        {
            let mut damaged = state.damaged.lock().unwrap_or_else(|p| p.into_inner());
            for p in &new_paths {
                damaged.remove(p);
            }
        }
        for p in &new_paths {
            self.inner.text_indexes.forget(p);
        }
        if listed
            .iter()
            .any(|op| matches!(op, CatalogOp::UpdateFile(_)))
        {
            self.write_manifest().await;
            tracing::info!(file = %file.path, columns = ?columns, "full-text index built");
        }
        self.sweep_deletes().await;
        Ok(())
    }
}

/// The catalog change listing `built` for the file `path`: its entry with the new
/// indexes in place of any older ones of the same columns (those are deleted), or —
/// when the file is gone or a column's declaration changed meanwhile — deletes of
/// what is no longer wanted.
fn update_ops(
    state: &crate::catalog::CatalogState,
    table_id: crate::model::TableId,
    path: &str,
    built: Vec<TextIndexObject>,
) -> Vec<CatalogOp> {
    let def = state.tables.values().find(|t| t.id == table_id);
    let current = state
        .files
        .get(&table_id)
        .and_then(|files| files.iter().find(|f| f.path == path));
    let (Some(def), Some(current)) = (def, current) else {
        return pending_deletes(
            ObjectPlace::Store,
            built.iter().map(|i| i.path.as_str()),
            Duration::ZERO,
            "superseded index",
        );
    };
    let mut updated = current.clone();
    let mut unwanted: Vec<String> = Vec::new();
    for ix in built {
        if def.fulltext.get(&ix.column) != Some(&ix.analyzer) {
            unwanted.push(ix.path);
            continue;
        }
        updated.fulltext.retain(|old| {
            let replaced = old.column == ix.column;
            if replaced && old.path != ix.path {
                unwanted.push(old.path.clone());
            }
            !replaced
        });
        updated.fulltext.push(ix);
    }
    let mut ops = pending_deletes(
        ObjectPlace::Store,
        unwanted.iter().map(String::as_str),
        Duration::ZERO,
        "superseded index",
    );
    if updated != *current {
        // Listed now: off the delete list it was put on when the build began.
        for ix in &updated.fulltext {
            if !current.fulltext.contains(ix) {
                ops.push(CatalogOp::RemovePendingDelete {
                    place: ObjectPlace::Store,
                    path: ix.path.clone(),
                });
            }
        }
        ops.push(CatalogOp::UpdateFile(updated));
    }
    ops
}
