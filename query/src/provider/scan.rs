//! Turning a [`TableSnapshot`] into an execution plan.
//!
//! Sources (Parquet files and buffered partitions) outside the query's time range are
//! skipped. The rest are grouped by overlapping time ranges: a key (tags + ts) can only
//! appear in two sources whose ranges overlap, so a source that overlaps nothing is read
//! as it is — a file through DataFusion's Parquet scan (statistics pruning, projection and
//! predicate pushdown) — and only overlapping groups are merged and deduplicated (last
//! write wins: files in `max_seq` order, then the buffer) in memory.

use std::sync::Arc;

use arrow::compute::concat_batches;
use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use bytes::Bytes;
use datafusion::catalog::Session;
use datafusion::common::{DFSchema, Result as DfResult};
use datafusion::datasource::listing::PartitionedFile;
use datafusion::datasource::memory::MemorySourceConfig;
use datafusion::datasource::physical_plan::{FileGroup, FileScanConfigBuilder, ParquetSource};
use datafusion::datasource::source::DataSourceExec;
use datafusion::error::DataFusionError;
use datafusion::execution::object_store::ObjectStoreUrl;
use datafusion::logical_expr::Expr;
use datafusion::logical_expr::utils::conjunction;
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::empty::EmptyExec;
use datafusion::physical_plan::union::UnionExec;
use object_store::{ObjectStore, ObjectStoreExt};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use wattdb_storage::batch::{adapt_to_schema, sort_dedup};
use wattdb_storage::{FileMeta, TableSnapshot};

use super::time_range::TimeRange;

/// The URL under which the session's runtime knows wattdb's object store.
pub const STORE_URL: &str = "wattdb://store";

enum Source<'a> {
    File(&'a FileMeta),
    Buffer(&'a wattdb_storage::BufferedPartition),
}

impl Source<'_> {
    fn range(&self) -> (i64, i64) {
        match self {
            Source::File(f) => (f.min_ts, f.max_ts),
            Source::Buffer(b) => (b.min_ts, b.max_ts),
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

pub async fn plan_scan(
    state: &dyn Session,
    snapshot: &TableSnapshot,
    store: &Arc<dyn ObjectStore>,
    projection: Option<&Vec<usize>>,
    filters: &[Expr],
) -> DfResult<Arc<dyn ExecutionPlan>> {
    let schema = snapshot.def.arrow_schema();
    let range = TimeRange::from_filters(filters);
    let sources: Vec<Source> = snapshot
        .files
        .iter()
        .map(Source::File)
        .chain(snapshot.buffered.iter().map(Source::Buffer))
        .filter(|s| {
            let (min, max) = s.range();
            range.overlaps(min, max)
        })
        .collect();

    let mut plain_files = Vec::new();
    let mut merged = Vec::new();
    for group in overlap_groups(sources) {
        match group.as_slice() {
            [Source::File(f)] => plain_files.push(*f),
            _ => merged.push(merge_group(group, &schema, snapshot.def.key_len(), store).await?),
        }
    }

    let mut inputs: Vec<Arc<dyn ExecutionPlan>> = Vec::new();
    if !plain_files.is_empty() {
        inputs.push(parquet_scan(
            state,
            &schema,
            &plain_files,
            projection,
            filters,
        )?);
    }
    if !merged.is_empty() {
        let partitions: Vec<Vec<RecordBatch>> = merged.into_iter().map(|b| vec![b]).collect();
        inputs.push(MemorySourceConfig::try_new_exec(
            &partitions,
            schema.clone(),
            projection.cloned(),
        )?);
    }
    if inputs.is_empty() {
        let projected = match projection {
            Some(p) => Arc::new(schema.project(p)?),
            None => schema.clone(),
        };
        return Ok(Arc::new(EmptyExec::new(projected)));
    }
    UnionExec::try_new(inputs)
}

fn parquet_scan(
    state: &dyn Session,
    schema: &SchemaRef,
    files: &[&FileMeta],
    projection: Option<&Vec<usize>>,
    filters: &[Expr],
) -> DfResult<Arc<dyn ExecutionPlan>> {
    let mut source = ParquetSource::new(schema.clone());
    if let Some(predicate) = conjunction(filters.iter().cloned()) {
        let df_schema = DFSchema::try_from(schema.as_ref().clone())?;
        let physical = state.create_physical_expr(predicate, &df_schema)?;
        source = source.with_predicate(physical);
    }
    let n_groups = state.config().target_partitions().max(1).min(files.len());
    let mut groups: Vec<Vec<PartitionedFile>> = vec![Vec::new(); n_groups];
    for (i, f) in files.iter().enumerate() {
        groups[i % n_groups].push(PartitionedFile::new(f.path.clone(), f.bytes));
    }
    let config = FileScanConfigBuilder::new(ObjectStoreUrl::parse(STORE_URL)?, Arc::new(source))
        .with_file_groups(groups.into_iter().map(FileGroup::new).collect())
        .with_projection_indices(projection.cloned())?
        .build();
    Ok(DataSourceExec::from_data_source(config))
}

/// Read every source of an overlapping group, oldest write first, and deduplicate.
async fn merge_group(
    group: Vec<Source<'_>>,
    schema: &SchemaRef,
    key_len: usize,
    store: &Arc<dyn ObjectStore>,
) -> DfResult<RecordBatch> {
    let mut files: Vec<&FileMeta> = Vec::new();
    let mut buffers = Vec::new();
    for s in group {
        match s {
            Source::File(f) => files.push(f),
            Source::Buffer(b) => buffers.push(b),
        }
    }
    files.sort_by_key(|f| f.max_seq);
    let mut batches = Vec::new();
    for f in files {
        for b in read_parquet_file(store, &f.path).await? {
            batches.push(adapt_to_schema(&b, schema).map_err(ext)?);
        }
    }
    // Buffered partitions of one group are different months, so their order is free;
    // within one partition batches are already oldest first.
    for p in buffers {
        for b in &p.batches {
            batches.push(adapt_to_schema(b, schema).map_err(ext)?);
        }
    }
    let all = concat_batches(schema, &batches)?;
    sort_dedup(&all, key_len).map_err(ext)
}

async fn read_parquet_file(store: &Arc<dyn ObjectStore>, path: &str) -> DfResult<Vec<RecordBatch>> {
    let bytes: Bytes = store
        .get(&object_store::path::Path::from(path))
        .await
        .map_err(|e| DataFusionError::External(Box::new(e)))?
        .bytes()
        .await
        .map_err(|e| DataFusionError::External(Box::new(e)))?;
    let path = path.to_string();
    tokio::task::spawn_blocking(move || -> DfResult<Vec<RecordBatch>> {
        let reader = ParquetRecordBatchReaderBuilder::try_new(bytes)
            .and_then(|b| b.build())
            .map_err(|e| DataFusionError::Execution(format!("reading {path}: {e}")))?;
        reader
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| DataFusionError::Execution(format!("reading {path}: {e}")))
    })
    .await
    .map_err(|e| DataFusionError::External(Box::new(e)))?
}

pub(crate) fn ext(e: wattdb_storage::Error) -> DataFusionError {
    DataFusionError::External(Box::new(e))
}
