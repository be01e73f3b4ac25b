//! Helpers shared by the compaction crate's tests: table `t` (the given tags and one
//! float field `v`), writing rows to it and reading it back as (pid, ts) → v.
#![allow(dead_code)] // each test binary uses a part

use std::collections::BTreeMap;

use arrow::array::{Float64Array, StringArray, TimestampMicrosecondArray};
use wattdb_storage::{FieldDef, FieldType, FieldValue, Row, Storage, WriteBatch, WriteMode};

pub type Rows = BTreeMap<(String, i64), f64>;

pub async fn create_t(storage: &Storage, tags: &[&str]) {
    storage
        .create_table(
            "t",
            tags.iter().map(|t| t.to_string()).collect(),
            vec![FieldDef {
                name: "v".into(),
                field_type: FieldType::Float,
            }],
            false,
        )
        .await
        .unwrap();
}

/// A row of `t` with tag `pid`.
pub fn row(pid: &str, ts: i64, v: f64) -> Row {
    Row {
        ts,
        tags: vec![("pid".into(), pid.into())],
        fields: vec![("v".into(), FieldValue::Float(v))],
    }
}

pub async fn write_t(storage: &Storage, rows: Vec<Row>) -> wattdb_storage::Result<()> {
    storage
        .write(
            WriteBatch {
                table: "t".into(),
                rows,
            },
            WriteMode::AllOrNothing,
            false,
        )
        .await
        .map(|_| ())
}

/// Every row of `t` (with tag `pid`) as the queries see it.
pub async fn contents(storage: &Storage) -> Rows {
    let Some(b) = storage
        .read_range("t", i64::MIN, i64::MAX, None)
        .await
        .unwrap()
    else {
        return Rows::new();
    };
    let ts = b
        .column(0)
        .as_any()
        .downcast_ref::<TimestampMicrosecondArray>()
        .unwrap();
    let pid = b.column(1).as_any().downcast_ref::<StringArray>().unwrap();
    let v = b.column(2).as_any().downcast_ref::<Float64Array>().unwrap();
    (0..b.num_rows())
        .map(|i| ((pid.value(i).to_string(), ts.value(i)), v.value(i)))
        .collect()
}
