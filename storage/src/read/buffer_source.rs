//! A buffered partition as a merge input: its rows that pass the key filters, projected,
//! sorted by (tags, ts) and deduplicated (later writes win), produced when the query
//! first asks for them — not when it is planned — and handed out in batch-sized slices.

use std::sync::Arc;

use arrow::array::AsArray;
use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use datafusion::error::Result;
use datafusion::execution::SendableRecordBatchStream;
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use futures::StreamExt;

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
}

impl BufferSource {
    pub fn stream(self, batch_size: usize) -> Result<SendableRecordBatchStream> {
        let schema = Arc::new(self.table_schema.project(&self.columns)?);
        let sorted = futures::stream::once(async move { self.sorted() });
        let batch_size = batch_size.max(1);
        let slices = sorted.flat_map(move |r| {
            let out: Vec<Result<RecordBatch>> = match r {
                Err(e) => vec![Err(e)],
                Ok(b) => (0..b.num_rows())
                    .step_by(batch_size)
                    .map(|o| Ok(b.slice(o, batch_size.min(b.num_rows() - o))))
                    .collect(),
            };
            futures::stream::iter(out)
        });
        Ok(Box::pin(RecordBatchStreamAdapter::new(schema, slices)))
    }

    fn sorted(&self) -> Result<RecordBatch> {
        let schema = Arc::new(self.table_schema.project(&self.columns)?);
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
            if full.num_rows() > 0 {
                kept.push(full.project(&self.columns)?);
            }
        }
        Ok(sort_dedup_batches(&schema, &kept, self.key_len)?)
    }
}
