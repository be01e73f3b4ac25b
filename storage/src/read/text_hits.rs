//! Full-text filters answered from the files' indexes before a scan is planned.
//!
//! A scan's `matches(column, 'query')` filters (top-level conjuncts, constant query, a
//! full-text column) are looked up in the index of each file that has one built with
//! the column's analyzer. The result is, per file, the rows that can match (ascending);
//! the plan reads only those, and a file with none is not read at all. Rows of files
//! without a usable index, and the buffer, are read and filtered by `matches()`. The
//! indexes are exact (the property tests in `fulltext::index` check it), so the rows of
//! a file whose indexes answered every filter are taken without checking them again.
//!
//! Files that overlap nothing are cut to their matching rows. Inside a merge a key's
//! older version could match where its newest does not: a group of overlapping files is
//! instead narrowed to every version of the keys hit in any of its files when they are
//! few (see [`super::merge_candidates`]), merged whole carrying its files' hits as flags
//! when they are many (see [`super::hit_flags`]), or skipped whole when none of its
//! files can match and it holds no buffered rows.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use datafusion::common::ScalarValue;
use datafusion::logical_expr::Expr;
use futures::StreamExt;
use object_store::ObjectStore;

use datafusion::datasource::physical_plan::parquet::ParquetFileReaderFactory;

use super::merge_candidates::{KeyColumns, narrow_group};
use super::plan::merged_file_groups;
use super::time_range::TimeRange;
use crate::catalog::FileMeta;
use crate::engine::TableSnapshot;
use crate::fulltext::index_cache::IndexCache;
use crate::fulltext::{Analyzer, FullTextQuery};
use crate::metrics::StorageMetrics;
use crate::model::TableDef;

/// Name of the SQL function whose filters indexes answer (see the query crate).
pub const MATCHES_FUNCTION: &str = "matches";

/// Index lookups at a time per scan.
const CONCURRENT_LOOKUPS: usize = 8;

/// What the indexes said about a scan's files.
#[derive(Debug, Default)]
pub struct TextHits {
    /// Rows that can match, ascending, by file path; a file not listed is read whole.
    files: HashMap<String, Arc<Vec<u64>>>,
    /// Files whose rows above are exactly those every full-text filter accepts (each
    /// filter had a usable index: the indexes are exact, see `fulltext::index`).
    exact: HashSet<String>,
    /// Of groups of overlapping files (paths sorted), the rows of each file holding a
    /// version of a key that can match, in the order of the paths.
    merges: HashMap<Vec<String>, Vec<Arc<Vec<u64>>>>,
    /// Index objects that could not be used (missing, damaged).
    pub unusable: Vec<String>,
}

impl TextHits {
    /// The rows of `file` that can match (`None`: read it whole).
    pub fn rows_of(&self, file: &FileMeta) -> Option<&Arc<Vec<u64>>> {
        self.files.get(&file.path)
    }

    /// For a merge of exactly `files`, the rows of each (in `files`' order) holding a
    /// version of a key that can match (`None`: merge them whole).
    pub fn merge_rows(&self, files: &[&FileMeta]) -> Option<Vec<Arc<Vec<u64>>>> {
        let mut paths: Vec<&str> = files.iter().map(|f| f.path.as_str()).collect();
        paths.sort_unstable();
        let key: Vec<String> = paths.iter().map(|p| p.to_string()).collect();
        let rows = self.merges.get(&key)?;
        files
            .iter()
            .map(|f| {
                let i = key.binary_search(&f.path).ok()?;
                rows.get(i).cloned()
            })
            .collect()
    }

    /// Whether `file`'s rows found are exactly the rows all the full-text filters accept.
    pub fn answers_exactly(&self, file: &FileMeta) -> bool {
        self.exact.contains(&file.path)
    }

    /// Whether `file` may hold a matching row.
    pub fn can_match(&self, file: &FileMeta) -> bool {
        self.rows_of(file).is_none_or(|r| !r.is_empty())
    }
}

/// A `matches()` filter on a full-text column.
struct TextFilter {
    column: String,
    query: FullTextQuery,
}

/// `e` as a `matches(column, 'query')` filter an index could answer: on a full-text
/// column of `def`, with a constant query that compiles.
fn text_filter(def: &TableDef, e: &Expr) -> Option<TextFilter> {
    let Expr::ScalarFunction(f) = e else {
        return None;
    };
    if f.name() != MATCHES_FUNCTION {
        return None;
    }
    let [Expr::Column(c), Expr::Literal(q, _)] = f.args.as_slice() else {
        return None;
    };
    let q = match q {
        ScalarValue::Utf8(Some(q))
        | ScalarValue::LargeUtf8(Some(q))
        | ScalarValue::Utf8View(Some(q)) => q,
        _ => return None,
    };
    let analyzer: Analyzer = *def.fulltext.get(&c.name)?;
    // A query that does not compile is refused by matches() itself.
    let query = FullTextQuery::new(q, analyzer).ok()?;
    Some(TextFilter {
        column: c.name.clone(),
        query,
    })
}

/// Whether `e` is a `matches()` filter the indexes of `def`'s files can answer: a scan
/// can then apply it exactly (see `ScanRequest::exact_filters`).
pub fn is_text_filter(def: &TableDef, e: &Expr) -> bool {
    text_filter(def, e).is_some()
}

/// The `matches(column, 'query')` filters among `filters` that an index could answer.
fn text_filters(def: &TableDef, filters: &[Expr]) -> Vec<TextFilter> {
    filters.iter().filter_map(|e| text_filter(def, e)).collect()
}

/// Where [`text_hits`] looks and reads.
pub struct LookupContext<'a> {
    pub store: &'a Arc<dyn ObjectStore>,
    pub cache: &'a IndexCache,
    pub metrics: &'a StorageMetrics,
    /// Parquet readers (the query's, sharing its footer cache), for narrowing merges;
    /// `None`: overlapping files are merged whole.
    pub readers: Option<&'a dyn ParquetFileReaderFactory>,
}

/// Look the full-text filters among `filters` up in the indexes of `snapshot`'s files
/// within the filters' time range (`None` when there is no such filter). An index that
/// cannot be read is logged and counted, and its file read whole.
pub async fn text_hits(
    cx: LookupContext<'_>,
    snapshot: &TableSnapshot,
    filters: &[Expr],
) -> Option<TextHits> {
    let LookupContext {
        store,
        cache,
        metrics,
        readers,
    } = cx;
    let wanted = text_filters(&snapshot.def, filters);
    if wanted.is_empty() {
        return None;
    }
    let range = TimeRange::from_filters(filters);
    // Owned inputs: the lookups run inside `async_trait` futures, where closures over
    // borrowed items trip the compiler's higher-ranked lifetime checks.
    let mut files: Vec<FileMeta> = Vec::new();
    for f in &snapshot.files {
        if range.overlaps(f.min_ts, f.max_ts) && !f.fulltext.is_empty() {
            files.push(f.clone());
        }
    }
    let wanted = Arc::new(wanted);
    let lookups = files.into_iter().map(|f| {
        let wanted = wanted.clone();
        async move { file_rows(store, cache, metrics, &f, &wanted).await }
    });
    let found: Vec<FileLookup> = futures::stream::iter(lookups)
        .buffer_unordered(CONCURRENT_LOOKUPS)
        .collect()
        .await;
    let mut files = HashMap::new();
    let mut exact = HashSet::new();
    let mut unusable = Vec::new();
    for f in found {
        if f.rows.is_some() && f.complete {
            exact.insert(f.path.clone());
        }
        unusable.extend(f.unusable);
        if let Some(rows) = f.rows {
            files.insert(f.path, Arc::new(rows));
        }
    }
    let skipped = files.values().filter(|r| r.is_empty()).count();
    StorageMetrics::add(&metrics.text_index_files_skipped, skipped as u64);
    // Only files whose indexes answered every filter: a narrowed merge is taken as
    // exact.
    let answered: HashMap<String, Arc<Vec<u64>>> = files
        .iter()
        .filter(|(path, _)| exact.contains(*path))
        .map(|(path, rows)| (path.clone(), rows.clone()))
        .collect();
    let merges = match readers {
        Some(readers) => narrow_merges(readers, metrics, snapshot, &range, &answered).await,
        None => HashMap::new(),
    };
    Some(TextHits {
        files,
        exact,
        merges,
        unusable,
    })
}

/// For each group of overlapping files the scan will merge whose files' indexes all
/// answered every filter (`hits`), the rows to read (see [`super::merge_candidates`]).
async fn narrow_merges(
    readers: &dyn ParquetFileReaderFactory,
    metrics: &StorageMetrics,
    snapshot: &TableSnapshot,
    range: &TimeRange,
    hits: &HashMap<String, Arc<Vec<u64>>>,
) -> HashMap<Vec<String>, Vec<Arc<Vec<u64>>>> {
    let mut out = HashMap::new();
    let keys = match KeyColumns::new(&snapshot.def.arrow_schema(), snapshot.def.key_len()) {
        Ok(k) => k,
        Err(e) => {
            tracing::warn!(table = %snapshot.def.name, error = %e, "full-text: merges are read whole");
            return out;
        }
    };
    for (mut files, buffered) in merged_file_groups(snapshot, range) {
        files.sort_by(|a, b| a.path.cmp(&b.path));
        let Some(file_hits) = files
            .iter()
            .map(|f| hits.get(&f.path).cloned())
            .collect::<Option<Vec<_>>>()
        else {
            continue;
        };
        // Without buffered rows, a group no file can match is skipped anyway.
        if buffered.is_empty() && file_hits.iter().all(|h| h.is_empty()) {
            continue;
        }
        match narrow_group(readers, &keys, &files, &file_hits, &buffered).await {
            Ok(Some(rows)) => {
                let read: u64 = rows.iter().map(|r| r.len() as u64).sum();
                let total: u64 = files.iter().map(|f| f.rows).sum();
                StorageMetrics::add(
                    &metrics.text_index_merge_rows_skipped,
                    total.saturating_sub(read),
                );
                out.insert(files.iter().map(|f| f.path.clone()).collect(), rows);
            }
            Ok(None) => {}
            Err(e) => {
                tracing::warn!(table = %snapshot.def.name, error = %e, "full-text: merging the group whole");
            }
        }
    }
    out
}

/// What the indexes of one file said.
struct FileLookup {
    path: String,
    /// The rows every filter with a usable index accepts (`None`: no usable index, read
    /// the file whole).
    rows: Option<Vec<u64>>,
    /// Every filter was answered by an index (or an earlier one left no row).
    complete: bool,
    unusable: Vec<String>,
}

async fn file_rows(
    store: &Arc<dyn ObjectStore>,
    cache: &IndexCache,
    metrics: &StorageMetrics,
    file: &FileMeta,
    filters: &[TextFilter],
) -> FileLookup {
    let mut unusable = Vec::new();
    let mut acc: Option<Vec<u64>> = None;
    let mut complete = true;
    for f in filters {
        let Some(obj) = file.text_index(&f.column, f.query.analyzer) else {
            complete = false;
            continue;
        };
        StorageMetrics::add(&metrics.text_index_searches, 1);
        let root = f.query.root.clone();
        let rows = match cache
            .with_index(store, obj, move |ix| ix.search(&root))
            .await
        {
            Ok(rows) => rows,
            Err(e) => {
                cache.unusable(metrics, obj, &e, "the file is read without it");
                unusable.push(obj.path.clone());
                complete = false;
                continue;
            }
        };
        acc = Some(match acc {
            None => rows,
            Some(a) => crate::fulltext::index::intersect(&a, &rows),
        });
        if acc.as_ref().is_some_and(Vec::is_empty) {
            break;
        }
    }
    FileLookup {
        path: file.path.clone(),
        rows: acc,
        complete,
        unusable,
    }
}

/// A file-level selection of `rows` (ascending) out of `total`.
pub fn row_selection(rows: &[u64], total: u64) -> parquet::arrow::arrow_reader::RowSelection {
    use parquet::arrow::arrow_reader::RowSelector;
    let mut selectors = Vec::new();
    let mut at = 0u64;
    let mut i = 0;
    while i < rows.len() {
        let start = rows[i].min(total);
        let mut end = start;
        while i < rows.len() && rows[i] == end && end < total {
            end += 1;
            i += 1;
        }
        if end == start {
            // A row beyond the file (not expected): ignore the rest.
            break;
        }
        if start > at {
            selectors.push(RowSelector::skip((start - at) as usize));
        }
        selectors.push(RowSelector::select((end - start) as usize));
        at = end;
    }
    if at < total {
        selectors.push(RowSelector::skip((total - at) as usize));
    }
    selectors.into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selections_cover_the_file_and_pick_the_rows() {
        let sel = row_selection(&[0, 1, 2, 7, 9], 12);
        let picked: Vec<usize> = {
            let mut out = Vec::new();
            let mut at = 0;
            for s in sel.iter() {
                if !s.skip {
                    out.extend(at..at + s.row_count);
                }
                at += s.row_count;
            }
            assert_eq!(at, 12, "the selection spans the whole file");
            out
        };
        assert_eq!(picked, [0, 1, 2, 7, 9]);
        let none = row_selection(&[], 5);
        assert_eq!(none.row_count(), 0);
        let all = row_selection(&[0, 1, 2], 3);
        assert_eq!(all.row_count(), 3);
    }
}
