//! `date_trunc` for UTC timestamps at arithmetic speed. DataFusion truncates a timestamp
//! that carries a time zone value by value through chrono — even when the zone is UTC,
//! which is what every wattdb `ts` carries — and only takes its arithmetic path for
//! timestamps without a zone. In UTC the two give the same instants, so this wrapper
//! hands DataFusion's own `date_trunc` the zone-less view of a UTC array and puts the
//! zone back on the result; every other case goes to DataFusion unchanged.

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray};
use arrow::datatypes::{DataType, Field, FieldRef, TimeUnit, TimestampMicrosecondType};
use datafusion::common::Result;
use datafusion::logical_expr::sort_properties::{ExprProperties, SortProperties};
use datafusion::logical_expr::{
    ColumnarValue, Documentation, ReturnFieldArgs, ScalarFunctionArgs, ScalarUDFImpl, Signature,
};

#[derive(Debug, PartialEq, Eq, Hash)]
pub struct DateTruncUtc {
    inner: datafusion::functions::datetime::date_trunc::DateTruncFunc,
}

impl DateTruncUtc {
    pub fn new() -> Self {
        DateTruncUtc {
            inner: Default::default(),
        }
    }
}

fn is_utc(tz: &str) -> bool {
    matches!(tz, "UTC" | "utc" | "+00:00" | "Z" | "Etc/UTC")
}

impl ScalarUDFImpl for DateTruncUtc {
    fn name(&self) -> &str {
        self.inner.name()
    }

    fn aliases(&self) -> &[String] {
        self.inner.aliases()
    }

    fn signature(&self) -> &Signature {
        self.inner.signature()
    }

    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        self.inner.return_type(arg_types)
    }

    fn return_field_from_args(&self, args: ReturnFieldArgs) -> Result<FieldRef> {
        self.inner.return_field_from_args(args)
    }

    fn invoke_with_args(&self, mut args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let utc_micros = match args.args.get(1) {
            Some(ColumnarValue::Array(a)) => match a.data_type() {
                DataType::Timestamp(TimeUnit::Microsecond, Some(tz)) if is_utc(tz) => {
                    Some(tz.clone())
                }
                _ => None,
            },
            _ => None,
        };
        let Some(tz) = utc_micros else {
            return self.inner.invoke_with_args(args);
        };
        let plain = DataType::Timestamp(TimeUnit::Microsecond, None);
        if let ColumnarValue::Array(a) = &args.args[1] {
            let naive = a
                .as_primitive::<TimestampMicrosecondType>()
                .clone()
                .with_timezone_opt(None::<Arc<str>>);
            args.args[1] = ColumnarValue::Array(Arc::new(naive));
        }
        if let Some(f) = args.arg_fields.get_mut(1) {
            *f = Arc::new(f.as_ref().clone().with_data_type(plain.clone()));
        }
        args.return_field = Arc::new(Field::new(
            args.return_field.name(),
            plain,
            args.return_field.is_nullable(),
        ));
        let out = self.inner.invoke_with_args(args)?;
        Ok(match out {
            ColumnarValue::Array(a) => {
                let zoned = a
                    .as_primitive::<TimestampMicrosecondType>()
                    .clone()
                    .with_timezone(tz);
                ColumnarValue::Array(Arc::new(zoned) as ArrayRef)
            }
            scalar => scalar,
        })
    }

    fn output_ordering(&self, input: &[ExprProperties]) -> Result<SortProperties> {
        self.inner.output_ordering(input)
    }

    fn documentation(&self) -> Option<&Documentation> {
        self.inner.documentation()
    }
}

#[cfg(test)]
mod tests {
    use datafusion::prelude::SessionContext;

    use super::*;

    /// The wrapper gives exactly what DataFusion's own `date_trunc` gives, for every
    /// granularity, around month and year boundaries and before 1970.
    #[tokio::test]
    async fn same_answers_as_the_built_in() {
        let plain = SessionContext::new();
        let ours = SessionContext::new();
        ours.register_udf(datafusion::logical_expr::ScalarUDF::new_from_impl(
            DateTruncUtc::new(),
        ));
        let values = "(VALUES (TIMESTAMP '2026-10-31T23:59:59.999999'), \
            (TIMESTAMP '2026-11-01T00:00:00'), (TIMESTAMP '2024-02-29T13:45:12.345678'), \
            (TIMESTAMP '1969-12-31T23:30:00'), (TIMESTAMP '2000-01-03T07:08:09'), (NULL)) AS v(t)";
        for unit in [
            "microsecond",
            "millisecond",
            "second",
            "minute",
            "hour",
            "day",
            "week",
            "month",
            "quarter",
            "year",
        ] {
            let sql = format!(
                "SELECT CAST(date_trunc('{unit}', arrow_cast(t, 'Timestamp(Microsecond, Some(\"UTC\"))')) AS VARCHAR) FROM {values}"
            );
            let a = plain.sql(&sql).await.unwrap().collect().await.unwrap();
            let b = ours.sql(&sql).await.unwrap().collect().await.unwrap();
            let show = |x: &[arrow::record_batch::RecordBatch]| {
                arrow::util::pretty::pretty_format_batches(x)
                    .unwrap()
                    .to_string()
            };
            assert_eq!(show(&a), show(&b), "{unit}");
        }
    }
}
