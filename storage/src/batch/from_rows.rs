use std::sync::Arc;

use arrow::array::{
    ArrayRef, BooleanBuilder, Float64Builder, Int64Builder, StringBuilder,
    TimestampMicrosecondBuilder,
};
use arrow::record_batch::RecordBatch;

use crate::error::{Error, Result};
use crate::model::schema::TS_TIMEZONE;
use crate::model::{FieldType, FieldValue, TableDef, ValidRow};

/// Build a batch in `def`'s current layout from rows validated against `def` or an older
/// version of it (missing trailing fields become null).
pub fn rows_to_batch<'a>(
    def: &TableDef,
    rows: impl ExactSizeIterator<Item = &'a ValidRow> + Clone,
) -> Result<RecordBatch> {
    let n = rows.len();
    let mut cols: Vec<ArrayRef> = Vec::with_capacity(def.key_len() + def.fields.len());
    let mut ts = TimestampMicrosecondBuilder::with_capacity(n).with_timezone(TS_TIMEZONE);
    for r in rows.clone() {
        ts.append_value(r.ts);
    }
    cols.push(Arc::new(ts.finish()));
    for i in 0..def.tags.len() {
        let mut b = StringBuilder::with_capacity(n, n * 8);
        for r in rows.clone() {
            b.append_value(r.tags.get(i).map(String::as_str).unwrap_or(""));
        }
        cols.push(Arc::new(b.finish()));
    }
    for (i, f) in def.fields.iter().enumerate() {
        let get = |r: &'a ValidRow| r.fields.get(i).and_then(|v| v.as_ref());
        let col: ArrayRef = match f.field_type {
            FieldType::Float => {
                let mut b = Float64Builder::with_capacity(n);
                for r in rows.clone() {
                    b.append_option(match get(r) {
                        Some(FieldValue::Float(v)) => Some(*v),
                        Some(FieldValue::Integer(v)) => Some(*v as f64),
                        _ => None,
                    });
                }
                Arc::new(b.finish())
            }
            FieldType::Integer => {
                let mut b = Int64Builder::with_capacity(n);
                for r in rows.clone() {
                    b.append_option(match get(r) {
                        Some(FieldValue::Integer(v)) => Some(*v),
                        _ => None,
                    });
                }
                Arc::new(b.finish())
            }
            FieldType::Boolean => {
                let mut b = BooleanBuilder::with_capacity(n);
                for r in rows.clone() {
                    b.append_option(match get(r) {
                        Some(FieldValue::Boolean(v)) => Some(*v),
                        _ => None,
                    });
                }
                Arc::new(b.finish())
            }
            FieldType::Text => {
                let mut b = StringBuilder::with_capacity(n, n * 8);
                for r in rows.clone() {
                    match get(r) {
                        Some(FieldValue::Text(v)) => b.append_value(v),
                        _ => b.append_null(),
                    }
                }
                Arc::new(b.finish())
            }
            FieldType::Timestamp => {
                let mut b =
                    TimestampMicrosecondBuilder::with_capacity(n).with_timezone(TS_TIMEZONE);
                for r in rows.clone() {
                    b.append_option(match get(r) {
                        Some(FieldValue::Timestamp(v)) => Some(*v),
                        _ => None,
                    });
                }
                Arc::new(b.finish())
            }
        };
        cols.push(col);
    }
    RecordBatch::try_new(def.arrow_schema(), cols).map_err(Error::arrow(format!(
        "building a batch for table \"{}\"",
        def.name
    )))
}
