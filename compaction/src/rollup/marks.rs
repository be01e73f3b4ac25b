//! Dirty marks: which (table, series, base bucket) need recomputing.
//!
//! Marks are taken on the write path, from every durable WAL group (replay at startup
//! included), and kept in memory. They become durable (sled, under
//! `<data-dir>/rollup-marks`) only when the WAL is about to drop segments: until then a
//! restart rebuilds them by replaying the WAL, afterwards they are loaded from sled. A
//! mark leaves sled once the buckets it names have been recomputed and written (those
//! rollup rows are durable in the WAL themselves).

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::{Arc, Mutex};

use chrono_tz::Tz;
use wattdb_storage::wal::{DurableObserver, WalRecord, WalSeq};
use wattdb_storage::{CatalogReader, TableDef, TableId, WalReleaseGuard};

use super::interval::BucketCache;
use super::spec::RollupSpec;

/// One mark's bookkeeping.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct MarkInfo {
    /// Recomputing this bucket may change the following bucket's counter deltas (the
    /// mark came from a write). Marks added by that follow-up do not propagate further:
    /// a bucket's own readings, hence the baseline it hands on, are unchanged by it.
    pub propagate: bool,
    /// Written to sled.
    durable: bool,
}

/// Marks of one table: series → base bucket start → info. Hashed with foldhash: marks
/// are taken on the WAL thread, where SipHash over every row's tags was measurable.
pub type TableMarks = HashMap<Vec<String>, BTreeMap<i64, MarkInfo>, foldhash::fast::RandomState>;

#[derive(Default)]
struct State {
    pending: HashMap<TableId, TableMarks>,
    /// Taken by the maintainer and not yet written back as rollup rows.
    in_flight: HashMap<TableId, TableMarks>,
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
    state: Mutex<State>,
    db: sled::Db,
    tree: sled::Tree,
    catalog: std::sync::OnceLock<CatalogReader>,
    tz: Tz,
    notify: tokio::sync::Notify,
}

fn sled_key(table: TableId, series: &[String], bucket: i64) -> Vec<u8> {
    let mut k = Vec::with_capacity(16 + series.iter().map(|s| s.len() + 1).sum::<usize>());
    k.extend_from_slice(&table.0.to_be_bytes());
    k.extend_from_slice(&bucket.to_be_bytes());
    for s in series {
        k.extend_from_slice(s.as_bytes());
        k.push(0x1f);
    }
    k
}

fn parse_key(k: &[u8]) -> Option<(TableId, i64, Vec<String>)> {
    let table = TableId(u64::from_be_bytes(k.get(0..8)?.try_into().ok()?));
    let bucket = i64::from_be_bytes(k.get(8..16)?.try_into().ok()?);
    let rest = k.get(16..)?;
    let mut series = Vec::new();
    for part in rest.split(|b| *b == 0x1f) {
        series.push(String::from_utf8(part.to_vec()).ok()?);
    }
    series.pop(); // after the trailing separator
    Some((table, bucket, series))
}

impl DirtyMarks {
    /// Open the durable marks under `dir` and load them as pending.
    /// Marks are taken only once [`DirtyMarks::attach`] gave them the catalog.
    pub fn open(dir: &Path, tz: Tz) -> Result<Arc<Self>, sled::Error> {
        let db = sled::open(dir)?;
        let tree = db.open_tree("marks")?;
        let mut state = State::default();
        let mut loaded = 0usize;
        for item in tree.iter() {
            let (k, v) = item?;
            let Some((table, bucket, series)) = parse_key(&k) else {
                tracing::warn!("skipping an unreadable rollup mark");
                continue;
            };
            let info = MarkInfo {
                propagate: v.first() == Some(&1),
                durable: true,
            };
            merge_into(
                state.pending.entry(table).or_default(),
                &series,
                bucket,
                info,
            );
            loaded += 1;
        }
        if loaded > 0 {
            tracing::info!(marks = loaded, "loaded rollup marks left from the last run");
        }
        Ok(Arc::new(DirtyMarks {
            state: Mutex::new(state),
            db,
            tree,
            catalog: std::sync::OnceLock::new(),
            tz,
            notify: tokio::sync::Notify::new(),
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
        let mut state = self.lock();
        let target = state.pending.entry(table).or_default();
        for (series, bucket, propagate) in marks {
            merge_into(
                target,
                &series,
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

    /// The table's in-flight marks are recomputed and written: forget them (and their
    /// durable copies, unless the same bucket was marked again meanwhile).
    pub fn done(&self, table: TableId) -> Result<(), sled::Error> {
        let mut state = self.lock();
        let Some(marks) = state.in_flight.remove(&table) else {
            return Ok(());
        };
        let again = state.pending.get(&table);
        let mut batch = sled::Batch::default();
        let mut any = false;
        for (series, buckets) in &marks {
            for (bucket, info) in buckets {
                let marked_again = again
                    .and_then(|t| t.get(series))
                    .is_some_and(|b| b.contains_key(bucket));
                if info.durable && !marked_again {
                    batch.remove(sled_key(table, series, *bucket));
                    any = true;
                }
            }
        }
        drop(state);
        if any {
            self.tree.apply_batch(batch)?;
        }
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

    /// Forget a dropped table's marks.
    pub fn forget(&self, table: TableId) -> Result<(), sled::Error> {
        {
            let mut state = self.lock();
            state.pending.remove(&table);
            state.in_flight.remove(&table);
        }
        let prefix = table.0.to_be_bytes();
        let mut batch = sled::Batch::default();
        for item in self.tree.scan_prefix(prefix) {
            batch.remove(item?.0);
        }
        self.tree.apply_batch(batch)
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

impl DurableObserver for DirtyMarks {
    fn on_durable(&self, seq: WalSeq, record: &WalRecord) {
        self.on_durable_group(&[(seq, record)]);
    }

    fn on_durable_group(&self, records: &[(WalSeq, &WalRecord)]) {
        // Collect outside the lock; consecutive rows of one series and bucket (the
        // common case: a device's batch) are marked once.
        let mut specs: HashMap<TableId, Option<(BucketCache, bool)>> = HashMap::new();
        let mut found: Vec<(TableId, &[String], i64)> = Vec::new();
        for (_, record) in records {
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
        if found.is_empty() {
            return;
        }
        let mut state = self.lock();
        for (table, series, bucket) in found {
            let propagate = matches!(specs.get(&table), Some(Some((_, true))));
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
}

impl WalReleaseGuard for DirtyMarks {
    /// Write every mark not yet in sled, pending or in flight, and flush.
    fn before_wal_release(&self) -> wattdb_storage::Result<()> {
        let to_err = |e: sled::Error| wattdb_storage::Error::Catalog(e);
        // The lock is held until the marks are flushed and flagged: nothing can take,
        // finish or add marks in between.
        let mut state = self.lock();
        let mut batch = sled::Batch::default();
        let mut any = false;
        for marks in [&state.pending, &state.in_flight] {
            for (table, series_marks) in marks {
                for (series, buckets) in series_marks {
                    for (bucket, info) in buckets.iter().filter(|(_, i)| !i.durable) {
                        batch.insert(
                            sled_key(*table, series, *bucket),
                            &[u8::from(info.propagate)],
                        );
                        any = true;
                    }
                }
            }
        }
        if !any {
            return Ok(());
        }
        self.tree.apply_batch(batch).map_err(to_err)?;
        self.db.flush().map_err(to_err)?;
        let State { pending, in_flight } = &mut *state;
        for marks in [pending, in_flight] {
            for info in marks
                .values_mut()
                .flat_map(|t| t.values_mut())
                .flat_map(|b| b.values_mut())
            {
                info.durable = true;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_round_trip() {
        let series = vec!["p1".to_string(), "".to_string(), "b/c".to_string()];
        let k = sled_key(TableId(9), &series, -900);
        assert_eq!(parse_key(&k), Some((TableId(9), -900, series)));
        assert_eq!(
            parse_key(&sled_key(TableId(1), &[], 5)),
            Some((TableId(1), 5, vec![]))
        );
    }
}
