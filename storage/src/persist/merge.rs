//! Streaming k-way merge of Parquet files that are each sorted by (series, ts) and
//! deduplicated, into one such file written to the object store as it goes.
//!
//! Memory stays bounded whatever the size of the inputs: each input is read one batch at
//! a time (row group by row group from the store), and the output is encoded and
//! uploaded in parts. Of rows with equal keys the one from the newest input wins
//! (inputs are given oldest write first). The merge runs on a blocking thread, so a big
//! month does not hold up the runtime's workers.

use std::sync::Arc;

use arrow::compute::interleave_record_batch;
use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use arrow::row::{RowConverter, Rows, SortField};
use futures::StreamExt;
use object_store::ObjectStore;
use object_store::buffered::BufWriter;
use object_store::path::Path as ObjectPath;
use parquet::arrow::async_reader::ParquetRecordBatchStream;
use parquet::arrow::{AsyncArrowWriter, ParquetRecordBatchStreamBuilder};
use tokio::runtime::Handle;

use super::object_reader::ObjectReader;
use super::writer_properties;
use crate::batch::adapt_to_schema;
use crate::catalog::FileMeta;
use crate::error::{Error, Result};
use crate::model::TableDef;

/// Rows decoded per input batch.
const READ_BATCH_ROWS: usize = 8 * 1024;
/// Rows gathered before they are handed to the Parquet writer.
const OUT_BATCH_ROWS: usize = 64 * 1024;

/// What the merge wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MergedFile {
    pub rows: u64,
    pub bytes: u64,
}

/// Merge `inputs` (oldest write first) into a new file at `out_path`. On error the
/// partial upload is aborted and nothing is left at `out_path`.
pub async fn merge_files(
    store: &Arc<dyn ObjectStore>,
    def: &TableDef,
    inputs: &[FileMeta],
    out_path: &str,
) -> Result<MergedFile> {
    let rt = Handle::current();
    let (store, def, inputs, out_path) = (
        store.clone(),
        def.clone(),
        inputs.to_vec(),
        out_path.to_string(),
    );
    tokio::task::spawn_blocking(move || {
        let props = writer_properties(&def, &out_path)?;
        let schema = def.arrow_schema();
        let sink = BufWriter::new(store.clone(), ObjectPath::from(out_path.as_str()));
        let mut writer = AsyncArrowWriter::try_new(sink, schema.clone(), Some(props))
            .map_err(parquet_error(&out_path))?;
        let merged = merge_into(&rt, &store, &def, &schema, &inputs, &out_path, &mut writer);
        match merged {
            Ok(rows) => Ok(MergedFile {
                rows,
                bytes: writer.bytes_written() as u64,
            }),
            Err(e) => {
                let mut sink = writer.into_inner();
                if let Err(abort) = rt.block_on(sink.abort()) {
                    tracing::warn!(path = %out_path, error = %abort, "aborting a failed merge upload");
                }
                Err(e)
            }
        }
    })
    .await?
}

fn parquet_error(path: &str) -> impl Fn(parquet::errors::ParquetError) -> Error + '_ {
    move |source| Error::Parquet {
        path: path.to_string(),
        source,
    }
}

/// One input file: its stream, its current batch (a slot in the pool) and its keys.
struct Input {
    path: String,
    /// Position in write order: higher is newer.
    rank: usize,
    stream: ParquetRecordBatchStream<ObjectReader>,
    slot: usize,
    keys: Rows,
    pos: usize,
}

struct Merge<'a> {
    rt: &'a Handle,
    schema: &'a SchemaRef,
    converter: RowConverter,
    key_columns: Vec<usize>,
    /// Batches that pending output rows or the inputs' current positions refer to.
    pool: Vec<RecordBatch>,
}

impl Merge<'_> {
    /// Load `input`'s next non-empty batch; false when the input is exhausted.
    fn next_batch(&mut self, input: &mut Input) -> Result<bool> {
        loop {
            let Some(batch) = self.rt.block_on(input.stream.next()) else {
                return Ok(false);
            };
            let batch = batch.map_err(parquet_error(&input.path))?;
            if batch.num_rows() == 0 {
                continue;
            }
            let batch = adapt_to_schema(&batch, self.schema)?;
            let cols: Vec<_> = self
                .key_columns
                .iter()
                .map(|&i| batch.column(i).clone())
                .collect();
            input.keys = self
                .converter
                .convert_columns(&cols)
                .map_err(Error::arrow(format!("encoding keys of {}", input.path)))?;
            input.pos = 0;
            self.pool.push(batch);
            input.slot = self.pool.len() - 1;
            return Ok(true);
        }
    }
}

/// Does `a`'s current row come before `b`'s? Equal keys: the newer input first.
fn before(inputs: &[Input], a: usize, b: usize) -> bool {
    let (x, y) = (&inputs[a], &inputs[b]);
    x.keys
        .row(x.pos)
        .cmp(&y.keys.row(y.pos))
        .then(y.rank.cmp(&x.rank))
        .is_lt()
}

fn sift_down(heap: &mut [usize], inputs: &[Input], mut i: usize) {
    loop {
        let left = 2 * i + 1;
        if left >= heap.len() {
            return;
        }
        let right = left + 1;
        let child = if right < heap.len() && before(inputs, heap[right], heap[left]) {
            right
        } else {
            left
        };
        if !before(inputs, heap[child], heap[i]) {
            return;
        }
        heap.swap(child, i);
        i = child;
    }
}

type Writer = AsyncArrowWriter<BufWriter>;

fn merge_into(
    rt: &Handle,
    store: &Arc<dyn ObjectStore>,
    def: &TableDef,
    schema: &SchemaRef,
    files: &[FileMeta],
    out_path: &str,
    writer: &mut Writer,
) -> Result<u64> {
    let mut key_columns: Vec<usize> = (1..def.key_len()).collect();
    key_columns.push(0);
    let converter = RowConverter::new(
        key_columns
            .iter()
            .map(|&i| SortField::new(schema.field(i).data_type().clone()))
            .collect(),
    )
    .map_err(Error::arrow("preparing key comparison"))?;
    let mut merge = Merge {
        rt,
        schema,
        key_columns,
        pool: Vec::new(),
        converter,
    };
    let mut inputs = Vec::with_capacity(files.len());
    let mut heap = Vec::with_capacity(files.len());
    for (rank, f) in files.iter().enumerate() {
        let reader = ObjectReader::new(store.clone(), &f.path, f.bytes);
        let stream = rt
            .block_on(ParquetRecordBatchStreamBuilder::new(reader))
            .and_then(|b| b.with_batch_size(READ_BATCH_ROWS).build())
            .map_err(parquet_error(&f.path))?;
        let mut input = Input {
            path: f.path.clone(),
            rank,
            stream,
            slot: 0,
            keys: merge.converter.empty_rows(0, 0),
            pos: 0,
        };
        if merge.next_batch(&mut input)? {
            heap.push(inputs.len());
        }
        inputs.push(input);
    }
    for i in (0..heap.len() / 2).rev() {
        sift_down(&mut heap, &inputs, i);
    }

    let mut out: Vec<(usize, usize)> = Vec::with_capacity(OUT_BATCH_ROWS);
    let mut last_key: Option<Vec<u8>> = None;
    let mut rows = 0u64;
    while let Some(&top) = heap.first() {
        let input = &mut inputs[top];
        let key = input.keys.row(input.pos);
        // The first row of a key is the newest write; later ones are overwritten.
        if last_key.as_deref() != Some(key.as_ref()) {
            let buf = last_key.get_or_insert_with(Vec::new);
            buf.clear();
            buf.extend_from_slice(key.as_ref());
            out.push((input.slot, input.pos));
        }
        input.pos += 1;
        if input.pos == input.keys.num_rows() && !merge.next_batch(input)? {
            heap.swap_remove(0);
        }
        sift_down(&mut heap, &inputs, 0);
        if out.len() >= OUT_BATCH_ROWS {
            rows += write_out(&mut merge, &mut inputs, &heap, &mut out, writer, out_path)?;
        }
    }
    rows += write_out(&mut merge, &mut inputs, &heap, &mut out, writer, out_path)?;
    rt.block_on(writer.finish())
        .map_err(parquet_error(out_path))?;
    Ok(rows)
}

/// Gather the pending rows into a batch for the writer, then keep only the batches the
/// live inputs still point into.
fn write_out(
    merge: &mut Merge<'_>,
    inputs: &mut [Input],
    live: &[usize],
    out: &mut Vec<(usize, usize)>,
    writer: &mut Writer,
    out_path: &str,
) -> Result<u64> {
    let n = out.len() as u64;
    if n > 0 {
        let refs: Vec<&RecordBatch> = merge.pool.iter().collect();
        let batch = interleave_record_batch(&refs, out).map_err(Error::arrow(format!(
            "gathering merged rows for {out_path}"
        )))?;
        merge
            .rt
            .block_on(writer.write(&batch))
            .map_err(parquet_error(out_path))?;
        out.clear();
    }
    let pool = std::mem::take(&mut merge.pool);
    for &i in live {
        merge.pool.push(pool[inputs[i].slot].clone());
        inputs[i].slot = merge.pool.len() - 1;
    }
    Ok(n)
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
            });
        }
        let out = "m/month=1970-01/merged.parquet";
        let merged = merge_files(&store, &def, &files, out).await.unwrap();
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
