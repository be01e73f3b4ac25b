//! PostgreSQL's `json_build_object(key, value, …)`: a JSON object from alternating keys
//! and values (SQLAlchemy's column reflection builds one per column). Numbers and
//! booleans are JSON numbers and booleans, NULL is `null`, anything else a string.

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, StringArray};
use arrow::datatypes::DataType;
use datafusion::common::{DataFusionError, Result};
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDFImpl, Signature, Volatility,
};

#[derive(Debug, PartialEq, Eq, Hash)]
pub struct JsonBuildObject {
    signature: Signature,
}

impl JsonBuildObject {
    pub fn new() -> Self {
        JsonBuildObject {
            signature: Signature::variadic_any(Volatility::Immutable),
        }
    }
}

impl Default for JsonBuildObject {
    fn default() -> Self {
        Self::new()
    }
}

fn is_raw(t: &DataType) -> bool {
    t.is_numeric() || matches!(t, DataType::Boolean)
}

impl ScalarUDFImpl for JsonBuildObject {
    fn name(&self) -> &str {
        "json_build_object"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _args: &[DataType]) -> Result<DataType> {
        Ok(DataType::Utf8)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        if !args.args.len().is_multiple_of(2) {
            return Err(DataFusionError::Plan(
                "json_build_object: argument list must have even number of elements".into(),
            ));
        }
        let n = args.number_rows;
        let arrays = ColumnarValue::values_to_arrays(&args.args)?;
        let texts: Vec<ArrayRef> = arrays
            .iter()
            .map(|a| arrow::compute::cast(a, &DataType::Utf8))
            .collect::<std::result::Result<_, _>>()?;
        let mut out = Vec::with_capacity(n);
        for row in 0..n {
            let mut object = serde_json::Map::new();
            for pair in 0..arrays.len() / 2 {
                let (k, v) = (&texts[2 * pair], &texts[2 * pair + 1]);
                let at = |a: &ArrayRef| if a.len() == 1 { 0 } else { row };
                let (ki, vi) = (at(k), at(v));
                if k.is_null(ki) {
                    return Err(DataFusionError::Plan(
                        "json_build_object: key must not be null".into(),
                    ));
                }
                let key = k.as_string::<i32>().value(ki).to_string();
                let value = if v.is_null(vi) {
                    serde_json::Value::Null
                } else {
                    let text = v.as_string::<i32>().value(vi);
                    if is_raw(arrays[2 * pair + 1].data_type()) {
                        serde_json::from_str(text)
                            .unwrap_or_else(|_| serde_json::Value::String(text.to_string()))
                    } else {
                        serde_json::Value::String(text.to_string())
                    }
                };
                object.insert(key, value);
            }
            out.push(Some(serde_json::Value::Object(object).to_string()));
        }
        Ok(ColumnarValue::Array(Arc::new(StringArray::from(out))))
    }
}
