//! The streaming last-write-wins merge: k inputs, each sorted by (tags, ts) and free of
//! duplicate keys, become one such stream in which every key appears once, carrying the
//! row of the newest input that has it (inputs are ranked oldest write first).
//!
//! The merge works in *runs*: the input at the top of the heap emits, in one step, all of
//! its rows whose keys are smaller than the next input's head (found by binary search),
//! so inputs that do not interleave — different series, different time ranges of one
//! series — cost one comparison per run, not per row, and a run that fills a whole
//! output batch is passed on without a copy. Keys are compared in Arrow's row format.
//!
//! Memory: one current batch per input (plus what the inputs prefetch) and one output
//! batch, whatever the size of the inputs; charged to the query pool through
//! [`MergeMemory`].

use std::sync::Arc;

use arrow::array::RecordBatchOptions;
use arrow::compute::{concat_batches, interleave_record_batch};
use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use arrow::row::{OwnedRow, Row, RowConverter, Rows, SortField};
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::SendableRecordBatchStream;
use futures::StreamExt;
use futures::future::try_join_all;

use super::merge_memory::MergeMemory;

/// One input of the merge.
pub struct MergeInput {
    pub stream: SendableRecordBatchStream,
    /// Charge the batches it hands out to the merge's memory (false when the input's
    /// rows are charged already, e.g. slices of a sorted buffered partition).
    pub charge: bool,
}

impl MergeInput {
    pub fn new(stream: SendableRecordBatchStream) -> Self {
        MergeInput {
            stream,
            charge: true,
        }
    }
}

/// How the merge is shaped: which columns form the key, what it emits.
#[derive(Debug, Clone)]
pub struct MergeShape {
    /// Schema of every input.
    pub input_schema: SchemaRef,
    /// Key columns in comparison order (tags, then `ts`), as indexes of the input schema.
    pub key_columns: Vec<usize>,
    /// Columns of the input schema that are emitted, in output order.
    pub output_columns: Vec<usize>,
    /// Rows per output batch.
    pub batch_size: usize,
    /// Stop after this many rows.
    pub fetch: Option<usize>,
}

impl MergeShape {
    pub fn output_schema(&self) -> Result<SchemaRef> {
        Ok(Arc::new(self.input_schema.project(&self.output_columns)?))
    }
}

/// One input's position: its current batch and that batch's keys.
struct Cursor {
    stream: SendableRecordBatchStream,
    /// Higher is newer.
    rank: usize,
    charge: bool,
    batch: RecordBatch,
    keys: Rows,
    pos: usize,
    /// Where this cursor's current batch sits in the output being gathered.
    out_slot: Option<usize>,
}

impl Cursor {
    fn key(&self) -> Row<'_> {
        self.keys.row(self.pos)
    }
}

/// Does cursor `a` come before cursor `b`? Smaller key first; on equal keys the newer.
fn before(cursors: &[Cursor], a: usize, b: usize) -> bool {
    let (x, y) = (&cursors[a], &cursors[b]);
    x.key().cmp(&y.key()).then(y.rank.cmp(&x.rank)).is_lt()
}

fn sift_down(heap: &mut [usize], cursors: &[Cursor], mut i: usize) {
    loop {
        let left = 2 * i + 1;
        if left >= heap.len() {
            return;
        }
        let right = left + 1;
        let child = if right < heap.len() && before(cursors, heap[right], heap[left]) {
            right
        } else {
            left
        };
        if !before(cursors, heap[child], heap[i]) {
            return;
        }
        heap.swap(child, i);
        i = child;
    }
}

/// The merge in progress.
pub struct LastWriteWins {
    shape: MergeShape,
    output_schema: SchemaRef,
    converter: RowConverter,
    cursors: Vec<Cursor>,
    /// Indexes of cursors with rows left, as a binary min-heap (see [`before`]).
    heap: Vec<usize>,
    /// The key emitted last: an older input's row with this key is overwritten.
    last_key: Option<OwnedRow>,
    /// Projected batches the gathered runs refer to.
    out_batches: Vec<RecordBatch>,
    /// Gathered runs: (slot in `out_batches`, first row, row count).
    runs: Vec<(usize, usize, usize)>,
    out_rows: usize,
    emitted: usize,
    memory: MergeMemory,
}

impl LastWriteWins {
    /// Start a merge; `inputs` are given oldest write first. Every input's first batch is
    /// awaited concurrently.
    pub async fn start(
        shape: MergeShape,
        inputs: Vec<MergeInput>,
        memory: MergeMemory,
    ) -> Result<Self> {
        let converter = RowConverter::new(
            shape
                .key_columns
                .iter()
                .map(|&i| SortField::new(shape.input_schema.field(i).data_type().clone()))
                .collect(),
        )?;
        let output_schema = shape.output_schema()?;
        let firsts = try_join_all(inputs.into_iter().map(|mut input| async move {
            let first = next_non_empty(&mut input.stream).await?;
            Ok::<_, DataFusionError>((input, first))
        }))
        .await?;
        let mut merge = LastWriteWins {
            shape,
            output_schema,
            converter,
            cursors: Vec::new(),
            heap: Vec::new(),
            last_key: None,
            out_batches: Vec::new(),
            runs: Vec::new(),
            out_rows: 0,
            emitted: 0,
            memory,
        };
        for (rank, (input, first)) in firsts.into_iter().enumerate() {
            let Some(batch) = first else { continue };
            let keys = merge.keys_of(&batch)?;
            let i = merge.cursors.len();
            merge.memory.hold(i, &batch, keys.size(), input.charge)?;
            merge.heap.push(i);
            merge.cursors.push(Cursor {
                stream: input.stream,
                rank,
                charge: input.charge,
                batch,
                keys,
                pos: 0,
                out_slot: None,
            });
        }
        for i in (0..merge.heap.len() / 2).rev() {
            sift_down(&mut merge.heap, &merge.cursors, i);
        }
        Ok(merge)
    }

    pub fn output_schema(&self) -> SchemaRef {
        self.output_schema.clone()
    }

    fn keys_of(&self, batch: &RecordBatch) -> Result<Rows> {
        let cols: Vec<_> = self
            .shape
            .key_columns
            .iter()
            .map(|&i| batch.column(i).clone())
            .collect();
        Ok(self.converter.convert_columns(&cols)?)
    }

    fn limit_left(&self) -> usize {
        self.shape.fetch.map_or(usize::MAX, |f| {
            f.saturating_sub(self.emitted + self.out_rows)
        })
    }

    /// The next output batch; `None` when every input is exhausted (or the fetch is met).
    pub async fn next_batch(&mut self) -> Result<Option<RecordBatch>> {
        let target = self.shape.batch_size.max(1);
        while self.out_rows < target && self.limit_left() > 0 {
            let Some(&top) = self.heap.first() else { break };
            self.emit_run(top, (target - self.out_rows).min(self.limit_left()));
            let c = &self.cursors[top];
            if c.pos == c.keys.num_rows() {
                self.advance(top).await?;
            } else {
                sift_down(&mut self.heap, &self.cursors, 0);
            }
        }
        self.flush()
    }

    /// Gather the top cursor's rows that come before every other input's head (at least
    /// its head row, which wins ties), at most `room` of them.
    fn emit_run(&mut self, top: usize, room: usize) {
        let second = match self.heap.len() {
            0 | 1 => None,
            2 => Some(self.heap[1]),
            _ if before(&self.cursors, self.heap[2], self.heap[1]) => Some(self.heap[2]),
            _ => Some(self.heap[1]),
        };
        let c = &self.cursors[top];
        let n = c.keys.num_rows();
        let mut end = match second {
            None => n,
            Some(s) => {
                let bound = self.cursors[s].key();
                if c.keys.row(n - 1) < bound {
                    n
                } else {
                    // First row not below the other head; rows are strictly increasing.
                    let (mut lo, mut hi) = (c.pos, n - 1);
                    while lo < hi {
                        let mid = lo + (hi - lo) / 2;
                        if c.keys.row(mid) < bound {
                            lo = mid + 1;
                        } else {
                            hi = mid;
                        }
                    }
                    lo
                }
            }
        }
        .max(c.pos + 1);
        let mut start = c.pos;
        if self
            .last_key
            .as_ref()
            .is_some_and(|k| k.row() == c.keys.row(start))
        {
            // A newer input already gave this key.
            start += 1;
        }
        end = end.min(start.saturating_add(room)).max(start);
        if end > start {
            let slot = match c.out_slot {
                Some(s) => s,
                None => {
                    let projected = c.batch.project(&self.shape.output_columns);
                    // Projection by valid indexes of the input schema cannot fail.
                    let projected = projected.unwrap_or_else(|_| c.batch.clone());
                    self.out_batches.push(projected);
                    self.out_batches.len() - 1
                }
            };
            self.last_key = Some(c.keys.row(end - 1).owned());
            self.runs.push((slot, start, end - start));
            self.out_rows += end - start;
            let c = &mut self.cursors[top];
            c.out_slot = Some(slot);
        }
        self.cursors[top].pos = end;
    }

    /// The top cursor's batch is used up: load its next one or retire it.
    async fn advance(&mut self, top: usize) -> Result<()> {
        let next = next_non_empty(&mut self.cursors[top].stream).await?;
        match next {
            Some(batch) => {
                let keys = self.keys_of(&batch)?;
                let charge = self.cursors[top].charge;
                self.memory.hold(top, &batch, keys.size(), charge)?;
                let c = &mut self.cursors[top];
                c.batch = batch;
                c.keys = keys;
                c.pos = 0;
                c.out_slot = None;
            }
            None => {
                self.memory.release(top);
                let last = self.heap.len() - 1;
                self.heap.swap(0, last);
                self.heap.pop();
            }
        }
        sift_down(&mut self.heap, &self.cursors, 0);
        Ok(())
    }

    /// Turn the gathered runs into one batch.
    fn flush(&mut self) -> Result<Option<RecordBatch>> {
        let rows = self.out_rows;
        if rows == 0 {
            return Ok(None);
        }
        let batch = if self.output_schema.fields().is_empty() {
            RecordBatch::try_new_with_options(
                self.output_schema.clone(),
                vec![],
                &RecordBatchOptions::new().with_row_count(Some(rows)),
            )?
        } else if let [(slot, start, len)] = self.runs[..] {
            self.out_batches[slot].slice(start, len)
        } else if self.runs.len() * 8 <= rows {
            // Long runs: copy slices.
            let slices: Vec<RecordBatch> = self
                .runs
                .iter()
                .map(|&(slot, start, len)| self.out_batches[slot].slice(start, len))
                .collect();
            concat_batches(&self.output_schema, &slices)?
        } else {
            let mut indices = Vec::with_capacity(rows);
            for &(slot, start, len) in &self.runs {
                indices.extend((start..start + len).map(|r| (slot, r)));
            }
            let refs: Vec<&RecordBatch> = self.out_batches.iter().collect();
            interleave_record_batch(&refs, &indices)?
        };
        self.runs.clear();
        self.out_batches.clear();
        for c in &mut self.cursors {
            c.out_slot = None;
        }
        self.emitted += rows;
        self.out_rows = 0;
        Ok(Some(batch))
    }
}

async fn next_non_empty(stream: &mut SendableRecordBatchStream) -> Result<Option<RecordBatch>> {
    while let Some(batch) = stream.next().await {
        let batch = batch?;
        if batch.num_rows() > 0 {
            return Ok(Some(batch));
        }
    }
    Ok(None)
}

/// The merge as a record batch stream.
pub fn merge_stream(
    shape: MergeShape,
    inputs: Vec<MergeInput>,
    memory: MergeMemory,
) -> Result<SendableRecordBatchStream> {
    let schema = shape.output_schema()?;
    let stream = futures::stream::once(LastWriteWins::start(shape, inputs, memory))
        .map(|started| {
            let merge = match started {
                Ok(m) => Some(m),
                Err(e) => return futures::stream::iter(vec![Err(e)]).left_stream(),
            };
            futures::stream::unfold(merge, |merge| async move {
                let mut merge = merge?;
                match merge.next_batch().await {
                    Ok(Some(b)) => Some((Ok(b), Some(merge))),
                    Ok(None) => None,
                    Err(e) => Some((Err(e), None)),
                }
            })
            .right_stream()
        })
        .flatten();
    Ok(Box::pin(
        datafusion::physical_plan::stream::RecordBatchStreamAdapter::new(schema, stream),
    ))
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use arrow::array::{Array, Float64Array, StringArray, TimestampMicrosecondArray};
    use arrow::datatypes::{DataType, Field, Schema, TimeUnit};
    use datafusion::physical_plan::memory::MemoryStream;

    use super::*;

    fn schema() -> SchemaRef {
        Arc::new(Schema::new(vec![
            Field::new(
                "ts",
                DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
                false,
            ),
            Field::new("pid", DataType::Utf8, false),
            Field::new("v", DataType::Float64, true),
        ]))
    }

    /// A sorted, deduplicated input from (pid, ts, v) rows, cut into batches of `chunk`.
    fn input(mut rows: Vec<(String, i64, f64)>, chunk: usize) -> SendableRecordBatchStream {
        rows.sort_by(|a, b| (&a.0, a.1).cmp(&(&b.0, b.1)));
        rows.dedup_by(|a, b| a.0 == b.0 && a.1 == b.1);
        let batches: Vec<RecordBatch> = rows
            .chunks(chunk.max(1))
            .map(|c| {
                RecordBatch::try_new(
                    schema(),
                    vec![
                        Arc::new(
                            TimestampMicrosecondArray::from(
                                c.iter().map(|r| r.1).collect::<Vec<_>>(),
                            )
                            .with_timezone("UTC"),
                        ),
                        Arc::new(StringArray::from(
                            c.iter().map(|r| r.0.clone()).collect::<Vec<_>>(),
                        )),
                        Arc::new(Float64Array::from(
                            c.iter().map(|r| r.2).collect::<Vec<_>>(),
                        )),
                    ],
                )
                .unwrap()
            })
            .collect();
        Box::pin(MemoryStream::try_new(batches, schema(), None).unwrap())
    }

    fn unbounded() -> MergeMemory {
        use datafusion::execution::memory_pool::{MemoryConsumer, UnboundedMemoryPool};
        let pool: Arc<dyn datafusion::execution::memory_pool::MemoryPool> =
            Arc::new(UnboundedMemoryPool::default());
        MergeMemory::try_new(MemoryConsumer::new("test").register(&pool), 0, 0).unwrap()
    }

    fn shape(batch_size: usize, fetch: Option<usize>) -> MergeShape {
        MergeShape {
            input_schema: schema(),
            key_columns: vec![1, 0],
            output_columns: vec![0, 1, 2],
            batch_size,
            fetch,
        }
    }

    async fn run(
        shape: MergeShape,
        inputs: Vec<SendableRecordBatchStream>,
    ) -> Vec<(String, i64, f64)> {
        let inputs = inputs.into_iter().map(MergeInput::new).collect();
        let mut stream = merge_stream(shape, inputs, unbounded()).unwrap();
        let mut out = Vec::new();
        while let Some(b) = stream.next().await {
            let b = b.unwrap();
            let ts = b
                .column(0)
                .as_any()
                .downcast_ref::<TimestampMicrosecondArray>()
                .unwrap();
            let pid = b.column(1).as_any().downcast_ref::<StringArray>().unwrap();
            let v = b.column(2).as_any().downcast_ref::<Float64Array>().unwrap();
            for i in 0..b.num_rows() {
                out.push((pid.value(i).to_string(), ts.value(i), v.value(i)));
            }
        }
        out
    }

    fn next(state: &mut u64) -> u64 {
        *state ^= *state << 13;
        *state ^= *state >> 7;
        *state ^= *state << 17;
        *state
    }

    #[tokio::test]
    async fn newest_input_wins_and_every_key_once_in_order() {
        let mut state = 0x2545_f491_4f6c_dd1du64;
        for case in 0..200 {
            let n_inputs = 1 + (next(&mut state) % 6) as usize;
            let mut oracle: BTreeMap<(String, i64), f64> = BTreeMap::new();
            let mut inputs = Vec::new();
            for rank in 0..n_inputs {
                let n = (next(&mut state) % 60) as usize;
                // Some inputs cover a narrow time slice (long runs), some interleave.
                let spread = 1 + next(&mut state) % 40;
                let base = next(&mut state) % 40;
                let mut rows = Vec::new();
                for _ in 0..n {
                    let pid = format!("p{}", next(&mut state) % 4);
                    let ts = (base + next(&mut state) % spread) as i64;
                    rows.push((
                        pid,
                        ts,
                        (rank * 1000) as f64 + (next(&mut state) % 997) as f64,
                    ));
                }
                let mut deduped: BTreeMap<(String, i64), f64> = BTreeMap::new();
                for (p, t, v) in &rows {
                    deduped.entry((p.clone(), *t)).or_insert(*v);
                }
                for (k, v) in &deduped {
                    oracle.insert(k.clone(), *v);
                }
                let rows = deduped.into_iter().map(|((p, t), v)| (p, t, v)).collect();
                inputs.push(input(rows, 1 + (next(&mut state) % 9) as usize));
            }
            let batch_size = 1 + (next(&mut state) % 16) as usize;
            let got = run(shape(batch_size, None), inputs).await;
            let want: Vec<_> = oracle.into_iter().map(|((p, t), v)| (p, t, v)).collect();
            assert_eq!(got, want, "case {case}");
        }
    }

    #[tokio::test]
    async fn fetch_stops_early_and_no_inputs_is_empty() {
        let rows: Vec<_> = (0..100).map(|i| ("a".to_string(), i, i as f64)).collect();
        let got = run(
            shape(7, Some(10)),
            vec![input(rows.clone(), 3), input(rows, 5)],
        )
        .await;
        assert_eq!(got.len(), 10);
        assert!(run(shape(7, None), vec![]).await.is_empty());
    }
}
