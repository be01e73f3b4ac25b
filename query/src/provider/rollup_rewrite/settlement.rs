//! Which (series, bucket) a rewritten query may take from a rollup table, decided once
//! per query from one consistent view (see `storage::read::RollupView`), and the two
//! scalar functions that apply it row by row: `rollup_region_<side>(tags…, ts)` keeps the
//! rows of one side of the rewrite, `rollup_bucket(ts)` is the base bucket of a raw row.

use std::hash::{Hash, Hasher};
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, BooleanArray, StringArray, TimestampMicrosecondArray};
use arrow::datatypes::{DataType, TimeUnit};
use datafusion::common::{Result, exec_err};
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDFImpl, Signature, Volatility,
};
use wattdb_storage::read::Unsettled;
use wattdb_storage::{BucketCache, Interval, TS_TIMEZONE};

/// Sorted, disjoint `[start, end)` microsecond ranges.
pub type Ranges = Vec<(i64, i64)>;

/// Merge overlapping and touching ranges.
pub fn normalize(mut r: Ranges) -> Ranges {
    r.retain(|(a, b)| a < b);
    r.sort_unstable();
    let mut out: Ranges = Vec::with_capacity(r.len());
    for (a, b) in r {
        match out.last_mut() {
            Some(last) if a <= last.1 => last.1 = last.1.max(b),
            _ => out.push((a, b)),
        }
    }
    out
}

/// At most `max` ranges, joining the closest neighbours (a superset: for pruning only).
pub fn coarsen(mut r: Ranges, max: usize) -> Ranges {
    while r.len() > max.max(1) {
        let (i, _) = r
            .windows(2)
            .enumerate()
            .min_by_key(|(_, w)| w[1].0.saturating_sub(w[0].1))
            .unwrap_or((0, &r[..2]));
        r[i].1 = r[i + 1].1;
        r.remove(i + 1);
    }
    r
}

/// Where two sets of ranges overlap.
fn intersect(a: &Ranges, b: &Ranges) -> Ranges {
    let (mut i, mut j, mut out) = (0, 0, Vec::new());
    while i < a.len() && j < b.len() {
        let (s, e) = (a[i].0.max(b[j].0), a[i].1.min(b[j].1));
        if s < e {
            out.push((s, e));
        }
        if a[i].1 < b[j].1 {
            i += 1;
        } else {
            j += 1;
        }
    }
    out
}

fn contains(ranges: &Ranges, t: i64) -> bool {
    let i = ranges.partition_point(|(_, end)| *end <= t);
    ranges.get(i).is_some_and(|(s, _)| *s <= t)
}

/// Everything the sides of one rewritten query agree on.
#[derive(Debug)]
pub struct Settlement {
    pub base: Interval,
    /// The level the query buckets are composed of (may be the base).
    pub level: Interval,
    /// Inclusive bounds of the query on `ts`.
    pub lo: i64,
    pub hi: i64,
    pub unsettled: Unsettled,
    /// Months present in the raw table, the base rollup and the level's rollup.
    pub raw_months: Ranges,
    pub base_months: Ranges,
    pub level_months: Ranges,
    /// Whole buckets of the base / the level inside the query's bounds and in months
    /// both the raw table and that rollup table have: where a rollup row may be used
    /// unless its series has a mark there.
    base_ok: Ranges,
    level_ok: Ranges,
}

impl Settlement {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        base: Interval,
        level: Interval,
        lo: i64,
        hi: i64,
        unsettled: Unsettled,
        raw_months: Ranges,
        base_months: Ranges,
        level_months: Ranges,
    ) -> Self {
        let whole = |interval: Interval, months: &Ranges| -> Ranges {
            let bounds = vec![(lo, hi.saturating_add(1))];
            let covered = intersect(&intersect(&raw_months, months), &bounds);
            covered
                .into_iter()
                .map(|(a, b)| {
                    let s = interval.bucket_start(a);
                    let a = if s == a { a } else { interval.bucket_end(s) };
                    let b = if b == i64::MAX {
                        b
                    } else {
                        interval.bucket_start(b)
                    };
                    (a, b)
                })
                .filter(|(a, b)| a < b)
                .collect()
        };
        Settlement {
            base_ok: whole(base, &base_months),
            level_ok: whole(level, &level_months),
            base,
            level,
            lo,
            hi,
            unsettled,
            raw_months,
            base_months,
            level_months,
        }
    }

    /// The base rollup row of (series, bucket starting at `b`) is exact and wanted whole.
    pub fn base_settled(&self, series: &[String], b: i64) -> bool {
        contains(&self.base_ok, b)
            && self
                .unsettled
                .get(series)
                .is_none_or(|marks| marks.binary_search(&b).is_err())
    }

    /// The level's rollup row of (series, bucket starting at `b`) is exact and wanted.
    pub fn level_settled(&self, series: &[String], b: i64) -> bool {
        contains(&self.level_ok, b)
            && self.unsettled.get(series).is_none_or(|marks| {
                let e = self.level.bucket_end(b);
                let i = marks.partition_point(|x| *x < b);
                marks.get(i).is_none_or(|x| *x >= e)
            })
    }

    /// No series has a mark: rows need not be told apart by series.
    pub fn no_marks(&self) -> bool {
        self.unsettled.is_empty()
    }

    fn level_is_base(&self) -> bool {
        self.level == self.base
    }

    /// The part of `[lo, hi]` where a bucket of `interval` cannot be whole: the cut
    /// buckets at both ends.
    fn edges(&self, interval: Interval) -> Ranges {
        let mut out = Vec::new();
        if self.lo != i64::MIN {
            let first = interval.bucket_start(self.lo);
            if first != self.lo {
                out.push((self.lo, interval.bucket_end(first)));
            }
        }
        if self.hi != i64::MAX {
            let end = self.hi + 1;
            let last = interval.bucket_start(end);
            if last != end {
                out.push((last, end));
            }
        }
        out
    }

    /// The parts of `[lo, hi]` outside `months`.
    fn holes(&self, months: &Ranges) -> Ranges {
        let mut out = Vec::new();
        let mut at = self.lo;
        for (a, b) in months {
            if *b <= at {
                continue;
            }
            if *a > self.hi {
                break;
            }
            if *a > at {
                out.push((at, *a));
            }
            at = *b;
        }
        if at <= self.hi {
            out.push((at, self.hi.saturating_add(1)));
        }
        out
    }

    /// The holes of `months` (and of the raw table's months) that matter: within the
    /// raw data's extent widened to whole buckets of `interval` (elsewhere there are no
    /// raw rows, and no rollup row is settled).
    fn holes_near_data(&self, interval: Interval, months: &Ranges) -> Ranges {
        let (Some(first), Some(last)) = (self.raw_months.first(), self.raw_months.last()) else {
            return Vec::new();
        };
        let from = interval.bucket_start(first.0);
        let to = interval.bucket_end(interval.bucket_start(last.1 - 1));
        let mut r = self.holes(&self.raw_months);
        r.extend(self.holes(months));
        r.into_iter()
            .map(|(a, b)| (a.max(from), b.min(to)))
            .filter(|(a, b)| a < b)
            .collect()
    }

    /// A superset of the buckets of `interval` that are not settled for some series:
    /// cut by the query's bounds, near a month missing from the raw table or from
    /// `months`, or holding an unsettled base bucket — widened to whole buckets.
    fn unsettled_ranges(&self, interval: Interval, months: &Ranges) -> Ranges {
        let mut r = self.edges(interval);
        r.extend(self.holes_near_data(interval, months));
        for buckets in self.unsettled.values() {
            r.extend(buckets.iter().map(|b| (*b, b.saturating_add(1))));
        }
        let widened = r
            .into_iter()
            .filter(|(a, b)| a < b)
            .map(|(a, b)| {
                let start = if a == i64::MIN {
                    a
                } else {
                    interval.bucket_start(a)
                };
                let end = if b == i64::MAX {
                    b
                } else {
                    interval.bucket_end(interval.bucket_start(b - 1))
                };
                (start, end)
            })
            .collect();
        normalize(widened)
    }

    /// A superset of where raw rows are needed: unsettled base buckets.
    pub fn raw_ranges(&self) -> Ranges {
        self.unsettled_ranges(self.base, &self.base_months)
    }

    /// Whether raw rows are needed beyond the unsettled series' own buckets (then a
    /// filter on those series cannot narrow the raw side).
    pub fn raw_needs_all_series(&self) -> bool {
        !self.edges(self.base).is_empty()
            || !self
                .holes_near_data(self.base, &self.base_months)
                .is_empty()
    }

    /// A superset of where base rollup rows are needed: unsettled level buckets.
    pub fn base_ranges(&self) -> Ranges {
        self.unsettled_ranges(self.level, &self.level_months)
    }
}

/// Which rows a side keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Side {
    /// Rows of the level's rollup whose bucket is settled.
    Level,
    /// Rows of the base rollup whose bucket is settled but whose level bucket is not.
    Base,
    /// Raw rows whose base bucket is not settled.
    Raw,
}

impl Side {
    fn label(self) -> &'static str {
        match self {
            Side::Level => "rollup_region_level",
            Side::Base => "rollup_region_base",
            Side::Raw => "rollup_region_raw",
        }
    }
}

/// `rollup_region_<side>(tag…, ts)`: true for the rows this side answers.
#[derive(Debug)]
pub struct RegionFilter {
    settlement: Arc<Settlement>,
    side: Side,
    signature: Signature,
}

impl RegionFilter {
    pub fn new(settlement: Arc<Settlement>, side: Side) -> Self {
        RegionFilter {
            settlement,
            side,
            signature: Signature::variadic_any(Volatility::Immutable),
        }
    }

    fn keep(&self, series: &[String], ts: i64, base_cache: &mut BucketCache) -> bool {
        let s = &self.settlement;
        match self.side {
            Side::Level => s.level_settled(series, ts),
            // A level bucket that is settled is taken whole from the level instead.
            Side::Base => {
                s.base_settled(series, ts)
                    && (s.level_is_base() || !s.level_settled(series, s.level.bucket_start(ts)))
            }
            Side::Raw => !s.base_settled(series, base_cache.start_of(ts)),
        }
    }
}

impl PartialEq for RegionFilter {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.settlement, &other.settlement) && self.side == other.side
    }
}

impl Eq for RegionFilter {}

impl Hash for RegionFilter {
    fn hash<H: Hasher>(&self, state: &mut H) {
        (Arc::as_ptr(&self.settlement) as usize).hash(state);
        self.side.hash(state);
    }
}

fn arrays(args: &ScalarFunctionArgs) -> Result<Vec<ArrayRef>> {
    let n = args.number_rows;
    args.args
        .iter()
        .map(|a| a.to_array(n))
        .collect::<Result<Vec<_>>>()
}

impl ScalarUDFImpl for RegionFilter {
    fn name(&self) -> &str {
        self.side.label()
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _args: &[DataType]) -> Result<DataType> {
        Ok(DataType::Boolean)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let arrays = arrays(&args)?;
        let Some((ts, tags)) = arrays.split_last() else {
            return exec_err!("{}: no arguments", self.name());
        };
        let Some(ts) = ts.as_any().downcast_ref::<TimestampMicrosecondArray>() else {
            return exec_err!("{}: ts is {}", self.name(), ts.data_type());
        };
        let tags: Vec<&StringArray> = tags
            .iter()
            .map(|t| t.as_any().downcast_ref::<StringArray>())
            .collect::<Option<_>>()
            .ok_or_else(|| {
                datafusion::error::DataFusionError::Execution(format!(
                    "{}: tags must be text",
                    self.name()
                ))
            })?;
        let mut series: Vec<String> = vec![String::new(); tags.len()];
        let mut have_series = false;
        let mut base_cache = BucketCache::new(self.settlement.base);
        let mut out = Vec::with_capacity(ts.len());
        let by_series = !self.settlement.no_marks();
        for r in 0..ts.len() {
            let same =
                !by_series || have_series && tags.iter().zip(&series).all(|(t, s)| t.value(r) == s);
            if !same {
                for (s, t) in series.iter_mut().zip(&tags) {
                    s.clear();
                    s.push_str(t.value(r));
                }
                have_series = true;
            }
            out.push(!ts.is_null(r) && self.keep(&series, ts.value(r), &mut base_cache));
        }
        Ok(ColumnarValue::Array(Arc::new(BooleanArray::from(out))))
    }
}

/// `rollup_bucket(ts)`: the start of the base bucket holding `ts`.
#[derive(Debug)]
pub struct BaseBucket {
    interval: Interval,
    signature: Signature,
}

impl BaseBucket {
    pub fn new(interval: Interval) -> Self {
        BaseBucket {
            interval,
            signature: Signature::any(1, Volatility::Immutable),
        }
    }
}

impl PartialEq for BaseBucket {
    fn eq(&self, other: &Self) -> bool {
        self.interval == other.interval
    }
}

impl Eq for BaseBucket {}

impl Hash for BaseBucket {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.interval.nominal_micros().hash(state);
    }
}

impl ScalarUDFImpl for BaseBucket {
    fn name(&self) -> &str {
        "rollup_bucket"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _args: &[DataType]) -> Result<DataType> {
        Ok(DataType::Timestamp(
            TimeUnit::Microsecond,
            Some(TS_TIMEZONE.into()),
        ))
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let arrays = arrays(&args)?;
        let Some(ts) = arrays
            .first()
            .and_then(|a| a.as_any().downcast_ref::<TimestampMicrosecondArray>())
        else {
            return exec_err!("rollup_bucket: expects a microsecond timestamp");
        };
        let mut cache = BucketCache::new(self.interval);
        let out: TimestampMicrosecondArray = ts
            .iter()
            .map(|v| v.map(|v| cache.start_of(v)))
            .collect::<TimestampMicrosecondArray>()
            .with_timezone(TS_TIMEZONE);
        Ok(ColumnarValue::Array(Arc::new(out)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const M: i64 = 60_000_000;

    fn settlement(lo: i64, hi: i64, dirty: &[(&str, i64)]) -> Settlement {
        let mut unsettled = Unsettled::new();
        for (s, b) in dirty {
            unsettled.entry(vec![s.to_string()]).or_default().push(*b);
        }
        let all = vec![(i64::MIN, i64::MAX)];
        Settlement::new(
            Interval::Fixed(15 * M),
            Interval::Fixed(60 * M),
            lo,
            hi,
            unsettled,
            all.clone(),
            all.clone(),
            all,
        )
    }

    #[test]
    fn sides_partition_every_bucket() {
        // Query [10m, 3h) with a dirty base bucket at 1h15 for series a.
        let s = Arc::new(settlement(10 * M, 180 * M - 1, &[("a", 75 * M)]));
        let level = RegionFilter::new(s.clone(), Side::Level);
        let base = RegionFilter::new(s.clone(), Side::Base);
        let raw = RegionFilter::new(s.clone(), Side::Raw);
        let a = vec!["a".to_string()];
        let b = vec!["b".to_string()];
        let mut cache = BucketCache::new(s.base);
        // Every raw minute is answered by exactly one side.
        for series in [&a, &b] {
            for minute in 10..180 {
                let ts = minute * M;
                let by_raw = raw.keep(series, ts, &mut cache);
                let base_start = s.base.bucket_start(ts);
                let by_base = base.keep(series, base_start, &mut cache);
                let level_start = s.level.bucket_start(ts);
                let by_level = level.keep(series, level_start, &mut cache);
                let n = [by_raw, by_base, by_level].iter().filter(|x| **x).count();
                assert_eq!(n, 1, "series {series:?} minute {minute}");
            }
        }
        // The cut first hour comes from raw (10m–15m) and base rows; hour 1 of series a
        // from base rows and raw (its dirty quarter); hour 2 of both from the level.
        assert!(raw.keep(&a, 12 * M, &mut cache));
        assert!(base.keep(&a, 15 * M, &mut cache));
        assert!(raw.keep(&a, 80 * M, &mut cache));
        assert!(base.keep(&a, 60 * M, &mut cache));
        assert!(level.keep(&b, 60 * M, &mut cache));
        assert!(level.keep(&a, 120 * M, &mut cache));
        assert_eq!(s.raw_ranges(), vec![(0, 15 * M), (75 * M, 90 * M)]);
        assert_eq!(s.base_ranges(), vec![(0, 120 * M)]);
    }

    #[test]
    fn buckets_of_expired_raw_months_are_not_taken_from_rollups() {
        // Retention dropped the raw rows before 90m; the rollups outlive them, but the raw
        // query sees nothing there, so neither may the rewrite.
        let all = vec![(i64::MIN, i64::MAX)];
        let s = Settlement::new(
            Interval::Fixed(15 * M),
            Interval::Fixed(60 * M),
            i64::MIN,
            i64::MAX,
            Unsettled::new(),
            vec![(90 * M, 300 * M)],
            all.clone(),
            all,
        );
        let a = vec!["a".to_string()];
        assert!(!s.base_settled(&a, 30 * M) && !s.level_settled(&a, 0));
        assert!(s.base_settled(&a, 90 * M) && s.level_settled(&a, 120 * M));
        // The hour 60m–120m is cut by the expiry: its kept quarter hours from base rows.
        assert!(!s.level_settled(&a, 60 * M) && s.base_settled(&a, 105 * M));
        assert_eq!(s.base_ranges(), vec![(60 * M, 120 * M)]);
    }

    #[test]
    fn ranges_merge_and_coarsen() {
        assert_eq!(
            normalize(vec![(5, 9), (1, 3), (3, 4), (8, 12)]),
            vec![(1, 4), (5, 12)]
        );
        assert_eq!(
            coarsen(vec![(0, 1), (2, 3), (10, 11)], 2),
            vec![(0, 3), (10, 11)]
        );
    }

    #[test]
    fn months_missing_from_a_rollup_are_read_raw() {
        // Raw data from 0 to 300m, the rollup only from 90m to 180m.
        let months = vec![(90 * M, 180 * M)];
        let s = Settlement::new(
            Interval::Fixed(15 * M),
            Interval::Fixed(60 * M),
            i64::MIN,
            i64::MAX,
            Unsettled::new(),
            vec![(0, 300 * M)],
            months.clone(),
            months,
        );
        let a = vec!["a".to_string()];
        assert!(!s.base_settled(&a, 75 * M));
        assert!(s.base_settled(&a, 90 * M));
        assert!(s.base_settled(&a, 165 * M) && !s.base_settled(&a, 180 * M));
        // The hour level: only 120m–180m is whole inside the rollup's months.
        assert!(!s.level_settled(&a, 60 * M) && s.level_settled(&a, 120 * M));
        // The raw side reads where the rollup has no months.
        assert_eq!(s.raw_ranges(), vec![(0, 90 * M), (180 * M, 300 * M)]);
        assert!(s.raw_needs_all_series());
    }
}
