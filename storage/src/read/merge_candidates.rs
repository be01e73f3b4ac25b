//! Narrowing a merge of overlapping files to the keys a full-text filter matches.
//!
//! Inside a merge, a file cannot simply be read at its index hits: a key's older
//! version could match where its newest does not, and the merge would return the old
//! one. The keys that can match are the *candidates*, the keys of the hit rows of the
//! group's files (a key whose newest version matches is a hit in the file holding that
//! version). For each candidate, every version in the files is located, and the key is
//! kept when its newest version (the file written last) is a hit and no buffered row
//! overwrites it. Each file is then read at the rows of the kept keys only: every
//! version of a kept key is read, so the merge returns its newest, a hit — and since
//! the indexes are exact, the files' part of the merge needs no `matches()` check. The
//! buffered rows of the group (their keys' file versions dropped here) are then read
//! and checked apart, and a key that is no candidate matches in no file: dropping it
//! loses nothing.
//!
//! Locating the candidates takes two reads of the key columns (tags, ts) only: at the
//! hit rows of each file, and then, in each file, the pages whose statistics (the
//! Parquet page index) admit a candidate's value in every key column — files are
//! sorted by (tags, ts), so a few candidates' series are a few pages. That is cheap
//! next to the text column the merge no longer reads whole. A group whose files are
//! not all indexed, or whose hits are a large share of its rows, is merged whole.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::ops::{Bound, Range};
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
use parquet::arrow::arrow_reader::{ArrowReaderOptions, RowSelection, RowSelector};
use parquet::file::metadata::ParquetMetaData;
use parquet::file::page_index::column_index::ColumnIndexMetaData;

use parquet::file::metadata::PageIndexPolicy;

use super::selected_pages::WithPageIndex;
use super::text_hits::row_selection;
use crate::catalog::FileMeta;
use crate::engine::BufferedPartition;

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
    #[error("reading the keys of buffered rows: {0}")]
    Buffer(String),
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

/// Of each of `files` (one overlap group, files with `hits` ascending each, and the
/// group's `buffered` partitions), the rows of the keys whose newest version in the
/// files is a hit and that no buffered row overwrites; `None` when the group is better
/// merged whole. A merge of the files at these rows returns exactly the group's
/// matching rows outside the buffer: each key it reads is returned at a hit.
pub async fn narrow_group(
    readers: &dyn ParquetFileReaderFactory,
    keys: &KeyColumns,
    files: &[&FileMeta],
    hits: &[Arc<Vec<u64>>],
    buffered: &[&BufferedPartition],
) -> Result<Option<Vec<Arc<Vec<u64>>>>, NarrowError> {
    let total_hits: u64 = hits.iter().map(|h| h.len() as u64).sum();
    let total_rows: u64 = files.iter().map(|f| f.rows).sum();
    if total_hits == 0 {
        return Ok(Some(hits.to_vec()));
    }
    if total_hits.saturating_mul(MAX_HIT_SHARE) > total_rows || total_hits > MAX_CANDIDATES {
        return Ok(None);
    }
    // Keys written since: their buffered version is the newest.
    let mut overwritten: HashSet<Box<[u8]>> = HashSet::new();
    for b in buffered {
        for batch in &b.batches {
            let columns =
                key_arrays(keys, batch).map_err(|e| NarrowError::Buffer(e.to_string()))?;
            let encoded = keys
                .converter
                .convert_columns(&columns)
                .map_err(|e| NarrowError::Buffer(e.to_string()))?;
            overwritten.extend(encoded.iter().map(|k| Box::from(k.as_ref())));
        }
    }
    // Owned items: these streams run inside `async_trait` futures, where closures over
    // borrowed items trip the compiler's higher-ranked lifetime checks.
    let owned: Vec<(FileMeta, Arc<Vec<u64>>)> = files
        .iter()
        .map(|f| (*f).clone())
        .zip(hits.iter().cloned())
        .collect();
    // The candidates: the keys at the hit rows.
    let hit_keys: Vec<Vec<(u64, Box<[u8]>)>> = futures::stream::iter(owned.clone())
        .map(|(f, h)| async move {
            let mut found = Vec::with_capacity(h.len());
            if !h.is_empty() {
                read_keys(readers, keys, &f, Which::Rows(&h), |row, k| {
                    found.push((row, Box::from(k)))
                })
                .await?;
            }
            Ok::<_, NarrowError>(found)
        })
        .buffered(CONCURRENT_READS)
        .try_collect()
        .await?;
    if let [only] = hit_keys.as_slice() {
        // One file (and buffered rows): each key is in it once, at its hit row.
        let rows = only
            .iter()
            .filter(|(_, k)| !overwritten.contains(k))
            .map(|(row, _)| *row)
            .collect();
        return Ok(Some(vec![Arc::new(rows)]));
    }
    let candidates: HashSet<Box<[u8]>> = hit_keys.into_iter().flatten().map(|(_, k)| k).collect();
    // Where each file holds one: only pages whose statistics admit a candidate's value
    // in every key column are read.
    let values = keys.candidate_values(&candidates);
    let (candidates, values) = (&candidates, &values);
    let found: Vec<Vec<(u64, Box<[u8]>)>> = futures::stream::iter(owned.clone())
        .map(|(f, _)| async move {
            let mut found = Vec::new();
            read_keys(readers, keys, &f, Which::Pages(values), |row, k| {
                if candidates.contains(k) {
                    found.push((row, Box::from(k)));
                }
            })
            .await?;
            Ok::<_, NarrowError>(found)
        })
        .buffered(CONCURRENT_READS)
        .try_collect()
        .await?;
    // Each candidate's newest version in the files (the file written last), and
    // whether it is a hit.
    let mut newest: HashMap<&[u8], (crate::wal::WalSeq, bool)> = HashMap::new();
    for ((f, h), found) in owned.iter().zip(&found) {
        for (row, k) in found {
            let hit = h.binary_search(row).is_ok();
            let e = newest.entry(k.as_ref()).or_insert((f.max_seq, hit));
            if f.max_seq > e.0 {
                *e = (f.max_seq, hit);
            }
        }
    }
    Ok(Some(
        found
            .iter()
            .map(|found| {
                Arc::new(
                    found
                        .iter()
                        .filter(|(_, k)| {
                            newest.get(k.as_ref()).is_some_and(|(_, hit)| *hit)
                                && !overwritten.contains(k)
                        })
                        .map(|(row, _)| *row)
                        .collect(),
                )
            })
            .collect(),
    ))
}

/// Which rows of a file [`read_keys`] reads.
enum Which<'a> {
    /// These (ascending).
    Rows(&'a [u64]),
    /// Those of pages that may hold these values of the key columns (all pages when the
    /// file has no page index).
    Pages(&'a [Option<ColumnValues>]),
}

/// The values of one key column among the candidates, for comparing with page
/// statistics.
enum ColumnValues {
    Bytes(BTreeSet<Vec<u8>>),
    Int(BTreeSet<i64>),
}

impl ColumnValues {
    fn of(array: &ArrayRef) -> Option<ColumnValues> {
        use arrow::array::AsArray;
        use arrow::datatypes::DataType;
        match array.data_type() {
            DataType::Utf8 => Some(ColumnValues::Bytes(
                array
                    .as_string::<i32>()
                    .iter()
                    .flatten()
                    .map(|v| v.as_bytes().to_vec())
                    .collect(),
            )),
            DataType::Int64 | DataType::Timestamp(_, _) => {
                let ints = arrow::compute::cast(array, &DataType::Int64).ok()?;
                Some(ColumnValues::Int(
                    ints.as_primitive::<arrow::datatypes::Int64Type>()
                        .iter()
                        .flatten()
                        .collect(),
                ))
            }
            _ => None,
        }
    }

    /// Whether page `page` of a column with `index` may hold one of these values.
    fn may_be_in(&self, index: &ColumnIndexMetaData, page: usize) -> bool {
        match (self, index) {
            (ColumnValues::Bytes(set), ColumnIndexMetaData::BYTE_ARRAY(ix)) => {
                match (ix.min_value(page), ix.max_value(page)) {
                    (Some(min), Some(max)) if min <= max => set
                        .range::<[u8], _>((Bound::Included(min), Bound::Included(max)))
                        .next()
                        .is_some(),
                    _ => true,
                }
            }
            (ColumnValues::Int(set), ColumnIndexMetaData::INT64(ix)) => {
                match (ix.min_value(page), ix.max_value(page)) {
                    (Some(min), Some(max)) if min <= max => set.range(*min..=*max).next().is_some(),
                    _ => true,
                }
            }
            _ => true,
        }
    }
}

impl KeyColumns {
    /// Each key column's values among `candidates` (encoded keys).
    fn candidate_values(&self, candidates: &HashSet<Box<[u8]>>) -> Vec<Option<ColumnValues>> {
        let parser = self.converter.parser();
        let rows = candidates.iter().map(|k| parser.parse(k));
        match self.converter.convert_rows(rows) {
            Ok(arrays) => arrays.iter().map(ColumnValues::of).collect(),
            Err(_) => Vec::new(),
        }
    }
}

/// Of `meta`'s rows, those in pages of every key column (leaf column `leaves[i]` with
/// `values[i]`) that may hold a candidate value; `None` without a page index.
fn candidate_pages(
    meta: &ParquetMetaData,
    leaves: &[usize],
    values: &[Option<ColumnValues>],
) -> Option<RowSelection> {
    let column_index = meta.column_index()?;
    let offset_index = meta.offset_index()?;
    let mut selectors = Vec::new();
    for (g, group) in meta.row_groups().iter().enumerate() {
        let rows = group.num_rows().max(0) as u64;
        let mut keep: Vec<Range<u64>> = std::iter::once(0..rows).collect();
        for (leaf, values) in leaves.iter().zip(values) {
            let Some(values) = values else { continue };
            let (Some(ci), Some(oi)) = (
                column_index.get(g).and_then(|c| c.get(*leaf)),
                offset_index.get(g).and_then(|o| o.get(*leaf)),
            ) else {
                continue;
            };
            let pages = oi.page_locations();
            let mut column_keep: Vec<Range<u64>> = Vec::new();
            for (p, page) in pages.iter().enumerate() {
                if !values.may_be_in(ci, p) {
                    continue;
                }
                let start = page.first_row_index.max(0) as u64;
                let end = pages
                    .get(p + 1)
                    .map_or(rows, |n| n.first_row_index.max(0) as u64);
                match column_keep.last_mut() {
                    Some(last) if last.end == start => last.end = end,
                    _ => column_keep.push(start..end),
                }
            }
            keep = intersect_ranges(&keep, &column_keep);
        }
        let mut at = 0;
        for r in keep {
            if r.start > at {
                selectors.push(RowSelector::skip((r.start - at) as usize));
            }
            selectors.push(RowSelector::select((r.end - r.start) as usize));
            at = r.end;
        }
        if rows > at {
            selectors.push(RowSelector::skip((rows - at) as usize));
        }
    }
    Some(selectors.into())
}

/// The rows in both lists of ascending, disjoint ranges.
fn intersect_ranges(a: &[Range<u64>], b: &[Range<u64>]) -> Vec<Range<u64>> {
    let (mut i, mut j, mut out) = (0, 0, Vec::new());
    while i < a.len() && j < b.len() {
        let start = a[i].start.max(b[j].start);
        let end = a[i].end.min(b[j].end);
        if start < end {
            out.push(start..end);
        }
        if a[i].end < b[j].end {
            i += 1;
        } else {
            j += 1;
        }
    }
    out
}

/// The row numbers a selection picks, in order.
fn selected_rows(selection: &RowSelection) -> impl Iterator<Item = u64> + Send + use<> {
    let mut ranges = Vec::new();
    let mut at = 0u64;
    for s in selection.iter() {
        if !s.skip {
            ranges.push(at..at + s.row_count as u64);
        }
        at += s.row_count as u64;
    }
    ranges.into_iter().flatten()
}

/// Calls `each` with the row number and encoded key of the rows of `file` that `which`
/// says, in row order.
async fn read_keys(
    readers: &dyn ParquetFileReaderFactory,
    keys: &KeyColumns,
    file: &FileMeta,
    which: Which<'_>,
    mut each: impl FnMut(u64, &[u8]),
) -> Result<(), NarrowError> {
    let failed = |e: Box<dyn std::error::Error + Send + Sync>| NarrowError::Read {
        file: file.path.clone(),
        source: e,
    };
    let mut partitioned = PartitionedFile::new(file.path.clone(), file.bytes);
    let listed = match which {
        Which::Rows(r) => Some(row_selection(r, file.rows)),
        Which::Pages(_) => None,
    };
    if let Some(s) = &listed {
        partitioned = partitioned.with_extension(ParquetRowSelection::new(s.clone()));
    }
    let reader = readers
        .create_reader(0, partitioned, None, &ExecutionPlanMetricsSet::new())
        .map_err(|e| failed(e.into()))?;
    // The page index: to fetch only the selected pages, or to choose them.
    let options = ArrowReaderOptions::new().with_page_index_policy(PageIndexPolicy::Optional);
    let builder = ParquetRecordBatchStreamBuilder::new_with_options(WithPageIndex(reader), options)
        .await
        .map_err(|e| failed(e.into()))?;
    let file_schema = builder.schema().clone();
    let mut roots = Vec::with_capacity(keys.schema.fields().len());
    let mut leaves = Vec::with_capacity(keys.schema.fields().len());
    for field in keys.schema.fields() {
        let Some((i, _)) = file_schema.column_with_name(field.name()) else {
            return Err(NarrowError::MissingKey {
                file: file.path.clone(),
                column: field.name().clone(),
            });
        };
        roots.push(i);
        let descr = builder.parquet_schema();
        leaves.push(
            (0..descr.num_columns())
                .find(|l| descr.column(*l).path().parts() == [field.name().as_str()])
                .unwrap_or(usize::MAX),
        );
    }
    let selection = match which {
        Which::Rows(_) => listed,
        Which::Pages(values) => candidate_pages(builder.metadata(), &leaves, values),
    };
    let mask = ProjectionMask::roots(builder.parquet_schema(), roots);
    let mut builder = builder.with_projection(mask);
    let mut numbers: Box<dyn Iterator<Item = u64> + Send> = match &selection {
        Some(s) => Box::new(selected_rows(s)),
        None => Box::new(0..file.rows),
    };
    if let Some(s) = selection {
        builder = builder.with_row_selection(s);
    }
    let mut stream = builder.build().map_err(|e| failed(e.into()))?;
    while let Some(batch) = stream.next().await {
        let batch = batch.map_err(|e| failed(e.into()))?;
        let columns = key_arrays(keys, &batch).map_err(|e| failed(e.into()))?;
        let encoded = keys
            .converter
            .convert_columns(&columns)
            .map_err(|e| failed(e.into()))?;
        for key in encoded.iter() {
            let Some(row) = numbers.next() else {
                return Err(failed("more rows than the file holds".into()));
            };
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_intersect_and_selections_number_their_rows() {
        assert_eq!(
            intersect_ranges(&[0..10, 20..30], &[5..25, 28..40]),
            vec![5..10, 20..25, 28..30]
        );
        assert_eq!(
            intersect_ranges(&[0..10, 12..13], &[]),
            Vec::<Range<u64>>::new()
        );
        let sel: RowSelection = vec![
            RowSelector::skip(2),
            RowSelector::select(3),
            RowSelector::skip(1),
            RowSelector::select(1),
        ]
        .into();
        assert_eq!(selected_rows(&sel).collect::<Vec<_>>(), [2, 3, 4, 6]);
    }
}
