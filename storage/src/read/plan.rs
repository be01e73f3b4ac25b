//! Turning a [`TableSnapshot`] into an execution plan.
//!
//! Sources (Parquet files and buffered partitions) outside the query's time range are
//! skipped. The rest are grouped by overlapping time ranges: a key (tags + ts) can only
//! appear in two sources whose ranges overlap. A file that overlaps nothing is read as it
//! is, through DataFusion's Parquet scan with every filter and the projection pushed
//! down. Each group of overlapping sources — and each buffered partition, which may hold
//! a key more than once — becomes one [`LastWriteWinsExec`] that streams the group's
//! sources in key order and keeps the newest write of each key (files in `max_seq`
//! order, then the buffer). Only filters on key columns are pushed into merged sources:
//! a filter on a field could drop a newer write and let an older one through.
//!
//! A file that `DELETE`s logged after it was written apply to is read through a filter
//! dropping the rows they remove, before any merge (tombstones name key columns only,
//! so that removes every version of a deleted key written before the delete).

use std::collections::BTreeSet;
use std::sync::Arc;

use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use datafusion::catalog::Session;
use datafusion::common::stats::Precision;
use datafusion::common::{DFSchema, Result, ScalarValue, Statistics};
use datafusion::datasource::listing::PartitionedFile;
use datafusion::datasource::memory::MemorySourceConfig;
use datafusion::datasource::physical_plan::parquet::{
    CachedParquetFileReaderFactory, ParquetRowSelection,
};
use datafusion::datasource::physical_plan::{FileGroup, FileScanConfigBuilder, ParquetSource};
use datafusion::datasource::source::DataSourceExec;
use datafusion::datasource::table_schema::TableSchema;
use datafusion::execution::cache::cache_manager::FileMetadataCache;
use datafusion::execution::object_store::ObjectStoreUrl;
use datafusion::logical_expr::Expr;
use datafusion::logical_expr::utils::conjunction;
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::empty::EmptyExec;
use datafusion::physical_plan::filter::FilterExec;
use datafusion::physical_plan::projection::ProjectionExec;
use datafusion::physical_plan::union::UnionExec;
use object_store::ObjectStore;

use super::buffer_source::BufferSource;
use super::exec::{LastWriteWinsExec, MergeSource};
use super::hit_flags::{HIT_COLUMN, row_number_field, with_hit_field};
use super::merge::MergeShape;
use super::small_files::SmallFileCache;
use super::text_hits::{TextHits, row_selection};
use super::time_range::TimeRange;
use crate::catalog::FileMeta;
use crate::engine::{BufferedPartition, TableSnapshot};
use crate::model::Tombstone;
use crate::persist::ROW_GROUP_ROWS;

/// The URL under which a DataFusion runtime knows wattdb's object store.
pub const STORE_URL: &str = "wattdb://store";

/// What to read from a table.
#[derive(Debug, Clone, Default)]
pub struct ScanRequest {
    /// Columns of the table schema to return (all when `None`).
    pub projection: Option<Vec<usize>>,
    /// Filters the caller applies anyway; used for pruning and pushed down where safe.
    pub filters: Vec<Expr>,
    /// At most this many rows are needed (any rows: only valid without filters above).
    pub limit: Option<usize>,
    /// One partition sorted by (tags, ts) over all sources, instead of a union.
    pub ordered: bool,
    /// Decoded small files to read from memory (and to fill in the background).
    pub small_files: Option<Arc<SmallFileCache>>,
    /// The rows of files that can match the `matches()` filters, from their full-text
    /// indexes (see [`super::text_hits`]); unordered scans read only those.
    pub text_hits: Option<Arc<TextHits>>,
    /// Filters among `filters` the caller told DataFusion this scan applies exactly
    /// (`matches()` filters an index can answer, see [`is_text_filter`]): rows read
    /// from a file whose indexes answered them are their result, every other row read
    /// is filtered by them here.
    pub exact_filters: Vec<Expr>,
}

/// How a Parquet scan's partitions are used.
enum ParquetScan {
    /// Read as they come, at most `limit` rows per partition; `statistics` are exact
    /// ones known from the catalog.
    Plain {
        limit: Option<usize>,
        statistics: Option<Statistics>,
    },
    /// Each partition (one file) is a merge input, read in order; with `row_numbers`,
    /// each row's number in its file is a last column (see `super::hit_flags`).
    MergeInputs { row_numbers: bool },
}

/// An in-memory scan of the cached files (if any), and the files still to read.
type CachedSplit<'f> = (Option<Arc<dyn ExecutionPlan>>, Vec<&'f FileMeta>);

enum Source<'a> {
    File(&'a FileMeta),
    Buffer(&'a BufferedPartition),
}

impl Source<'_> {
    fn range(&self) -> (i64, i64) {
        match self {
            Source::File(f) => (f.min_ts, f.max_ts),
            Source::Buffer(b) => (b.min_ts, b.max_ts),
        }
    }

    /// What a merge starting with this source is called in EXPLAIN.
    fn merge_label(&self) -> String {
        match self {
            Source::File(f) => format!("month={}", f.month),
            Source::Buffer(b) => format!("month={}", b.month),
        }
    }
}

/// Sources that overlap in time, in ascending time order of their first member.
fn overlap_groups<'a>(mut sources: Vec<Source<'a>>) -> Vec<Vec<Source<'a>>> {
    sources.sort_by_key(|s| s.range());
    let mut groups: Vec<Vec<Source<'a>>> = Vec::new();
    let mut group_max = i64::MIN;
    for s in sources {
        let (min, max) = s.range();
        match groups.last_mut() {
            Some(g) if min <= group_max => {
                g.push(s);
                group_max = group_max.max(max);
            }
            _ => {
                groups.push(vec![s]);
                group_max = max;
            }
        }
    }
    groups
}

/// The files and buffered partitions of `snapshot` that `range` may need.
fn sources_in<'a>(snapshot: &'a TableSnapshot, range: &TimeRange) -> Vec<Source<'a>> {
    snapshot
        .files
        .iter()
        .map(Source::File)
        .chain(snapshot.buffered.iter().map(Source::Buffer))
        .filter(|s| {
            let (min, max) = s.range();
            range.overlaps(min, max)
        })
        .collect()
}

/// The files and buffered partitions of a group of overlapping sources.
pub(crate) type MergedGroup<'a> = (Vec<&'a FileMeta>, Vec<&'a BufferedPartition>);

/// The groups of overlapping sources with files that a scan of `range` merges (as
/// [`plan_scan`] groups them).
pub(crate) fn merged_file_groups<'a>(
    snapshot: &'a TableSnapshot,
    range: &TimeRange,
) -> Vec<MergedGroup<'a>> {
    overlap_groups(sources_in(snapshot, range))
        .into_iter()
        .filter(|g| !matches!(g.as_slice(), [Source::File(_)]))
        .map(|g| {
            let mut files = Vec::new();
            let mut buffered = Vec::new();
            for s in g {
                match s {
                    Source::File(f) => files.push(f),
                    Source::Buffer(b) => buffered.push(b),
                }
            }
            (files, buffered)
        })
        .filter(|(files, _)| !files.is_empty())
        .collect()
}

/// Parquet readers of `store` that keep footers in `metadata_cache` (a runtime's) and
/// fetch only the pages a row selection needs.
pub fn parquet_readers(
    store: &Arc<dyn ObjectStore>,
    metadata_cache: Arc<FileMetadataCache>,
) -> super::selected_pages::SelectedPageReaders {
    super::selected_pages::SelectedPageReaders::new(CachedParquetFileReaderFactory::new(
        store.clone(),
        metadata_cache,
    ))
}

/// A read of `rows` (ascending) of `f` only.
fn rows_of_file(f: &FileMeta, rows: &[u64]) -> PartitionedFile {
    PartitionedFile::new(f.path.clone(), f.bytes)
        .with_extension(ParquetRowSelection::new(row_selection(rows, f.rows)))
}

/// Is `e` a filter on key columns only (safe to apply before deduplication)?
fn on_key_columns(e: &Expr, key_names: &[&str]) -> bool {
    let refs = e.column_refs();
    !refs.is_empty() && refs.iter().all(|c| key_names.contains(&c.name.as_str()))
}

struct Planner<'a> {
    state: &'a dyn Session,
    tombstones: &'a [Arc<Tombstone>],
    schema: SchemaRef,
    key_len: usize,
    /// Columns of the table returned by the scan.
    out_columns: Vec<usize>,
    /// Columns read by merges: the key columns, then the rest of `out_columns`.
    merge_columns: Vec<usize>,
    all_filter: Option<Arc<dyn PhysicalExpr>>,
    key_filter: Option<Arc<dyn PhysicalExpr>>,
    limit: Option<usize>,
    text_hits: Option<&'a TextHits>,
}

/// Background reads (rollups, compaction, deletes, the last-value cache): `request`
/// (which must be `ordered`, one partition) planned over `snapshot` and run in `session`,
/// as one stream sorted by (tags, ts); errors name the table.
pub fn ordered_stream(
    session: &datafusion::prelude::SessionContext,
    snapshot: &TableSnapshot,
    request: &ScanRequest,
) -> crate::error::Result<datafusion::execution::SendableRecordBatchStream> {
    let table = snapshot.def.name.as_str();
    debug_assert!(request.ordered, "an ordered scan is one partition");
    let plan = plan_scan(&session.state(), snapshot, request).map_err(crate::Error::read(table))?;
    plan.execute(0, session.task_ctx())
        .map_err(crate::Error::read(table))
}

pub fn plan_scan(
    state: &dyn Session,
    snapshot: &TableSnapshot,
    req: &ScanRequest,
) -> Result<Arc<dyn ExecutionPlan>> {
    let def = &snapshot.def;
    let schema = def.arrow_schema();
    let out_columns: Vec<usize> = match &req.projection {
        Some(p) => p.clone(),
        None => (0..schema.fields().len()).collect(),
    };
    let planner = Planner::new(state, snapshot, req, out_columns.clone(), req.limit)?;

    let range = TimeRange::from_filters(&req.filters);
    let sources = sources_in(snapshot, &range);

    if req.ordered {
        if sources.is_empty() {
            return planner.empty();
        }
        return Ok(Arc::new(planner.merge("all", sources)?));
    }

    let Some(text_filter) = conjunction(req.exact_filters.clone()) else {
        let inputs = planner.inputs(overlap_groups(sources), req.small_files.as_ref())?;
        return planner.union(inputs);
    };
    // The caller told DataFusion the `matches()` filters are applied here: files the
    // indexes answered exactly are read at their rows; everything else (merges, the
    // buffer, files without a usable index, small files read from memory) is filtered
    // by `matches()` here, reading the text columns it needs as well.
    let hits = req.text_hits.as_deref();
    let mut answered = Vec::new();
    let mut flagged = Vec::new();
    let mut checked = Vec::new();
    for group in overlap_groups(sources) {
        let Some(h) = hits else {
            checked.push(group);
            continue;
        };
        if let [Source::File(f)] = group.as_slice() {
            if h.answers_exactly(f) {
                answered.push(group);
            } else {
                checked.push(group);
            }
            continue;
        }
        // A narrowed merge (see `super::merge_candidates`) returns only matching rows
        // from its files; its buffered rows are read and checked apart (the files'
        // versions of their keys were left out).
        let files: Vec<&FileMeta> = group
            .iter()
            .filter_map(|s| match s {
                Source::File(f) => Some(*f),
                Source::Buffer(_) => None,
            })
            .collect();
        if files.is_empty() {
            checked.push(group);
            continue;
        }
        if h.merge_rows(&files).is_none() {
            // Too many hits to narrow: merged whole, carrying the files' hits.
            if files.iter().all(|f| h.answers_exactly(f)) {
                flagged.push(group);
            } else {
                checked.push(group);
            }
            continue;
        }
        let (in_files, buffered): (Vec<_>, Vec<_>) = group
            .into_iter()
            .partition(|s| matches!(s, Source::File(_)));
        answered.push(in_files);
        checked.extend(buffered.into_iter().map(|b| vec![b]));
    }
    let mut inputs = planner.inputs(answered, None)?;
    if !flagged.is_empty() {
        inputs.push(flagged_merges(state, &planner, flagged, &text_filter)?);
    }
    let mut checked_columns = out_columns.clone();
    for c in text_filter.column_refs() {
        if let Ok(i) = schema.index_of(&c.name)
            && !checked_columns.contains(&i)
        {
            checked_columns.push(i);
        }
    }
    let checker = Planner::new(state, snapshot, req, checked_columns.clone(), None)?;
    let checked = checker.inputs(checked, req.small_files.as_ref())?;
    if !checked.is_empty() {
        let read = checker.union(checked)?;
        let read_schema = read.schema();
        let df_schema = DFSchema::try_from(read_schema.as_ref().clone())?;
        let predicate = state.create_physical_expr(text_filter, &df_schema)?;
        inputs.push(filtered_to(read, predicate, req.limit, out_columns.len())?);
    }
    planner.union(inputs)
}

/// Merges of `groups` whose files' indexes answered `text_filter` exactly, keeping the
/// rows that match it (see [`super::hit_flags`]): no text is read from their files.
fn flagged_merges(
    state: &dyn Session,
    planner: &Planner<'_>,
    groups: Vec<Vec<Source<'_>>>,
    text_filter: &Expr,
) -> Result<Arc<dyn ExecutionPlan>> {
    let table = DFSchema::try_from(planner.schema.as_ref().clone())?;
    let buffer_filter = state.create_physical_expr(text_filter.clone(), &table)?;
    let mut merges: Vec<Arc<dyn ExecutionPlan>> = Vec::with_capacity(groups.len());
    for group in groups {
        if !planner.group_can_match(&group) {
            continue;
        }
        let label = group[0].merge_label();
        merges.push(Arc::new(planner.flagged_merge(
            &label,
            group,
            &buffer_filter,
        )?));
    }
    if merges.is_empty() {
        return planner.empty();
    }
    let merged = planner.union(merges)?;
    let schema = merged.schema();
    let flag = schema.fields().len() - 1;
    let predicate: Arc<dyn PhysicalExpr> = Arc::new(
        datafusion::physical_expr::expressions::Column::new(HIT_COLUMN, flag),
    );
    filtered_to(merged, predicate, planner.limit, flag)
}

/// The first `columns` columns of the rows of `input` that pass `predicate`, at most
/// `limit` of them.
fn filtered_to(
    input: Arc<dyn ExecutionPlan>,
    predicate: Arc<dyn PhysicalExpr>,
    limit: Option<usize>,
    columns: usize,
) -> Result<Arc<dyn ExecutionPlan>> {
    let schema = input.schema();
    let filter: Arc<dyn ExecutionPlan> = Arc::new(FilterExec::try_new(predicate, input)?);
    let filtered = filter.with_fetch(limit).unwrap_or(filter);
    let exprs = (0..columns)
        .map(|i| {
            let name = schema.field(i).name().clone();
            let e: Arc<dyn PhysicalExpr> = Arc::new(
                datafusion::physical_expr::expressions::Column::new(&name, i),
            );
            (e, name)
        })
        .collect::<Vec<_>>();
    Ok(Arc::new(ProjectionExec::try_new(exprs, filtered)?))
}

impl<'a> Planner<'a> {
    /// A planner of `req` over `snapshot` returning `out_columns`, at most `limit` rows
    /// per partition.
    fn new(
        state: &'a dyn Session,
        snapshot: &'a TableSnapshot,
        req: &'a ScanRequest,
        out_columns: Vec<usize>,
        limit: Option<usize>,
    ) -> Result<Self> {
        let def = &snapshot.def;
        let schema = def.arrow_schema();
        let key_len = def.key_len();
        let merge_columns: Vec<usize> = (0..key_len)
            .chain(
                out_columns
                    .iter()
                    .copied()
                    .filter(|&c| c >= key_len)
                    .collect::<BTreeSet<_>>(),
            )
            .collect();
        let df_schema = DFSchema::try_from(schema.as_ref().clone())?;
        let physical = |filters: Vec<Expr>| -> Result<Option<Arc<dyn PhysicalExpr>>> {
            conjunction(filters)
                .map(|e| state.create_physical_expr(e, &df_schema))
                .transpose()
        };
        let key_names: Vec<&str> = schema.fields()[..key_len]
            .iter()
            .map(|f| f.name().as_str())
            .collect();
        Ok(Planner {
            state,
            tombstones: &snapshot.tombstones,
            schema: schema.clone(),
            key_len,
            all_filter: physical(req.filters.clone())?,
            key_filter: physical(
                req.filters
                    .iter()
                    .filter(|e| on_key_columns(e, &key_names))
                    .cloned()
                    .collect(),
            )?,
            out_columns,
            merge_columns,
            limit,
            text_hits: req.text_hits.as_deref(),
        })
    }

    /// The plans reading `groups` of overlapping sources (an unordered scan): files
    /// that overlap nothing scanned as they are (from `small_files` if cached), each
    /// other group merged.
    fn inputs(
        &self,
        groups: Vec<Vec<Source<'_>>>,
        small_files: Option<&Arc<SmallFileCache>>,
    ) -> Result<Vec<Arc<dyn ExecutionPlan>>> {
        let planner = self;
        let mut plain_files = Vec::new();
        let mut inputs: Vec<Arc<dyn ExecutionPlan>> = Vec::new();
        for group in groups {
            // No source can hold a matching row: the newest version of every key is in
            // one of them, so the group has nothing to give.
            if !planner.group_can_match(&group) {
                continue;
            }
            match group.as_slice() {
                [Source::File(f)] => plain_files.push(*f),
                _ => {
                    let label = group[0].merge_label();
                    inputs.push(Arc::new(planner.merge(&label, group)?));
                }
            }
        }
        // Files with DELETEs to apply are read apart, through a filter.
        let mut deleted_from: Vec<(Vec<&Tombstone>, Vec<&FileMeta>)> = Vec::new();
        plain_files.retain(|f| {
            let due = planner.deletes_for(f);
            if due.is_empty() {
                return true;
            }
            match deleted_from.iter_mut().find(|(t, _)| *t == due) {
                Some((_, files)) => files.push(*f),
                None => deleted_from.push((due, vec![*f])),
            }
            false
        });
        for (tombstones, files) in deleted_from {
            inputs.push(planner.files_after_deletes(&files, &tombstones)?);
        }
        if let Some(cache) = small_files {
            let (cached, rest) = planner.cached_files(cache, &plain_files)?;
            if let Some(c) = cached {
                inputs.push(c);
            }
            plain_files = rest;
        }
        if !plain_files.is_empty() {
            inputs.insert(0, planner.plain_files(&plain_files)?);
        }
        Ok(inputs)
    }

    /// `inputs` as one plan.
    fn union(&self, mut inputs: Vec<Arc<dyn ExecutionPlan>>) -> Result<Arc<dyn ExecutionPlan>> {
        match inputs.len() {
            0 => self.empty(),
            1 => Ok(inputs.remove(0)),
            _ => UnionExec::try_new(inputs),
        }
    }
}

impl Planner<'_> {
    /// Whether any source of `group` may hold a row the full-text filters accept
    /// (buffered rows are not indexed: they may).
    fn group_can_match(&self, group: &[Source<'_>]) -> bool {
        let Some(hits) = self.text_hits else {
            return true;
        };
        group.iter().any(|s| match s {
            Source::File(f) => hits.can_match(f),
            Source::Buffer(_) => true,
        })
    }

    /// `f` to read whole, or only the rows its full-text index found (a file that
    /// overlaps nothing: no other version of its keys can be anywhere else).
    fn selected_file(&self, f: &FileMeta) -> PartitionedFile {
        let Some(hits) = self.text_hits else {
            return PartitionedFile::new(f.path.clone(), f.bytes);
        };
        // A file merged with buffered rows only, whose merge was narrowed and split
        // from them: the rows of its matching keys the buffer does not overwrite.
        if let Some(rows) = hits.merge_rows(&[f]).and_then(|r| r.into_iter().next()) {
            return rows_of_file(f, &rows);
        }
        match hits.rows_of(f) {
            Some(rows) => rows_of_file(f, rows),
            None => PartitionedFile::new(f.path.clone(), f.bytes),
        }
    }

    /// Whether some of `files` are read in part (their row counts then say nothing
    /// exact about the scan).
    fn any_selected(&self, files: &[&FileMeta]) -> bool {
        self.text_hits
            .is_some_and(|h| files.iter().any(|f| h.rows_of(f).is_some()))
    }

    /// The tombstones that apply to `f`, oldest first.
    fn deletes_for(&self, f: &FileMeta) -> Vec<&Tombstone> {
        self.tombstones
            .iter()
            .filter(|t| t.applies_to(f.max_seq, f.deletes_applied, f.min_ts, f.max_ts))
            .map(|t| t.as_ref())
            .collect()
    }

    /// `plan` (whose output has `schema`) without the rows `tombstones` remove.
    fn without_deleted(
        &self,
        plan: Arc<dyn ExecutionPlan>,
        schema: &arrow::datatypes::Schema,
        tombstones: &[&Tombstone],
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let Some(keep) = crate::model::delete::survivors_expr(tombstones.iter().copied()) else {
            return Ok(plan);
        };
        let df_schema = DFSchema::try_from(schema.clone())?;
        let keep = self.state.create_physical_expr(keep, &df_schema)?;
        Ok(Arc::new(FilterExec::try_new(keep, plan)?))
    }

    /// Files that overlap nothing and have DELETEs to apply: scanned with the key
    /// columns (which the tombstones test), filtered, then cut to the output columns.
    fn files_after_deletes(
        &self,
        files: &[&FileMeta],
        tombstones: &[&Tombstone],
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let groups = self.spread(files.iter().map(|f| self.selected_file(f)).collect());
        let mut columns = self.merge_columns.clone();
        for c in &self.out_columns {
            if !columns.contains(c) {
                columns.push(*c);
            }
        }
        let scan = self.parquet(
            groups,
            &columns,
            self.all_filter.as_ref(),
            ParquetScan::Plain {
                limit: None,
                statistics: None,
            },
        )?;
        let scanned = self.schema.project(&columns)?;
        let filtered = self.without_deleted(scan, &scanned, tombstones)?;
        let exprs = self
            .out_columns
            .iter()
            .map(|c| {
                let i = columns.iter().position(|x| x == c).unwrap_or_default();
                let name = self.schema.field(*c).name().clone();
                let e: Arc<dyn PhysicalExpr> = Arc::new(
                    datafusion::physical_expr::expressions::Column::new(&name, i),
                );
                (e, name)
            })
            .collect::<Vec<_>>();
        Ok(Arc::new(ProjectionExec::try_new(exprs, filtered)?))
    }

    fn empty(&self) -> Result<Arc<dyn ExecutionPlan>> {
        Ok(Arc::new(EmptyExec::new(Arc::new(
            self.schema.project(&self.out_columns)?,
        ))))
    }

    fn parquet(
        &self,
        groups: Vec<Vec<PartitionedFile>>,
        columns: &[usize],
        predicate: Option<&Arc<dyn PhysicalExpr>>,
        kind: ParquetScan,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let (limit, statistics, preserve_order, row_numbers) = match kind {
            ParquetScan::Plain { limit, statistics } => (limit, statistics, false, false),
            ParquetScan::MergeInputs { row_numbers } => (None, None, true, row_numbers),
        };
        // Footers are read once per file and kept in DataFusion's metadata cache (files
        // are immutable and never reuse a name); a query over many small files (a rollup
        // table's months) would otherwise spend most of its time re-reading them.
        let mut columns = columns.to_vec();
        let mut source = if row_numbers {
            // Each row's number in its file, as a last column (see `super::hit_flags`).
            columns.push(self.schema.fields().len());
            ParquetSource::new(
                TableSchema::builder(self.schema.clone())
                    .with_virtual_columns(vec![row_number_field()])
                    .build(),
            )
        } else {
            ParquetSource::new(self.schema.clone())
        };
        // (A session without wattdb's store only plans; it could not read anyway.)
        if let Ok(store) = self.store() {
            source = source.with_parquet_file_reader_factory(Arc::new(parquet_readers(
                &store,
                self.state
                    .runtime_env()
                    .cache_manager
                    .get_file_metadata_cache(),
            )));
        }
        if let Some(p) = predicate {
            source = source.with_predicate(p.clone());
        }
        let mut builder =
            FileScanConfigBuilder::new(ObjectStoreUrl::parse(STORE_URL)?, Arc::new(source));
        if let Some(stats) = statistics {
            builder = builder.with_statistics(stats);
        }
        let config = builder
            .with_file_groups(groups.into_iter().map(FileGroup::new).collect())
            .with_projection_indices(Some(columns))?
            .with_limit(limit)
            // A merge reads partition i as file i, in order: no work stealing.
            .with_preserve_order(preserve_order)
            .build();
        Ok(DataSourceExec::from_data_source(config))
    }

    /// Of files that overlap nothing, the small ones whose decoded copy is in `cache`, as
    /// one in-memory scan, and the rest; small files not cached yet are loaded in the
    /// background for the next query.
    fn cached_files<'f>(
        &self,
        cache: &Arc<SmallFileCache>,
        files: &[&'f FileMeta],
    ) -> Result<CachedSplit<'f>> {
        let mut rest = Vec::new();
        let mut batches: Vec<RecordBatch> = Vec::new();
        let mut missing = Vec::new();
        for f in files {
            if !cache.wants(f.rows, f.bytes) {
                rest.push(*f);
                continue;
            }
            match cache.get(&f.path) {
                // Only copies in the table's current layout (older files lack new fields).
                Some(b)
                    if b.iter()
                        .all(|b| b.schema().fields() == self.schema.fields()) =>
                {
                    batches.extend(b.iter().cloned())
                }
                Some(_) => rest.push(*f),
                None => {
                    missing.push((f.path.clone(), f.bytes));
                    rest.push(*f);
                }
            }
        }
        if !missing.is_empty() {
            cache.load_in_background(self.store()?, missing);
        }
        if batches.is_empty() {
            return Ok((None, rest));
        }
        let partitions = self.spread(batches);
        let source = MemorySourceConfig::try_new(
            &partitions,
            self.schema.clone(),
            Some(self.out_columns.clone()),
        )?
        .with_limit(self.limit);
        Ok((Some(DataSourceExec::from_data_source(source)), rest))
    }

    /// `items` dealt round-robin over the target partitions (no empty partition).
    fn spread<T: Clone>(&self, items: Vec<T>) -> Vec<Vec<T>> {
        let n = self
            .state
            .config()
            .target_partitions()
            .max(1)
            .min(items.len().max(1));
        let mut out: Vec<Vec<T>> = vec![Vec::new(); n];
        for (i, item) in items.into_iter().enumerate() {
            out[i % n].push(item);
        }
        out
    }

    /// wattdb's object store as this session's runtime knows it.
    fn store(&self) -> Result<Arc<dyn ObjectStore>> {
        self.state
            .runtime_env()
            .object_store(ObjectStoreUrl::parse(STORE_URL)?)
    }

    /// Files that overlap nothing: one Parquet scan, spread over the target partitions.
    fn plain_files(&self, files: &[&FileMeta]) -> Result<Arc<dyn ExecutionPlan>> {
        let groups = self.spread(files.iter().map(|f| self.selected_file(f)).collect());
        let statistics = (!self.any_selected(files)).then(|| self.exact_statistics(files));
        self.parquet(
            groups,
            &self.out_columns,
            self.all_filter.as_ref(),
            ParquetScan::Plain {
                limit: self.limit,
                statistics,
            },
        )
    }

    /// What the catalog knows exactly about files that overlap nothing: their row count
    /// (each file is deduplicated, and no key is in two of them) and the range of `ts`.
    /// DataFusion answers e.g. `count(*)` or `max(ts)` without a filter from these.
    fn exact_statistics(&self, files: &[&FileMeta]) -> Statistics {
        let mut stats = Statistics::new_unknown(&self.schema);
        stats.num_rows = Precision::Exact(files.iter().map(|f| f.rows as usize).sum());
        stats.total_byte_size = Precision::Inexact(files.iter().map(|f| f.bytes as usize).sum());
        let micros = |v: i64| ScalarValue::TimestampMicrosecond(Some(v), Some("UTC".into()));
        if let (Some(min), Some(max)) = (
            files.iter().map(|f| f.min_ts).min(),
            files.iter().map(|f| f.max_ts).max(),
        ) {
            let ts = &mut stats.column_statistics[0];
            ts.min_value = Precision::Exact(micros(min));
            ts.max_value = Precision::Exact(micros(max));
            ts.null_count = Precision::Exact(0);
        }
        stats
    }

    /// What the Parquet reader of `f` holds while a merge reads it, estimated: one row
    /// group's column chunks of the merged columns, compressed (as if every column took
    /// the same share of the file).
    fn reader_bytes(&self, f: &FileMeta) -> usize {
        let rows = f.rows.max(1) as u128;
        let group = f.bytes as u128 * rows.min(ROW_GROUP_ROWS as u128) / rows;
        let share =
            group * self.merge_columns.len() as u128 / self.schema.fields().len().max(1) as u128;
        usize::try_from(share).unwrap_or(usize::MAX)
    }

    /// One merge over `group`: files oldest write first, then buffered partitions.
    fn merge(&self, label: &str, group: Vec<Source<'_>>) -> Result<LastWriteWinsExec> {
        self.merge_with(label, group, None)
    }

    /// One merge over `group` whose files' indexes answered the full-text filters
    /// exactly, returning after the output columns whether each row matches them: the
    /// files' hits carried by row number, buffered rows checked by `buffer_filter`
    /// (against the table schema); see [`super::hit_flags`].
    fn flagged_merge(
        &self,
        label: &str,
        group: Vec<Source<'_>>,
        buffer_filter: &Arc<dyn PhysicalExpr>,
    ) -> Result<LastWriteWinsExec> {
        self.merge_with(label, group, Some(buffer_filter))
    }

    fn merge_with(
        &self,
        label: &str,
        group: Vec<Source<'_>>,
        flagged: Option<&Arc<dyn PhysicalExpr>>,
    ) -> Result<LastWriteWinsExec> {
        let mut files: Vec<&FileMeta> = Vec::new();
        let mut buffers = Vec::new();
        for s in group {
            match s {
                Source::File(f) => files.push(f),
                Source::Buffer(b) => buffers.push(b),
            }
        }
        files.sort_by_key(|f| f.max_seq);
        // The full-text indexes may have narrowed the group to the versions of the
        // keys that can match (see `super::merge_candidates`).
        let mut reads: Vec<PartitionedFile> = Vec::with_capacity(files.len());
        let file_hits: Vec<Option<Arc<Vec<u64>>>> = match (flagged, self.text_hits) {
            (Some(_), Some(h)) => files.iter().map(|f| h.rows_of(f).cloned()).collect(),
            _ => vec![None; files.len()],
        };
        if flagged.is_some() && file_hits.iter().any(Option::is_none) {
            return datafusion::common::internal_err!(
                "a flagged merge over {label} has a file without full-text hits"
            );
        }
        let narrowed = match flagged {
            Some(_) => None,
            None => self.text_hits.and_then(|h| h.merge_rows(&files)),
        };
        match narrowed {
            Some(rows) => {
                let mut kept = Vec::with_capacity(files.len());
                for (f, rows) in files.iter().zip(rows) {
                    if rows.is_empty() {
                        continue;
                    }
                    reads.push(rows_of_file(f, &rows));
                    kept.push(*f);
                }
                files = kept;
            }
            None => {
                reads.extend(
                    files
                        .iter()
                        .map(|f| PartitionedFile::new(f.path.clone(), f.bytes)),
                );
            }
        }
        let mut sources = Vec::with_capacity(files.len() + buffers.len());
        if !files.is_empty() {
            let groups = reads.into_iter().map(|f| vec![f]).collect();
            let scan = self.parquet(
                groups,
                &self.merge_columns,
                self.key_filter.as_ref(),
                ParquetScan::MergeInputs {
                    row_numbers: flagged.is_some(),
                },
            )?;
            // Files with DELETEs to apply read their partition through a filter (one
            // per distinct set of tombstones, over the same scan).
            let mut scanned = self.schema.project(&self.merge_columns)?;
            if flagged.is_some() {
                let mut fields: Vec<_> = scanned.fields().iter().cloned().collect();
                fields.push(row_number_field());
                scanned = arrow::datatypes::Schema::new(fields);
            }
            let mut filtered: Vec<(Vec<&Tombstone>, Arc<dyn ExecutionPlan>)> = Vec::new();
            for (partition, f) in files.iter().enumerate() {
                let due = self.deletes_for(f);
                let plan = if due.is_empty() {
                    scan.clone()
                } else if let Some((_, p)) = filtered.iter().find(|(t, _)| *t == due) {
                    p.clone()
                } else {
                    let p = self.without_deleted(scan.clone(), &scanned, &due)?;
                    filtered.push((due, p.clone()));
                    p
                };
                sources.push(MergeSource::Plan {
                    plan,
                    partition,
                    reader_bytes: self.reader_bytes(f),
                    hits: file_hits[partition].clone(),
                });
            }
        }
        // Buffered partitions of one group are different months, so their order is free.
        for b in buffers {
            sources.push(MergeSource::Buffer(BufferSource {
                table_schema: self.schema.clone(),
                batches: b.batches.clone(),
                key_filter: self.key_filter.clone(),
                columns: self.merge_columns.clone(),
                key_len: self.key_len,
                rows: b.rows,
                hit: flagged.cloned(),
            }));
        }
        let mut key_columns: Vec<usize> = (1..self.key_len).collect();
        key_columns.push(0);
        let mut output_columns: Vec<usize> = self
            .out_columns
            .iter()
            .map(|c| {
                self.merge_columns
                    .iter()
                    .position(|m| m == c)
                    .unwrap_or_default()
            })
            .collect();
        let mut input_schema = Arc::new(self.schema.project(&self.merge_columns)?);
        if flagged.is_some() {
            output_columns.push(self.merge_columns.len());
            input_schema = with_hit_field(&input_schema);
        }
        let shape = MergeShape {
            input_schema,
            key_columns,
            output_columns,
            batch_size: self.state.config().batch_size(),
            // The flags filter a flagged merge's rows after it.
            fetch: self.limit.filter(|_| flagged.is_none()),
        };
        LastWriteWinsExec::try_new(label.to_string(), sources, shape)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Month;
    use crate::model::TableId;
    use crate::wal::WalSeq;

    fn file(month: &str, n: u32, min_ts: i64, max_ts: i64) -> FileMeta {
        FileMeta {
            table_id: TableId(1),
            month: Month::parse(month).unwrap(),
            path: format!("t/month={month}/f{n}.parquet"),
            min_ts,
            max_ts,
            rows: 10,
            bytes: 1000,
            max_seq: WalSeq(n as u64),
            created_at_ms: 0,
            deletes_applied: WalSeq(0),
            fulltext: Vec::new(),
        }
    }

    fn ts(us: i64) -> Expr {
        datafusion::prelude::lit(ScalarValue::TimestampMicrosecond(
            Some(us),
            Some("UTC".into()),
        ))
    }

    #[tokio::test]
    async fn months_and_files_outside_the_filter_are_not_scanned() {
        use datafusion::physical_plan::displayable;
        use datafusion::prelude::{SessionContext, col};

        let def = crate::model::TableDef::new(
            TableId(1),
            "t",
            vec!["pid".into()],
            vec![crate::model::schema::FieldDef {
                name: "v".into(),
                field_type: crate::model::FieldType::Float,
            }],
        )
        .unwrap();
        let sep = Month::parse("2026-09").unwrap();
        let oct = Month::parse("2026-10").unwrap();
        let nov = Month::parse("2026-11").unwrap();
        let snapshot = TableSnapshot {
            def,
            files: vec![
                file("2026-09", 1, sep.start_micros(), sep.end_micros() - 1),
                file("2026-10", 2, oct.start_micros(), oct.start_micros() + 1000),
                file(
                    "2026-10",
                    3,
                    oct.start_micros() + 5000,
                    oct.end_micros() - 1,
                ),
                file("2026-11", 4, nov.start_micros(), nov.end_micros() - 1),
            ],
            buffered: vec![],
            tombstones: vec![],
        };
        let ctx = SessionContext::new();
        let filters = vec![
            col("ts").gt_eq(ts(oct.start_micros() + 4000)),
            col("ts").lt(ts(nov.start_micros())),
        ];
        let request = ScanRequest {
            filters,
            ..Default::default()
        };
        let plan = plan_scan(&ctx.state(), &snapshot, &request).unwrap();
        let shown = displayable(plan.as_ref()).indent(true).to_string();
        assert!(shown.contains("f3.parquet"), "{shown}");
        for pruned in ["f1.parquet", "f2.parquet", "f4.parquet"] {
            assert!(
                !shown.contains(pruned),
                "{pruned} should be pruned:\n{shown}"
            );
        }
        // No filter: every file, and none merged (no overlaps).
        let plan = plan_scan(&ctx.state(), &snapshot, &ScanRequest::default()).unwrap();
        let shown = displayable(plan.as_ref()).indent(true).to_string();
        for f in ["f1", "f2", "f3", "f4"] {
            assert!(shown.contains(f), "{shown}");
        }
        assert!(!shown.contains("LastWriteWinsExec"), "{shown}");
    }

    #[test]
    fn only_overlapping_sources_are_grouped() {
        let a = file("2026-10", 1, 0, 10);
        let b = file("2026-10", 2, 5, 20);
        let c = file("2026-10", 3, 21, 30);
        let d = file("2026-10", 4, 30, 40);
        let groups = overlap_groups(vec![
            Source::File(&c),
            Source::File(&a),
            Source::File(&d),
            Source::File(&b),
        ]);
        let sizes: Vec<usize> = groups.iter().map(|g| g.len()).collect();
        assert_eq!(sizes, vec![2, 2], "a+b overlap, c+d share ts 30");
    }
}
