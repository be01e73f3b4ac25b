//! One Parquet file's rows exactly as stored: in file order, with no DELETE applied and
//! nothing merged — what a per-file index must number (see `fulltext::file_indexes`).

use std::sync::Arc;

use arrow::datatypes::SchemaRef;
use datafusion::datasource::listing::PartitionedFile;
use datafusion::datasource::physical_plan::{FileGroup, FileScanConfigBuilder, ParquetSource};
use datafusion::datasource::source::DataSourceExec;
use datafusion::execution::SendableRecordBatchStream;
use datafusion::execution::object_store::ObjectStoreUrl;
use datafusion::physical_plan::ExecutionPlan;
use datafusion::prelude::SessionContext;

use super::STORE_URL;
use crate::catalog::FileMeta;
use crate::error::{Error, Result};

/// Columns `columns` (of the table schema `schema`; a file older than a column reads it
/// as NULL) of `file`, one stream in the file's row order.
pub fn stored_rows(
    session: &SessionContext,
    table: &str,
    schema: SchemaRef,
    file: &FileMeta,
    columns: &[usize],
) -> Result<SendableRecordBatchStream> {
    let plan = || -> datafusion::common::Result<SendableRecordBatchStream> {
        let source = ParquetSource::new(schema);
        let config =
            FileScanConfigBuilder::new(ObjectStoreUrl::parse(STORE_URL)?, Arc::new(source))
                .with_file_groups(vec![FileGroup::new(vec![PartitionedFile::new(
                    file.path.clone(),
                    file.bytes,
                )])])
                .with_projection_indices(Some(columns.to_vec()))?
                .with_preserve_order(true)
                .build();
        // One partition, executed as planned (no optimizer splits the file).
        DataSourceExec::from_data_source(config).execute(0, session.task_ctx())
    };
    plan().map_err(Error::read(table))
}
