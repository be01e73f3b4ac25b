//! Read views of the engine: consistent table snapshots for queries and the listings
//! behind the `system` views.

use std::collections::BTreeMap;
use std::collections::HashMap;

use arrow::record_batch::RecordBatch;

use crate::catalog::FileMeta;
use crate::error::{Error, Result};
use crate::model::{Month, TableDef};

use super::Storage;

/// What a query needs to read a table consistently: its definition, its files and its
/// buffered rows, taken under one lock so every row is in exactly one of them (or both,
/// briefly, during a persist; dedup resolves that).
#[derive(Debug, Clone)]
pub struct TableSnapshot {
    pub def: TableDef,
    pub files: Vec<FileMeta>,
    pub buffered: Vec<BufferedPartition>,
    /// The table's `DELETE`s; buffered rows have them applied already, files may not
    /// (see [`crate::model::Tombstone::applies_to`]).
    pub tombstones: Vec<std::sync::Arc<crate::model::Tombstone>>,
}

#[derive(Debug, Clone)]
pub struct BufferedPartition {
    pub month: Month,
    /// Oldest first; possibly in older layouts of the table (fewer fields).
    pub batches: Vec<RecordBatch>,
    pub min_ts: i64,
    pub max_ts: i64,
    pub rows: usize,
    pub bytes: usize,
}

/// One row of the partitions system view.
#[derive(Debug, Clone)]
pub struct PartitionInfo {
    pub table: String,
    pub month: Month,
    pub files: usize,
    pub file_rows: u64,
    pub file_bytes: u64,
    /// Bytes of the files' full-text indexes.
    pub index_bytes: u64,
    pub buffered_rows: usize,
    pub buffered_bytes: usize,
}

/// How far the indexes of one full-text column are built (`system.fulltext`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FullTextColumnInfo {
    pub table: String,
    pub column: String,
    pub analyzer: crate::fulltext::Analyzer,
    /// Files of the table, and those with an index of the column built with `analyzer`.
    pub files: usize,
    pub files_indexed: usize,
    pub index_bytes: u64,
}

impl Storage {
    /// Every full-text column, with its indexes' progress.
    pub fn fulltext_columns(&self) -> Vec<FullTextColumnInfo> {
        let mut out = Vec::new();
        for t in self.inner.catalog.tables() {
            if t.fulltext.is_empty() {
                continue;
            }
            let files = self.inner.catalog.files(t.id);
            for (column, analyzer) in &t.fulltext {
                let built: Vec<u64> = files
                    .iter()
                    .filter_map(|f| f.text_index(column, *analyzer).map(|i| i.bytes))
                    .collect();
                out.push(FullTextColumnInfo {
                    table: t.name.clone(),
                    column: column.clone(),
                    analyzer: *analyzer,
                    files: files.len(),
                    files_indexed: built.len(),
                    index_bytes: built.iter().sum(),
                });
            }
        }
        out
    }

    pub fn files(&self) -> Vec<(String, FileMeta)> {
        let tables = self.inner.catalog.tables();
        let mut out: Vec<(String, FileMeta)> = self
            .inner
            .catalog
            .all_files()
            .into_iter()
            .filter_map(|f| {
                let name = tables.iter().find(|t| t.id == f.table_id)?.name.clone();
                Some((name, f))
            })
            .collect();
        out.sort_by(|a, b| (&a.0, a.1.month, &a.1.path).cmp(&(&b.0, b.1.month, &b.1.path)));
        out
    }

    pub fn partitions(&self) -> Vec<PartitionInfo> {
        let tables: HashMap<_, _> = self
            .inner
            .catalog
            .tables()
            .into_iter()
            .map(|t| (t.id, t.name))
            .collect();
        let state = self.inner.buffer.lock();
        let mut map: BTreeMap<(String, Month), PartitionInfo> = Default::default();
        fn entry<'m>(
            map: &'m mut BTreeMap<(String, Month), PartitionInfo>,
            table: &str,
            month: Month,
        ) -> &'m mut PartitionInfo {
            map.entry((table.to_string(), month))
                .or_insert_with(|| PartitionInfo {
                    table: table.to_string(),
                    month,
                    files: 0,
                    file_rows: 0,
                    file_bytes: 0,
                    index_bytes: 0,
                    buffered_rows: 0,
                    buffered_bytes: 0,
                })
        }
        for f in self.inner.catalog.all_files() {
            if let Some(name) = tables.get(&f.table_id) {
                let p = entry(&mut map, name, f.month);
                p.files += 1;
                p.file_rows += f.rows;
                p.file_bytes += f.bytes;
                p.index_bytes += f.fulltext.iter().map(|i| i.bytes).sum::<u64>();
            }
        }
        for ((tid, month), part) in state.partitions.iter().filter(|(_, p)| !p.is_empty()) {
            if let Some(name) = tables.get(tid) {
                let p = entry(&mut map, name, *month);
                p.buffered_rows += part.rows();
                p.buffered_bytes += part.bytes();
            }
        }
        map.into_values().collect()
    }

    /// A consistent read view of one table.
    pub fn snapshot(&self, table: &str) -> Result<TableSnapshot> {
        let state = self.inner.buffer.lock();
        let def = self
            .inner
            .catalog
            .table(table)
            .ok_or_else(|| Error::TableNotFound {
                table: table.into(),
            })?;
        let files = self.inner.catalog.files(def.id);
        let buffered = state
            .partitions
            .iter()
            .filter(|((t, _), p)| *t == def.id && !p.is_empty())
            .filter_map(|((_, month), p)| {
                let (min_ts, max_ts) = p.ts_range()?;
                Some(BufferedPartition {
                    month: *month,
                    batches: p.chunks().map(|c| c.batch.clone()).collect(),
                    min_ts,
                    max_ts,
                    rows: p.rows(),
                    bytes: p.bytes(),
                })
            })
            .collect();
        let tombstones = state.tombstones.get(&def.id).cloned().unwrap_or_default();
        Ok(TableSnapshot {
            def,
            files,
            buffered,
            tombstones,
        })
    }
}
