//! A table and a file for the catalog's format tests (manifest, sled entries): the same
//! sample pinned in both encodings.

use super::FileMeta;
use crate::model::schema::FieldDef;
use crate::model::{FieldType, Month, TableDef, TableId};
use crate::wal::WalSeq;

/// Table `electric` (id 3): tag `pid`, float field `ua`.
pub fn electric() -> TableDef {
    TableDef::new(
        TableId(3),
        "electric",
        vec!["pid".into()],
        vec![FieldDef {
            name: "ua".into(),
            field_type: FieldType::Float,
        }],
    )
    .unwrap()
}

/// One file of [`electric`] in 2026-11.
pub fn electric_file() -> FileMeta {
    FileMeta {
        table_id: TableId(3),
        month: Month::parse("2026-11").unwrap(),
        path: "electric/month=2026-11/0001.parquet".into(),
        min_ts: 10,
        max_ts: 20,
        rows: 2,
        bytes: 900,
        max_seq: WalSeq(7),
        created_at_ms: 1,
        deletes_applied: WalSeq(0),
        fulltext: Vec::new(),
    }
}
