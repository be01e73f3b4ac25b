//! The full-text indexes of one Parquet file: one packed tantivy index per full-text
//! column, stored next to the file (`<file-id>.<column position>.<index-id>.fts`) and listed in the
//! file's catalog entry ([`TextIndexObject`]). [`FileIndexer`] builds them as the file's
//! rows go by, in the file's row order, so an index's row numbers are the file's.
//!
//! An index is an accelerator: a file without one (not built yet, built with another
//! analyzer, lost, damaged) is read whole, never answered wrongly.

use std::path::Path;
use std::sync::Arc;

use arrow::array::{Array, AsArray};
use arrow::datatypes::DataType;
use arrow::record_batch::RecordBatch;
use bytes::Bytes;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use serde::{Deserialize, Serialize};

use super::Analyzer;
use super::index::{IndexBuilder, IndexError, pack};
use crate::error::{Error, Result};
use crate::model::TableDef;

/// A full-text index of one column of a file, as the catalog lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TextIndexObject {
    pub column: String,
    pub analyzer: Analyzer,
    /// Object-store path, beside the file.
    pub path: String,
    pub bytes: u64,
}

/// Where a new index of column `position` (in the table schema) of `file_path` is
/// stored: `<table>/month=YYYY-MM/<file-id>.<position>.<index-id>.fts`. Positions, not
/// names, because column names may hold characters an object path should not; a fresh
/// id per build, so an index built again never overwrites one a reader may be using.
pub fn index_path(file_path: &str, position: usize) -> String {
    let stem = file_path.strip_suffix(".parquet").unwrap_or(file_path);
    let id = uuid::Uuid::now_v7().simple().to_string();
    format!("{stem}.{position}.{id}.fts")
}

struct ColumnIndexer {
    column: String,
    /// Where the index goes.
    path: String,
    analyzer: Analyzer,
    builder: IndexBuilder,
    dir: tempfile::TempDir,
}

/// The indexes of one file being built, for the columns `def` declares full-text.
pub struct FileIndexer {
    file_path: String,
    columns: Vec<ColumnIndexer>,
    next_row: u64,
}

/// Built indexes, packed, ready to upload.
pub struct PackedIndexes(Vec<(TextIndexObject, Vec<u8>)>);

impl FileIndexer {
    /// An indexer for the file `file_path` of `def` (scratch folders under `scratch`),
    /// or `None` when the table has no full-text column.
    pub fn new(def: &TableDef, file_path: &str, scratch: &Path) -> Result<Option<FileIndexer>> {
        Self::for_columns(def, file_path, scratch, |_| true)
    }

    /// [`FileIndexer::new`] for those of the full-text columns `wanted` accepts.
    pub fn for_columns(
        def: &TableDef,
        file_path: &str,
        scratch: &Path,
        wanted: impl Fn(&str) -> bool,
    ) -> Result<Option<FileIndexer>> {
        if !def.fulltext.keys().any(|c| wanted(c)) {
            return Ok(None);
        }
        let schema = def.arrow_schema();
        std::fs::create_dir_all(scratch).map_err(|source| Error::Io {
            path: scratch.to_path_buf(),
            source,
        })?;
        let mut columns = Vec::new();
        for (column, analyzer) in def.fulltext.iter().filter(|(c, _)| wanted(c)) {
            let Some((position, _)) = schema.column_with_name(column) else {
                continue;
            };
            let dir = tempfile::Builder::new()
                .prefix("build-")
                .tempdir_in(scratch)
                .map_err(|source| Error::Io {
                    path: scratch.to_path_buf(),
                    source,
                })?;
            let builder = IndexBuilder::create(dir.path(), *analyzer)?;
            columns.push(ColumnIndexer {
                column: column.clone(),
                path: index_path(file_path, position),
                analyzer: *analyzer,
                builder,
                dir,
            });
        }
        Ok(Some(FileIndexer {
            file_path: file_path.to_string(),
            columns,
            next_row: 0,
        }))
    }

    /// The objects [`FileIndexer::finish`] will name (for recording them before they
    /// exist).
    pub fn planned_paths(&self) -> Vec<String> {
        self.columns.iter().map(|c| c.path.clone()).collect()
    }

    /// Index the next rows of the file (`batch` in the table's layout, or any layout
    /// holding the indexed columns by name).
    pub fn add_batch(&mut self, batch: &RecordBatch) -> Result<()> {
        for c in &mut self.columns {
            let Some(array) = batch.column_by_name(&c.column) else {
                continue;
            };
            let (file, row0) = (&self.file_path, self.next_row);
            let mut add = |i: usize, v: &str| c.builder.add(row0 + i as u64, v);
            match array.data_type() {
                DataType::Utf8 => {
                    let a = array.as_string::<i32>();
                    for i in 0..a.len() {
                        if a.is_valid(i) {
                            add(i, a.value(i))?;
                        }
                    }
                }
                DataType::LargeUtf8 => {
                    let a = array.as_string::<i64>();
                    for i in 0..a.len() {
                        if a.is_valid(i) {
                            add(i, a.value(i))?;
                        }
                    }
                }
                DataType::Utf8View => {
                    let a = array.as_string_view();
                    for i in 0..a.len() {
                        if a.is_valid(i) {
                            add(i, a.value(i))?;
                        }
                    }
                }
                other => {
                    return Err(IndexError::Damaged {
                        path: file.clone(),
                        reason: format!("column {} is {other}, not text", c.column),
                    }
                    .into());
                }
            }
        }
        self.next_row += batch.num_rows() as u64;
        Ok(())
    }

    /// Finish every index and pack it (blocking: tantivy commits and merges).
    pub fn finish(self) -> Result<PackedIndexes> {
        let mut out = Vec::with_capacity(self.columns.len());
        for c in self.columns {
            fail::fail_point!("text-index-build", |arg| Err(Error::Io {
                path: c.dir.path().to_path_buf(),
                source: crate::failpoints::io_error(arg),
            }));
            c.builder.finish()?;
            let packed = pack(c.dir.path())?;
            out.push((
                TextIndexObject {
                    path: c.path,
                    column: c.column,
                    analyzer: c.analyzer,
                    bytes: packed.len() as u64,
                },
                packed,
            ));
        }
        Ok(PackedIndexes(out))
    }
}

/// A [`FileIndexer`] fed from async code: batches go over a channel to a blocking
/// task (tantivy's indexing may block, and must not hold up the async workers).
pub struct IndexerTask {
    tx: Option<tokio::sync::mpsc::Sender<RecordBatch>>,
    handle: tokio::task::JoinHandle<Result<PackedIndexes>>,
}

impl IndexerTask {
    pub fn spawn(mut indexer: FileIndexer) -> IndexerTask {
        let (tx, mut rx) = tokio::sync::mpsc::channel::<RecordBatch>(4);
        let handle = tokio::task::spawn_blocking(move || {
            while let Some(batch) = rx.blocking_recv() {
                indexer.add_batch(&batch)?;
            }
            indexer.finish()
        });
        IndexerTask {
            tx: Some(tx),
            handle,
        }
    }

    /// Index the next rows of the file. When the indexer has failed this does nothing;
    /// [`IndexerTask::finish`] reports why.
    pub async fn add(&mut self, batch: &RecordBatch) {
        if let Some(tx) = &self.tx
            && tx.send(batch.clone()).await.is_err()
        {
            self.tx = None;
        }
    }

    pub async fn finish(mut self) -> Result<PackedIndexes> {
        self.tx = None;
        self.handle.await?
    }
}

impl PackedIndexes {
    /// Put every index in `store`; returns what the file's catalog entry lists.
    pub async fn upload(self, store: &Arc<dyn ObjectStore>) -> Result<Vec<TextIndexObject>> {
        let mut listed = Vec::with_capacity(self.0.len());
        for (meta, packed) in self.0 {
            store
                .put(
                    &ObjectPath::from(meta.path.as_str()),
                    PutPayload::from(Bytes::from(packed)),
                )
                .await
                .map_err(Error::object_store(&meta.path))?;
            listed.push(meta);
        }
        Ok(listed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn index_objects_sit_beside_their_file() {
        let a = index_path("log/month=2026-11/0192ab.parquet", 3);
        assert!(a.starts_with("log/month=2026-11/0192ab.3."), "{a}");
        assert!(a.ends_with(".fts"), "{a}");
        assert_ne!(a, index_path("log/month=2026-11/0192ab.parquet", 3));
    }
}
