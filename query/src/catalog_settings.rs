//! `pg_settings` in the PostgreSQL catalog emulation: one row per PostgreSQL parameter
//! wattdb knows ([`crate::pg::settings`]) — what psql's `SET`/`SHOW` tab completion and
//! tools such as DBeaver read. `setting`, `reset_val` and `boot_val` are PostgreSQL 15's
//! defaults, not the session's values (`SHOW` and `current_setting` give those);
//! `context` is `user` for what `SET` may change and `internal` otherwise. The
//! emulation's own view lists `standard_conforming_strings` only.

use std::sync::Arc;

use arrow::array::{ArrayRef, RecordBatch, StringArray, new_null_array};
use arrow::datatypes::{DataType, SchemaRef};
use datafusion::common::Result as DfResult;
use datafusion::datasource::{MemTable, TableProvider};

use crate::pg::settings::{CatalogSetting, catalog_settings};

/// `pg_settings` with the emulation's `schema`, its rows from wattdb's parameters.
pub fn settings_table(schema: SchemaRef) -> DfResult<Arc<dyn TableProvider>> {
    let rows = catalog_settings();
    let text = |f: &dyn Fn(&CatalogSetting) -> String| -> ArrayRef {
        Arc::new(StringArray::from(
            rows.iter().map(|r| Some(f(r))).collect::<Vec<_>>(),
        ))
    };
    let columns = schema
        .fields()
        .iter()
        .map(|field| match (field.name().as_str(), field.data_type()) {
            ("name", DataType::Utf8) => text(&|r| r.name.to_string()),
            ("setting" | "reset_val" | "boot_val" | "bool_val", DataType::Utf8) => {
                text(&|r| r.default.clone())
            }
            ("context", DataType::Utf8) => {
                text(&|r| if r.settable { "user" } else { "internal" }.to_string())
            }
            ("vartype", DataType::Utf8) => text(&|_| "string".to_string()),
            ("source", DataType::Utf8) => text(&|_| "default".to_string()),
            _ => new_null_array(field.data_type(), rows.len()),
        })
        .collect();
    let batch = RecordBatch::try_new(schema.clone(), columns)?;
    Ok(Arc::new(MemTable::try_new(schema, vec![vec![batch]])?))
}
