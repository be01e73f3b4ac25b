use arrow::array::UInt32Array;
use arrow::compute::take_record_batch;
use arrow::record_batch::RecordBatch;
use arrow::row::{RowConverter, SortField};

use crate::error::{Error, Result};

/// Sort `batch` by primary key — tags (columns `1..key_len`) then `ts` (column 0) — and
/// keep, for each key, only the row that came last in the input (last write wins).
/// Callers concatenate sources oldest first.
pub fn sort_dedup(batch: &RecordBatch, key_len: usize) -> Result<RecordBatch> {
    let n = batch.num_rows();
    if n == 0 {
        return Ok(batch.clone());
    }
    let mut order: Vec<usize> = (1..key_len).collect();
    order.push(0);
    let key_cols: Vec<_> = order.iter().map(|&i| batch.column(i).clone()).collect();
    let converter = RowConverter::new(
        key_cols
            .iter()
            .map(|c| SortField::new(c.data_type().clone()))
            .collect(),
    )
    .map_err(Error::arrow("preparing key comparison"))?;
    let rows = converter
        .convert_columns(&key_cols)
        .map_err(Error::arrow("encoding primary keys"))?;
    let mut idx: Vec<u32> = (0..n as u32).collect();
    // Stable: equal keys keep input order, so the last of a run is the newest write.
    idx.sort_by(|&a, &b| rows.row(a as usize).cmp(&rows.row(b as usize)));
    let mut keep = Vec::with_capacity(n);
    for w in 0..idx.len() {
        let is_last_of_key =
            w + 1 == idx.len() || rows.row(idx[w] as usize) != rows.row(idx[w + 1] as usize);
        if is_last_of_key {
            keep.push(idx[w]);
        }
    }
    take_record_batch(batch, &UInt32Array::from(keep)).map_err(Error::arrow("applying dedup"))
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
        let got: Vec<_> = (0..out.num_rows())
            .map(|i| (pid.value(i).to_string(), ts.value(i), v.value(i)))
            .collect();
        assert_eq!(
            got,
            vec![
                ("a".into(), 1, 6.0),
                ("a".into(), 5, 4.0),
                ("b".into(), 1, 3.0),
                ("b".into(), 2, 5.0),
            ]
        );
        assert_eq!(v.null_count(), 0);
    }

    #[test]
    fn empty_batch_is_fine() {
        let b = rows_to_batch(&def(), [].iter()).unwrap();
        assert_eq!(sort_dedup(&b, 2).unwrap().num_rows(), 0);
    }
}
