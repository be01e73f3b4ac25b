//! `INSERT` into a wattdb table: DataFusion hands us batches already cast to the table's
//! schema; we turn them into rows and write them through the storage write path, so the
//! statement completes only when every row is durable in the WAL.

use std::fmt;
use std::sync::Arc;

use arrow::array::{Array, AsArray};
use arrow::datatypes::{DataType, SchemaRef, TimeUnit, TimestampMicrosecondType};
use arrow::record_batch::RecordBatch;
use async_trait::async_trait;
use datafusion::common::{DataFusionError, Result as DfResult};
use datafusion::datasource::sink::DataSink;
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::physical_plan::{DisplayAs, DisplayFormatType};
use futures::StreamExt;
use wattdb_storage::batch::field_value;
use wattdb_storage::{Row, Storage, TableDef, WriteBatch, WriteMode};

pub struct InsertSink {
    storage: Storage,
    def: TableDef,
    schema: SchemaRef,
}

impl InsertSink {
    pub fn new(storage: Storage, def: TableDef) -> Self {
        let schema = def.arrow_schema();
        InsertSink {
            storage,
            def,
            schema,
        }
    }
}

impl fmt::Debug for InsertSink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "InsertSink({})", self.def.name)
    }
}

impl DisplayAs for InsertSink {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "WattdbInsert: table={}", self.def.name)
    }
}

#[async_trait]
impl DataSink for InsertSink {
    fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    async fn write_all(
        &self,
        mut data: SendableRecordBatchStream,
        _ctx: &Arc<TaskContext>,
    ) -> DfResult<u64> {
        let mut total = 0u64;
        while let Some(batch) = data.next().await {
            let n = write_batch(&self.storage, &self.def, &batch?)
                .await
                .map_err(|e| match e {
                    InsertError::Rows(e) => e,
                    InsertError::Storage(e) => DataFusionError::from(e),
                })?;
            total += n as u64;
        }
        Ok(total)
    }
}

/// Why [`write_batch`] failed.
#[derive(Debug)]
pub enum InsertError {
    /// The batch does not make rows of the table (a NULL key, a type it cannot hold).
    Rows(DataFusionError),
    Storage(wattdb_storage::Error),
}

/// Write `batch` (in the table's layout) as one all-or-nothing write; returns the number
/// of rows once they are durable. Shared by the insert sink and the direct path for
/// prepared INSERTs.
pub async fn write_batch(
    storage: &Storage,
    def: &TableDef,
    batch: &RecordBatch,
) -> Result<usize, InsertError> {
    let rows = batch_to_rows(def, batch).map_err(InsertError::Rows)?;
    let n = rows.len();
    storage
        .write(
            WriteBatch {
                table: def.name.clone(),
                rows,
            },
            WriteMode::AllOrNothing,
            false,
        )
        .await
        .map_err(InsertError::Storage)?;
    Ok(n)
}

/// Rows of a batch in the table's layout (`ts`, tags, fields). Null key values are refused.
pub fn batch_to_rows(def: &TableDef, batch: &RecordBatch) -> DfResult<Vec<Row>> {
    let bad = |msg: String| DataFusionError::Execution(format!("table \"{}\": {msg}", def.name));
    let ts_col = batch.column(0);
    let ts = match ts_col.data_type() {
        DataType::Timestamp(TimeUnit::Microsecond, _) => {
            ts_col.as_primitive::<TimestampMicrosecondType>().clone()
        }
        other => {
            let cast = arrow::compute::cast(
                ts_col,
                &DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
            )
            .map_err(|e| bad(format!("ts of type {other} is not a timestamp: {e}")))?;
            cast.as_primitive::<TimestampMicrosecondType>().clone()
        }
    };
    let mut rows = Vec::with_capacity(batch.num_rows());
    for i in 0..batch.num_rows() {
        if ts.is_null(i) {
            return Err(bad(format!("row {}: ts must not be null", i + 1)));
        }
        let mut tags = Vec::with_capacity(def.tags.len());
        for (t, name) in def.tags.iter().enumerate() {
            let col = batch.column(1 + t);
            let s = col
                .as_string_opt::<i32>()
                .ok_or_else(|| bad(format!("tag {name} is not text")))?;
            if s.is_null(i) {
                return Err(bad(format!(
                    "row {}: tag \"{name}\" must not be null",
                    i + 1
                )));
            }
            tags.push((name.clone(), s.value(i).to_string()));
        }
        let mut fields = Vec::with_capacity(def.fields.len());
        for (f, fd) in def.fields.iter().enumerate() {
            let v = match field_value(batch.column(def.key_len() + f), i) {
                Ok(Some(v)) => v,
                Ok(None) => continue,
                Err(other) => {
                    return Err(bad(format!(
                        "column {} has unsupported type {other}",
                        fd.name
                    )));
                }
            };
            fields.push((fd.name.clone(), v));
        }
        rows.push(Row {
            ts: ts.value(i),
            tags,
            fields,
        });
    }
    Ok(rows)
}
