//! Writes shared by the storage crate's end-to-end tests.

use wattdb_storage::{FieldValue, Row, WriteBatch};

/// Batch `i` of table `m`: 50 rows, one second apart after the previous batch's, over
/// five series `p0`..`p4`, each value its row number.
pub fn batch(i: i64) -> WriteBatch {
    WriteBatch {
        table: "m".into(),
        rows: (0..50)
            .map(|j| Row {
                ts: 1_793_491_200_000_000 + (i * 50 + j) * 1_000_000,
                tags: vec![("pid".into(), format!("p{}", j % 5))],
                fields: vec![("v".into(), FieldValue::Float((i * 50 + j) as f64))],
            })
            .collect(),
    }
}
