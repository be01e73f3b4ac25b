//! Persistence of a buffered partition: sort by (series, ts), dedup (last write wins),
//! encode as Parquet (zstd, dictionary-encoded tags, page statistics, sort order and the
//! table definition in the footer) and put it at `<table>/month=YYYY-MM/<file-id>.parquet`.
//! Registering the file in the catalog and releasing the WAL are the engine's job.

mod merge;

use std::path::Path;
use std::sync::Arc;

use arrow::record_batch::RecordBatch;
use bytes::Bytes;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, Encoding, ZstdLevel};
use parquet::file::metadata::{KeyValue, SortingColumn};
use parquet::file::properties::{EnabledStatistics, WriterProperties};
use parquet::schema::types::ColumnPath;

use crate::batch::{adapt_to_schema, sort_dedup_batches};
use crate::buffer::Chunk;
use crate::catalog::FileMeta;
use crate::error::{Error, Result};
use crate::fulltext::file_indexes::{FileIndexer, PackedIndexes, TextIndexObject};
use crate::model::schema::TS_COLUMN;
use crate::model::{Month, TableDef};
use crate::wal::WalSeq;

pub use merge::{MergedFile, merge_files};

/// Rows per Parquet row group: small enough for statistics to prune well.
pub const ROW_GROUP_ROWS: usize = 256 * 1024;
/// Footer key holding the table definition (JSON), so a file describes itself.
pub const TABLE_DEF_KEY: &str = "wattdb.table";
/// Footer key holding the version of wattdb's file conventions (layout `ts`, tags,
/// fields; sorted by tags then ts; deduplicated). Bump when they change.
pub const FILE_FORMAT_KEY: &str = "wattdb.file_format_version";
pub const FILE_FORMAT_VERSION: &str = "1";

/// Refuse a file whose footer says it follows newer conventions than this build's
/// (a file without the key is taken as version 1, the first).
pub fn check_file_format(
    meta: &parquet::file::metadata::FileMetaData,
    path: &str,
) -> std::result::Result<(), String> {
    let version = meta
        .key_value_metadata()
        .into_iter()
        .flatten()
        .find(|kv| kv.key == FILE_FORMAT_KEY)
        .and_then(|kv| kv.value.as_deref());
    match version {
        None | Some(FILE_FORMAT_VERSION) => Ok(()),
        Some(v) => Err(format!(
            "{path}: wattdb file format version {v}, this build reads {FILE_FORMAT_VERSION} (written by a newer wattdb?)"
        )),
    }
}

pub fn file_path(table: &str, month: Month, file_id: &str) -> String {
    format!("{table}/month={month}/{file_id}.parquet")
}

/// A new file id: time-ordered and unique across nodes (UUIDv7).
pub fn new_file_id() -> String {
    uuid::Uuid::now_v7().simple().to_string()
}

/// Merge chunks (oldest first) into one sorted, deduplicated batch in `def`'s layout.
pub fn merge_chunks(def: &TableDef, batches: &[RecordBatch]) -> Result<RecordBatch> {
    let schema = def.arrow_schema();
    let adapted = batches
        .iter()
        .map(|b| adapt_to_schema(b, &schema))
        .collect::<Result<Vec<_>>>()?;
    sort_dedup_batches(&schema, &adapted, def.key_len())
}

/// Data page size of a full-text column (the default for other columns is 1 MiB).
pub const FULLTEXT_PAGE_BYTES: usize = 64 * 1024;

/// How wattdb writes Parquet: zstd, `ts` delta-encoded, dictionaries for tags and fields,
/// page statistics, row groups of [`ROW_GROUP_ROWS`], full-text columns without a
/// dictionary in pages of [`FULLTEXT_PAGE_BYTES`], the sort order and the table
/// definition in the footer.
pub fn writer_properties(def: &TableDef, path: &str) -> Result<WriterProperties> {
    let def_json = serde_json::to_string(def).map_err(|e| Error::Manifest {
        path: path.into(),
        reason: e.to_string(),
    })?;
    // Sorted by tags then ts: column indexes 1..key_len, then 0.
    let mut sorting: Vec<SortingColumn> = (1..def.key_len() as i32)
        .map(|i| SortingColumn {
            column_idx: i,
            descending: false,
            nulls_first: false,
        })
        .collect();
    sorting.push(SortingColumn {
        column_idx: 0,
        descending: false,
        nulls_first: false,
    });
    let zstd = ZstdLevel::try_new(3).map_err(|source| Error::Parquet {
        path: path.to_string(),
        source,
    })?;
    let mut props = WriterProperties::builder();
    // A full-text column is read at the rows its index found, page by page (see
    // `read::selected_pages`): small pages, and no dictionary (a hit in a row group
    // would otherwise fetch and decode its whole dictionary page, a megabyte of mostly
    // distinct text), keep a selective query from decoding megabytes per hit.
    for column in def.fulltext.keys() {
        props = props.set_column_dictionary_enabled(ColumnPath::from(column.as_str()), false);
        props = props.set_column_data_page_size_limit(
            ColumnPath::from(column.as_str()),
            FULLTEXT_PAGE_BYTES,
        );
    }
    Ok(props
        .set_compression(Compression::ZSTD(zstd))
        .set_dictionary_enabled(true)
        // Within a series `ts` rises in (nearly) equal steps: deltas pack it to a few
        // bits per row, where a dictionary overflows on a month of distinct instants
        // (1.9 → ~0 bytes per row on 1-minute data; see BENCHMARKS.md).
        .set_column_dictionary_enabled(ColumnPath::from(TS_COLUMN), false)
        .set_column_encoding(ColumnPath::from(TS_COLUMN), Encoding::DELTA_BINARY_PACKED)
        .set_statistics_enabled(EnabledStatistics::Page)
        .set_max_row_group_row_count(Some(ROW_GROUP_ROWS))
        .set_sorting_columns(Some(sorting))
        .set_key_value_metadata(Some(vec![
            KeyValue::new(FILE_FORMAT_KEY.to_string(), FILE_FORMAT_VERSION.to_string()),
            KeyValue::new(TABLE_DEF_KEY.to_string(), def_json),
        ]))
        .build())
}

pub fn encode_parquet(def: &TableDef, batch: &RecordBatch, path: &str) -> Result<Vec<u8>> {
    let perr = |source| Error::Parquet {
        path: path.to_string(),
        source,
    };
    let props = writer_properties(def, path)?;
    let mut out = Vec::new();
    let mut writer = ArrowWriter::try_new(&mut out, batch.schema(), Some(props)).map_err(perr)?;
    writer.write(batch).map_err(perr)?;
    writer.close().map_err(perr)?;
    Ok(out)
}

/// Write the frozen chunks of one partition as a Parquet file, with the full-text
/// indexes of its columns beside it (built in folders under `scratch`). Returns `None`
/// when there is nothing to write. An index that cannot be built or stored is logged
/// and left out (the file is then read whole, and the index built again later); the
/// file itself is never held back for it.
pub async fn persist_chunks(
    store: &Arc<dyn ObjectStore>,
    def: &TableDef,
    month: Month,
    chunks: &[Chunk],
    scratch: &Path,
) -> Result<Option<FileMeta>> {
    if chunks.is_empty() {
        return Ok(None);
    }
    let max_seq = chunks.iter().map(|c| c.max_seq).max().unwrap_or(WalSeq(0));
    let min_ts = chunks.iter().map(|c| c.min_ts).min().unwrap_or(0);
    let max_ts = chunks.iter().map(|c| c.max_ts).max().unwrap_or(0);
    let path = file_path(&def.name, month, &new_file_id());
    let batches: Vec<RecordBatch> = chunks.iter().map(|c| c.batch.clone()).collect();
    let (def2, path2, scratch) = (def.clone(), path.clone(), scratch.to_path_buf());
    let (rows, data, indexes) = tokio::task::spawn_blocking(move || -> Result<_> {
        let merged = merge_chunks(&def2, &batches)?;
        let data = encode_parquet(&def2, &merged, &path2)?;
        let indexes = index_batch(&def2, &path2, &merged, &scratch);
        Ok((merged.num_rows(), data, indexes))
    })
    .await??;
    let bytes = data.len() as u64;
    store
        .put(
            &ObjectPath::from(path.as_str()),
            PutPayload::from(Bytes::from(data)),
        )
        .await
        .map_err(Error::object_store(&path))?;
    let fulltext = upload_indexes(store, &path, indexes).await;
    Ok(Some(FileMeta {
        table_id: def.id,
        month,
        path,
        min_ts,
        max_ts,
        rows: rows as u64,
        bytes,
        max_seq,
        created_at_ms: chrono::Utc::now().timestamp_millis(),
        deletes_applied: WalSeq(0),
        fulltext,
    }))
}

/// The full-text indexes of the file `path` holding `batch` (none when the table has no
/// full-text column, or when building failed: logged).
fn index_batch(
    def: &TableDef,
    path: &str,
    batch: &RecordBatch,
    scratch: &Path,
) -> Option<PackedIndexes> {
    let built = (|| -> Result<Option<PackedIndexes>> {
        let Some(mut indexer) = FileIndexer::new(def, path, scratch)? else {
            return Ok(None);
        };
        indexer.add_batch(batch)?;
        Ok(Some(indexer.finish()?))
    })();
    built.unwrap_or_else(|e| {
        tracing::warn!(file = %path, error = %e,
            "could not build the file's full-text index; it is read without one");
        None
    })
}

/// Store the indexes of `path`; what the catalog lists (nothing when the upload failed:
/// logged).
pub(crate) async fn upload_indexes(
    store: &Arc<dyn ObjectStore>,
    path: &str,
    indexes: Option<PackedIndexes>,
) -> Vec<TextIndexObject> {
    let Some(indexes) = indexes else {
        return Vec::new();
    };
    indexes.upload(store).await.unwrap_or_else(|e| {
        tracing::warn!(file = %path, error = %e,
            "could not store the file's full-text index; it is read without one");
        Vec::new()
    })
}

#[cfg(test)]
mod tests {
    use parquet::file::reader::{FileReader, SerializedFileReader};

    use super::*;
    use crate::model::schema::FieldDef;
    use crate::model::{FieldType, FieldValue, TableId, ValidRow};

    #[test]
    fn a_newer_file_format_is_refused() {
        use parquet::arrow::ArrowWriter;
        use parquet::file::properties::WriterProperties;
        let schema = Arc::new(arrow::datatypes::Schema::new(vec![
            arrow::datatypes::Field::new("x", arrow::datatypes::DataType::Int64, false),
        ]));
        let batch = RecordBatch::try_new(
            schema.clone(),
            vec![Arc::new(arrow::array::Int64Array::from(vec![1]))],
        )
        .unwrap();
        let props = WriterProperties::builder()
            .set_key_value_metadata(Some(vec![KeyValue::new(
                FILE_FORMAT_KEY.to_string(),
                "2".to_string(),
            )]))
            .build();
        let mut data = Vec::new();
        let mut w = ArrowWriter::try_new(&mut data, schema, Some(props)).unwrap();
        w.write(&batch).unwrap();
        w.close().unwrap();
        let reader = SerializedFileReader::new(Bytes::from(data)).unwrap();
        let err = check_file_format(reader.metadata().file_metadata(), "t/x.parquet").unwrap_err();
        assert!(
            err.contains("t/x.parquet") && err.contains("version 2"),
            "{err}"
        );
    }

    #[test]
    fn files_are_sorted_deduplicated_and_self_describing() {
        let def = TableDef::new(
            TableId(7),
            "m",
            vec!["pid".into()],
            vec![FieldDef {
                name: "v".into(),
                field_type: FieldType::Float,
            }],
        )
        .unwrap();
        let row = |pid: &str, ts: i64, v: f64| ValidRow {
            ts,
            tags: vec![pid.into()],
            fields: vec![Some(FieldValue::Float(v))],
        };
        let older =
            crate::batch::rows_to_batch(&def, [row("b", 1, 1.0), row("a", 2, 2.0)].iter()).unwrap();
        let newer = crate::batch::rows_to_batch(&def, [row("b", 1, 9.0)].iter()).unwrap();
        let merged = merge_chunks(&def, &[older, newer]).unwrap();
        assert_eq!(merged.num_rows(), 2);
        let data = encode_parquet(&def, &merged, "m/month=1970-01/x.parquet").unwrap();
        let reader = SerializedFileReader::new(Bytes::from(data)).unwrap();
        let meta = reader.metadata().file_metadata();
        let kv: std::collections::HashMap<_, _> = meta
            .key_value_metadata()
            .unwrap()
            .iter()
            .map(|k| (k.key.clone(), k.value.clone().unwrap_or_default()))
            .collect();
        assert_eq!(
            kv.get(FILE_FORMAT_KEY).map(String::as_str),
            Some("1"),
            "{:?}",
            kv.keys()
        );
        let back: TableDef = serde_json::from_str(&kv[TABLE_DEF_KEY]).unwrap();
        assert_eq!(back, def);
        // wattdb's footer keys are pinned (storage/FORMATS.md): exactly these two (beside
        // the Arrow writer's own ARROW:schema).
        let mut keys: Vec<&str> = kv
            .keys()
            .map(String::as_str)
            .filter(|k| *k != "ARROW:schema")
            .collect();
        keys.sort_unstable();
        assert_eq!(keys, [FILE_FORMAT_KEY, TABLE_DEF_KEY]);
        assert_eq!(
            (TABLE_DEF_KEY, FILE_FORMAT_KEY),
            ("wattdb.table", "wattdb.file_format_version")
        );
        assert!(check_file_format(meta, "x").is_ok());
        assert_eq!(meta.num_rows(), 2);
        let rg = reader.metadata().row_group(0);
        assert_eq!(rg.sorting_columns().map(|s| s.len()), Some(2));
        assert!(
            rg.column(0).statistics().is_some(),
            "ts has statistics for pruning"
        );
        assert!(
            rg.column(0)
                .encodings()
                .any(|e| e == Encoding::DELTA_BINARY_PACKED),
            "ts is delta-encoded"
        );
    }
}
