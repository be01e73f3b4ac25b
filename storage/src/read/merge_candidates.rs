//! Narrowing a merge of overlapping files to the keys a full-text filter can match.
//!
//! Inside a merge, a file cannot simply be read at its index hits: a key's older
//! version could match where its newest does not, and the merge would return the old
//! one. What can be read instead is every version of the *candidate keys* — the keys of
//! the hit rows of the group's files:
//!
//! - a key whose newest version (among the files) matches is a hit in the file that
//!   holds that version, so it is a candidate, and all of its versions are read: the
//!   merge picks the newest as before;
//! - a key that is not a candidate matches in no file, so its newest file version does
//!   not match and dropping it loses nothing — unless buffered rows hold a newer
//!   version, and the buffer is read whole.
//!
//! `matches()` is still applied on top of the merge, so candidates whose newest version
//! does not match are filtered out as before. Finding the candidates' rows takes two
//! reads of the key columns (tags, ts) only: at the hit rows of each file, which gives
//! the candidates, and whole, for the rows of each file that hold one. That is cheap
//! next to the text column the merge no longer reads whole. A group whose files are not
//! all indexed, or whose hits are a large share of its rows, is merged whole.

use std::collections::HashSet;
use std::sync::Arc;

use arrow::array::ArrayRef;
use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use arrow::row::{RowConverter, SortField};
use datafusion::datasource::listing::PartitionedFile;
use datafusion::datasource::physical_plan::parquet::{
    ParquetFileReaderFactory, ParquetRowSelection,
};
use datafusion::physical_plan::metrics::ExecutionPlanMetricsSet;
use futures::{StreamExt, TryStreamExt};
use parquet::arrow::ParquetRecordBatchStreamBuilder;
use parquet::arrow::ProjectionMask;
use parquet::arrow::arrow_reader::ArrowReaderOptions;

use parquet::file::metadata::PageIndexPolicy;

use super::selected_pages::BoxedReader;
use super::text_hits::row_selection;
use crate::catalog::FileMeta;

/// A group is narrowed only while its hits are at most this share of its rows (1/n):
/// beyond it, most pages hold a candidate and the extra key reads cost more than they
/// save.
const MAX_HIT_SHARE: u64 = 8;

/// Candidate keys held in memory at most (encoded keys take tens of bytes each).
const MAX_CANDIDATES: u64 = 1_000_000;

/// Files whose key columns are read at a time.
const CONCURRENT_READS: usize = 4;

/// Why a group could not be narrowed (it is then merged whole).
#[derive(Debug, thiserror::Error)]
pub enum NarrowError {
    #[error("reading the key columns of {file}: {source}")]
    Read {
        file: String,
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error("{file} has no key column {column}")]
    MissingKey { file: String, column: String },
}

/// The table's key columns and how to compare them.
pub struct KeyColumns {
    /// Key fields of the table (tags, ts), in the table's order.
    schema: SchemaRef,
    converter: RowConverter,
}

impl KeyColumns {
    /// The first `key_len` columns of `table`.
    pub fn new(table: &SchemaRef, key_len: usize) -> Result<Self, arrow::error::ArrowError> {
        let schema = Arc::new(table.project(&(0..key_len).collect::<Vec<_>>())?);
        let converter = RowConverter::new(
            schema
                .fields()
                .iter()
                .map(|f| SortField::new(f.data_type().clone()))
                .collect(),
        )?;
        Ok(KeyColumns { schema, converter })
    }
}

/// Of each of `files` (one overlap group, files with `hits` ascending each), the rows
/// that hold a version of a key hit in any of them; `None` when the group is better
/// merged whole.
pub async fn narrow_group(
    readers: &dyn ParquetFileReaderFactory,
    keys: &KeyColumns,
    files: &[&FileMeta],
    hits: &[Arc<Vec<u64>>],
) -> Result<Option<Vec<Arc<Vec<u64>>>>, NarrowError> {
    let total_hits: u64 = hits.iter().map(|h| h.len() as u64).sum();
    let total_rows: u64 = files.iter().map(|f| f.rows).sum();
    if total_hits == 0 {
        return Ok(Some(hits.to_vec()));
    }
    if total_hits.saturating_mul(MAX_HIT_SHARE) > total_rows || total_hits > MAX_CANDIDATES {
        return Ok(None);
    }
    if let [_] = files {
        // One file (and buffered rows): each key is in it once, at its hit row.
        return Ok(Some(hits.to_vec()));
    }
    // Owned items: these streams run inside `async_trait` futures, where closures over
    // borrowed items trip the compiler's higher-ranked lifetime checks.
    let owned: Vec<(FileMeta, Arc<Vec<u64>>)> = files
        .iter()
        .map(|f| (*f).clone())
        .zip(hits.iter().cloned())
        .collect();
    // The candidates: the keys at the hit rows.
    let mut candidates: HashSet<Box<[u8]>> = HashSet::new();
    let found = futures::stream::iter(owned.clone().into_iter().filter(|(_, h)| !h.is_empty()))
        .map(|(f, h)| async move {
            let mut keys_hit = Vec::with_capacity(h.len());
            read_keys(readers, keys, &f, Some(&h), |_, k| {
                keys_hit.push(Box::from(k))
            })
            .await?;
            Ok::<_, NarrowError>(keys_hit)
        })
        .buffer_unordered(CONCURRENT_READS);
    futures::pin_mut!(found);
    while let Some(keys_hit) = found.try_next().await? {
        candidates.extend(keys_hit);
    }
    // Where each file holds one.
    let candidates = &candidates;
    futures::stream::iter(owned.into_iter().map(|(f, _)| f))
        .map(|f| async move {
            let mut rows = Vec::new();
            read_keys(readers, keys, &f, None, |row, k| {
                if candidates.contains(k) {
                    rows.push(row);
                }
            })
            .await?;
            Ok::<_, NarrowError>(Arc::new(rows))
        })
        .buffered(CONCURRENT_READS)
        .try_collect::<Vec<_>>()
        .await
        .map(Some)
}

/// Calls `each` with the row number and encoded key of `file`'s rows `rows` (all rows
/// when `None`), in row order.
async fn read_keys(
    readers: &dyn ParquetFileReaderFactory,
    keys: &KeyColumns,
    file: &FileMeta,
    rows: Option<&Arc<Vec<u64>>>,
    mut each: impl FnMut(u64, &[u8]),
) -> Result<(), NarrowError> {
    let failed = |e: Box<dyn std::error::Error + Send + Sync>| NarrowError::Read {
        file: file.path.clone(),
        source: e,
    };
    let mut partitioned = PartitionedFile::new(file.path.clone(), file.bytes);
    let selection = rows.map(|r| row_selection(r, file.rows));
    if let Some(s) = &selection {
        // (The readers then load the page index: only the selected pages are fetched.)
        partitioned = partitioned.with_extension(ParquetRowSelection::new(s.clone()));
    }
    let reader = readers
        .create_reader(0, partitioned, None, &ExecutionPlanMetricsSet::new())
        .map_err(|e| failed(e.into()))?;
    let options = ArrowReaderOptions::new().with_page_index_policy(if selection.is_some() {
        PageIndexPolicy::Optional
    } else {
        PageIndexPolicy::Skip
    });
    let builder = ParquetRecordBatchStreamBuilder::new_with_options(BoxedReader(reader), options)
        .await
        .map_err(|e| failed(e.into()))?;
    let file_schema = builder.schema().clone();
    let mut roots = Vec::with_capacity(keys.schema.fields().len());
    for field in keys.schema.fields() {
        let Some((i, _)) = file_schema.column_with_name(field.name()) else {
            return Err(NarrowError::MissingKey {
                file: file.path.clone(),
                column: field.name().clone(),
            });
        };
        roots.push(i);
    }
    let mask = ProjectionMask::roots(builder.parquet_schema(), roots);
    let mut builder = builder.with_projection(mask);
    if let Some(s) = selection {
        builder = builder.with_row_selection(s);
    }
    let mut stream = builder.build().map_err(|e| failed(e.into()))?;
    let mut selected = rows.map(|r| r.iter().copied());
    let mut at = 0u64;
    while let Some(batch) = stream.next().await {
        let batch = batch.map_err(|e| failed(e.into()))?;
        let columns = key_arrays(keys, &batch).map_err(|e| failed(e.into()))?;
        let encoded = keys
            .converter
            .convert_columns(&columns)
            .map_err(|e| failed(e.into()))?;
        for key in encoded.iter() {
            let row = match &mut selected {
                Some(it) => it.next().unwrap_or(at),
                None => at,
            };
            at += 1;
            each(row, key.as_ref());
        }
    }
    Ok(())
}

/// `batch`'s key columns, in the table's order and types.
fn key_arrays(
    keys: &KeyColumns,
    batch: &RecordBatch,
) -> Result<Vec<ArrayRef>, arrow::error::ArrowError> {
    keys.schema
        .fields()
        .iter()
        .map(|field| {
            let column = batch.column_by_name(field.name()).ok_or_else(|| {
                arrow::error::ArrowError::SchemaError(format!("no column {}", field.name()))
            })?;
            if column.data_type() == field.data_type() {
                Ok(column.clone())
            } else {
                arrow::compute::cast(column, field.data_type())
            }
        })
        .collect()
}
