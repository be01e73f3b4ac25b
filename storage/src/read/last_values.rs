//! The last-value cache: the newest row (greatest `ts`; of equal `ts`, the last write)
//! of every series of a table, kept current on every durable write.
//!
//! A table's entry is built the first time it is asked for, from the stored data (one
//! ordered pass of the read path's merge, keeping the last row of each series); from the
//! moment building starts, durable writes are collected beside it and folded in when it
//! is done, so none is missed. After that the WAL observer keeps it current: a hash
//! lookup per written row. Rows of months that have expired are left out when the cache
//! is read; a restored month, or a dropped table, drops the entry so it is built again.
//! Nothing is persisted: after a restart the entry is rebuilt on first use.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};

use arrow::array::{AsArray, RecordBatch};
use arrow::datatypes::TimestampMicrosecondType;
use futures::StreamExt;

use crate::batch::{field_value, rows_to_batch};
use crate::engine::TableSnapshot;
use crate::error::{Error, Result};
use crate::model::{FieldValue, Month, TableDef, TableId, ValidRow};
use crate::wal::{DurableObserver, WalRecord, WalSeq};

use super::ScanRequest;

#[derive(Debug, Clone)]
struct LastRow {
    ts: i64,
    fields: Vec<Option<FieldValue>>,
}

type Rows = HashMap<Vec<String>, LastRow>;

enum Entry {
    /// Being built from the stored data; writes since the build started.
    Building(Rows),
    Ready(Ready),
}

struct Ready {
    rows: Rows,
    /// Bumped by every write that reaches `rows`.
    version: u64,
    /// The last answer, reused while nothing changed (same version, same table layout
    /// and expiry).
    answer: Option<(u64, AnswerKey, RecordBatch)>,
}

/// What besides the rows an answer depends on.
#[derive(Debug, Clone, PartialEq, Eq)]
struct AnswerKey {
    fields: usize,
    expired_before: Option<Month>,
    restored: Vec<Month>,
}

impl AnswerKey {
    fn of(def: &TableDef) -> Self {
        AnswerKey {
            fields: def.fields.len(),
            expired_before: def.expired_before,
            restored: def.restored.keys().copied().collect(),
        }
    }
}

/// Keep `row` if it is at least as new as what `rows` holds for its series.
fn offer(rows: &mut Rows, tags: &[String], ts: i64, fields: &[Option<FieldValue>]) {
    match rows.get_mut(tags) {
        Some(last) if ts < last.ts => {}
        Some(last) => {
            last.ts = ts;
            last.fields.clear();
            last.fields.extend_from_slice(fields);
        }
        None => {
            rows.insert(
                tags.to_vec(),
                LastRow {
                    ts,
                    fields: fields.to_vec(),
                },
            );
        }
    }
}

#[derive(Default)]
pub struct LastValues {
    tables: Mutex<HashMap<TableId, Entry>>,
    /// One build at a time.
    building: tokio::sync::Mutex<()>,
}

impl LastValues {
    fn lock(&self) -> MutexGuard<'_, HashMap<TableId, Entry>> {
        self.tables.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Drop a table's entry (dropped table, restored month): built again on next use.
    pub fn forget(&self, table: TableId) {
        self.lock().remove(&table);
    }

    /// The newest row of every series of table `def`, sorted by tags, in the table's
    /// current layout. `snapshot_now` takes a snapshot of the table, needed only to build
    /// the entry; `session` runs the build.
    pub async fn rows(
        &self,
        def: &TableDef,
        snapshot_now: impl Fn() -> Result<TableSnapshot>,
        session: &datafusion::prelude::SessionContext,
    ) -> Result<RecordBatch> {
        if let Some(batch) = self.ready(def)? {
            return Ok(batch);
        }
        let _one = self.building.lock().await;
        if let Some(batch) = self.ready(def)? {
            return Ok(batch);
        }
        loop {
            // Collect writes from here on, then read what is stored: a write is in the
            // snapshot taken below, or in the collected writes, or in both.
            self.lock().insert(def.id, Entry::Building(Rows::new()));
            let built = match snapshot_now() {
                Ok(snapshot) => build(&snapshot, session).await,
                Err(e) => Err(e),
            };
            let mut tables = self.lock();
            let mut rows = match built {
                Ok(rows) => rows,
                Err(e) => {
                    tables.remove(&def.id);
                    return Err(e);
                }
            };
            match tables.remove(&def.id) {
                Some(Entry::Building(delta)) => {
                    for (tags, last) in delta {
                        offer(&mut rows, &tags, last.ts, &last.fields);
                    }
                }
                // A DELETE (or a drop) came while building: the snapshot may predate it.
                _ => continue,
            }
            tables.insert(
                def.id,
                Entry::Ready(Ready {
                    rows,
                    version: 0,
                    answer: None,
                }),
            );
            break;
        }
        self.ready(def)?
            .ok_or_else(|| Error::Task(format!("last values of {} vanished", def.name)))
    }

    fn ready(&self, def: &TableDef) -> Result<Option<RecordBatch>> {
        let key = AnswerKey::of(def);
        let mut tables = self.lock();
        let Some(Entry::Ready(ready)) = tables.get_mut(&def.id) else {
            return Ok(None);
        };
        if let Some((version, k, batch)) = &ready.answer
            && *version == ready.version
            && *k == key
        {
            return Ok(Some(batch.clone()));
        }
        let live = |ts: i64| {
            let m = Month::of_micros(ts);
            def.expired_before.is_none_or(|e| m >= e) || def.restored.contains_key(&m)
        };
        let mut out: Vec<ValidRow> = ready
            .rows
            .iter()
            .filter(|(_, r)| live(r.ts))
            .map(|(tags, r)| {
                let mut fields = r.fields.clone();
                fields.resize(def.fields.len(), None);
                ValidRow {
                    ts: r.ts,
                    tags: tags.clone(),
                    fields,
                }
            })
            .collect();
        out.sort_by(|a, b| a.tags.cmp(&b.tags));
        let batch = rows_to_batch(def, out.iter())?;
        ready.answer = Some((ready.version, key, batch.clone()));
        Ok(Some(batch))
    }
}

impl DurableObserver for LastValues {
    fn on_durable(&self, _seq: WalSeq, record: &WalRecord) {
        let mut tables = self.lock();
        if record.is_delete() {
            // The newest row of a series may be gone: built again on next use.
            tables.remove(&record.table_id);
            return;
        }
        let rows = match tables.get_mut(&record.table_id) {
            Some(Entry::Building(rows)) => rows,
            Some(Entry::Ready(ready)) => {
                ready.version += 1;
                &mut ready.rows
            }
            None => return,
        };
        for r in &record.rows {
            offer(rows, &r.tags, r.ts, &r.fields);
        }
    }
}

/// The last row of each series in the stored data: one ordered pass (tags, then ts).
async fn build(
    snapshot: &TableSnapshot,
    session: &datafusion::prelude::SessionContext,
) -> Result<Rows> {
    let def = &snapshot.def;
    let table = def.name.as_str();
    let request = ScanRequest {
        ordered: true,
        small_files: None,
        text_hits: None,
        ..Default::default()
    };
    let mut stream = super::ordered_stream(session, snapshot, &request)?;
    let n_tags = def.tags.len();
    let mut rows = Rows::new();
    while let Some(batch) = stream.next().await {
        let batch = batch.map_err(Error::read(table))?;
        let ts = batch.column(0).as_primitive::<TimestampMicrosecondType>();
        let tags: Vec<_> = (1..=n_tags)
            .map(|i| batch.column(i).as_string::<i32>())
            .collect();
        let n = batch.num_rows();
        for r in 0..n {
            // The last row of a run of one series (the stream is sorted by tags, then ts);
            // a run cut by a batch boundary is offered twice, the later row winning.
            let last_of_run = r + 1 == n || tags.iter().any(|t| t.value(r) != t.value(r + 1));
            if !last_of_run {
                continue;
            }
            let key: Vec<String> = tags.iter().map(|t| t.value(r).to_string()).collect();
            let fields = (n_tags + 1..batch.num_columns())
                // The table's own columns: every type is a field type.
                .map(|c| field_value(batch.column(c), r).ok().flatten())
                .collect::<Vec<_>>();
            offer(&mut rows, &key, ts.value(r), &fields);
        }
    }
    Ok(rows)
}
