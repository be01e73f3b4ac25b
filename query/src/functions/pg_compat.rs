//! Small PostgreSQL functions psql's describe commands call that the pg_catalog emulation
//! does not provide: `pg_size_pretty(bigint)` and `pg_function_is_visible(oid)`.

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, BooleanArray, StringArray};
use arrow::datatypes::{DataType, Int64Type};
use datafusion::common::Result;
use datafusion::logical_expr::{ColumnarValue, ScalarUDF, Volatility, create_udf};

/// PostgreSQL's `pg_size_pretty`: bytes below 10 kB, then kB, MB, ... rounded half up,
/// switching unit once the value reaches 10240 of the current one.
pub fn size_pretty(size: i64) -> String {
    const UNITS: [&str; 6] = ["bytes", "kB", "MB", "GB", "TB", "PB"];
    if size.abs() < 10 * 1024 {
        return format!("{size} bytes");
    }
    let mut v = size as f64;
    let mut unit = 0;
    while unit + 1 < UNITS.len() {
        v /= 1024.0;
        unit += 1;
        if v.abs().round() < 10.0 * 1024.0 {
            break;
        }
    }
    format!("{} {}", v.round() as i64, UNITS[unit])
}

fn pg_size_pretty(args: &[ColumnarValue]) -> Result<ColumnarValue> {
    let arrays = ColumnarValue::values_to_arrays(args)?;
    let input = arrow::compute::cast(&arrays[0], &DataType::Int64)?;
    let ints = input.as_primitive::<Int64Type>();
    let out: StringArray = (0..ints.len())
        .map(|i| (!ints.is_null(i)).then(|| size_pretty(ints.value(i))))
        .collect();
    Ok(ColumnarValue::Array(Arc::new(out) as ArrayRef))
}

fn pg_function_is_visible(args: &[ColumnarValue]) -> Result<ColumnarValue> {
    let arrays = ColumnarValue::values_to_arrays(args)?;
    let out: BooleanArray = (0..arrays[0].len())
        .map(|i| (!arrays[0].is_null(i)).then_some(true))
        .collect();
    Ok(ColumnarValue::Array(Arc::new(out) as ArrayRef))
}

pub fn udfs() -> Vec<ScalarUDF> {
    vec![
        create_udf(
            "pg_size_pretty",
            vec![DataType::Int64],
            DataType::Utf8,
            Volatility::Immutable,
            Arc::new(pg_size_pretty),
        ),
        create_udf(
            "pg_function_is_visible",
            vec![DataType::Int64],
            DataType::Boolean,
            Volatility::Stable,
            Arc::new(pg_function_is_visible),
        ),
    ]
}

#[cfg(test)]
mod tests {
    use super::size_pretty;

    /// Expected strings are what PostgreSQL 15 prints for the same inputs.
    #[test]
    fn matches_postgres() {
        assert_eq!(size_pretty(0), "0 bytes");
        assert_eq!(size_pretty(10239), "10239 bytes");
        assert_eq!(size_pretty(10240), "10 kB");
        assert_eq!(size_pretty(1_048_576), "1024 kB");
        assert_eq!(size_pretty(10_485_760), "10 MB");
        assert_eq!(size_pretty(123_456_789), "118 MB");
    }
}
