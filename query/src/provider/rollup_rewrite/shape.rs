//! Recognising a rollup-shaped query: an aggregate over one raw table, grouped by some
//! of its tags and at most one time bucket of `ts`, computing min/max/sum/count/avg and
//! first/last of numeric fields, filtered by tags and a `ts` range only. Anything else
//! is left alone (the query then reads raw rows, as always).

use std::collections::HashSet;

use arrow::datatypes::DataType;
use chrono_tz::Tz;
use datafusion::common::ScalarValue;
use datafusion::logical_expr::expr::{AggregateFunction, NullTreatment};
use datafusion::logical_expr::utils::split_conjunction;
use datafusion::logical_expr::{Aggregate, Expr};
use wattdb_storage::read::time_range::{literal_nanos, ts_bounds};
use wattdb_storage::{Interval, TS_COLUMN, TableDef};

const MICROS_PER_SEC: i64 = 1_000_000;
const DAY: i64 = 86_400 * MICROS_PER_SEC;
/// Time zone offsets are whole multiples of this (what rollup day levels assume too).
const ZONE_STEP: i64 = 15 * 60 * MICROS_PER_SEC;

/// An aggregate the rollups can answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Func {
    Min,
    Max,
    Sum,
    Count,
    Avg,
    /// First non-null value by time (`first(v, ts)`).
    First,
    /// Last non-null value by time (`last(v, ts)`).
    Last,
}

/// The grouping bucket of the query.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum QueryBucket {
    /// `date_bin` / `time_bucket`: width and origin in microseconds.
    Fixed { width: i64, origin: i64 },
    /// `date_trunc(unit, ts)` in UTC, or in `tz` with `ts AT TIME ZONE tz`.
    Calendar { unit: Unit, tz: Tz },
    /// No time bucket: one group (per tag values) over the whole `ts` range, which is
    /// made of buckets of any level.
    Whole,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    Second,
    Minute,
    Hour,
    /// Day, week, month, quarter, year: whole local days.
    Days,
}

impl QueryBucket {
    /// Does every bucket of `level` lie inside one query bucket?
    pub fn is_aligned(&self, level: Interval) -> bool {
        match (*self, level) {
            (QueryBucket::Whole, _) => true,
            (QueryBucket::Fixed { width, origin }, Interval::Fixed(w)) => {
                width % w == 0 && origin.rem_euclid(w) == 0
            }
            (QueryBucket::Fixed { .. }, Interval::Day(_)) => false,
            (QueryBucket::Calendar { unit, tz }, Interval::Fixed(w)) => {
                let unit_len = match unit {
                    Unit::Second => MICROS_PER_SEC,
                    Unit::Minute => 60 * MICROS_PER_SEC,
                    Unit::Hour => 3600 * MICROS_PER_SEC,
                    Unit::Days => DAY,
                };
                let zone_ok = tz == chrono_tz::UTC || ZONE_STEP % w == 0;
                unit_len % w == 0 && zone_ok
            }
            (QueryBucket::Calendar { unit, tz }, Interval::Day(level_tz)) => {
                unit == Unit::Days && tz == level_tz
            }
        }
    }
}

/// The parts of a matched query.
#[derive(Debug, Clone)]
pub struct Shape {
    /// Conjuncts on tags only (kept for every side of the rewrite).
    pub tag_filters: Vec<Expr>,
    /// Inclusive bounds on `ts` in microseconds (`i64::MIN`/`MAX` when open).
    pub lo: i64,
    pub hi: i64,
    pub bucket: QueryBucket,
    /// Per aggregate expression of the node, in order: the function and the field.
    pub aggs: Vec<(Func, String)>,
}

/// Match `agg` whose input is `filter` (the predicate above the scan, if any) over the
/// table `def`, whose rollups summarise `fields`.
pub fn match_shape(
    agg: &Aggregate,
    predicate: Option<&Expr>,
    def: &TableDef,
    fields: &[String],
) -> Option<Shape> {
    let tags: HashSet<&str> = def.tags.iter().map(String::as_str).collect();
    let is_tag = |e: &Expr| matches!(e, Expr::Column(c) if tags.contains(c.name.as_str()));
    // Group by tags and at most one bucket of ts.
    let mut bucket = None;
    let mut grouped_tags = 0;
    for g in &agg.group_expr {
        if is_tag(g) {
            grouped_tags += 1;
        } else if bucket.is_none() {
            bucket = Some(query_bucket(g)?);
        } else {
            return None;
        }
    }
    let bucket = bucket.unwrap_or(QueryBucket::Whole);
    let all_series = grouped_tags == def.tags.len();
    let mut aggs = Vec::with_capacity(agg.aggr_expr.len());
    for e in &agg.aggr_expr {
        let e = match e {
            Expr::Alias(a) => a.expr.as_ref(),
            e => e,
        };
        let Expr::AggregateFunction(f) = e else {
            return None;
        };
        let (func, field) = aggregate(f, fields)?;
        // Across series a bucket's first value is not the first of its series' firsts.
        if matches!(func, Func::First | Func::Last) && !all_series {
            return None;
        }
        aggs.push((func, field));
    }
    let mut shape = Shape {
        tag_filters: Vec::new(),
        lo: i64::MIN,
        hi: i64::MAX,
        bucket,
        aggs,
    };
    if let Some(p) = predicate {
        for c in split_conjunction(p) {
            let refs = c.column_refs();
            if !refs.is_empty()
                && refs.iter().all(|r| tags.contains(r.name.as_str()))
                && !c.is_volatile()
            {
                shape.tag_filters.push(c.clone());
            } else {
                let (lo, hi) = ts_bounds(c)?;
                shape.lo = shape.lo.max(lo);
                shape.hi = shape.hi.min(hi);
            }
        }
    }
    Some(shape)
}

fn is_ts(e: &Expr) -> bool {
    match e {
        Expr::Column(c) => c.name == TS_COLUMN,
        Expr::Cast(c) => is_ts(&c.expr) && matches!(c.field.data_type(), DataType::Timestamp(_, _)),
        _ => false,
    }
}

/// The aggregate function and field of `f`, when the rollup columns answer it.
fn aggregate(f: &AggregateFunction, fields: &[String]) -> Option<(Func, String)> {
    let p = &f.params;
    if p.distinct || p.filter.is_some() || p.args.len() != 1 {
        return None;
    }
    // avg of an integer field arrives as avg(CAST(n AS Float64)).
    let (c, cast_to_float) = match &p.args[0] {
        Expr::Column(c) => (c, false),
        Expr::Cast(cast) if cast.field.data_type() == &DataType::Float64 => {
            match cast.expr.as_ref() {
                Expr::Column(c) => (c, true),
                _ => return None,
            }
        }
        _ => return None,
    };
    if !fields.contains(&c.name) {
        return None;
    }
    let ordered_by_ts =
        |asc: bool| p.order_by.len() == 1 && is_ts(&p.order_by[0].expr) && p.order_by[0].asc == asc;
    let func = match f.func.name() {
        "min" => Func::Min,
        "max" => Func::Max,
        "sum" => Func::Sum,
        "count" => Func::Count,
        "avg" => Func::Avg,
        // Rollups keep the first/last non-null value: only IGNORE NULLS matches.
        "first_value" | "last_value" if p.null_treatment == Some(NullTreatment::IgnoreNulls) => {
            let first = f.func.name() == "first_value";
            if ordered_by_ts(true) {
                if first { Func::First } else { Func::Last }
            } else if ordered_by_ts(false) {
                if first { Func::Last } else { Func::First }
            } else {
                return None;
            }
        }
        _ => return None,
    };
    if !matches!(func, Func::First | Func::Last) && !p.order_by.is_empty() {
        return None;
    }
    if cast_to_float && func != Func::Avg {
        return None;
    }
    Some((func, c.name.clone()))
}

/// `date_bin(width, ts [, origin])` (what `time_bucket` becomes, cast back to the unit
/// of `ts` when date_bin answers another) or `date_trunc(unit, ts [AT TIME ZONE tz])`.
fn query_bucket(e: &Expr) -> Option<QueryBucket> {
    if let Expr::Alias(a) = e {
        return query_bucket(&a.expr);
    }
    if let Expr::Cast(c) = e {
        // Another unit of the same UTC instant; the group expression is kept as it is.
        let utc = match c.field.data_type() {
            DataType::Timestamp(_, None) => true,
            DataType::Timestamp(_, Some(tz)) => zone(tz) == Some(chrono_tz::UTC),
            _ => false,
        };
        return if utc { query_bucket(&c.expr) } else { None };
    }
    let Expr::ScalarFunction(f) = e else {
        return None;
    };
    match (f.func.name(), f.args.as_slice()) {
        ("date_bin", [width, ts, rest @ ..]) if rest.len() <= 1 => {
            // `ts`, possibly cast to another unit (the instant is unchanged).
            let plain = match ts {
                Expr::Column(c) => c.name == TS_COLUMN,
                Expr::Cast(c) => {
                    is_ts(&c.expr)
                        && match c.field.data_type() {
                            DataType::Timestamp(_, None) => true,
                            DataType::Timestamp(_, Some(tz)) => zone(tz) == Some(chrono_tz::UTC),
                            _ => false,
                        }
                }
                _ => false,
            };
            if !plain {
                return None;
            }
            let width = interval_micros(width)?;
            let origin = match rest {
                [] => 0,
                [o] => timestamp_micros_exact(o)?,
                _ => return None,
            };
            (width > 0).then_some(QueryBucket::Fixed { width, origin })
        }
        ("date_trunc", [Expr::Literal(unit, _), ts]) => {
            let unit = match unit {
                ScalarValue::Utf8(Some(u))
                | ScalarValue::Utf8View(Some(u))
                | ScalarValue::LargeUtf8(Some(u)) => u.to_ascii_lowercase(),
                _ => return None,
            };
            let unit = match unit.as_str() {
                "second" => Unit::Second,
                "minute" => Unit::Minute,
                "hour" => Unit::Hour,
                "day" | "week" | "month" | "quarter" | "year" => Unit::Days,
                _ => return None,
            };
            let tz = match ts {
                Expr::Column(c) if c.name == TS_COLUMN => chrono_tz::UTC,
                Expr::Cast(c) if is_ts(&c.expr) => match c.field.data_type() {
                    DataType::Timestamp(_, Some(tz)) => zone(tz.as_ref())?,
                    _ => return None,
                },
                _ => return None,
            };
            Some(QueryBucket::Calendar { unit, tz })
        }
        _ => None,
    }
}

fn zone(name: &str) -> Option<Tz> {
    match name {
        "UTC" | "+00:00" | "Z" | "+00" => Some(chrono_tz::UTC),
        n => n.parse().ok(),
    }
}

fn interval_micros(e: &Expr) -> Option<i64> {
    let Expr::Literal(v, _) = e else { return None };
    let nanos: i128 = match v {
        ScalarValue::IntervalMonthDayNano(Some(i)) if i.months == 0 => {
            i.days as i128 * DAY as i128 * 1000 + i.nanoseconds as i128
        }
        ScalarValue::IntervalDayTime(Some(i)) => {
            i.days as i128 * DAY as i128 * 1000 + i.milliseconds as i128 * 1_000_000
        }
        _ => return None,
    };
    (nanos % 1000 == 0).then(|| i64::try_from(nanos / 1000).ok())?
}

fn timestamp_micros_exact(e: &Expr) -> Option<i64> {
    let n = literal_nanos(e)?;
    (n % 1000 == 0).then(|| i64::try_from(n / 1000).ok())?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alignment() {
        let q15 = Interval::Fixed(15 * 60 * MICROS_PER_SEC);
        let h1 = Interval::Fixed(3600 * MICROS_PER_SEC);
        let sh: Tz = "Asia/Shanghai".parse().unwrap();
        let kolkata: Tz = "Asia/Kolkata".parse().unwrap();
        let hour = QueryBucket::Fixed {
            width: 3600 * MICROS_PER_SEC,
            origin: 0,
        };
        assert!(hour.is_aligned(q15) && hour.is_aligned(h1));
        assert!(!hour.is_aligned(Interval::Day(chrono_tz::UTC)));
        let shifted = QueryBucket::Fixed {
            width: 3600 * MICROS_PER_SEC,
            origin: 10 * 60 * MICROS_PER_SEC,
        };
        assert!(!shifted.is_aligned(q15));
        let ten = QueryBucket::Fixed {
            width: 10 * 60 * MICROS_PER_SEC,
            origin: 0,
        };
        assert!(!ten.is_aligned(q15));
        let day_sh = QueryBucket::Calendar {
            unit: Unit::Days,
            tz: sh,
        };
        assert!(day_sh.is_aligned(q15));
        assert!(
            !day_sh.is_aligned(h1),
            "an hour level cannot hold zone offsets"
        );
        assert!(day_sh.is_aligned(Interval::Day(sh)));
        assert!(!day_sh.is_aligned(Interval::Day(chrono_tz::UTC)));
        let hour_kolkata = QueryBucket::Calendar {
            unit: Unit::Hour,
            tz: kolkata,
        };
        assert!(hour_kolkata.is_aligned(q15));
        let hour_utc = QueryBucket::Calendar {
            unit: Unit::Hour,
            tz: chrono_tz::UTC,
        };
        assert!(hour_utc.is_aligned(h1));
        assert!(!hour_utc.is_aligned(Interval::Day(chrono_tz::UTC)));
    }
}
