//! The time range a query can touch, read off its pushed-down filters on `ts`. Used to
//! skip month partitions, files and buffered partitions that cannot match. Anything not
//! understood widens the range (never wrongly narrows it). [`ts_bounds`] gives the exact
//! bounds of one comparison; the rollup rewrite uses it too.

use arrow::datatypes::{DataType, TimeUnit};
use datafusion::logical_expr::{Between, BinaryExpr, Expr, Operator};
use datafusion::scalar::ScalarValue;

/// Inclusive bounds in microseconds since the epoch (UTC).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimeRange {
    pub min: i64,
    pub max: i64,
}

impl Default for TimeRange {
    fn default() -> Self {
        TimeRange {
            min: i64::MIN,
            max: i64::MAX,
        }
    }
}

impl TimeRange {
    pub fn overlaps(&self, min: i64, max: i64) -> bool {
        min <= self.max && max >= self.min
    }

    pub fn from_filters(filters: &[Expr]) -> Self {
        let mut r = TimeRange::default();
        for f in filters {
            r.narrow(f);
        }
        r
    }

    fn narrow(&mut self, e: &Expr) {
        if let Expr::BinaryExpr(BinaryExpr {
            left,
            op: Operator::And,
            right,
        }) = e
        {
            self.narrow(left);
            self.narrow(right);
        } else if let Some((min, max)) = ts_bounds(e) {
            self.min = self.min.max(min);
            self.max = self.max.min(max);
        }
    }
}

/// `ts`, or `ts` cast to another timestamp unit: the granularity in nanoseconds the cast
/// truncates to (1 when nothing is lost).
fn ts_granularity(e: &Expr) -> Option<i128> {
    match e {
        Expr::Column(c) if c.name == crate::model::TS_COLUMN => Some(1),
        Expr::Cast(c) => {
            let inner = ts_granularity(&c.expr)?;
            let unit = match c.field.data_type() {
                DataType::Timestamp(TimeUnit::Nanosecond, _) => 1,
                DataType::Timestamp(TimeUnit::Microsecond, _) => 1_000,
                DataType::Timestamp(TimeUnit::Millisecond, _) => 1_000_000,
                DataType::Timestamp(TimeUnit::Second, _) => 1_000_000_000,
                _ => return None,
            };
            Some(inner.max(unit))
        }
        _ => None,
    }
}

/// A timestamp literal in nanoseconds.
pub fn literal_nanos(e: &Expr) -> Option<i128> {
    let Expr::Literal(v, _) = e else { return None };
    Some(match v {
        ScalarValue::TimestampSecond(Some(v), _) => *v as i128 * 1_000_000_000,
        ScalarValue::TimestampMillisecond(Some(v), _) => *v as i128 * 1_000_000,
        ScalarValue::TimestampMicrosecond(Some(v), _) => *v as i128 * 1_000,
        ScalarValue::TimestampNanosecond(Some(v), _) => *v as i128,
        _ => return None,
    })
}

/// The exact inclusive bounds (microseconds) that a comparison of `ts` — or of `ts` cast
/// to another timestamp unit — with a timestamp literal, or a `BETWEEN` of literals, puts
/// on `ts`; `None` for any other expression. Exact: the rows it keeps are precisely those
/// in the bounds (which the rollup rewrite relies on; pruning only needs a superset).
pub fn ts_bounds(e: &Expr) -> Option<(i64, i64)> {
    // The column's value in ns is t = ts * 1000, compared after truncation to g ns:
    // floor(t / g) * g  op  x.
    let bounds = |g: i128, op: Operator, x: i128| -> Option<(i128, i128)> {
        let (floor, ceil) = (
            x.div_euclid(g),
            x.div_euclid(g) + i128::from(x.rem_euclid(g) != 0),
        );
        let (lo, hi) = match op {
            Operator::GtEq => (ceil * g, i128::MAX),
            Operator::Gt => ((floor + 1) * g, i128::MAX),
            Operator::LtEq => (i128::MIN, (floor + 1) * g - 1),
            Operator::Lt => (i128::MIN, ceil * g - 1),
            Operator::Eq => (ceil * g, (floor + 1) * g - 1),
            _ => return None,
        };
        Some((lo, hi))
    };
    let (lo, hi) = match e {
        Expr::BinaryExpr(BinaryExpr { left, op, right }) => {
            let (g, op, x) = match (ts_granularity(left), ts_granularity(right)) {
                (Some(g), None) => (g, *op, literal_nanos(right)?),
                (None, Some(g)) => (g, op.swap()?, literal_nanos(left)?),
                _ => return None,
            };
            bounds(g, op, x)?
        }
        Expr::Between(Between {
            expr,
            negated: false,
            low,
            high,
        }) => {
            let g = ts_granularity(expr)?;
            let (lo, _) = bounds(g, Operator::GtEq, literal_nanos(low)?)?;
            let (_, hi) = bounds(g, Operator::LtEq, literal_nanos(high)?)?;
            (lo, hi)
        }
        _ => return None,
    };
    // From bounds on t (ns) to bounds on ts (us).
    let clamp = |v: i128| v.clamp(i64::MIN as i128, i64::MAX as i128) as i64;
    let lo = if lo == i128::MIN {
        i64::MIN
    } else {
        clamp(lo.div_euclid(1000) + i128::from(lo.rem_euclid(1000) != 0))
    };
    let hi = if hi == i128::MAX {
        i64::MAX
    } else {
        clamp(hi.div_euclid(1000))
    };
    Some((lo, hi))
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::logical_expr::cast;
    use datafusion::prelude::{col, lit};

    fn ts(us: i64) -> Expr {
        lit(ScalarValue::TimestampMicrosecond(
            Some(us),
            Some("UTC".into()),
        ))
    }

    #[test]
    fn bounds_from_comparisons() {
        let r = TimeRange::from_filters(&[col("ts").gt_eq(ts(10)), col("ts").lt(ts(20))]);
        assert_eq!(r, TimeRange { min: 10, max: 19 });
        let r = TimeRange::from_filters(&[ts(5).lt(col("ts")).and(col("pid").eq(lit("a")))]);
        assert_eq!(
            r,
            TimeRange {
                min: 6,
                max: i64::MAX
            }
        );
        let r = TimeRange::from_filters(&[col("ts").between(ts(1), ts(3))]);
        assert_eq!(r, TimeRange { min: 1, max: 3 });
        // OR is not understood: no narrowing.
        let r = TimeRange::from_filters(&[col("ts").lt(ts(1)).or(col("ts").gt(ts(9)))]);
        assert_eq!(r, TimeRange::default());
    }

    fn ts_ns(v: i64) -> Expr {
        lit(ScalarValue::TimestampNanosecond(
            Some(v),
            Some("UTC".into()),
        ))
    }

    fn ts_s(v: i64) -> Expr {
        lit(ScalarValue::TimestampSecond(Some(v), Some("UTC".into())))
    }

    #[test]
    fn bounds_are_exact_in_microseconds() {
        assert_eq!(
            ts_bounds(&col("ts").gt_eq(ts_ns(1_500))),
            Some((2, i64::MAX))
        );
        assert_eq!(ts_bounds(&col("ts").gt(ts_ns(2_000))), Some((3, i64::MAX)));
        assert_eq!(ts_bounds(&col("ts").lt(ts_ns(2_000))), Some((i64::MIN, 1)));
        // ts = 2 us (2,000 ns) is below 2,500 ns: it must stay in.
        assert_eq!(ts_bounds(&col("ts").lt(ts_ns(2_500))), Some((i64::MIN, 2)));
        assert_eq!(
            ts_bounds(&ts_ns(2_000).lt_eq(col("ts"))),
            Some((2, i64::MAX))
        );
        assert_eq!(ts_bounds(&col("ts").eq(ts_ns(2_500))), Some((3, 2)));
        assert_eq!(
            ts_bounds(&col("ts").between(ts_ns(1_000), ts_ns(9_999))),
            Some((1, 9))
        );
        assert_eq!(ts_bounds(&col("p").gt(lit(1.0))), None);
        assert_eq!(
            ts_bounds(&col("ts").lt(ts_ns(1)).or(col("ts").gt(ts_ns(9)))),
            None
        );
    }

    #[test]
    fn a_cast_that_truncates_widens_the_bounds_to_what_it_keeps() {
        use arrow::datatypes::{DataType, TimeUnit};
        let secs = || cast(col("ts"), DataType::Timestamp(TimeUnit::Second, None));
        // floor(ts to s) <= 5 s keeps every microsecond of second 5.
        assert_eq!(
            ts_bounds(&secs().lt_eq(ts_s(5))),
            Some((i64::MIN, 5_999_999))
        );
        assert_eq!(ts_bounds(&secs().gt(ts_s(5))), Some((6_000_000, i64::MAX)));
        assert_eq!(
            ts_bounds(&secs().gt_eq(ts_s(5))),
            Some((5_000_000, i64::MAX))
        );
        assert_eq!(ts_bounds(&secs().lt(ts_s(5))), Some((i64::MIN, 4_999_999)));
        assert_eq!(ts_bounds(&secs().eq(ts_s(5))), Some((5_000_000, 5_999_999)));
        // To nanoseconds nothing is lost.
        let ns = cast(col("ts"), DataType::Timestamp(TimeUnit::Nanosecond, None));
        assert_eq!(ts_bounds(&ns.lt(ts_ns(2_500))), Some((i64::MIN, 2)));
    }
}
