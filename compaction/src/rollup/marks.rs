//! Dirty marks: which (table, series, base bucket) need recomputing.
//!
//! Marks are taken on the write path, from every durable WAL group (replay at startup
//! included), and kept in memory. They become durable (an append-only log under
//! `<data-dir>/rollup-marks`, see [`super::marks_log`]) only when the WAL is about to drop
//! segments: until then a restart rebuilds them by replaying the WAL, afterwards they are
//! loaded from the log. Once no durable mark is outstanding (all recomputed and written;
//! those rollup rows are durable in the WAL themselves) the log is emptied.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use chrono_tz::Tz;
use wattdb_storage::read::{RollupLayout, RollupLevel, RollupView, Unsettled};
use wattdb_storage::wal::{DurableObserver, WalRecord, WalSeq};
use wattdb_storage::{CatalogReader, DeletePredicate, TableDef, TableId, WalReleaseGuard};

use super::marks_log::{LoggedMark, MarksLog};
use super::spec::RollupSpec;
use wattdb_storage::BucketCache;

/// One mark's bookkeeping.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct MarkInfo {
    /// Recomputing this bucket may change the following bucket's counter deltas (the
    /// mark came from a write). Marks added by that follow-up do not propagate further:
    /// a bucket's own readings, hence the baseline it hands on, are unchanged by it.
    pub propagate: bool,
    /// Written to the marks log.
    durable: bool,
}

/// Marks of one table: series → base bucket start → info. Hashed with foldhash: marks
/// are taken on the WAL thread, where SipHash over every row's tags was measurable.
pub type TableMarks = HashMap<Vec<String>, BTreeMap<i64, MarkInfo>, foldhash::fast::RandomState>;

/// A logged `DELETE` of a table with rollups whose changed buckets are not marked yet:
/// the maintainer finds them in the base rollup (every bucket with rows has a rollup
/// row there, or a mark of its own).
#[derive(Debug, Clone, PartialEq)]
pub struct DeleteRescan {
    pub table: TableId,
    pub seq: WalSeq,
    pub predicates: Vec<DeletePredicate>,
}

#[derive(Default)]
struct State {
    pending: HashMap<TableId, TableMarks>,
    /// Taken by the maintainer and not yet written back as rollup rows.
    in_flight: HashMap<TableId, TableMarks>,
    /// Deletes whose buckets are still to be found, in WAL order.
    rescans: Vec<DeleteRescan>,
}

impl State {
    fn any_durable(&self) -> bool {
        [&self.pending, &self.in_flight].iter().any(|m| {
            m.values()
                .flat_map(|t| t.values())
                .flat_map(|b| b.values())
                .any(|i| i.durable)
        })
    }
}

fn merge_into(target: &mut TableMarks, series: &[String], bucket: i64, info: MarkInfo) {
    let buckets = match target.get_mut(series) {
        Some(b) => b,
        None => target.entry(series.to_vec()).or_default(),
    };
    // Live data keeps marking a series' newest bucket: settle that without a tree walk.
    if let Some((last, m)) = buckets.last_key_value()
        && *last == bucket
        && (m.propagate || !info.propagate)
        && (m.durable || !info.durable)
    {
        return;
    }
    let m = buckets.entry(bucket).or_default();
    m.propagate |= info.propagate;
    m.durable |= info.durable;
}

pub struct DirtyMarks {
    /// Taken by the WAL thread for every group commit: never held across file I/O.
    state: Mutex<State>,
    /// Locked before `state`, never after: writing and emptying the log (fsyncs) happen
    /// under this lock alone.
    log: Mutex<MarksLog>,
    /// A log write failed: marks flagged durable for it may not be in the file, so the
    /// next write rewrites the log with every outstanding mark.
    log_suspect: AtomicBool,
    dir: std::path::PathBuf,
    catalog: std::sync::OnceLock<CatalogReader>,
    tz: Tz,
    notify: tokio::sync::Notify,
    /// Bumped whenever marks are finished or forgotten (see [`RollupView::epoch`]).
    epoch: AtomicU64,
}

impl DirtyMarks {
    /// Open the durable marks under `dir` and load them as pending.
    /// Open the durable marks under `dir` and load them as pending. Marks are taken only
    /// once [`DirtyMarks::attach`] gave them the catalog.
    pub fn open(dir: &Path, tz: Tz) -> std::io::Result<Arc<Self>> {
        let (log, loaded) = MarksLog::open(dir)?;
        let mut state = State::default();
        let n = loaded.len();
        for (table, series, bucket, propagate) in loaded {
            let info = MarkInfo {
                propagate,
                durable: true,
            };
            merge_into(
                state.pending.entry(table).or_default(),
                &series,
                bucket,
                info,
            );
        }
        if n > 0 {
            tracing::info!(marks = n, "loaded rollup marks left from the last run");
        }
        Ok(Arc::new(DirtyMarks {
            state: Mutex::new(state),
            log: Mutex::new(log),
            log_suspect: AtomicBool::new(false),
            dir: dir.to_path_buf(),
            catalog: std::sync::OnceLock::new(),
            tz,
            notify: tokio::sync::Notify::new(),
            epoch: AtomicU64::new(0),
        }))
    }

    /// Give the marks the catalog they resolve tables in (when storage opens).
    pub fn attach(&self, catalog: CatalogReader) {
        let _ = self.catalog.set(catalog);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn tz(&self) -> Tz {
        self.tz
    }

    /// Resolves when marks were added since the last call.
    pub async fn changed(&self) {
        self.notify.notified().await
    }

    /// Mark buckets dirty (from the maintainer: follow-ups, rebuilds).
    pub fn add(&self, table: TableId, marks: impl IntoIterator<Item = (Vec<String>, i64, bool)>) {
        let marks: Vec<_> = marks.into_iter().collect();
        self.mark_pending(
            marks
                .iter()
                .map(|(series, bucket, propagate)| (table, series.as_slice(), *bucket, *propagate)),
        );
    }

    /// Add (table, series, bucket, propagate) marks to the pending ones (not durable
    /// yet) and wake the worker.
    fn mark_pending<'a>(
        &self,
        marks: impl IntoIterator<Item = (TableId, &'a [String], i64, bool)>,
    ) {
        let mut state = self.lock();
        for (table, series, bucket, propagate) in marks {
            merge_into(
                state.pending.entry(table).or_default(),
                series,
                bucket,
                MarkInfo {
                    propagate,
                    durable: false,
                },
            );
        }
        drop(state);
        self.notify.notify_one();
    }

    /// Pending marks, moved to in-flight. The caller must end each table it got with
    /// [`DirtyMarks::done`] or [`DirtyMarks::failed`].
    pub fn take(&self) -> HashMap<TableId, TableMarks> {
        let mut state = self.lock();
        let taken = std::mem::take(&mut state.pending);
        for (table, marks) in &taken {
            let target = state.in_flight.entry(*table).or_default();
            for (series, buckets) in marks {
                for (bucket, info) in buckets {
                    merge_into(target, series, *bucket, *info);
                }
            }
        }
        taken
    }

    /// The table's in-flight marks are recomputed and written: forget them. When no
    /// durable mark is outstanding any more, empty the log (an fsync: call it where
    /// blocking is fine).
    pub fn done(&self, table: TableId) -> std::io::Result<()> {
        {
            let mut state = self.lock();
            state.in_flight.remove(&table);
            // Still under the lock: a reader that saw these marks sees the epoch move.
            self.epoch.fetch_add(1, Ordering::SeqCst);
            if state.any_durable() {
                return Ok(());
            }
        }
        let mut log = self.log.lock().unwrap_or_else(|p| p.into_inner());
        // Marks can only become durable under the log lock, which is held now: checked
        // again, the answer holds until the log is empty.
        if self.lock().any_durable() {
            return Ok(());
        }
        log.clear()?;
        self.log_suspect.store(false, Ordering::SeqCst);
        Ok(())
    }

    /// Recomputing failed: the in-flight marks become pending again.
    pub fn failed(&self, table: TableId) {
        let mut state = self.lock();
        if let Some(marks) = state.in_flight.remove(&table) {
            let target = state.pending.entry(table).or_default();
            for (series, buckets) in marks {
                for (bucket, info) in buckets {
                    merge_into(target, &series, bucket, info);
                }
            }
        }
    }

    /// Forget a dropped table's marks (durable copies are harmless: a mark of a table
    /// that no longer exists is dropped when it comes up).
    pub fn forget(&self, table: TableId) {
        let mut state = self.lock();
        state.pending.remove(&table);
        state.in_flight.remove(&table);
        self.epoch.fetch_add(1, Ordering::SeqCst);
    }

    /// Deletes whose buckets are still to be marked, oldest first.
    pub fn rescans(&self) -> Vec<DeleteRescan> {
        self.lock().rescans.clone()
    }

    /// The buckets of the delete logged at `seq` are marked.
    pub fn rescan_done(&self, seq: WalSeq) {
        self.lock().rescans.retain(|r| r.seq != seq);
    }

    /// A delete record was logged: mark again what is pending or being recomputed for
    /// the series it touches (a recomputation may have read the rows before they were
    /// deleted), and queue the search for its other buckets.
    fn on_delete(&self, seq: WalSeq, def: &TableDef, spec: &RollupSpec, record: &WalRecord) {
        let base = spec.base().interval;
        let propagate = spec.has_counters();
        let mut state = self.lock();
        let mut again: Vec<(Vec<String>, i64)> = Vec::new();
        for marks in [&state.pending, &state.in_flight] {
            let Some(series_marks) = marks.get(&def.id) else {
                continue;
            };
            for (series, buckets) in series_marks {
                for p in &record.delete {
                    if !p.matches_tags(def, series) {
                        continue;
                    }
                    again.extend(
                        buckets
                            .keys()
                            .filter(|b| p.overlaps(**b, base.bucket_end(**b) - 1))
                            .map(|b| (series.clone(), *b)),
                    );
                }
            }
        }
        for (series, bucket) in &again {
            merge_into(
                state.pending.entry(def.id).or_default(),
                series,
                *bucket,
                MarkInfo {
                    propagate,
                    durable: false,
                },
            );
        }
        state.rescans.push(DeleteRescan {
            table: def.id,
            seq,
            predicates: record.delete.clone(),
        });
        drop(state);
        self.notify.notify_one();
    }

    /// Number of (series, bucket) marks waiting or being recomputed.
    pub fn len(&self) -> usize {
        let state = self.lock();
        let count = |m: &HashMap<TableId, TableMarks>| -> usize {
            m.values().flat_map(|t| t.values()).map(|b| b.len()).sum()
        };
        count(&state.pending) + count(&state.in_flight)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn spec_of(&self, def: Arc<TableDef>) -> Option<RollupSpec> {
        match RollupSpec::of(def, self.tz) {
            Ok(s) => s,
            Err(e) => {
                tracing::error!(error = %e, "rollup settings unusable; no marks taken");
                None
            }
        }
    }
}

impl RollupView for DirtyMarks {
    fn layout(&self, def: &TableDef) -> Option<RollupLayout> {
        if def.rollups.rebuilding {
            return None;
        }
        let spec = self.spec_of(Arc::new(def.clone()))?;
        Some(RollupLayout {
            levels: spec
                .levels
                .iter()
                .map(|l| RollupLevel {
                    table: l.table.clone(),
                    interval: l.interval,
                })
                .collect(),
            fields: spec.fields.iter().map(|f| f.name.clone()).collect(),
        })
    }

    fn epoch(&self) -> u64 {
        self.epoch.load(Ordering::SeqCst)
    }

    fn deletes_pending(&self, table: TableId) -> bool {
        self.lock().rescans.iter().any(|r| r.table == table)
    }

    fn unsettled(&self, table: TableId, lo: i64, hi: i64) -> Unsettled {
        let state = self.lock();
        let mut out = Unsettled::new();
        if lo > hi {
            return out;
        }
        for marks in [&state.pending, &state.in_flight] {
            let Some(series_marks) = marks.get(&table) else {
                continue;
            };
            for (series, buckets) in series_marks {
                let mut found = buckets.range(lo..=hi).map(|(b, _)| *b).peekable();
                if found.peek().is_some() {
                    out.entry(series.clone()).or_default().extend(found);
                }
            }
        }
        for buckets in out.values_mut() {
            buckets.sort_unstable();
            buckets.dedup();
        }
        out
    }
}

impl DurableObserver for DirtyMarks {
    fn on_durable(&self, seq: WalSeq, record: &WalRecord) {
        self.on_durable_group(&[(seq, record)]);
    }

    fn on_durable_group(&self, records: &[(WalSeq, &WalRecord)]) {
        // Collect outside the lock; consecutive rows of one series and bucket (the
        // common case: a device's batch) are marked once.
        let mut specs: HashMap<TableId, Option<(BucketCache, bool)>> = HashMap::new();
        let mut found: Vec<(TableId, &[String], i64)> = Vec::new();
        for (seq, record) in records {
            if record.is_delete() {
                // Marks of the writes before it first, then the delete's.
                self.mark_found(&specs, std::mem::take(&mut found));
                let resolved = self
                    .catalog
                    .get()
                    .and_then(|c| c.table_by_id(record.table_id))
                    .and_then(|def| Some((def.clone(), self.spec_of(def)?)));
                if let Some((def, spec)) = resolved {
                    self.on_delete(*seq, &def, &spec, record);
                }
                continue;
            }
            let entry = specs.entry(record.table_id).or_insert_with(|| {
                let def = self.catalog.get()?.table_by_id(record.table_id)?;
                let spec = self.spec_of(def)?;
                Some((BucketCache::new(spec.base().interval), spec.has_counters()))
            });
            let Some((cache, _)) = entry else { continue };
            for row in &record.rows {
                let bucket = cache.start_of(row.ts);
                let same = found.last().is_some_and(|(t, s, b)| {
                    *t == record.table_id && *b == bucket && *s == row.tags.as_slice()
                });
                if !same {
                    found.push((record.table_id, row.tags.as_slice(), bucket));
                }
            }
        }
        self.mark_found(&specs, found);
    }
}

impl DirtyMarks {
    /// Mark the (table, series, bucket) found in durable writes; they propagate for
    /// tables with counters.
    fn mark_found(
        &self,
        specs: &HashMap<TableId, Option<(BucketCache, bool)>>,
        found: Vec<(TableId, &[String], i64)>,
    ) {
        if found.is_empty() {
            return;
        }
        self.mark_pending(found.into_iter().map(|(table, series, bucket)| {
            let propagate = matches!(specs.get(&table), Some(Some((_, true))));
            (table, series, bucket, propagate)
        }));
    }
}

impl WalReleaseGuard for DirtyMarks {
    /// Log every mark not yet durable, pending or in flight (fsynced). The marks are
    /// collected and flagged under the state lock, which is let go before the file is
    /// written: the WAL thread, which takes it for every group, never waits for the fsync.
    fn before_wal_release(&self) -> wattdb_storage::Result<()> {
        // One release at a time, and the log is not emptied meanwhile (see `done`).
        let mut log = self.log.lock().unwrap_or_else(|p| p.into_inner());
        let rewrite = log.needs_rewrite() || self.log_suspect.load(Ordering::SeqCst);
        let batch: Vec<LoggedMark> = {
            let mut state = self.lock();
            if !state.rescans.is_empty() {
                // Their buckets are known only once found; until then the WAL keeps the
                // delete, so a restart queues the search again.
                return Err(wattdb_storage::Error::Task(
                    "a DELETE's rollup buckets are not marked yet".into(),
                ));
            }
            let State {
                pending, in_flight, ..
            } = &mut *state;
            let mut batch = Vec::new();
            for marks in [pending, in_flight] {
                for (table, series_marks) in marks.iter_mut() {
                    for (series, buckets) in series_marks.iter_mut() {
                        for (bucket, info) in buckets.iter_mut() {
                            if rewrite || !info.durable {
                                batch.push((*table, series.clone(), *bucket, info.propagate));
                            }
                            info.durable = true;
                        }
                    }
                }
            }
            batch
        };
        if batch.is_empty() && !rewrite {
            return Ok(());
        }
        let refs: Vec<(TableId, &[String], i64, bool)> = batch
            .iter()
            .map(|(t, series, b, p)| (*t, series.as_slice(), *b, *p))
            .collect();
        let written = if rewrite {
            log.rewrite(&refs)
        } else {
            log.append(&refs)
        };
        match written {
            Ok(()) => {
                self.log_suspect.store(false, Ordering::SeqCst);
                Ok(())
            }
            Err(source) => {
                self.log_suspect.store(true, Ordering::SeqCst);
                Err(wattdb_storage::Error::Io {
                    path: self.dir.clone(),
                    source,
                })
            }
        }
    }
}
