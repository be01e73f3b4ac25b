//! A buffered partition as a merge input: its rows that pass the key filters, projected,
//! sorted by (tags, ts) and deduplicated (later writes win), produced when the query
//! first asks for them — not when it is planned — and handed out in batch-sized slices.
//! The sorted copy is charged to the query's memory pool while the stream lives.

use std::sync::Arc;

use arrow::array::{Array, AsArray};
use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use datafusion::error::Result;
use datafusion::execution::SendableRecordBatchStream;
use datafusion::execution::memory_pool::MemoryReservation;
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use futures::StreamExt;

use super::hit_flags::with_hit_field;
use super::merge_memory::batch_bytes;
use crate::batch::{adapt_to_schema, sort_dedup_batches};

#[derive(Debug, Clone)]
pub struct BufferSource {
    /// The table's current schema.
    pub table_schema: SchemaRef,
    /// Oldest first, possibly in older layouts of the table.
    pub batches: Vec<RecordBatch>,
    /// Filters over key columns only (evaluated against `table_schema`).
    pub key_filter: Option<Arc<dyn PhysicalExpr>>,
    /// Columns of `table_schema` to produce; the key columns come first.
    pub columns: Vec<usize>,
    pub key_len: usize,
    pub rows: usize,
    /// The full-text filters (evaluated against `table_schema`): when set, whether each
    /// row passes them is appended as a last column (see [`super::hit_flags`]).
    pub hit: Option<Arc<dyn PhysicalExpr>>,
}

impl BufferSource {
    pub fn stream(
        self,
        batch_size: usize,
        memory: MemoryReservation,
    ) -> Result<SendableRecordBatchStream> {
        let schema = self.schema()?;
        let sorted =
            futures::stream::once(async move { self.sorted(&memory).map(|b| (b, memory)) });
        let batch_size = batch_size.max(1);
        let slices = sorted.flat_map(move |r| {
            let (out, memory): (Vec<Result<RecordBatch>>, _) = match r {
                Err(e) => (vec![Err(e)], None),
                Ok((b, memory)) => (
                    (0..b.num_rows())
                        .step_by(batch_size)
                        .map(|o| Ok(b.slice(o, batch_size.min(b.num_rows() - o))))
                        .collect(),
                    Some(memory),
                ),
            };
            // The reservation lives as long as the slices of the sorted copy.
            futures::stream::iter(out).map(move |b| {
                let _held = &memory;
                b
            })
        });
        Ok(Box::pin(RecordBatchStreamAdapter::new(schema, slices)))
    }

    /// The columns produced: `columns`, then the hit flag if asked for.
    fn schema(&self) -> Result<SchemaRef> {
        let projected = self.table_schema.project(&self.columns)?;
        Ok(match &self.hit {
            Some(_) => with_hit_field(&projected),
            None => Arc::new(projected),
        })
    }

    /// The rows, sorted; `memory` holds the sorted copy's size (reserved before the sort
    /// as the size of the rows it is made of, then set to the copy's).
    fn sorted(&self, memory: &MemoryReservation) -> Result<RecordBatch> {
        let schema = self.schema()?;
        let mut kept = Vec::with_capacity(self.batches.len());
        for b in &self.batches {
            let full = adapt_to_schema(b, &self.table_schema)?;
            let full = match &self.key_filter {
                None => full,
                Some(f) => {
                    let mask = f.evaluate(&full)?.into_array(full.num_rows())?;
                    arrow::compute::filter_record_batch(&full, mask.as_boolean())?
                }
            };
            if full.num_rows() == 0 {
                continue;
            }
            let mut projected = full.project(&self.columns)?;
            if let Some(hit) = &self.hit {
                let flags = hit.evaluate(&full)?.into_array(full.num_rows())?;
                // A NULL (e.g. a NULL text) is no match.
                let flags = flags.as_boolean();
                let flags = match flags.nulls() {
                    Some(_) => arrow::compute::prep_null_mask_filter(flags),
                    None => flags.clone(),
                };
                let mut columns = projected.columns().to_vec();
                columns.push(Arc::new(flags));
                projected = RecordBatch::try_new(schema.clone(), columns)?;
            }
            kept.push(projected);
        }
        memory.try_grow(kept.iter().map(batch_bytes).sum())?;
        let sorted = sort_dedup_batches(&schema, &kept, self.key_len)?;
        drop(kept);
        memory.resize(batch_bytes(&sorted));
        Ok(sorted)
    }
}
