//! Compaction's merge: Parquet files of one month, each sorted by (series, ts) and
//! deduplicated, become one such file written to the object store as it goes.
//!
//! The rows come from the read path's streaming last-write-wins merge
//! ([`crate::read::plan_scan`] with `ordered`), so memory stays bounded whatever the size
//! of the inputs; the output is encoded and uploaded in parts. Of rows with equal keys
//! the one from the newest input wins (inputs are ranked by `max_seq`).

use std::path::Path;
use std::sync::Arc;

use datafusion::prelude::SessionContext;
use futures::StreamExt;
use object_store::ObjectStore;
use object_store::buffered::BufWriter;
use object_store::path::Path as ObjectPath;
use parquet::arrow::AsyncArrowWriter;

use super::writer_properties;
use crate::catalog::FileMeta;
use crate::engine::TableSnapshot;
use crate::error::{Error, Result};
use crate::fulltext::file_indexes::{FileIndexer, IndexerTask, TextIndexObject};
use crate::model::TableDef;
use crate::read::{ScanRequest, ordered_stream};

/// What the merge wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MergedFile {
    pub rows: u64,
    pub bytes: u64,
    /// The full-text indexes built beside it (see [`super::persist_chunks`]).
    pub fulltext: Vec<TextIndexObject>,
}

/// Merge `inputs` into a new file at `out_path`, reading them through `session` (whose
/// runtime knows the store under [`crate::read::STORE_URL`]), with the rows `tombstones`
/// remove from each input left out. On error the partial upload is aborted and nothing
/// is left at `out_path`. The full-text indexes of the new file are built (in folders
/// under `scratch`) as its rows go by, and stored beside it.
pub async fn merge_files(
    session: &SessionContext,
    store: &Arc<dyn ObjectStore>,
    def: &TableDef,
    inputs: &[FileMeta],
    tombstones: &[Arc<crate::model::Tombstone>],
    out_path: &str,
    scratch: &Path,
) -> Result<MergedFile> {
    let props = writer_properties(def, out_path)?;
    let schema = def.arrow_schema();
    let sink = BufWriter::new(store.clone(), ObjectPath::from(out_path));
    let mut writer =
        AsyncArrowWriter::try_new(sink, schema, Some(props)).map_err(parquet_error(out_path))?;
    let snapshot = TableSnapshot {
        def: def.clone(),
        files: inputs.to_vec(),
        buffered: Vec::new(),
        tombstones: tombstones.to_vec(),
    };
    let request = ScanRequest {
        ordered: true,
        small_files: None,
        text_hits: None,
        ..Default::default()
    };
    let mut indexer = match FileIndexer::new(def, out_path, scratch) {
        Ok(ix) => ix.map(IndexerTask::spawn),
        Err(e) => {
            tracing::warn!(file = %out_path, error = %e,
                "could not start the file's full-text index; it is read without one");
            None
        }
    };
    let written = async {
        let mut stream = ordered_stream(session, &snapshot, &request)?;
        let mut rows = 0u64;
        while let Some(batch) = stream.next().await {
            let batch = batch.map_err(Error::read(&def.name))?;
            rows += batch.num_rows() as u64;
            if let Some(ix) = &mut indexer {
                ix.add(&batch).await;
            }
            writer
                .write(&batch)
                .await
                .map_err(parquet_error(out_path))?;
        }
        Ok::<_, Error>(rows)
    }
    .await;
    let rows = match written {
        Ok(rows) => rows,
        Err(e) => {
            let mut sink = writer.into_inner();
            if let Err(abort) = sink.abort().await {
                tracing::warn!(path = %out_path, error = %abort, "aborting a failed merge upload");
            }
            return Err(e);
        }
    };
    // A failed finish cannot be aborted: the writer has begun its shutdown, and
    // object_store's BufWriter panics on an abort after that. Nothing is visible at
    // `out_path` either way (an upload is atomic); the parts of an incomplete S3
    // multipart upload are left to the bucket's lifecycle rule.
    writer.finish().await.map_err(parquet_error(out_path))?;
    let indexes = match indexer {
        Some(ix) => ix.finish().await.map_or_else(
            |e| {
                tracing::warn!(file = %out_path, error = %e,
                    "could not build the file's full-text index; it is read without one");
                None
            },
            Some,
        ),
        None => None,
    };
    Ok(MergedFile {
        rows,
        bytes: writer.bytes_written() as u64,
        fulltext: super::upload_indexes(store, out_path, indexes).await,
    })
}

fn parquet_error(path: &str) -> impl Fn(parquet::errors::ParquetError) -> Error + '_ {
    move |source| Error::Parquet {
        path: path.to_string(),
        source,
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use arrow::array::{Array, Float64Array, StringArray, TimestampMicrosecondArray};
    use bytes::Bytes;
    use object_store::memory::InMemory;
    use object_store::{ObjectStoreExt, PutPayload};
    use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

    use super::*;
    use crate::batch::{rows_to_batch, sort_dedup};
    use crate::model::schema::FieldDef;
    use crate::model::{FieldType, FieldValue, Month, TableId, ValidRow};
    use crate::persist::encode_parquet;

    fn def() -> TableDef {
        TableDef::new(
            TableId(3),
            "m",
            vec!["pid".into()],
            vec![FieldDef {
                name: "v".into(),
                field_type: FieldType::Float,
            }],
        )
        .unwrap()
    }

    /// A tiny deterministic generator (xorshift), so the test needs no extra crate.
    fn next(state: &mut u64) -> u64 {
        *state ^= *state << 13;
        *state ^= *state >> 7;
        *state ^= *state << 17;
        *state
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn merges_many_batches_newest_write_wins() {
        let def = def();
        let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
        let mut oracle: BTreeMap<(String, i64), f64> = BTreeMap::new();
        let mut files = Vec::new();
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        // Sizes cross read batches (8k) and output batches (64k); keys collide across
        // files; one file is empty of overlap, one is tiny.
        for (n, rows) in [70_000usize, 120_000, 3, 40_000, 90_000]
            .into_iter()
            .enumerate()
        {
            let mut batch_rows = Vec::with_capacity(rows);
            for _ in 0..rows {
                let pid = format!("p{:03}", next(&mut state) % 300);
                let ts = (next(&mut state) % 5_000) as i64 * 60_000_000;
                let v = (next(&mut state) % 1_000_000) as f64 / 7.0;
                batch_rows.push(ValidRow {
                    ts,
                    tags: vec![pid],
                    fields: vec![Some(FieldValue::Float(v))],
                });
            }
            // Within a file the last occurrence wins (that is how a persist dedups).
            for r in &batch_rows {
                let Some(FieldValue::Float(v)) = r.fields[0] else {
                    unreachable!()
                };
                oracle.insert((r.tags[0].clone(), r.ts), v);
            }
            let batch = rows_to_batch(&def, batch_rows.iter()).unwrap();
            let batch = sort_dedup(&batch, def.key_len()).unwrap();
            let path = format!("m/month=1970-01/{n}.parquet");
            let data = encode_parquet(&def, &batch, &path).unwrap();
            let bytes = data.len() as u64;
            store
                .put(&ObjectPath::from(path.as_str()), PutPayload::from(data))
                .await
                .unwrap();
            files.push(FileMeta {
                table_id: def.id,
                month: Month::of_micros(0),
                path,
                min_ts: 0,
                max_ts: 0,
                rows: batch.num_rows() as u64,
                bytes,
                max_seq: crate::wal::WalSeq(n as u64),
                created_at_ms: 0,
                deletes_applied: crate::wal::WalSeq(0),
                fulltext: Vec::new(),
            });
        }
        let out = "m/month=1970-01/merged.parquet";
        let session = SessionContext::new();
        session.runtime_env().register_object_store(
            &url::Url::parse(crate::read::STORE_URL).unwrap(),
            store.clone(),
        );
        let merged = merge_files(
            &session,
            &store,
            &def,
            &files,
            &[],
            out,
            &std::env::temp_dir(),
        )
        .await
        .unwrap();
        assert_eq!(merged.rows, oracle.len() as u64);

        let data: Bytes = store
            .get(&ObjectPath::from(out))
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
        assert_eq!(merged.bytes, data.len() as u64);
        let reader = ParquetRecordBatchReaderBuilder::try_new(data)
            .unwrap()
            .build()
            .unwrap();
        let mut got = Vec::new();
        for b in reader {
            let b = b.unwrap();
            let ts = b
                .column(0)
                .as_any()
                .downcast_ref::<TimestampMicrosecondArray>();
            let pid = b.column(1).as_any().downcast_ref::<StringArray>();
            let v = b.column(2).as_any().downcast_ref::<Float64Array>();
            let (ts, pid, v) = (ts.unwrap(), pid.unwrap(), v.unwrap());
            for i in 0..b.num_rows() {
                got.push(((pid.value(i).to_string(), ts.value(i)), v.value(i)));
            }
        }
        let want: Vec<_> = oracle.into_iter().collect();
        assert_eq!(got.len(), want.len());
        assert!(got == want, "merged rows differ from the oracle");
    }
}
