//! The write buffer: rows that are durable in the WAL but not yet in Parquet, kept as Arrow
//! batches per (table, month) partition under a byte budget.
//!
//! The buffer is fed only by the WAL (as a [`DurableObserver`], in sequence order), so its
//! contents always equal "replay of the WAL". A partition being persisted is split into a
//! `frozen` part (what the persister is writing) and an `active` part (newer writes); the
//! frozen part is dropped in the same critical section that adds the new file to the
//! catalog, so a reader holding the buffer lock sees each row either buffered or in a file.

mod partition;
mod queue_charge;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::catalog::Catalog;
use crate::model::{Month, TableId, Tombstone};
use crate::wal::{DurableObserver, WalRecord, WalSeq};

pub use partition::{Chunk, Partition};
pub use queue_charge::QueueCharge;
use queue_charge::QueuedBytes;

#[derive(Debug, Default)]
pub struct BufferState {
    pub partitions: BTreeMap<(TableId, Month), Partition>,
    /// Every `DELETE` of each table, oldest first: those of the catalog and those logged
    /// since (committed to the catalog before their WAL segment is released). Kept with
    /// the buffer so a snapshot sees a delete and the buffered rows it removed together.
    pub tombstones: BTreeMap<TableId, Vec<Arc<Tombstone>>>,
    /// The highest WAL sequence handed to the buffer (replay included).
    pub last_seq: Option<WalSeq>,
}

impl BufferState {
    pub fn total_bytes(&self) -> usize {
        self.partitions.values().map(|p| p.bytes()).sum()
    }

    /// Lowest WAL sequence still only in the buffer (None when empty).
    pub fn min_seq(&self) -> Option<WalSeq> {
        self.partitions.values().filter_map(|p| p.min_seq()).min()
    }

    /// The lowest WAL sequence that may still be needed: the oldest one only in the
    /// buffer, else the one after the last the buffer was handed — a record being handed
    /// over right now, or queued behind it, is above that. Never "nothing": a write can
    /// become durable at any moment.
    pub fn keep_wal_from(&self) -> WalSeq {
        self.min_seq()
            .or(self.last_seq.map(|s| WalSeq(s.0 + 1)))
            .unwrap_or(WalSeq(0))
    }

    fn handed(&mut self, seq: WalSeq) {
        self.last_seq = Some(self.last_seq.map_or(seq, |s| s.max(seq)));
    }
}

pub struct WriteBuffer {
    state: Mutex<BufferState>,
    catalog: Arc<Catalog>,
    budget_bytes: usize,
    /// Woken when buffered bytes go down (after a persist), queued WAL records are done
    /// or the budget is raised.
    room: Arc<tokio::sync::Notify>,
    /// WAL records queued for group commit (see [`queue_charge`]).
    queued: Arc<QueuedBytes>,
    /// Woken when the buffer wants a persist now (over budget).
    persist_wanted: tokio::sync::Notify,
    replaying: AtomicBool,
    /// `BufferState::total_bytes` as of the last change, readable without the lock (every
    /// write checks it).
    buffered_bytes: AtomicUsize,
    /// Memory set aside for the persister's sorted copy of what it is writing: part of
    /// the budget, so buffered rows plus persistence stay within it.
    persist_reserved: AtomicUsize,
}

/// The locked buffer (see [`WriteBuffer::lock`]).
pub struct BufferGuard<'a> {
    state: MutexGuard<'a, BufferState>,
    total: &'a AtomicUsize,
}

impl std::ops::Deref for BufferGuard<'_> {
    type Target = BufferState;
    fn deref(&self) -> &BufferState {
        &self.state
    }
}

impl std::ops::DerefMut for BufferGuard<'_> {
    fn deref_mut(&mut self) -> &mut BufferState {
        &mut self.state
    }
}

impl Drop for BufferGuard<'_> {
    fn drop(&mut self) {
        self.total
            .store(self.state.total_bytes(), Ordering::Release);
    }
}

/// Budget set aside while the persister works (see [`WriteBuffer::reserve_for_persist`]);
/// given back on drop.
pub struct PersistReservation<'a> {
    buffer: &'a WriteBuffer,
    bytes: usize,
}

impl Drop for PersistReservation<'_> {
    fn drop(&mut self) {
        self.buffer
            .persist_reserved
            .fetch_sub(self.bytes, Ordering::SeqCst);
        self.buffer.notify_room();
    }
}

impl WriteBuffer {
    pub fn new(catalog: Arc<Catalog>, budget_bytes: usize) -> Arc<Self> {
        let mut state = BufferState::default();
        for t in catalog.tombstones() {
            state
                .tombstones
                .entry(t.table_id)
                .or_default()
                .push(Arc::new(t));
        }
        let room = Arc::new(tokio::sync::Notify::new());
        Arc::new(WriteBuffer {
            state: Mutex::new(state),
            catalog,
            budget_bytes,
            queued: QueuedBytes::new(room.clone()),
            room,
            persist_wanted: tokio::sync::Notify::new(),
            replaying: AtomicBool::new(false),
            persist_reserved: AtomicUsize::new(0),
            buffered_bytes: AtomicUsize::new(0),
        })
    }

    /// The buffer's contents; the byte total that backpressure reads is refreshed when
    /// the guard is dropped, so every change made through it is counted.
    pub fn lock(&self) -> BufferGuard<'_> {
        BufferGuard {
            state: self.state.lock().unwrap_or_else(|p| p.into_inner()),
            total: &self.buffered_bytes,
        }
    }

    pub fn budget_bytes(&self) -> usize {
        self.budget_bytes
    }

    pub fn set_replaying(&self, on: bool) {
        self.replaying.store(on, Ordering::SeqCst);
    }

    /// Most bytes of a partition the persister writes in one go: with its sorted copy
    /// (reserved while it works) that is half the budget, leaving the other half for
    /// writes that keep arriving meanwhile.
    pub fn freeze_limit_bytes(&self) -> usize {
        (self.budget_bytes / 4).max(1)
    }

    /// Set aside `bytes` of the budget while the persister writes a copy of that size.
    pub fn reserve_for_persist(&self, bytes: usize) -> PersistReservation<'_> {
        self.persist_reserved.fetch_add(bytes, Ordering::SeqCst);
        PersistReservation {
            buffer: self,
            bytes,
        }
    }

    /// Bytes counted against the budget: buffered rows, the persister's reservation and
    /// WAL records waiting for group commit.
    pub fn used_bytes(&self) -> usize {
        self.buffered_bytes.load(Ordering::Acquire)
            + self.persist_reserved.load(Ordering::SeqCst)
            + self.queued.get()
    }

    /// Count `bytes` of a record about to be queued for the WAL against the budget, until
    /// the returned charge is dropped.
    pub fn charge_queued(&self, bytes: usize) -> QueueCharge {
        self.queued.charge(bytes)
    }

    /// Bytes of WAL records waiting for group commit.
    pub fn queued_bytes(&self) -> usize {
        self.queued.get()
    }

    /// Wait until the buffer is under its budget (backpressure). Never drops data: the
    /// writer simply waits for the persister to free memory.
    pub async fn wait_for_room(&self) {
        loop {
            let notified = self.room.notified();
            if self.used_bytes() < self.budget_bytes {
                return;
            }
            self.persist_wanted.notify_one();
            notified.await;
        }
    }

    pub fn notify_room(&self) {
        self.room.notify_waiters();
    }

    pub async fn persist_wanted(&self) {
        self.persist_wanted.notified().await
    }

    /// Partitions the persister should write now: older than `max_age`, larger than
    /// `max_bytes`, or all of them when `force` or the buffer holds a quarter of its
    /// budget (persisting early leaves room for writes while a persist runs).
    pub fn due_partitions(
        &self,
        max_age: Duration,
        max_bytes: usize,
        force: bool,
    ) -> Vec<(TableId, Month)> {
        let state = self.lock();
        let pressure = state.total_bytes() * 4 >= self.budget_bytes;
        let now = Instant::now();
        state
            .partitions
            .iter()
            .filter(|(_, p)| !p.is_empty())
            .filter(|(_, p)| {
                force
                    || pressure
                    || p.bytes() >= max_bytes
                    || p.oldest_write()
                        .is_some_and(|t| now.duration_since(t) >= max_age)
            })
            .map(|(k, _)| *k)
            .collect()
    }

    pub fn drop_table(&self, table: TableId) {
        let mut state = self.lock();
        state.partitions.retain(|(t, _), _| *t != table);
        state.tombstones.remove(&table);
        drop(state);
        self.notify_room();
    }

    /// Apply a logged `DELETE` (in WAL order): drop the buffered rows it removes and
    /// record its tombstone for reads of files.
    fn apply_delete(&self, seq: WalSeq, record: &WalRecord) {
        let tombstone = Arc::new(Tombstone {
            table_id: record.table_id,
            seq,
            predicates: record.delete.clone(),
        });
        let mut state = self.lock();
        state.handed(seq);
        let mut removed = 0;
        for ((t, month), p) in state.partitions.iter_mut() {
            if *t != record.table_id {
                continue;
            }
            match p.delete(&tombstone) {
                Ok(n) => removed += n,
                // Cannot happen for predicates over key columns; never half-apply silently.
                Err(e) => {
                    tracing::error!(table = t.0, %month, error = %e, "cannot apply DELETE to buffered rows")
                }
            }
        }
        state.partitions.retain(|_, p| !p.is_empty());
        let list = state.tombstones.entry(record.table_id).or_default();
        if !list.iter().any(|t| t.seq == seq) {
            list.push(tombstone);
        }
        drop(state);
        tracing::debug!(
            table = record.table_id.0,
            seq = seq.0,
            removed,
            "DELETE applied to the buffer"
        );
        self.notify_room();
    }

    /// Tombstones not in the catalog yet (logged since it was loaded).
    pub fn uncommitted_tombstones(&self) -> Vec<Tombstone> {
        let state = self.lock();
        // The buffer's are a superset of the catalog's (it is seeded from the catalog,
        // which gets tombstones only from here; drops remove them from both).
        let ours: usize = state.tombstones.values().map(Vec::len).sum();
        if ours == self.catalog.tombstone_count() {
            return Vec::new();
        }
        state
            .tombstones
            .values()
            .flatten()
            .filter(|t| !self.catalog.has_tombstone(t.table_id, t.seq))
            .map(|t| (**t).clone())
            .collect()
    }

    /// Drop a table's buffered months before `before` (retention).
    /// The months of `table` with buffered rows that `select` picks.
    pub fn months_of(&self, table: TableId, select: &dyn Fn(Month) -> bool) -> Vec<Month> {
        self.lock()
            .partitions
            .keys()
            .filter(|(t, m)| *t == table && select(*m))
            .map(|(_, m)| *m)
            .collect()
    }

    pub fn drop_months(&self, table: TableId, months: &[Month]) -> usize {
        let mut state = self.lock();
        let n = state.partitions.len();
        state
            .partitions
            .retain(|(t, m), _| *t != table || !months.contains(m));
        let dropped = n - state.partitions.len();
        drop(state);
        self.notify_room();
        dropped
    }
}

impl DurableObserver for WriteBuffer {
    fn on_durable(&self, seq: WalSeq, record: &WalRecord) {
        self.on_durable_group(&[(seq, record)]);
    }

    /// All rows of a group commit that belong to one (table, month) become one chunk:
    /// one Arrow conversion and one lock per group instead of per record.
    fn on_durable_group(&self, records: &[(WalSeq, &WalRecord)]) {
        // Writes between deletes are buffered together; a delete applies in its place.
        let mut from = 0;
        for (i, (seq, record)) in records.iter().enumerate() {
            if record.is_delete() {
                self.append_writes(&records[from..i]);
                self.apply_delete(*seq, record);
                from = i + 1;
            }
        }
        self.append_writes(&records[from..]);
    }
}

impl WriteBuffer {
    fn append_writes(&self, records: &[(WalSeq, &WalRecord)]) {
        if records.is_empty() {
            return;
        }
        let replaying = self.replaying.load(Ordering::Relaxed);
        type Rows<'a> = (Vec<&'a crate::model::ValidRow>, WalSeq, WalSeq);
        let mut groups: BTreeMap<(TableId, Month), Rows<'_>> = BTreeMap::new();
        for (seq, record) in records {
            for row in &record.rows {
                let month = Month::of_micros(row.ts);
                if replaying && *seq <= self.catalog.persisted_seq(record.table_id, month) {
                    continue; // already in a Parquet file
                }
                let g = groups
                    .entry((record.table_id, month))
                    .or_insert_with(|| (Vec::new(), *seq, *seq));
                g.0.push(row);
                g.2 = *seq;
            }
        }
        let mut defs = BTreeMap::new();
        let mut chunks = Vec::with_capacity(groups.len());
        for ((table_id, month), (rows, min_seq, max_seq)) in groups {
            let def = defs
                .entry(table_id)
                .or_insert_with(|| self.catalog.shared_table_by_id(table_id));
            // None: the table was dropped after this write was validated.
            let Some(def) = def.as_ref() else { continue };
            // The month expired (retention) after this write was validated, or the WAL
            // still held it when retention dropped it: its rows are gone by design.
            if def.is_month_expired(month) {
                continue;
            }
            match crate::batch::rows_to_batch(def, rows.into_iter()) {
                Ok(batch) => {
                    let mut chunk = Chunk::new(batch, min_seq);
                    chunk.max_seq = max_seq;
                    chunks.push(((table_id, month), chunk));
                }
                Err(e) => {
                    tracing::error!(table = %def.name, error = %e, "cannot buffer WAL record")
                }
            }
        }
        let mut state = self.lock();
        if let Some((last, _)) = records.last() {
            state.handed(*last);
        }
        for ((table_id, month), chunk) in chunks {
            state
                .partitions
                .entry((table_id, month))
                .or_insert_with(|| Partition::new(table_id, month))
                .append(chunk);
        }
    }
}
