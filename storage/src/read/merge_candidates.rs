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

use std::cmp::Ordering;

use arrow::array::{ArrayRef, make_comparator};
use arrow::compute::{SortColumn, SortOptions, lexsort_to_indices, take};
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

/// A group is narrowed only while its hits are at most this share of its rows (1/n);
/// beyond it, the group is merged whole with the hits as flags (`super::hit_flags`),
/// which costs about a read of its key columns whatever the hits. Narrowing reads about
/// a page (~20k rows) of each key column per candidate and file; measured on 10.1M rows
/// in two overlapping files (BENCHMARKS.md): 55 hits 28 ms, 10k hits 200 ms, 297k hits
/// 860 ms, against ~250–310 ms merged whole with flags — the cross-over is near 1/300.
const MAX_HIT_SHARE: u64 = 256;

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
    #[error("sorting the candidate keys: {0}")]
    Keys(String),
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
                read_keys(readers, keys, &f, Which::Rows(&h), |rows, columns| {
                    let encoded = keys.converter.convert_columns(columns)?;
                    found.extend(
                        rows.iter()
                            .zip(encoded.iter())
                            .map(|(r, k)| (*r, Box::from(k.as_ref()))),
                    );
                    Ok(())
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
    let candidates = SortedKeys::new(keys, hit_keys.into_iter().flatten().map(|(_, k)| k))
        .map_err(|e| NarrowError::Keys(e.to_string()))?;
    // Where each file holds one: only pages whose statistics admit a candidate's value
    // in every key column are read, and their sorted rows searched for the candidates.
    let values = candidates.column_values();
    let (candidates, values) = (&candidates, &values);
    let found: Vec<Vec<(u64, Box<[u8]>)>> = futures::stream::iter(owned.clone())
        .map(|(f, _)| async move {
            let mut found = Vec::new();
            read_keys(readers, keys, &f, Which::Pages(values), |rows, columns| {
                candidates.find_in(rows, columns, &mut found)
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

/// Candidate keys, distinct, in the files' order (tags, then ts), as encoded keys and as
/// key columns (the table's order, see [`KeyColumns`]).
struct SortedKeys {
    encoded: Vec<Box<[u8]>>,
    columns: Vec<ArrayRef>,
    /// Indexes of `columns` in sort order: the tags, then ts (the first column).
    order: Vec<usize>,
}

impl SortedKeys {
    fn new(
        keys: &KeyColumns,
        encoded: impl IntoIterator<Item = Box<[u8]>>,
    ) -> Result<Self, arrow::error::ArrowError> {
        let mut encoded: Vec<Box<[u8]>> = encoded.into_iter().collect();
        encoded.sort_unstable();
        encoded.dedup();
        let parser = keys.converter.parser();
        let columns = keys
            .converter
            .convert_rows(encoded.iter().map(|k| parser.parse(k)))?;
        let order: Vec<usize> = (1..columns.len()).chain([0]).collect();
        let sort: Vec<SortColumn> = order
            .iter()
            .map(|&c| SortColumn {
                values: columns[c].clone(),
                options: None,
            })
            .collect();
        let indices = lexsort_to_indices(&sort, None)?;
        let columns = columns
            .iter()
            .map(|c| take(c.as_ref(), &indices, None))
            .collect::<Result<Vec<_>, _>>()?;
        let mut by_index: Vec<Option<Box<[u8]>>> = encoded.into_iter().map(Some).collect();
        let encoded = indices
            .values()
            .iter()
            .map(|&i| by_index[i as usize].take().unwrap_or_default())
            .collect();
        Ok(SortedKeys {
            encoded,
            columns,
            order,
        })
    }

    /// Each key column's values among the candidates.
    fn column_values(&self) -> Vec<Option<ColumnValues>> {
        self.columns.iter().map(ColumnValues::of).collect()
    }

    /// Adds to `found` the (row number, candidate) of each candidate among `columns`
    /// (key columns of a file's rows `rows`, sorted like the candidates): a binary
    /// search per candidate within the batch's range, no per-row work.
    fn find_in(
        &self,
        rows: &[u64],
        columns: &[ArrayRef],
        found: &mut Vec<(u64, Box<[u8]>)>,
    ) -> Result<(), arrow::error::ArrowError> {
        let n = rows.len();
        if n == 0 || self.encoded.is_empty() {
            return Ok(());
        }
        let comparators = self
            .order
            .iter()
            .map(|&c| {
                make_comparator(
                    columns[c].as_ref(),
                    self.columns[c].as_ref(),
                    SortOptions::default(),
                )
            })
            .collect::<Result<Vec<_>, _>>()?;
        // Row `i` of the batch against candidate `j`.
        let cmp = |i: usize, j: usize| {
            comparators
                .iter()
                .map(|c| c(i, j))
                .find(|o| o.is_ne())
                .unwrap_or(Ordering::Equal)
        };
        let first = partition_point(self.encoded.len(), |j| cmp(0, j).is_gt());
        let end = partition_point(self.encoded.len(), |j| cmp(n - 1, j).is_ge());
        for j in first..end {
            let i = partition_point(n, |i| cmp(i, j).is_lt());
            if i < n && cmp(i, j).is_eq() {
                found.push((rows[i], self.encoded[j].clone()));
            }
        }
        Ok(())
    }
}

/// The first of `0..n` for which `pred` is false (`pred` true on a prefix).
fn partition_point(n: usize, pred: impl Fn(usize) -> bool) -> usize {
    let (mut lo, mut hi) = (0, n);
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        if pred(mid) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    lo
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

/// Calls `each` with the row numbers and key columns (the table's order and types) of
/// the rows of `file` that `which` says, batch by batch in row order.
async fn read_keys(
    readers: &dyn ParquetFileReaderFactory,
    keys: &KeyColumns,
    file: &FileMeta,
    which: Which<'_>,
    mut each: impl FnMut(&[u64], &[ArrayRef]) -> Result<(), arrow::error::ArrowError>,
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
    let mut rows = Vec::new();
    while let Some(batch) = stream.next().await {
        let batch = batch.map_err(|e| failed(e.into()))?;
        let columns = key_arrays(keys, &batch).map_err(|e| failed(e.into()))?;
        rows.clear();
        rows.extend(numbers.by_ref().take(batch.num_rows()));
        if rows.len() < batch.num_rows() {
            return Err(failed("more rows than the file holds".into()));
        }
        each(&rows, &columns).map_err(|e| failed(e.into()))?;
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

    /// Candidates are found in batches of rows sorted the files' way (tags, then ts —
    /// not the table's column order) by binary search; checked against a linear scan.
    #[test]
    fn candidates_are_found_in_sorted_batches_with_two_tags() {
        use arrow::array::{StringArray, TimestampMicrosecondArray};
        use arrow::datatypes::{DataType, Field, Schema, TimeUnit};
        let table = Arc::new(Schema::new(vec![
            Field::new(
                "ts",
                DataType::Timestamp(TimeUnit::Microsecond, None),
                false,
            ),
            Field::new("a", DataType::Utf8, false),
            Field::new("b", DataType::Utf8, false),
            Field::new("v", DataType::Int64, true),
        ]));
        let keys = KeyColumns::new(&table, 3).expect("keys");
        // A file's rows, sorted by (a, b, ts); the same ts values recur in every series.
        let mut rows: Vec<(i64, String, String)> = Vec::new();
        for a in ["m1", "m2", "m3"] {
            for b in ["x", "y"] {
                for t in 0..40i64 {
                    rows.push((1000 - t * 3 + (a.len() as i64), a.into(), b.into()));
                }
            }
        }
        rows.sort_by(|x, y| (&x.1, &x.2, x.0).cmp(&(&y.1, &y.2, y.0)));
        let columns = |rows: &[(i64, String, String)]| -> Vec<ArrayRef> {
            vec![
                Arc::new(TimestampMicrosecondArray::from_iter_values(
                    rows.iter().map(|r| r.0),
                )),
                Arc::new(StringArray::from_iter_values(
                    rows.iter().map(|r| r.1.clone()),
                )),
                Arc::new(StringArray::from_iter_values(
                    rows.iter().map(|r| r.2.clone()),
                )),
            ]
        };
        let encode = |rows: &[(i64, String, String)]| -> Vec<Box<[u8]>> {
            let encoded = keys
                .converter
                .convert_columns(&columns(rows))
                .expect("rows");
            encoded.iter().map(|k| Box::from(k.as_ref())).collect()
        };
        // Candidates: every 7th row, plus keys no row has.
        let mut wanted: Vec<(i64, String, String)> = rows.iter().step_by(7).cloned().collect();
        wanted.push((5, "m2".into(), "x".into()));
        wanted.push((1, "m9".into(), "x".into()));
        let candidates = SortedKeys::new(&keys, encode(&wanted)).expect("sorted");
        let mut found = Vec::new();
        // Three batches, numbered as rows 100.. of a file.
        for (start, end) in [(0, 50), (50, 51), (51, rows.len())] {
            let numbers: Vec<u64> = (start as u64 + 100..end as u64 + 100).collect();
            candidates
                .find_in(&numbers, &columns(&rows[start..end]), &mut found)
                .expect("find");
        }
        let all = encode(&rows);
        let expected: Vec<(u64, Box<[u8]>)> = all
            .iter()
            .enumerate()
            .filter(|(i, _)| i % 7 == 0)
            .map(|(i, k)| (i as u64 + 100, k.clone()))
            .collect();
        assert_eq!(found, expected);
    }
}
