//! The arithmetic of rollups, free of I/O: per-bucket aggregates of raw rows (with
//! counter increments carried across buckets), coarser buckets composed from finer
//! ones, and conversion to the rows written into a rollup table.

use std::collections::HashMap;

use arrow::array::{Array, ArrayRef, Float64Array, Int64Array, StringArray};
use arrow::datatypes::DataType;
use arrow::record_batch::RecordBatch;
use wattdb_algorithms::counter;
use wattdb_storage::{FieldType, FieldValue, ValidRow};

use super::spec::{DELTA, RollupSpec};
use wattdb_storage::{BucketCache, Interval};

/// A numeric value of a float or integer field.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Num {
    F(f64),
    I(i64),
}

impl Num {
    fn as_f64(self) -> f64 {
        match self {
            Num::F(v) => v,
            Num::I(v) => v as f64,
        }
    }

    fn less_than(self, other: Num) -> bool {
        match (self, other) {
            (Num::I(a), Num::I(b)) => a < b,
            (a, b) => a.as_f64() < b.as_f64(),
        }
    }

    /// None when an integer sum overflows.
    fn checked_add(self, other: Num) -> Option<Num> {
        match (self, other) {
            (Num::I(a), Num::I(b)) => a.checked_add(b).map(Num::I),
            (a, b) => Some(Num::F(a.as_f64() + b.as_f64())),
        }
    }

    fn zero(ty: FieldType) -> Num {
        match ty {
            FieldType::Integer => Num::I(0),
            _ => Num::F(0.0),
        }
    }

    fn increment(prev: Num, cur: Num) -> Num {
        match (prev, cur) {
            (Num::I(p), Num::I(c)) => Num::I(counter::increment_i64(p, c)),
            (p, c) => Num::F(counter::increment(p.as_f64(), c.as_f64())),
        }
    }

    fn value(self) -> FieldValue {
        match self {
            Num::F(v) => FieldValue::Float(v),
            Num::I(v) => FieldValue::Integer(v),
        }
    }
}

/// The summary of one field over one bucket.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FieldAgg {
    pub count: i64,
    pub min: Option<Num>,
    pub max: Option<Num>,
    /// None with no values, or after an integer overflow (then `sum_overflow`).
    pub sum: Option<Num>,
    pub sum_overflow: bool,
    pub first: Option<Num>,
    pub last: Option<Num>,
    /// Counters only: consumption in the bucket. None without readings.
    pub delta: Option<Num>,
}

impl FieldAgg {
    /// Add a reading (rows arrive in time order). `increment` is the counter's growth
    /// since the previous reading, if it has one.
    fn add(&mut self, v: Num, increment: Option<Num>, counter: bool, ty: FieldType) {
        self.count += 1;
        if self.min.is_none_or(|m| v.less_than(m)) {
            self.min = Some(v);
        }
        if self.max.is_none_or(|m| m.less_than(v)) {
            self.max = Some(v);
        }
        self.add_sum(Some(v));
        if self.first.is_none() {
            self.first = Some(v);
        }
        self.last = Some(v);
        if counter {
            let d = self.delta.unwrap_or(Num::zero(ty));
            self.delta = d.checked_add(increment.unwrap_or(Num::zero(ty)));
        }
    }

    fn add_sum(&mut self, v: Option<Num>) {
        if self.sum_overflow {
            return;
        }
        self.sum = match (self.sum, v) {
            (None, v) => v,
            (s, None) => s,
            (Some(s), Some(v)) => match s.checked_add(v) {
                Some(x) => Some(x),
                None => {
                    self.sum_overflow = true;
                    None
                }
            },
        };
    }

    /// Fold in the summary of a later bucket.
    fn merge(&mut self, later: &FieldAgg) {
        if later.count == 0 && later.delta.is_none() {
            return;
        }
        if let Some(v) = later.min
            && self.min.is_none_or(|m| v.less_than(m))
        {
            self.min = Some(v);
        }
        if let Some(v) = later.max
            && self.max.is_none_or(|m| m.less_than(v))
        {
            self.max = Some(v);
        }
        if later.sum_overflow || (later.count > 0 && later.sum.is_none()) {
            self.sum_overflow = true;
            self.sum = None;
        } else {
            self.add_sum(later.sum);
        }
        if self.count == 0 {
            self.first = later.first;
        }
        if later.count > 0 {
            self.last = later.last;
        }
        self.count += later.count;
        self.delta = match (self.delta, later.delta) {
            (None, d) | (d, None) => d,
            (Some(a), Some(b)) => a.checked_add(b),
        };
    }
}

/// One rollup row: a series' summary over one bucket.
#[derive(Debug, Clone, PartialEq)]
pub struct BucketRow {
    pub series: Vec<String>,
    pub start: i64,
    /// Aligned to `RollupSpec::fields`.
    pub fields: Vec<FieldAgg>,
}

impl BucketRow {
    /// The values of the rollup columns, in [`RollupSpec::columns`] order.
    pub fn values(&self, spec: &RollupSpec) -> Vec<Option<FieldValue>> {
        let mut out = Vec::with_capacity(self.fields.len() * 8);
        for (f, a) in spec.fields.iter().zip(&self.fields) {
            let avg = match (a.sum, a.count) {
                (Some(s), n) if n > 0 => Some(FieldValue::Float(s.as_f64() / n as f64)),
                _ => None,
            };
            out.extend([
                a.min.map(Num::value),
                a.max.map(Num::value),
                avg,
                a.sum.map(Num::value),
                Some(FieldValue::Integer(a.count)),
                a.first.map(Num::value),
                a.last.map(Num::value),
            ]);
            if f.counter {
                out.push(a.delta.map(Num::value));
            }
        }
        out
    }

    /// The row for rollup table `def`, whose fields include every column of `spec`
    /// (`positions[i]` = where the i-th column of [`RollupSpec::columns`] sits).
    pub fn to_valid_row(
        &self,
        spec: &RollupSpec,
        positions: &[usize],
        n_fields: usize,
    ) -> ValidRow {
        let mut fields = vec![None; n_fields];
        for (v, &p) in self.values(spec).into_iter().zip(positions) {
            fields[p] = v;
        }
        ValidRow {
            ts: self.start,
            tags: self.series.clone(),
            fields,
        }
    }
}

/// Reads one numeric column whatever its Arrow type.
enum NumCol<'a> {
    F(&'a Float64Array),
    I(&'a Int64Array),
    Missing,
}

impl<'a> NumCol<'a> {
    fn of(col: Option<&'a ArrayRef>) -> Self {
        let Some(col) = col else {
            return NumCol::Missing;
        };
        match col.data_type() {
            DataType::Float64 => col
                .as_any()
                .downcast_ref()
                .map(NumCol::F)
                .unwrap_or(NumCol::Missing),
            DataType::Int64 => col
                .as_any()
                .downcast_ref()
                .map(NumCol::I)
                .unwrap_or(NumCol::Missing),
            _ => NumCol::Missing,
        }
    }

    fn get(&self, row: usize) -> Option<Num> {
        match self {
            NumCol::F(a) if a.is_valid(row) => Some(Num::F(a.value(row))),
            NumCol::I(a) if a.is_valid(row) => Some(Num::I(a.value(row))),
            _ => None,
        }
    }
}

fn ts_and_tags(batch: &RecordBatch, n_tags: usize) -> Option<(&[i64], Vec<&StringArray>)> {
    let ts = batch
        .column(0)
        .as_any()
        .downcast_ref::<arrow::array::TimestampMicrosecondArray>()?;
    let tags = (1..=n_tags)
        .map(|i| batch.column(i).as_any().downcast_ref::<StringArray>())
        .collect::<Option<Vec<_>>>()?;
    Some((ts.values(), tags))
}

fn same_series(tags: &[&StringArray], row: usize, series: &[String]) -> bool {
    tags.iter().zip(series).all(|(t, s)| t.value(row) == s)
}

/// Walks rows sorted by series then time, calling `on_row` with each row's series (the
/// same `Vec` for a whole run of one series) and a flag telling whether it is new.
fn for_each_series_row(
    tags: &[&StringArray],
    n: usize,
    mut on_row: impl FnMut(&[String], bool, usize),
) {
    let mut series: Vec<String> = Vec::new();
    for r in 0..n {
        let new = r == 0 || !same_series(tags, r, &series);
        if new {
            series = tags.iter().map(|t| t.value(r).to_string()).collect();
        }
        on_row(&series, new, r);
    }
}

/// Per-bucket aggregates of raw rows (deduplicated, sorted by tags then `ts`) for the
/// buckets `wanted(series, bucket_start)` selects. Every row, wanted or not, advances
/// the counters, so an increment is always measured from the series' previous reading;
/// `baselines` gives, per series and counter field, the last reading before the batch.
pub fn aggregate_raw(
    spec: &RollupSpec,
    interval: Interval,
    batch: &RecordBatch,
    baselines: &HashMap<Vec<String>, Vec<Option<Num>>>,
    mut wanted: impl FnMut(&[String], i64) -> bool,
) -> Vec<BucketRow> {
    let n_tags = spec.source.tags.len();
    let Some((ts, tags)) = ts_and_tags(batch, n_tags) else {
        return Vec::new();
    };
    let cols: Vec<NumCol> = spec
        .fields
        .iter()
        .map(|f| NumCol::of(batch.column_by_name(&f.name)))
        .collect();
    let mut out = Vec::new();
    let mut cache = BucketCache::new(interval);
    let mut prev: Vec<Option<Num>> = vec![None; spec.fields.len()];
    let mut current: Option<BucketRow> = None;
    for_each_series_row(&tags, batch.num_rows(), |series, new, r| {
        let bucket = cache.start_of(ts[r]);
        if new {
            out.extend(current.take());
            prev = baselines
                .get(series)
                .cloned()
                .unwrap_or_else(|| vec![None; spec.fields.len()]);
        }
        if current.as_ref().is_some_and(|c| c.start != bucket) {
            out.extend(current.take());
        }
        let want = match &current {
            Some(_) => true,
            None => wanted(series, bucket),
        };
        if want && current.is_none() {
            current = Some(BucketRow {
                series: series.to_vec(),
                start: bucket,
                fields: vec![FieldAgg::default(); spec.fields.len()],
            });
        }
        for (i, f) in spec.fields.iter().enumerate() {
            let Some(v) = cols[i].get(r) else { continue };
            let inc = if f.counter {
                prev[i].map(|p| Num::increment(p, v))
            } else {
                None
            };
            if f.counter {
                prev[i] = Some(v);
            }
            if let Some(c) = current.as_mut() {
                c.fields[i].add(v, inc, f.counter, f.field_type);
            }
        }
    });
    out.extend(current);
    out
}

/// Which reading per series and field [`counter_readings`] keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Keep {
    /// The latest bucket with readings: its `_last` is the last reading before the
    /// batch's end (a counter baseline).
    Latest,
    /// The earliest bucket with readings: the bucket whose delta starts from the last
    /// reading before the batch's start.
    Earliest,
}

/// Per series and field, `(bucket start, _last)` of the latest or earliest bucket of a
/// rollup batch (sorted by tags then `ts`) where that field has readings.
pub fn counter_readings(
    spec: &RollupSpec,
    batch: &RecordBatch,
    keep: Keep,
) -> HashMap<Vec<String>, Vec<Option<(i64, Num)>>> {
    let n_tags = spec.source.tags.len();
    let mut out: HashMap<Vec<String>, Vec<Option<(i64, Num)>>> = HashMap::new();
    let Some((ts, tags)) = ts_and_tags(batch, n_tags) else {
        return out;
    };
    let col = |suffix: &str| -> Vec<NumCol> {
        spec.fields
            .iter()
            .map(|f| NumCol::of(batch.column_by_name(&format!("{}_{suffix}", f.name))))
            .collect()
    };
    let (counts, lasts) = (col("count"), col("last"));
    let n_fields = spec.fields.len();
    for_each_series_row(&tags, batch.num_rows(), |series, _, r| {
        let entry = out
            .entry(series.to_vec())
            .or_insert_with(|| vec![None; n_fields]);
        for i in 0..n_fields {
            let has = matches!(counts[i].get(r), Some(Num::I(c)) if c > 0);
            let replace = keep == Keep::Latest || entry[i].is_none();
            if has
                && replace
                && let Some(v) = lasts[i].get(r)
            {
                entry[i] = Some((ts[r], v));
            }
        }
    });
    out
}

/// Compose buckets of `interval` from a finer rollup's rows (sorted by tags then `ts`),
/// for the buckets `wanted` selects.
pub fn compose(
    spec: &RollupSpec,
    interval: Interval,
    finer: &RecordBatch,
    mut wanted: impl FnMut(&[String], i64) -> bool,
) -> Vec<BucketRow> {
    let n_tags = spec.source.tags.len();
    let Some((ts, tags)) = ts_and_tags(finer, n_tags) else {
        return Vec::new();
    };
    let col = |f: &str, s: &str| NumCol::of(finer.column_by_name(&format!("{f}_{s}")));
    let cols: Vec<[NumCol; 7]> = spec
        .fields
        .iter()
        .map(|f| {
            [
                col(&f.name, "count"),
                col(&f.name, "min"),
                col(&f.name, "max"),
                col(&f.name, "sum"),
                col(&f.name, "first"),
                col(&f.name, "last"),
                col(&f.name, DELTA),
            ]
        })
        .collect();
    let mut out = Vec::new();
    let mut cache = BucketCache::new(interval);
    let mut current: Option<BucketRow> = None;
    for_each_series_row(&tags, finer.num_rows(), |series, new, r| {
        let bucket = cache.start_of(ts[r]);
        if new || current.as_ref().is_some_and(|c| c.start != bucket) {
            out.extend(current.take());
        }
        if current.is_none() {
            if !wanted(series, bucket) {
                return;
            }
            current = Some(BucketRow {
                series: series.to_vec(),
                start: bucket,
                fields: vec![FieldAgg::default(); spec.fields.len()],
            });
        }
        let Some(c) = current.as_mut() else { return };
        for (i, f) in spec.fields.iter().enumerate() {
            let [count, min, max, sum, first, last, delta] = &cols[i];
            let count = match count.get(r) {
                Some(Num::I(n)) => n,
                _ => 0,
            };
            let part = FieldAgg {
                count,
                min: min.get(r),
                max: max.get(r),
                sum: sum.get(r),
                sum_overflow: count > 0 && sum.get(r).is_none(),
                first: first.get(r),
                last: last.get(r),
                delta: if f.counter { delta.get(r) } else { None },
            };
            c.fields[i].merge(&part);
        }
    });
    out.extend(current);
    out
}
