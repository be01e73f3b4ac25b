//! The rollup worker: takes dirty marks, recomputes the marked base buckets from
//! deduplicated raw rows (buffer + files), composes the coarser levels from the base
//! level, and upserts the results into the rollup tables. Also `rebuild_rollups()`.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use arrow::record_batch::RecordBatch;
use chrono_tz::Tz;
use wattdb_storage::{
    DeletePredicate, Interval, SeriesSet, Storage, TableDef, TableId, TagCondition,
};

use super::aggregate::{BucketRow, Keep, Num, aggregate_raw, compose, counter_readings};
use super::marks::{DirtyMarks, TableMarks};
use super::spec::{Level, RollupSpec};
use crate::error::{Error, Result};

const DAY_MICROS: i64 = 86_400 * 1_000_000;
/// Raw rows are read at most this much time at once (bounds the worker's memory: six
/// hours of 1,000 meters at one reading a minute is 360k rows).
const CHUNK_MICROS: i64 = DAY_MICROS / 4;
/// Rollup rows per write (one WAL record each).
const WRITE_ROWS: usize = 5_000;
/// Where counter baselines and follow-up buckets are searched, nearest first.
const SEARCH_WINDOWS: [i64; 2] = [DAY_MICROS, 32 * DAY_MICROS];

#[derive(Debug, Default)]
pub struct RollupMetrics {
    pub cycles: AtomicU64,
    pub buckets_written: AtomicU64,
    pub failures: AtomicU64,
    /// Duration of the last cycle that had work, in microseconds.
    pub last_cycle_micros: AtomicU64,
}

impl RollupMetrics {
    /// (name, help, kind, value) for the Prometheus endpoint.
    pub fn snapshot(&self) -> Vec<(&'static str, &'static str, &'static str, f64)> {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed) as f64;
        vec![
            (
                "wattdb_rollup_cycles_total",
                "Rollup maintenance cycles that found marks.",
                "counter",
                get(&self.cycles),
            ),
            (
                "wattdb_rollup_buckets_written_total",
                "Rollup rows (series x bucket) recomputed and written.",
                "counter",
                get(&self.buckets_written),
            ),
            (
                "wattdb_rollup_failures_total",
                "Rollup recomputations that failed (retried).",
                "counter",
                get(&self.failures),
            ),
            (
                "wattdb_rollup_last_cycle_seconds",
                "Duration of the last rollup cycle.",
                "gauge",
                get(&self.last_cycle_micros) / 1e6,
            ),
        ]
    }
}

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct CycleReport {
    pub tables: usize,
    pub buckets_written: usize,
}

pub struct RollupMaintainer {
    storage: Storage,
    marks: Arc<DirtyMarks>,
    tz: Tz,
    /// One cycle or rebuild at a time.
    work: tokio::sync::Mutex<()>,
    metrics: RollupMetrics,
}

/// The dirty buckets of one series within one chunk.
struct SeriesWork {
    buckets: BTreeSet<i64>,
    propagate: bool,
}

impl RollupMaintainer {
    pub fn new(storage: Storage, marks: Arc<DirtyMarks>) -> Arc<Self> {
        let tz = marks.tz();
        Arc::new(RollupMaintainer {
            storage,
            marks,
            tz,
            work: tokio::sync::Mutex::new(()),
            metrics: RollupMetrics::default(),
        })
    }

    pub fn metrics(&self) -> &RollupMetrics {
        &self.metrics
    }

    pub fn pending_marks(&self) -> usize {
        self.marks.len()
    }

    pub fn timezone(&self) -> Tz {
        self.tz
    }

    /// Run cycles whenever marks arrive (at most every `tick`), until `shutdown`.
    pub fn spawn(
        self: &Arc<Self>,
        tick: Duration,
        mut shutdown: tokio::sync::watch::Receiver<bool>,
    ) -> tokio::task::JoinHandle<()> {
        let this = self.clone();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = this.marks.changed() => {}
                    _ = tokio::time::sleep(Duration::from_secs(5)) => {}
                    _ = shutdown.changed() => return,
                }
                // Let a burst of writes gather into one cycle.
                tokio::time::sleep(tick).await;
                if *shutdown.borrow() {
                    return;
                }
                if let Err(e) = this.run_once().await {
                    tracing::warn!(error = %e, "rollup cycle failed; will retry");
                }
            }
        })
    }

    /// Recompute every marked bucket now. Returns after the rollup rows are durable.
    pub async fn run_once(&self) -> Result<CycleReport> {
        let _work = self.work.lock().await;
        self.mark_deleted().await?;
        let taken = self.marks.take();
        if taken.is_empty() {
            return Ok(CycleReport::default());
        }
        let started = Instant::now();
        let mut report = CycleReport::default();
        let mut first_error = None;
        for (table, marks) in taken {
            match self.process_table(table, marks).await {
                Ok(n) => {
                    report.tables += 1;
                    report.buckets_written += n;
                    let marks = self.marks.clone();
                    match tokio::task::spawn_blocking(move || marks.done(table)).await {
                        Ok(Ok(())) => {}
                        Ok(Err(e)) => {
                            tracing::warn!(error = %e, "could not clear finished rollup marks")
                        }
                        Err(e) => tracing::warn!(error = %e, "clearing rollup marks failed"),
                    }
                }
                Err(e) => {
                    self.metrics.failures.fetch_add(1, Ordering::Relaxed);
                    self.marks.failed(table);
                    tracing::warn!(table = table.0, error = %e, "recomputing rollups failed");
                    first_error.get_or_insert(e);
                }
            }
        }
        self.metrics.cycles.fetch_add(1, Ordering::Relaxed);
        self.metrics
            .buckets_written
            .fetch_add(report.buckets_written as u64, Ordering::Relaxed);
        self.metrics
            .last_cycle_micros
            .store(started.elapsed().as_micros() as u64, Ordering::Relaxed);
        match first_error {
            Some(e) => Err(e),
            None => Ok(report),
        }
    }

    /// Mark the buckets logged deletes changed: those of the base rollup rows their
    /// predicates match (whole buckets: a bucket overlapping the deleted time range).
    /// Months whose raw rows expired keep their rollups: there is nothing to recompute
    /// them from.
    async fn mark_deleted(&self) -> Result<()> {
        for rescan in self.marks.rescans() {
            let Some(def) = self.storage.shared_table_by_id(rescan.table) else {
                self.marks.rescan_done(rescan.seq);
                continue;
            };
            let Some(spec) = self.spec(def.clone())? else {
                self.marks.rescan_done(rescan.seq);
                continue;
            };
            let base = spec.base();
            let widened: Vec<DeletePredicate> = rescan
                .predicates
                .iter()
                .map(|p| DeletePredicate {
                    ts_from: p.ts_from.map(|f| base.interval.bucket_start(f)),
                    ..p.clone()
                })
                .collect();
            let keys = self.storage.keys_matching(&base.table, &widened).await?;
            let propagate = spec.has_counters();
            let marks: Vec<(Vec<String>, i64, bool)> = keys
                .into_iter()
                .filter(|(_, b)| !def.is_month_expired(wattdb_storage::Month::of_micros(*b)))
                .map(|(series, b)| (series, b, propagate))
                .collect();
            tracing::debug!(table = %def.name, buckets = marks.len(), "buckets changed by a DELETE marked");
            if !marks.is_empty() {
                self.marks.add(def.id, marks);
            }
            self.marks.rescan_done(rescan.seq);
        }
        Ok(())
    }

    /// Run cycles until no marks are left (tests, `rebuild_rollups`).
    pub async fn settle(&self) -> Result<()> {
        for _ in 0..1000 {
            if self.marks.is_empty() && self.marks.rescans().is_empty() {
                return Ok(());
            }
            self.run_once().await?;
        }
        Err(Error::Settings {
            table: "*".into(),
            reason: "rollup marks keep coming back".into(),
        })
    }

    fn spec(&self, def: Arc<TableDef>) -> Result<Option<RollupSpec>> {
        RollupSpec::of(def.clone(), self.tz).map_err(|reason| Error::Settings {
            table: def.name.clone(),
            reason,
        })
    }

    /// Create the rollup tables of `spec` or add the columns they lack.
    async fn ensure_tables(&self, spec: &RollupSpec) -> Result<()> {
        for level in &spec.levels {
            self.storage
                .ensure_rollup_table(
                    &level.table,
                    spec.source.tags.clone(),
                    spec.columns(),
                    spec.rollup_of(level),
                    RollupSpec::default_retention(level),
                )
                .await?;
        }
        Ok(())
    }

    async fn process_table(&self, table: TableId, marks: TableMarks) -> Result<usize> {
        let Some(def) = self.storage.shared_table_by_id(table) else {
            self.marks.forget(table);
            return Ok(0);
        };
        let Some(spec) = self.spec(def)? else {
            return Ok(0);
        };
        self.ensure_tables(&spec).await?;
        let base = spec.base().clone();
        // bucket -> series marked there, to cut the work into chunks of time.
        let mut by_bucket: BTreeMap<i64, Vec<(&Vec<String>, bool)>> = BTreeMap::new();
        for (series, buckets) in &marks {
            for (bucket, info) in buckets {
                by_bucket
                    .entry(*bucket)
                    .or_default()
                    .push((series, info.propagate));
            }
        }
        let mut written = 0;
        let mut iter = by_bucket.into_iter().peekable();
        while let Some((lo, first)) = iter.next() {
            let mut work: HashMap<Vec<String>, SeriesWork> = HashMap::new();
            let mut last = lo;
            let mut add = |bucket: i64, list: Vec<(&Vec<String>, bool)>| {
                for (series, propagate) in list {
                    let w = work.entry(series.clone()).or_insert_with(|| SeriesWork {
                        buckets: BTreeSet::new(),
                        propagate: false,
                    });
                    w.buckets.insert(bucket);
                    w.propagate |= propagate;
                }
            };
            add(lo, first);
            while let Some((b, list)) = iter.next_if(|(b, _)| *b < lo + CHUNK_MICROS) {
                last = b;
                add(b, list);
            }
            let hi = base.interval.bucket_end(last);
            written += self.process_chunk(&spec, lo, hi, &work).await?;
        }
        Ok(written)
    }

    /// Recompute the marked base buckets in `[lo, hi)` and the coarser buckets holding
    /// them.
    async fn process_chunk(
        &self,
        spec: &RollupSpec,
        lo: i64,
        hi: i64,
        work: &HashMap<Vec<String>, SeriesWork>,
    ) -> Result<usize> {
        let base = spec.base();
        let mut set = SeriesSet::default();
        for s in work.keys() {
            set.insert(s);
        }
        let set = Arc::new(set);
        let Some(raw) = self
            .storage
            .read_range(&spec.source.name, lo, hi, Some(set.clone()))
            .await?
        else {
            return Ok(0);
        };
        let counters = spec.has_counters();
        let baselines = if counters {
            self.baselines(spec, work.keys().cloned().collect(), lo)
                .await?
        } else {
            HashMap::new()
        };
        let rows = aggregate_raw(spec, base.interval, &raw, &baselines, |series, bucket| {
            let Some(w) = work.get(series) else {
                return false;
            };
            if counters {
                // A changed reading changes the next reading's increment: every later
                // bucket of the chunk is recomputed too.
                w.buckets.first().is_some_and(|first| bucket >= *first)
            } else {
                w.buckets.contains(&bucket)
            }
        });
        // Marked buckets left without raw rows (a DELETE took them): their rollup rows go.
        let emptied = left_empty(
            spec,
            work.iter()
                .flat_map(|(series, w)| w.buckets.iter().map(move |b| (series, *b))),
            &rows,
        );
        let mut written = self.write(spec, base, &rows).await?;
        written += self.remove(spec, base, &emptied).await?;
        if counters {
            let follow: Vec<Vec<String>> = work
                .iter()
                .filter(|(_, w)| w.propagate)
                .map(|(s, _)| s.clone())
                .collect();
            let next = self.next_buckets(spec, follow, hi).await?;
            if !next.is_empty() {
                self.marks
                    .add(spec.source.id, next.into_iter().map(|(s, b)| (s, b, false)));
            }
        }
        let touched: Vec<(Vec<String>, i64)> = rows
            .iter()
            .map(|r| (r.series.clone(), r.start))
            .chain(emptied)
            .collect();
        written += self.compose_levels(spec, &touched).await?;
        tracing::debug!(
            table = %spec.source.name,
            lo,
            hi,
            series = work.len(),
            raw_rows = raw.num_rows(),
            raw_bytes = raw.get_array_memory_size(),
            written,
            "rollup chunk recomputed"
        );
        Ok(written)
    }

    /// Recompute the coarser levels' buckets that hold any of the `touched` base
    /// buckets (series, start); those left without finer rows are removed.
    async fn compose_levels(
        &self,
        spec: &RollupSpec,
        touched: &[(Vec<String>, i64)],
    ) -> Result<usize> {
        let mut written = 0;
        for level in &spec.levels[1..] {
            let mut wanted: HashMap<Vec<String>, BTreeSet<i64>> = HashMap::new();
            let (mut lo, mut hi) = (i64::MAX, i64::MIN);
            for (series, base_start) in touched {
                let start = level.interval.bucket_start(*base_start);
                lo = lo.min(start);
                hi = hi.max(level.interval.bucket_end(start));
                wanted.entry(series.clone()).or_default().insert(start);
            }
            if wanted.is_empty() {
                continue;
            }
            let mut set = SeriesSet::default();
            for s in wanted.keys() {
                set.insert(s);
            }
            let Some(finer) = self
                .storage
                .read_range(&spec.base().table, lo, hi, Some(Arc::new(set)))
                .await?
            else {
                continue;
            };
            let rows = compose(spec, level.interval, &finer, |series, bucket| {
                wanted.get(series).is_some_and(|b| b.contains(&bucket))
            });
            let emptied = left_empty(
                spec,
                wanted
                    .iter()
                    .flat_map(|(series, b)| b.iter().map(move |b| (series, *b))),
                &rows,
            );
            written += self.write(spec, level, &rows).await?;
            written += self.remove(spec, level, &emptied).await?;
        }
        Ok(written)
    }

    /// Delete the rollup rows of `level` for these (series, bucket start), as one
    /// tombstone: a predicate per series and run of adjacent buckets.
    async fn remove(
        &self,
        spec: &RollupSpec,
        level: &Level,
        buckets: &[(Vec<String>, i64)],
    ) -> Result<usize> {
        if buckets.is_empty() {
            return Ok(0);
        }
        let def = self.storage.shared_table(&level.table).ok_or_else(|| {
            wattdb_storage::Error::TableNotFound {
                table: level.table.clone(),
            }
        })?;
        let predicates = bucket_runs(&spec.source.tags, level.interval, buckets);
        self.storage.delete_rollup_rows(&def, predicates).await?;
        Ok(buckets.len())
    }

    async fn write(&self, spec: &RollupSpec, level: &Level, rows: &[BucketRow]) -> Result<usize> {
        if rows.is_empty() {
            return Ok(0);
        }
        // The table as ensured for this spec (it only ever gains columns).
        let def = self.storage.shared_table(&level.table).ok_or_else(|| {
            wattdb_storage::Error::TableNotFound {
                table: level.table.clone(),
            }
        })?;
        let positions: Vec<usize> = spec
            .columns()
            .iter()
            .map(|c| {
                def.field_index(&c.name).ok_or_else(|| Error::Settings {
                    table: level.table.clone(),
                    reason: format!("rollup column {} is missing", c.name),
                })
            })
            .collect::<Result<_>>()?;
        for part in rows.chunks(WRITE_ROWS) {
            let valid = part
                .iter()
                .map(|r| r.to_valid_row(spec, &positions, def.fields.len()))
                .collect();
            self.storage.write_rollup_rows(&def, valid).await?;
        }
        Ok(rows.len())
    }

    /// Per series, the last reading of each counter field before `before`, from the base
    /// rollup (which outlives raw data): the `_last` of the latest bucket where the field
    /// has readings. Nearer windows first; the whole past last.
    async fn baselines(
        &self,
        spec: &RollupSpec,
        series: Vec<Vec<String>>,
        before: i64,
    ) -> Result<HashMap<Vec<String>, Vec<Option<Num>>>> {
        let mut windows: Vec<(i64, i64)> = Vec::new();
        let mut hi = before;
        for w in SEARCH_WINDOWS {
            let lo = before.saturating_sub(w);
            windows.push((lo, hi));
            hi = lo;
        }
        windows.push((i64::MIN, hi));
        let found = self
            .search_counters(spec, series, windows, Keep::Latest)
            .await?;
        Ok(found
            .into_iter()
            .map(|(s, v)| (s, v.into_iter().map(|r| r.map(|(_, n)| n)).collect()))
            .collect())
    }

    /// Per series and counter field, the first base bucket at or after `from` where the
    /// field has readings: its delta starts from the last reading before it, which the
    /// caller may just have changed.
    async fn next_buckets(
        &self,
        spec: &RollupSpec,
        series: Vec<Vec<String>>,
        from: i64,
    ) -> Result<Vec<(Vec<String>, i64)>> {
        let mut windows: Vec<(i64, i64)> = Vec::new();
        let mut lo = from;
        for w in SEARCH_WINDOWS {
            let hi = from.saturating_add(w);
            windows.push((lo, hi));
            lo = hi;
        }
        windows.push((lo, i64::MAX));
        let found = self
            .search_counters(spec, series, windows, Keep::Earliest)
            .await?;
        let mut out: Vec<(Vec<String>, i64)> = Vec::new();
        for (s, firsts) in found {
            let mut buckets: Vec<i64> = firsts.into_iter().flatten().map(|(b, _)| b).collect();
            buckets.sort_unstable();
            buckets.dedup();
            out.extend(buckets.into_iter().map(|b| (s.clone(), b)));
        }
        Ok(out)
    }

    /// Search the base rollup window by window (in the order given) for each series'
    /// counter readings ([`counter_readings`]); a series leaves the search once every
    /// counter field is found, and a nearer window's answer is never replaced.
    async fn search_counters(
        &self,
        spec: &RollupSpec,
        series: Vec<Vec<String>>,
        windows: Vec<(i64, i64)>,
        keep: Keep,
    ) -> Result<HashMap<Vec<String>, Vec<Option<(i64, Num)>>>> {
        let counter_idx: Vec<usize> = (0..spec.fields.len())
            .filter(|i| spec.fields[*i].counter)
            .collect();
        let mut found: HashMap<Vec<String>, Vec<Option<(i64, Num)>>> = HashMap::new();
        let mut remaining = series;
        for (lo, hi) in windows {
            if remaining.is_empty() {
                break;
            }
            let batch = self.read_base(spec, &remaining, lo, hi).await?;
            for (s, readings) in counter_readings(spec, &batch, keep) {
                let entry = found
                    .entry(s)
                    .or_insert_with(|| vec![None; spec.fields.len()]);
                for &i in &counter_idx {
                    if entry[i].is_none() {
                        entry[i] = readings[i];
                    }
                }
            }
            remaining.retain(|s| {
                found
                    .get(s)
                    .is_none_or(|v| counter_idx.iter().any(|&i| v[i].is_none()))
            });
        }
        Ok(found)
    }

    async fn read_base(
        &self,
        spec: &RollupSpec,
        series: &[Vec<String>],
        lo: i64,
        hi: i64,
    ) -> Result<RecordBatch> {
        let mut set = SeriesSet::default();
        for s in series {
            set.insert(s);
        }
        let table = &spec.base().table;
        Ok(self
            .storage
            .read_range(table, lo, hi, Some(Arc::new(set)))
            .await?
            .unwrap_or_else(|| RecordBatch::new_empty(Arc::new(arrow::datatypes::Schema::empty()))))
    }

    /// Store new rollup settings for `table` and recompute its rollups under them. While
    /// that runs (and if the server stops before it ends) the settings carry
    /// `rebuilding`, so queries are not answered from rollup tables that may be
    /// incomplete; calling this again with the same settings resumes.
    pub async fn apply_settings(
        &self,
        table: &str,
        mut settings: wattdb_storage::RollupSettings,
    ) -> Result<usize> {
        settings.rebuilding = true;
        self.storage
            .set_rollup_settings(table, settings.clone())
            .await?;
        let n = self.rebuild(table).await?;
        settings.rebuilding = false;
        self.storage.set_rollup_settings(table, settings).await?;
        Ok(n)
    }

    /// `SELECT rebuild_rollups('<table>')`: recompute every bucket from the raw rows
    /// still present, a day at a time, oldest first. Buckets whose raw rows have expired
    /// keep their rollup rows.
    pub async fn rebuild(&self, table: &str) -> Result<usize> {
        let _work = self.work.lock().await;
        let def = self.storage.shared_table(table).ok_or_else(|| {
            wattdb_storage::Error::TableNotFound {
                table: table.into(),
            }
        })?;
        let Some(spec) = self.spec(def)? else {
            return Err(Error::Settings {
                table: table.into(),
                reason: "has no rollups (it is a rollup itself, or has no numeric fields)".into(),
            });
        };
        self.ensure_tables(&spec).await?;
        let snapshot = self.storage.snapshot(table)?;
        let min = snapshot
            .files
            .iter()
            .map(|f| f.min_ts)
            .chain(snapshot.buffered.iter().map(|b| b.min_ts))
            .min();
        let max = snapshot
            .files
            .iter()
            .map(|f| f.max_ts)
            .chain(snapshot.buffered.iter().map(|b| b.max_ts))
            .max();
        let (Some(min), Some(max)) = (min, max) else {
            tracing::info!(table, "rebuild_rollups: no raw rows");
            return Ok(0);
        };
        drop(snapshot);
        let base = spec.base().clone();
        let started = Instant::now();
        tracing::info!(table, from = min, to = max, "rebuild_rollups: started");
        let mut written = 0;
        let mut lo = base.interval.bucket_start(min);
        let mut last_logged = Instant::now();
        while lo <= max {
            // Whole base buckets, about a day at a time.
            let mut hi = base.interval.bucket_end(lo);
            while hi < lo + CHUNK_MICROS {
                hi = base.interval.bucket_end(hi);
            }
            let Some(raw) = self.storage.read_range(table, lo, hi, None).await? else {
                break;
            };
            if raw.num_rows() > 0 {
                let series = series_of(&raw, spec.source.tags.len());
                let baselines = if spec.has_counters() {
                    self.baselines(&spec, series, lo).await?
                } else {
                    HashMap::new()
                };
                let rows = aggregate_raw(&spec, base.interval, &raw, &baselines, |_, _| true);
                written += self.write(&spec, &base, &rows).await?;
                let touched: Vec<(Vec<String>, i64)> =
                    rows.iter().map(|r| (r.series.clone(), r.start)).collect();
                written += self.compose_levels(&spec, &touched).await?;
            }
            if last_logged.elapsed() > Duration::from_secs(5) {
                let done = (hi - min) as f64 / (max - min + 1).max(1) as f64;
                tracing::info!(
                    table,
                    progress = format!("{:.0}%", (done * 100.0).min(100.0)),
                    buckets_written = written,
                    "rebuild_rollups: in progress"
                );
                last_logged = Instant::now();
            }
            lo = hi;
        }
        tracing::info!(
            table,
            buckets_written = written,
            seconds = started.elapsed().as_secs_f64(),
            "rebuild_rollups: done"
        );
        Ok(written)
    }
}

/// Of the `wanted` (series, bucket start), those `rows` has no row for — their source
/// rows are gone — outside months whose raw rows expired (those rollups are kept).
fn left_empty<'a>(
    spec: &RollupSpec,
    wanted: impl Iterator<Item = (&'a Vec<String>, i64)>,
    rows: &[BucketRow],
) -> Vec<(Vec<String>, i64)> {
    let produced: std::collections::HashSet<(&Vec<String>, i64)> =
        rows.iter().map(|r| (&r.series, r.start)).collect();
    wanted
        .filter(|(series, b)| {
            !produced.contains(&(*series, *b))
                && !spec
                    .source
                    .is_month_expired(wattdb_storage::Month::of_micros(*b))
        })
        .map(|(series, b)| (series.clone(), b))
        .collect()
}

/// Predicates covering exactly `buckets` (series, start) of `interval`: one per series
/// and run of adjacent buckets.
fn bucket_runs(
    tags: &[String],
    interval: Interval,
    buckets: &[(Vec<String>, i64)],
) -> Vec<DeletePredicate> {
    let mut by_series: BTreeMap<&Vec<String>, BTreeSet<i64>> = BTreeMap::new();
    for (series, b) in buckets {
        by_series.entry(series).or_default().insert(*b);
    }
    let mut out = Vec::new();
    for (series, starts) in by_series {
        let conditions: Vec<TagCondition> = tags
            .iter()
            .zip(series)
            .map(|(tag, value)| TagCondition {
                tag: tag.clone(),
                values: vec![value.clone()],
                negated: false,
            })
            .collect();
        let mut run: Option<(i64, i64)> = None;
        for b in starts {
            let end = interval.bucket_end(b);
            run = match run {
                Some((from, to)) if to == b => Some((from, end)),
                Some((from, to)) => {
                    out.push(DeletePredicate {
                        ts_from: Some(from),
                        ts_to: Some(to),
                        tags: conditions.clone(),
                    });
                    Some((b, end))
                }
                None => Some((b, end)),
            };
        }
        if let Some((from, to)) = run {
            out.push(DeletePredicate {
                ts_from: Some(from),
                ts_to: Some(to),
                tags: conditions,
            });
        }
    }
    out
}

/// The distinct series of a batch sorted by tags.
fn series_of(batch: &RecordBatch, n_tags: usize) -> Vec<Vec<String>> {
    let tags: Option<Vec<&arrow::array::StringArray>> = (1..=n_tags)
        .map(|i| batch.column(i).as_any().downcast_ref())
        .collect();
    let Some(tags) = tags else { return Vec::new() };
    let mut out: Vec<Vec<String>> = Vec::new();
    for r in 0..batch.num_rows() {
        let same = out
            .last()
            .is_some_and(|s| s.iter().zip(&tags).all(|(v, t)| t.value(r) == v));
        if !same {
            out.push(tags.iter().map(|t| t.value(r).to_string()).collect());
        }
    }
    out
}
