//! Catalog relations PostgreSQL has that are empty on wattdb, with PostgreSQL 15's
//! columns: `pg_prepared_xacts` (wattdb has no two-phase commit: psycopg's `tpc_recover()`
//! lists nothing) and `pg_available_extensions` / `pg_available_extension_versions`
//! (nothing can be installed; DBeaver lists them).

use std::sync::Arc;

use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use datafusion::catalog::TableProvider;
use datafusion::datasource::MemTable;
use datafusion::error::Result as DfResult;

/// The relations, by name.
pub const EMPTY_RELATIONS: &[&str] = &[
    "pg_prepared_xacts",
    "pg_available_extensions",
    "pg_available_extension_versions",
];

fn schema(relation: &str) -> Option<SchemaRef> {
    let text = |n: &str| Field::new(n, DataType::Utf8, true);
    let flag = |n: &str| Field::new(n, DataType::Boolean, true);
    let fields = match relation {
        "pg_prepared_xacts" => vec![
            Field::new("transaction", DataType::Int64, true),
            text("gid"),
            Field::new(
                "prepared",
                DataType::Timestamp(TimeUnit::Microsecond, Some(Arc::from("UTC"))),
                true,
            ),
            text("owner"),
            text("database"),
        ],
        "pg_available_extensions" => vec![
            text("name"),
            text("default_version"),
            text("installed_version"),
            text("comment"),
        ],
        "pg_available_extension_versions" => vec![
            text("name"),
            text("version"),
            flag("installed"),
            flag("superuser"),
            flag("trusted"),
            flag("relocatable"),
            text("schema"),
            Field::new(
                "requires",
                DataType::List(Arc::new(Field::new("item", DataType::Utf8, true))),
                true,
            ),
            text("comment"),
        ],
        _ => return None,
    };
    Some(Arc::new(Schema::new(fields)))
}

/// `relation` (one of [`EMPTY_RELATIONS`]), with no rows.
pub fn empty_table(relation: &str) -> DfResult<Option<Arc<dyn TableProvider>>> {
    let Some(schema) = schema(relation) else {
        return Ok(None);
    };
    Ok(Some(Arc::new(MemTable::try_new(schema, vec![vec![]])?)))
}
