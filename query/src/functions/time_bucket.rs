//! `time_bucket(interval, ts [, origin])`: the start of the bucket holding `ts`, as in
//! TimescaleDB. Buckets are aligned to 2000-01-03 00:00 UTC (a Monday; TimescaleDB's
//! default) or, for intervals with months, to 2000-01-01 — identical to aligning to the
//! epoch for any interval that divides a week.

use arrow::datatypes::{DataType, IntervalUnit};
use datafusion::common::{Result, ScalarValue, plan_err};
use datafusion::logical_expr::simplify::{ExprSimplifyResult, SimplifyContext};
use datafusion::logical_expr::{
    ColumnarValue, Expr, ScalarFunctionArgs, ScalarUDFImpl, Signature, Volatility,
};

#[derive(Debug, PartialEq, Eq, Hash)]
pub struct TimeBucket {
    signature: Signature,
}

impl TimeBucket {
    pub fn new() -> Self {
        TimeBucket {
            signature: Signature::variadic_any(Volatility::Immutable),
        }
    }
}

const MONDAY_2000_01_03_NS: i64 = 946_857_600_000_000_000;
const JAN_2000_01_01_NS: i64 = 946_684_800_000_000_000;

fn has_months(e: &Expr) -> bool {
    match e {
        Expr::Literal(ScalarValue::IntervalYearMonth(Some(_)), _) => true,
        Expr::Literal(ScalarValue::IntervalMonthDayNano(Some(v)), _) => v.months != 0,
        Expr::Literal(ScalarValue::Utf8(Some(s)), _) => {
            let s = s.to_ascii_lowercase();
            s.contains("mon") || s.contains("year") || s.contains("yr")
        }
        Expr::Cast(c) => has_months(&c.expr),
        _ => false,
    }
}

/// `'15 minutes'` arrives as text: make it an interval as PostgreSQL would.
fn as_interval(e: Expr) -> Expr {
    match &e {
        Expr::Literal(
            ScalarValue::Utf8(_) | ScalarValue::LargeUtf8(_) | ScalarValue::Utf8View(_),
            _,
        ) => datafusion::logical_expr::cast(e, DataType::Interval(IntervalUnit::MonthDayNano)),
        _ => e,
    }
}

impl ScalarUDFImpl for TimeBucket {
    fn name(&self) -> &str {
        "time_bucket"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, args: &[DataType]) -> Result<DataType> {
        match args {
            // `time_bucket(i, NULL)`: a NULL timestamp.
            [_, DataType::Null] | [_, DataType::Null, _] => Ok(DataType::Timestamp(
                arrow::datatypes::TimeUnit::Nanosecond,
                Some("UTC".into()),
            )),
            [_, ts] | [_, ts, _] => Ok(ts.clone()),
            _ => plan_err!("time_bucket(interval, timestamp [, origin]) takes 2 or 3 arguments"),
        }
    }

    fn invoke_with_args(&self, _args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        // Always rewritten to date_bin by `simplify` before execution.
        datafusion::common::internal_err!("time_bucket should have been rewritten to date_bin")
    }

    fn simplify(&self, mut args: Vec<Expr>, info: &SimplifyContext) -> Result<ExprSimplifyResult> {
        // What the call was planned to return: date_bin may answer in another unit
        // (it coerces a microsecond timestamp to nanoseconds), and a plan's types must
        // not change under it.
        let planned = match args.as_slice() {
            [i, ts, rest @ ..] if rest.len() <= 1 => {
                Some(self.return_type(&[info.get_data_type(i)?, info.get_data_type(ts)?])?)
            }
            _ => None,
        };
        if args.len() == 2 {
            let origin = if has_months(&args[0]) {
                JAN_2000_01_01_NS
            } else {
                MONDAY_2000_01_03_NS
            };
            args.push(Expr::Literal(
                ScalarValue::TimestampNanosecond(Some(origin), Some("UTC".into())),
                None,
            ));
        }
        if args.len() != 3 {
            return plan_err!("time_bucket(interval, timestamp [, origin]) takes 2 or 3 arguments");
        }
        args[0] = as_interval(args[0].clone());
        // date_bin takes no untyped NULL: a NULL timestamp, of the type planned.
        if let Some(t) = &planned
            && info.get_data_type(&args[1])? == DataType::Null
        {
            args[1] = datafusion::logical_expr::cast(args[1].clone(), t.clone());
        }
        let binned = datafusion::functions::datetime::date_bin().call(args);
        // Cast only where date_bin answers another type: a plain date_bin over `ts` is
        // what the rollup rewrite recognises (`provider/rollup_rewrite/shape.rs`).
        Ok(ExprSimplifyResult::Simplified(match planned {
            Some(t) if info.get_data_type(&binned).ok().as_ref() != Some(&t) => {
                datafusion::logical_expr::cast(binned, t)
            }
            _ => binned,
        }))
    }
}
