//! Reading a persisted Parquet file back as Arrow batches, optionally keeping only the
//! rows a filter selects (applied batch by batch, so only kept rows stay in memory).

use std::sync::Arc;

use arrow::array::BooleanArray;
use arrow::record_batch::RecordBatch;
use bytes::Bytes;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

use crate::error::{Error, Result};

/// Selects rows of a batch (true = keep).
pub type RowSelector = Arc<dyn Fn(&RecordBatch) -> Result<BooleanArray> + Send + Sync>;

/// Fetch and decode one file. With `select`, only the selected rows are returned.
pub async fn read_file(
    store: &Arc<dyn ObjectStore>,
    path: &str,
    select: Option<RowSelector>,
) -> Result<Vec<RecordBatch>> {
    let bytes: Bytes = store
        .get(&ObjectPath::from(path))
        .await
        .map_err(Error::object_store(path))?
        .bytes()
        .await
        .map_err(Error::object_store(path))?;
    let path = path.to_string();
    tokio::task::spawn_blocking(move || -> Result<Vec<RecordBatch>> {
        let perr = |source| Error::Parquet {
            path: path.clone(),
            source,
        };
        let reader = ParquetRecordBatchReaderBuilder::try_new(bytes)
            .and_then(|b| b.build())
            .map_err(perr)?;
        let mut out = Vec::new();
        for batch in reader {
            let batch = batch.map_err(|e| Error::Arrow {
                context: format!("decoding {path}"),
                source: e,
            })?;
            let batch = match &select {
                None => batch,
                Some(select) => {
                    let mask = select(&batch)?;
                    arrow::compute::filter_record_batch(&batch, &mask)
                        .map_err(Error::arrow(format!("filtering rows of {path}")))?
                }
            };
            if batch.num_rows() > 0 {
                out.push(batch);
            }
        }
        Ok(out)
    })
    .await?
}
