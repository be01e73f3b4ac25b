//! `first(value, time)` and `last(value, time)`: the non-null value at the earliest /
//! latest time in the group (TimescaleDB's signature; nulls skipped as the rollup
//! tables' `_first`/`_last` do). Rewritten to
//! `first_value(value IGNORE NULLS ORDER BY time)` / `last_value(…)`.

use arrow::datatypes::DataType;
use datafusion::common::{Result, not_impl_err, plan_err};
use datafusion::functions_aggregate::first_last::{first_value_udaf, last_value_udaf};
use datafusion::logical_expr::expr::{AggregateFunction, NullTreatment};
use datafusion::logical_expr::function::{AccumulatorArgs, AggregateFunctionSimplification};
use datafusion::logical_expr::{Accumulator, AggregateUDFImpl, Expr, Signature, Volatility};

#[derive(Debug, PartialEq, Eq, Hash)]
pub struct FirstLast {
    name: &'static str,
    signature: Signature,
}

impl FirstLast {
    pub fn first() -> Self {
        FirstLast {
            name: "first",
            signature: Signature::any(2, Volatility::Immutable),
        }
    }

    pub fn last() -> Self {
        FirstLast {
            name: "last",
            signature: Signature::any(2, Volatility::Immutable),
        }
    }
}

impl AggregateUDFImpl for FirstLast {
    fn name(&self) -> &str {
        self.name
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, args: &[DataType]) -> Result<DataType> {
        match args {
            [v, _] => Ok(v.clone()),
            _ => plan_err!("{}(value, time) takes 2 arguments", self.name),
        }
    }

    fn accumulator(&self, _args: AccumulatorArgs) -> Result<Box<dyn Accumulator>> {
        not_impl_err!(
            "{}(value, time) is only supported as a plain aggregate",
            self.name
        )
    }

    fn simplify(&self) -> Option<AggregateFunctionSimplification> {
        let is_first = self.name == "first";
        Some(Box::new(move |agg: AggregateFunction, _info| {
            let p = agg.params;
            let Ok([value, time]) = <[Expr; 2]>::try_from(p.args) else {
                return plan_err!("first/last(value, time) takes 2 arguments");
            };
            let func = if is_first {
                first_value_udaf()
            } else {
                last_value_udaf()
            };
            Ok(Expr::AggregateFunction(AggregateFunction::new_udf(
                func,
                vec![value],
                p.distinct,
                p.filter,
                vec![time.sort(true, false)],
                Some(p.null_treatment.unwrap_or(NullTreatment::IgnoreNulls)),
            )))
        }))
    }
}
