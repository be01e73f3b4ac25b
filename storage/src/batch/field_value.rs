use arrow::array::{Array, AsArray};
use arrow::datatypes::{
    DataType, Float64Type, Int64Type, TimeUnit, TimestampMicrosecondType, TimestampMillisecondType,
    TimestampNanosecondType, TimestampSecondType,
};

use crate::model::FieldValue;

/// The value at `row` of a field column: `Ok(None)` when it is null, `Err` with the
/// column's type when no field type maps to it.
pub fn field_value(col: &dyn Array, row: usize) -> Result<Option<FieldValue>, DataType> {
    if col.is_null(row) {
        return Ok(None);
    }
    Ok(Some(match col.data_type() {
        DataType::Float64 => FieldValue::Float(col.as_primitive::<Float64Type>().value(row)),
        DataType::Int64 => FieldValue::Integer(col.as_primitive::<Int64Type>().value(row)),
        DataType::Boolean => FieldValue::Boolean(col.as_boolean().value(row)),
        DataType::Utf8 => FieldValue::Text(col.as_string::<i32>().value(row).to_string()),
        DataType::Timestamp(unit, _) => {
            let v = match unit {
                TimeUnit::Second => col
                    .as_primitive::<TimestampSecondType>()
                    .value(row)
                    .saturating_mul(1_000_000),
                TimeUnit::Millisecond => col
                    .as_primitive::<TimestampMillisecondType>()
                    .value(row)
                    .saturating_mul(1_000),
                TimeUnit::Microsecond => col.as_primitive::<TimestampMicrosecondType>().value(row),
                TimeUnit::Nanosecond => col
                    .as_primitive::<TimestampNanosecondType>()
                    .value(row)
                    .div_euclid(1_000),
            };
            FieldValue::Timestamp(v)
        }
        other => return Err(other.clone()),
    }))
}
