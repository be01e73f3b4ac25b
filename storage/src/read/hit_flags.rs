//! Full-text hits carried through a whole merge as a column.
//!
//! A merge of overlapping files whose indexes answered the full-text filters, but with
//! too many hits to narrow (see [`super::merge_candidates`]), is read whole — yet it
//! need not cut its text again. Each file is scanned with its row numbers (Parquet's
//! virtual `RowNumber` column), which become a boolean "is a hit" by the file's hit
//! list; buffered rows get theirs by evaluating the filters. The merge keeps the newest
//! version of each key with its flag, and the flagged rows are exactly the matching
//! ones: no text column is read for the files at all.

use std::sync::Arc;

use arrow::array::{AsArray, BooleanBuilder};
use arrow::datatypes::{DataType, Field, FieldRef, Int64Type, Schema, SchemaRef};
use arrow::record_batch::RecordBatch;
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::SendableRecordBatchStream;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use futures::StreamExt;
use parquet::arrow::RowNumber;

/// Name of the flag column a flagged merge carries (and of the row-number column it is
/// made from).
pub const HIT_COLUMN: &str = "__wattdb_text_hit";

/// The virtual column a file scan adds for its row numbers.
pub fn row_number_field() -> FieldRef {
    Arc::new(Field::new(HIT_COLUMN, DataType::Int64, true).with_extension_type(RowNumber))
}

/// The flag column.
pub fn hit_field() -> FieldRef {
    Arc::new(Field::new(HIT_COLUMN, DataType::Boolean, false))
}

/// `schema` with the flag column appended.
pub fn with_hit_field(schema: &Schema) -> SchemaRef {
    let mut fields: Vec<FieldRef> = schema.fields().iter().cloned().collect();
    fields.push(hit_field());
    Arc::new(Schema::new_with_metadata(fields, schema.metadata().clone()))
}

/// `stream`, whose last column holds file row numbers (ascending), with that column
/// replaced by whether each row is one of `hits` (ascending).
pub fn flag_hits(
    stream: SendableRecordBatchStream,
    hits: Arc<Vec<u64>>,
) -> Result<SendableRecordBatchStream> {
    let input = stream.schema();
    let Some((last, kept)) = input.fields().split_last() else {
        return Err(DataFusionError::Internal(
            "a flagged merge input has no row-number column".into(),
        ));
    };
    if last.data_type() != &DataType::Int64 {
        return Err(DataFusionError::Internal(format!(
            "a flagged merge input's last column {} is {}, not row numbers",
            last.name(),
            last.data_type()
        )));
    }
    let schema = with_hit_field(&Schema::new(kept.to_vec()));
    let out = schema.clone();
    let mapped = stream.map(move |batch| {
        let batch = batch?;
        flag_batch(&batch, &hits, &out)
    });
    Ok(Box::pin(RecordBatchStreamAdapter::new(schema, mapped)))
}

/// `batch` with its last column (row numbers) replaced by hit flags, as `schema`.
fn flag_batch(batch: &RecordBatch, hits: &[u64], schema: &SchemaRef) -> Result<RecordBatch> {
    let n = batch.num_columns();
    let rows = batch.column(n - 1).as_primitive::<Int64Type>();
    let mut flags = BooleanBuilder::with_capacity(rows.len());
    // Row numbers ascend: walk the hits from the first one not below the batch's start.
    let start = rows.iter().flatten().next().unwrap_or(0);
    let mut next = hits.partition_point(|&h| (h as i64) < start);
    for row in rows.iter() {
        let Some(row) = row else {
            return Err(DataFusionError::Internal(
                "a Parquet scan returned a row without its row number".into(),
            ));
        };
        while next < hits.len() && (hits[next] as i64) < row {
            next += 1;
        }
        flags.append_value(next < hits.len() && hits[next] as i64 == row);
    }
    let mut columns = batch.columns()[..n - 1].to_vec();
    columns.push(Arc::new(flags.finish()));
    Ok(RecordBatch::try_new(schema.clone(), columns)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{BooleanArray, Int32Array, Int64Array};

    #[test]
    fn row_numbers_become_hit_flags_across_batches() {
        let input = Arc::new(Schema::new(vec![
            Field::new("v", DataType::Int32, false),
            Field::new("row", DataType::Int64, true),
        ]));
        // Rows 0..4 and, after a pruned stretch, 10..13 of a file; hits 1, 3, 7, 11, 12.
        let batches = [vec![0i64, 1, 2, 3], vec![10, 11, 12]].map(|rows| {
            RecordBatch::try_new(
                input.clone(),
                vec![
                    Arc::new(Int32Array::from_iter_values(rows.iter().map(|r| *r as i32))),
                    Arc::new(Int64Array::from(rows)),
                ],
            )
            .expect("batch")
        });
        let schema = with_hit_field(&Schema::new(vec![input.field(0).clone()]));
        let hits = [1u64, 3, 7, 11, 12];
        let flags: Vec<Vec<bool>> = batches
            .iter()
            .map(|b| {
                let out = flag_batch(b, &hits, &schema).expect("flags");
                assert_eq!(out.schema().field(1).name(), HIT_COLUMN);
                let f: &BooleanArray = out.column(1).as_boolean();
                f.iter().map(|v| v.unwrap_or(false)).collect()
            })
            .collect();
        // Independently: a row is flagged iff it is in `hits`.
        let expected: Vec<Vec<bool>> = [vec![0u64, 1, 2, 3], vec![10, 11, 12]]
            .iter()
            .map(|rows| rows.iter().map(|r| hits.contains(r)).collect())
            .collect();
        assert_eq!(flags, expected);
    }
}
