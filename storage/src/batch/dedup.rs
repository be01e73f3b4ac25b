use arrow::compute::interleave_record_batch;
use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use arrow::row::{RowConverter, SortField};

use crate::error::{Error, Result};

/// Sort `batch` by primary key — tags (columns `1..key_len`) then `ts` (column 0) — and
/// keep, for each key, only the row that came last in the input (last write wins).
/// Callers concatenate sources oldest first.
pub fn sort_dedup(batch: &RecordBatch, key_len: usize) -> Result<RecordBatch> {
    sort_dedup_batches(&batch.schema(), std::slice::from_ref(batch), key_len)
}

/// [`sort_dedup`] over several batches of the same schema (oldest first) without
/// concatenating them first: the output is the only copy made, which halves the memory a
/// persist or a scan of a large buffer needs.
pub fn sort_dedup_batches(
    schema: &SchemaRef,
    batches: &[RecordBatch],
    key_len: usize,
) -> Result<RecordBatch> {
    let n: usize = batches.iter().map(|b| b.num_rows()).sum();
    if n == 0 {
        return Ok(RecordBatch::new_empty(schema.clone()));
    }
    let mut order: Vec<usize> = (1..key_len).collect();
    order.push(0);
    let converter = RowConverter::new(
        order
            .iter()
            .map(|&i| SortField::new(schema.field(i).data_type().clone()))
            .collect(),
    )
    .map_err(Error::arrow("preparing key comparison"))?;
    let keys = batches
        .iter()
        .map(|b| {
            let cols: Vec<_> = order.iter().map(|&i| b.column(i).clone()).collect();
            converter.convert_columns(&cols)
        })
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(Error::arrow("encoding primary keys"))?;
    let key = |&(b, r): &(usize, usize)| keys[b].row(r);
    let mut idx: Vec<(usize, usize)> = batches
        .iter()
        .enumerate()
        .flat_map(|(b, batch)| (0..batch.num_rows()).map(move |r| (b, r)))
        .collect();
    // Stable: equal keys keep input order, so the last of a run is the newest write.
    idx.sort_by(|a, b| key(a).cmp(&key(b)));
    let mut keep = Vec::with_capacity(n);
    for w in 0..idx.len() {
        if w + 1 == idx.len() || key(&idx[w]) != key(&idx[w + 1]) {
            keep.push(idx[w]);
        }
    }
    drop(idx);
    let refs: Vec<&RecordBatch> = batches.iter().collect();
    interleave_record_batch(&refs, &keep).map_err(Error::arrow("applying dedup"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::rows_to_batch;
    use crate::model::schema::FieldDef;
    use crate::model::{FieldType, FieldValue, TableDef, TableId, ValidRow};
    use arrow::array::{Array, Float64Array, StringArray, TimestampMicrosecondArray};

    fn def() -> TableDef {
        TableDef::new(
            TableId(1),
            "t",
            vec!["pid".into()],
            vec![FieldDef {
                name: "v".into(),
                field_type: FieldType::Float,
            }],
        )
        .unwrap()
    }

    fn row(pid: &str, ts: i64, v: f64) -> ValidRow {
        ValidRow {
            ts,
            tags: vec![pid.into()],
            fields: vec![Some(FieldValue::Float(v))],
        }
    }

    #[test]
    fn last_write_wins_and_sorted_by_series_then_ts() {
        let rows = [
            row("b", 2, 1.0),
            row("a", 5, 2.0),
            row("b", 1, 3.0),
            row("a", 5, 4.0), // overwrites ("a", 5)
            row("b", 2, 5.0), // overwrites ("b", 2)
            row("a", 1, 6.0),
        ];
        let b = rows_to_batch(&def(), rows.iter()).unwrap();
        let out = sort_dedup(&b, 2).unwrap();
        assert_eq!(
            rows_of(&out),
            vec![
                ("a".into(), 1, 6.0),
                ("a".into(), 5, 4.0),
                ("b".into(), 1, 3.0),
                ("b".into(), 2, 5.0),
            ]
        );
    }

    /// (pid, ts, v) of each output row; every `v` must be present.
    fn rows_of(out: &RecordBatch) -> Vec<(String, i64, f64)> {
        let ts = out
            .column(0)
            .as_any()
            .downcast_ref::<TimestampMicrosecondArray>()
            .unwrap();
        let pid = out
            .column(1)
            .as_any()
            .downcast_ref::<StringArray>()
            .unwrap();
        let v = out
            .column(2)
            .as_any()
            .downcast_ref::<Float64Array>()
            .unwrap();
        assert_eq!(v.null_count(), 0);
        (0..out.num_rows())
            .map(|i| (pid.value(i).to_string(), ts.value(i), v.value(i)))
            .collect()
    }

    #[test]
    fn empty_batch_is_fine() {
        let b = rows_to_batch(&def(), [].iter()).unwrap();
        assert_eq!(sort_dedup(&b, 2).unwrap().num_rows(), 0);
    }

    #[test]
    fn across_batches_the_later_batch_wins() {
        let older = rows_to_batch(&def(), [row("b", 1, 1.0), row("a", 2, 2.0)].iter()).unwrap();
        let newer = rows_to_batch(&def(), [row("b", 1, 9.0), row("a", 1, 3.0)].iter()).unwrap();
        let out = sort_dedup_batches(&older.schema(), &[older, newer], 2).unwrap();
        assert_eq!(
            rows_of(&out),
            vec![
                ("a".into(), 1, 3.0),
                ("a".into(), 2, 2.0),
                ("b".into(), 1, 9.0)
            ]
        );
    }
}
