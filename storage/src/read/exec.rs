//! [`LastWriteWinsExec`]: the DataFusion plan node that merges overlapping sources of
//! one table (Parquet files read row group by row group, buffered partitions) into one
//! deduplicated stream sorted by (tags, ts). See [`super::merge`] for the algorithm.
//!
//! The node is a leaf to the optimizer: its sources are planned by [`super::plan`] (with
//! the projection and the key-only filters pushed into every Parquet read) and must not
//! be rearranged — a merge needs each source whole and in order — so they are held
//! inside rather than exposed as children.

use std::fmt;
use std::sync::Arc;

use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::error::Result;
use datafusion::execution::memory_pool::MemoryConsumer;
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::physical_expr::{EquivalenceProperties, PhysicalExpr};
use datafusion::physical_plan::execution_plan::{Boundedness, EmissionType};
use datafusion::physical_plan::metrics::MetricsSet;
use datafusion::physical_plan::stream::RecordBatchReceiverStream;
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, ExecutionPlan, Partitioning, PlanProperties,
    ReplaceChildrenOptions,
};
use futures::StreamExt;

use super::buffer_source::BufferSource;
use super::hit_flags::flag_hits;
use super::merge::{MergeInput, MergeShape, merge_stream};
use super::merge_memory::MergeMemory;

/// Batches each source decodes ahead of the merge (on another task, so decoding and
/// merging use different cores).
const PREFETCH_BATCHES: usize = 2;

/// One input of the merge.
#[derive(Debug, Clone)]
pub enum MergeSource {
    /// One partition of a plan (a Parquet scan with one file per partition).
    Plan {
        plan: Arc<dyn ExecutionPlan>,
        partition: usize,
        /// Estimated bytes its reader holds (a row group of the columns read).
        reader_bytes: usize,
        /// The file's full-text hits (ascending): the plan's last column holds row
        /// numbers, which the merge reads as hit flags (see [`super::hit_flags`]).
        hits: Option<Arc<Vec<u64>>>,
    },
    Buffer(BufferSource),
}

#[derive(Debug, Clone)]
pub struct LastWriteWinsExec {
    /// What is merged, for EXPLAIN (e.g. "month=2026-10").
    label: String,
    /// Oldest write first.
    sources: Vec<MergeSource>,
    shape: MergeShape,
    files: usize,
    buffered_rows: usize,
    properties: Arc<PlanProperties>,
}

impl LastWriteWinsExec {
    pub fn try_new(label: String, sources: Vec<MergeSource>, shape: MergeShape) -> Result<Self> {
        let schema = shape.output_schema()?;
        let properties = PlanProperties::new(
            EquivalenceProperties::new(schema),
            Partitioning::UnknownPartitioning(1),
            EmissionType::Incremental,
            Boundedness::Bounded,
        );
        let files = sources
            .iter()
            .filter(|s| matches!(s, MergeSource::Plan { .. }))
            .count();
        let buffered_rows = sources
            .iter()
            .map(|s| match s {
                MergeSource::Buffer(b) => b.rows,
                MergeSource::Plan { .. } => 0,
            })
            .sum();
        Ok(LastWriteWinsExec {
            label,
            sources,
            shape,
            files,
            buffered_rows,
            properties: Arc::new(properties),
        })
    }
}

impl DisplayAs for LastWriteWinsExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        write!(
            f,
            "LastWriteWinsExec: {}, files={}, buffered_rows={}",
            self.label, self.files, self.buffered_rows
        )?;
        if let Some(fetch) = self.shape.fetch {
            write!(f, ", fetch={fetch}")?;
        }
        Ok(())
    }
}

impl ExecutionPlan for LastWriteWinsExec {
    fn name(&self) -> &str {
        "LastWriteWinsExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.properties
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![]
    }

    fn apply_expressions(
        &self,
        _f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> Result<TreeNodeRecursion>,
    ) -> Result<TreeNodeRecursion> {
        Ok(TreeNodeRecursion::Continue)
    }

    fn replace_children(
        self: Arc<Self>,
        _children: Vec<Arc<dyn ExecutionPlan>>,
        _options: ReplaceChildrenOptions,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        Ok(self)
    }

    #[allow(deprecated)]
    fn with_new_children(
        self: Arc<Self>,
        _children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        Ok(self)
    }

    /// The metrics of the scans inside (e.g. Parquet's `bytes_scanned`), which are not
    /// children of this node: EXPLAIN ANALYZE and tests see what a merge read.
    fn metrics(&self) -> Option<MetricsSet> {
        let mut seen: Vec<*const ()> = Vec::new();
        let mut out = MetricsSet::new();
        let mut todo: Vec<&Arc<dyn ExecutionPlan>> = self
            .sources
            .iter()
            .filter_map(|s| match s {
                MergeSource::Plan { plan, .. } => Some(plan),
                MergeSource::Buffer(_) => None,
            })
            .collect();
        while let Some(plan) = todo.pop() {
            let id = Arc::as_ptr(plan) as *const ();
            if seen.contains(&id) {
                continue;
            }
            seen.push(id);
            if let Some(m) = plan.metrics() {
                for metric in m.iter() {
                    out.push(metric.clone());
                }
            }
            todo.extend(plan.children());
        }
        Some(out)
    }

    fn supports_limit_pushdown(&self) -> bool {
        true
    }

    fn with_fetch(&self, limit: Option<usize>) -> Option<Arc<dyn ExecutionPlan>> {
        let mut new = self.clone();
        new.shape.fetch = match (limit, self.shape.fetch) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        Some(Arc::new(new))
    }

    fn fetch(&self) -> Option<usize> {
        self.shape.fetch
    }

    fn execute(
        &self,
        partition: usize,
        context: Arc<TaskContext>,
    ) -> Result<SendableRecordBatchStream> {
        if partition != 0 {
            return datafusion::common::internal_err!(
                "LastWriteWinsExec has one partition, asked for {partition}"
            );
        }
        let batch_size = context.session_config().batch_size();
        let mut shape = self.shape.clone();
        shape.batch_size = batch_size;
        // The merge's own memory is charged to the query pool: the readers up front.
        let reservation = MemoryConsumer::new(format!("LastWriteWinsExec[{}]", self.label))
            .register(context.memory_pool());
        let readers: usize = self
            .sources
            .iter()
            .map(|s| match s {
                MergeSource::Plan { reader_bytes, .. } => *reader_bytes,
                MergeSource::Buffer(_) => 0,
            })
            .sum();
        let buffer_reservation = reservation.new_empty();
        let memory = MergeMemory::try_new(reservation, readers, PREFETCH_BATCHES)?;
        let mut inputs = Vec::with_capacity(self.sources.len());
        for source in &self.sources {
            let input = match source {
                MergeSource::Plan {
                    plan,
                    partition,
                    hits,
                    ..
                } => {
                    let stream = plan.execute(*partition, context.clone())?;
                    MergeInput::new(match hits {
                        Some(hits) => flag_hits(stream, hits.clone())?,
                        None => stream,
                    })
                }
                MergeSource::Buffer(b) => MergeInput {
                    stream: b
                        .clone()
                        .stream(batch_size, buffer_reservation.new_empty())?,
                    // Slices of the sorted copy the source has charged already.
                    charge: false,
                },
            };
            inputs.push(MergeInput {
                stream: prefetched(input.stream),
                charge: input.charge,
            });
        }
        merge_stream(shape, inputs, memory)
    }
}

/// Drive `stream` on its own task, a few batches ahead of its consumer.
fn prefetched(mut stream: SendableRecordBatchStream) -> SendableRecordBatchStream {
    let mut builder = RecordBatchReceiverStream::builder(stream.schema(), PREFETCH_BATCHES);
    let tx = builder.tx();
    builder.spawn(async move {
        while let Some(item) = stream.next().await {
            let stop = item.is_err();
            if tx.send(item).await.is_err() || stop {
                break;
            }
        }
        Ok(())
    });
    builder.build()
}
