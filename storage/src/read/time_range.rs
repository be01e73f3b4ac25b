//! The time range a query can touch, read off its pushed-down filters on `ts`. Used to
//! skip month partitions, files and buffered partitions that cannot match. Anything not
//! understood widens the range (never wrongly narrows it).

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
        match e {
            Expr::BinaryExpr(BinaryExpr { left, op, right }) => {
                if *op == Operator::And {
                    self.narrow(left);
                    self.narrow(right);
                    return;
                }
                let (op, value) = match (is_ts(left), is_ts(right)) {
                    (true, false) => (*op, micros(right)),
                    (false, true) => match op.swap() {
                        Some(op) => (op, micros(left)),
                        None => return,
                    },
                    _ => return,
                };
                let Some(v) = value else { return };
                match op {
                    Operator::Eq => {
                        self.min = self.min.max(v);
                        self.max = self.max.min(v);
                    }
                    Operator::Gt => self.min = self.min.max(v.saturating_add(1)),
                    Operator::GtEq => self.min = self.min.max(v),
                    Operator::Lt => self.max = self.max.min(v.saturating_sub(1)),
                    Operator::LtEq => self.max = self.max.min(v),
                    _ => {}
                }
            }
            Expr::Between(Between {
                expr,
                negated: false,
                low,
                high,
            }) if is_ts(expr) => {
                if let Some(v) = micros(low) {
                    self.min = self.min.max(v);
                }
                if let Some(v) = micros(high) {
                    self.max = self.max.min(v);
                }
            }
            _ => {}
        }
    }
}

fn is_ts(e: &Expr) -> bool {
    match e {
        Expr::Column(c) => c.name == crate::model::TS_COLUMN,
        Expr::Cast(c) => is_ts(&c.expr),
        _ => false,
    }
}

/// A timestamp literal as microseconds, rounding toward "wider" is not needed because
/// sub-microsecond literals are truncated and compared inclusively by callers' slack.
fn micros(e: &Expr) -> Option<i64> {
    let Expr::Literal(v, _) = e else { return None };
    Some(match v {
        ScalarValue::TimestampSecond(Some(v), _) => v.checked_mul(1_000_000)?,
        ScalarValue::TimestampMillisecond(Some(v), _) => v.checked_mul(1_000)?,
        ScalarValue::TimestampMicrosecond(Some(v), _) => *v,
        // Round down: the microsecond holding the literal is still a candidate.
        ScalarValue::TimestampNanosecond(Some(v), _) => v.div_euclid(1_000),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
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
}
