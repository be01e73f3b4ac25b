//! `system.tables`, `system.partitions`, `system.files`, `system.rollups`,
//! `system.compactions`, `system.archive`, `system.fulltext`: the storage state as tables, built fresh on every query;
//! and the views other subsystems register with storage (`system.alarms`, `system.alarm_state`).

use std::sync::Arc;

use arrow::array::{ArrayRef, Int64Array, StringArray, TimestampMicrosecondArray};
use arrow::datatypes::{DataType, Field, Schema, TimeUnit};
use arrow::record_batch::RecordBatch;
use datafusion::catalog::TableProvider;
use datafusion::datasource::MemTable;
use datafusion::error::Result as DfResult;
use wattdb_storage::Storage;

pub const NAMES: &[&str] = &[
    "tables",
    "partitions",
    "files",
    "rollups",
    "compactions",
    "archive",
    "fulltext",
];

fn mem(fields: Vec<Field>, cols: Vec<ArrayRef>) -> DfResult<Option<Arc<dyn TableProvider>>> {
    let schema = Arc::new(Schema::new(fields));
    let batch = RecordBatch::try_new(schema.clone(), cols)?;
    Ok(Some(Arc::new(MemTable::try_new(
        schema,
        vec![vec![batch]],
    )?)))
}

fn text(name: &str) -> Field {
    Field::new(name, DataType::Utf8, false)
}

fn int(name: &str) -> Field {
    Field::new(name, DataType::Int64, false)
}

fn ts(name: &str) -> Field {
    Field::new(
        name,
        DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
        false,
    )
}

fn strings(v: Vec<String>) -> ArrayRef {
    Arc::new(StringArray::from(v))
}

fn ints(v: Vec<i64>) -> ArrayRef {
    Arc::new(Int64Array::from(v))
}

pub fn build(storage: &Storage, name: &str) -> DfResult<Option<Arc<dyn TableProvider>>> {
    match name {
        "fulltext" => {
            let columns = storage.fulltext_columns();
            mem(
                vec![
                    text("table_name"),
                    text("column_name"),
                    text("analyzer"),
                    int("files"),
                    int("files_indexed"),
                    int("index_bytes"),
                ],
                vec![
                    strings(columns.iter().map(|c| c.table.clone()).collect()),
                    strings(columns.iter().map(|c| c.column.clone()).collect()),
                    strings(
                        columns
                            .iter()
                            .map(|c| c.analyzer.name().to_string())
                            .collect(),
                    ),
                    ints(columns.iter().map(|c| c.files as i64).collect()),
                    ints(columns.iter().map(|c| c.files_indexed as i64).collect()),
                    ints(columns.iter().map(|c| c.index_bytes as i64).collect()),
                ],
            )
        }
        "tables" => {
            let tables = storage.tables();
            let parts = storage.partitions();
            let sum = |t: &str, f: &dyn Fn(&wattdb_storage::PartitionInfo) -> i64| -> i64 {
                parts.iter().filter(|p| p.table == t).map(f).sum()
            };
            mem(
                vec![
                    text("table_name"),
                    text("tags"),
                    text("fields"),
                    int("partitions"),
                    int("files"),
                    int("rows_in_files"),
                    int("bytes_in_files"),
                    int("buffered_rows"),
                    text("kind"),
                    text("retention"),
                    text("expired_before"),
                ],
                vec![
                    strings(tables.iter().map(|t| t.name.clone()).collect()),
                    strings(tables.iter().map(|t| t.tags.join(", ")).collect()),
                    strings(
                        tables
                            .iter()
                            .map(|t| {
                                t.fields
                                    .iter()
                                    .map(|f| format!("{} {}", f.name, f.field_type.sql_name()))
                                    .collect::<Vec<_>>()
                                    .join(", ")
                            })
                            .collect(),
                    ),
                    ints(tables.iter().map(|t| sum(&t.name, &|_| 1)).collect()),
                    ints(
                        tables
                            .iter()
                            .map(|t| sum(&t.name, &|p| p.files as i64))
                            .collect(),
                    ),
                    ints(
                        tables
                            .iter()
                            .map(|t| sum(&t.name, &|p| p.file_rows as i64))
                            .collect(),
                    ),
                    ints(
                        tables
                            .iter()
                            .map(|t| sum(&t.name, &|p| p.file_bytes as i64))
                            .collect(),
                    ),
                    ints(
                        tables
                            .iter()
                            .map(|t| sum(&t.name, &|p| p.buffered_rows as i64))
                            .collect(),
                    ),
                    strings(
                        tables
                            .iter()
                            .map(|t| if t.is_rollup() { "rollup" } else { "raw" }.to_string())
                            .collect(),
                    ),
                    strings(
                        tables
                            .iter()
                            .map(|t| t.retention.clone().unwrap_or_else(|| "none".into()))
                            .collect(),
                    ),
                    strings(
                        tables
                            .iter()
                            .map(|t| t.expired_before.map(|m| m.to_string()).unwrap_or_default())
                            .collect(),
                    ),
                ],
            )
        }
        "partitions" => {
            let parts = storage.partitions();
            mem(
                vec![
                    text("table_name"),
                    text("month"),
                    int("files"),
                    int("rows_in_files"),
                    int("bytes_in_files"),
                    int("index_bytes"),
                    int("buffered_rows"),
                    int("buffered_bytes"),
                ],
                vec![
                    strings(parts.iter().map(|p| p.table.clone()).collect()),
                    strings(parts.iter().map(|p| p.month.to_string()).collect()),
                    ints(parts.iter().map(|p| p.files as i64).collect()),
                    ints(parts.iter().map(|p| p.file_rows as i64).collect()),
                    ints(parts.iter().map(|p| p.file_bytes as i64).collect()),
                    ints(parts.iter().map(|p| p.index_bytes as i64).collect()),
                    ints(parts.iter().map(|p| p.buffered_rows as i64).collect()),
                    ints(parts.iter().map(|p| p.buffered_bytes as i64).collect()),
                ],
            )
        }
        "files" => {
            let files = storage.files();
            let tsa = |v: Vec<i64>| -> ArrayRef {
                Arc::new(TimestampMicrosecondArray::from(v).with_timezone("UTC"))
            };
            mem(
                vec![
                    text("table_name"),
                    text("month"),
                    text("path"),
                    ts("min_ts"),
                    ts("max_ts"),
                    int("rows"),
                    int("bytes"),
                    ts("created_at"),
                    text("indexed_columns"),
                    int("index_bytes"),
                ],
                vec![
                    strings(files.iter().map(|(t, _)| t.clone()).collect()),
                    strings(files.iter().map(|(_, f)| f.month.to_string()).collect()),
                    strings(files.iter().map(|(_, f)| f.path.clone()).collect()),
                    tsa(files.iter().map(|(_, f)| f.min_ts).collect()),
                    tsa(files.iter().map(|(_, f)| f.max_ts).collect()),
                    ints(files.iter().map(|(_, f)| f.rows as i64).collect()),
                    ints(files.iter().map(|(_, f)| f.bytes as i64).collect()),
                    tsa(files.iter().map(|(_, f)| f.created_at_ms * 1000).collect()),
                    strings(
                        files
                            .iter()
                            .map(|(_, f)| {
                                let cols: Vec<&str> =
                                    f.fulltext.iter().map(|i| i.column.as_str()).collect();
                                cols.join(", ")
                            })
                            .collect(),
                    ),
                    ints(
                        files
                            .iter()
                            .map(|(_, f)| f.fulltext.iter().map(|i| i.bytes as i64).sum())
                            .collect(),
                    ),
                ],
            )
        }
        "rollups" => {
            let tables = storage.tables();
            let rollups: Vec<(&wattdb_storage::TableDef, &wattdb_storage::RollupOf)> = tables
                .iter()
                .filter_map(|t| t.rollup_of.as_ref().map(|r| (t, r)))
                .collect();
            let source = |r: &wattdb_storage::RollupOf| tables.iter().find(|t| t.id == r.source);
            mem(
                vec![
                    text("table_name"),
                    text("source"),
                    text("bucket"),
                    text("counters"),
                ],
                vec![
                    strings(rollups.iter().map(|(t, _)| t.name.clone()).collect()),
                    strings(
                        rollups
                            .iter()
                            .map(|(_, r)| source(r).map(|s| s.name.clone()).unwrap_or_default())
                            .collect(),
                    ),
                    strings(rollups.iter().map(|(_, r)| r.interval.clone()).collect()),
                    strings(
                        rollups
                            .iter()
                            .map(|(_, r)| {
                                source(r)
                                    .map(|s| s.rollups.counters.join(", "))
                                    .unwrap_or_default()
                            })
                            .collect(),
                    ),
                ],
            )
        }
        "compactions" => {
            let log = storage.recent_compactions();
            let tsa = |v: Vec<i64>| -> ArrayRef {
                Arc::new(TimestampMicrosecondArray::from(v).with_timezone("UTC"))
            };
            mem(
                vec![
                    ts("at"),
                    text("table_name"),
                    text("month"),
                    int("files_before"),
                    int("rows_before"),
                    int("bytes_before"),
                    int("rows_after"),
                    int("bytes_after"),
                    text("path"),
                ],
                vec![
                    tsa(log
                        .iter()
                        .map(|(_, r)| r.file.created_at_ms * 1000)
                        .collect()),
                    strings(log.iter().map(|(t, _)| t.clone()).collect()),
                    strings(log.iter().map(|(_, r)| r.month.to_string()).collect()),
                    ints(log.iter().map(|(_, r)| r.files_before as i64).collect()),
                    ints(log.iter().map(|(_, r)| r.rows_before as i64).collect()),
                    ints(log.iter().map(|(_, r)| r.bytes_before as i64).collect()),
                    ints(log.iter().map(|(_, r)| r.file.rows as i64).collect()),
                    ints(log.iter().map(|(_, r)| r.file.bytes as i64).collect()),
                    strings(log.iter().map(|(_, r)| r.file.path.clone()).collect()),
                ],
            )
        }
        "archive" => {
            let archived = storage.archived_partitions();
            let tsa = |v: Vec<Option<i64>>| -> ArrayRef {
                Arc::new(TimestampMicrosecondArray::from(v).with_timezone("UTC"))
            };
            let mut restored_until = ts("restored_until");
            restored_until.set_nullable(true);
            mem(
                vec![
                    text("table_name"),
                    text("month"),
                    int("files"),
                    int("rows"),
                    int("bytes"),
                    ts("archived_at"),
                    restored_until,
                ],
                vec![
                    strings(archived.iter().map(|(t, _)| t.name.clone()).collect()),
                    strings(archived.iter().map(|(_, a)| a.month.to_string()).collect()),
                    ints(archived.iter().map(|(_, a)| a.files.len() as i64).collect()),
                    ints(archived.iter().map(|(_, a)| a.rows() as i64).collect()),
                    ints(archived.iter().map(|(_, a)| a.bytes() as i64).collect()),
                    tsa(archived
                        .iter()
                        .map(|(_, a)| Some(a.archived_at_ms * 1000))
                        .collect()),
                    tsa(archived
                        .iter()
                        .map(|(t, a)| t.restored.get(&a.month).map(|ms| ms * 1000))
                        .collect()),
                ],
            )
        }
        other => match storage.extension_view(other) {
            Some(view) => {
                let batch = view
                    .batch()
                    .map_err(|e| datafusion::error::DataFusionError::External(Box::new(e)))?;
                Ok(Some(Arc::new(MemTable::try_new(
                    batch.schema(),
                    vec![vec![batch]],
                )?)))
            }
            None => Ok(None),
        },
    }
}
