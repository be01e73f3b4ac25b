//! Turning a [`TableSnapshot`] into an execution plan.
//!
//! Sources (Parquet files and buffered partitions) outside the query's time range are
//! skipped. The rest are grouped by overlapping time ranges: a key (tags + ts) can only
//! appear in two sources whose ranges overlap, so a source that overlaps nothing is read
//! as it is — a file through DataFusion's Parquet scan (statistics pruning, projection and
//! predicate pushdown) — and only overlapping groups are merged and deduplicated (last
//! write wins: files in `max_seq` order, then the buffer) in memory.

use std::sync::Arc;

use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
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
use object_store::ObjectStore;
use wattdb_storage::batch::{adapt_to_schema, sort_dedup_batches};
use wattdb_storage::persist::read_file;
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
        for b in read_file(store, &f.path, None).await.map_err(ext)? {
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
    sort_dedup_batches(schema, &batches, key_len).map_err(ext)
}

pub(crate) fn ext(e: wattdb_storage::Error) -> DataFusionError {
    DataFusionError::External(Box::new(e))
}

#[cfg(test)]
mod tests {
    use datafusion::physical_plan::displayable;
    use datafusion::prelude::{SessionContext, col, lit};
    use datafusion::scalar::ScalarValue;
    use wattdb_storage::model::schema::FieldDef;
    use wattdb_storage::wal::WalSeq;
    use wattdb_storage::{FieldType, Month, TableDef, TableId};

    use super::*;

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
        }
    }

    fn ts(us: i64) -> Expr {
        lit(ScalarValue::TimestampMicrosecond(
            Some(us),
            Some("UTC".into()),
        ))
    }

    #[tokio::test]
    async fn months_and_files_outside_the_filter_are_not_scanned() {
        let def = TableDef::new(
            TableId(1),
            "t",
            vec!["pid".into()],
            vec![FieldDef {
                name: "v".into(),
                field_type: FieldType::Float,
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
        };
        let ctx = SessionContext::new();
        let store: Arc<dyn ObjectStore> = Arc::new(object_store::memory::InMemory::new());
        let filters = vec![
            col("ts").gt_eq(ts(oct.start_micros() + 4000)),
            col("ts").lt(ts(nov.start_micros())),
        ];
        let plan = plan_scan(&ctx.state(), &snapshot, &store, None, &filters)
            .await
            .unwrap();
        let shown = displayable(plan.as_ref()).indent(true).to_string();
        assert!(shown.contains("f3.parquet"), "{shown}");
        for pruned in ["f1.parquet", "f2.parquet", "f4.parquet"] {
            assert!(
                !shown.contains(pruned),
                "{pruned} should be pruned:\n{shown}"
            );
        }
        // No filter: every file, and none merged (no overlaps).
        let plan = plan_scan(&ctx.state(), &snapshot, &store, None, &[])
            .await
            .unwrap();
        let shown = displayable(plan.as_ref()).indent(true).to_string();
        for f in ["f1", "f2", "f3", "f4"] {
            assert!(shown.contains(f), "{shown}");
        }
        assert!(
            !shown.contains("DataSourceExec: partitions=1, partition_sizes"),
            "{shown}"
        );
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
