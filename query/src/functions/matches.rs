//! `matches(column, 'query')`: true for the rows whose text matches a full-text query
//! (`通讯超时 AND 网关7`, `"breaker tripped"`, `网关*`, `NOT 离线`; the language is in
//! `wattdb_storage::fulltext::query_syntax`). The column's analyzer comes with the
//! column (its Arrow field carries it when the column is declared full-text); any other
//! text column is read with the default analyzer, `chinese`. This is the exact
//! evaluation, row by row; an index only narrows which rows reach it. NULL text gives
//! NULL; the query must be a constant (a literal or a parameter).

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, BooleanArray, BooleanBuilder, StringArray, StringViewArray};
use arrow::datatypes::{DataType, FieldRef};
use datafusion::common::{DataFusionError, Result, ScalarValue};
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDFImpl, Signature, TypeSignature, Volatility,
};
use wattdb_storage::fulltext::{ANALYZER_METADATA_KEY, Analyzer, FullTextQuery};

use crate::pg::sqlstate::{INVALID_PARAMETER_VALUE, user_error};

#[derive(Debug, PartialEq, Eq, Hash)]
pub struct Matches {
    signature: Signature,
}

impl Matches {
    pub fn new() -> Self {
        Matches {
            signature: text_and_query(Volatility::Immutable),
        }
    }
}

/// `(column, query)`, both in any of Arrow's string types: the arguments of `matches()`
/// and `score()`.
pub(super) fn text_and_query(volatility: Volatility) -> Signature {
    let text = [DataType::Utf8, DataType::Utf8View, DataType::LargeUtf8];
    let mut variants = Vec::new();
    for a in &text {
        for b in &text {
            variants.push(TypeSignature::Exact(vec![a.clone(), b.clone()]));
        }
    }
    Signature::one_of(variants, volatility)
}

pub(super) fn invalid(message: String) -> DataFusionError {
    DataFusionError::External(Box::new(user_error(INVALID_PARAMETER_VALUE, message)))
}

/// The query text of a constant argument of `function`.
pub(super) fn query_text(function: &str, arg: &ColumnarValue) -> Result<Option<String>> {
    match arg {
        ColumnarValue::Scalar(
            ScalarValue::Utf8(s) | ScalarValue::Utf8View(s) | ScalarValue::LargeUtf8(s),
        ) => Ok(s.clone()),
        ColumnarValue::Scalar(other) => Err(invalid(format!(
            "{function}(): the query must be text, not {}",
            other.data_type()
        ))),
        ColumnarValue::Array(_) => Err(invalid(format!(
            "{function}(): the query must be a constant (a literal or a parameter), not a column"
        ))),
    }
}

/// The analyzer of a column argument: the one its field names, else the default.
pub(super) fn column_analyzer(function: &str, field: Option<&FieldRef>) -> Result<Analyzer> {
    match field.and_then(|f| f.metadata().get(ANALYZER_METADATA_KEY)) {
        Some(name) => Analyzer::parse(name).ok_or_else(|| {
            invalid(format!(
                "{function}(): the column's analyzer \"{name}\" is unknown"
            ))
        }),
        None => Ok(Analyzer::default()),
    }
}

/// `f` over the texts of the column argument `values`, its result shaped like `values`
/// (one value for a scalar).
pub(super) fn over_texts(
    function: &str,
    values: &ColumnarValue,
    f: impl FnOnce(Vec<Option<&str>>) -> ArrayRef,
) -> Result<ColumnarValue> {
    let array: ArrayRef = match values {
        ColumnarValue::Array(a) => a.clone(),
        ColumnarValue::Scalar(s) => s.to_array_of_size(1)?,
    };
    let result = f(text_values(function, &array)?);
    Ok(match values {
        ColumnarValue::Scalar(_) => ColumnarValue::Scalar(ScalarValue::try_from_array(&result, 0)?),
        ColumnarValue::Array(_) => ColumnarValue::Array(result),
    })
}

/// The values of a text array, or an error naming `function`.
fn text_values<'a>(function: &str, array: &'a ArrayRef) -> Result<Vec<Option<&'a str>>> {
    if let Some(a) = array.as_any().downcast_ref::<StringArray>() {
        Ok(a.iter().collect())
    } else if let Some(a) = array.as_any().downcast_ref::<StringViewArray>() {
        Ok(a.iter().collect())
    } else if let Some(a) = array
        .as_any()
        .downcast_ref::<arrow::array::LargeStringArray>()
    {
        Ok(a.iter().collect())
    } else {
        Err(invalid(format!(
            "{function}(): the first argument must be text, not {}",
            array.data_type()
        )))
    }
}

/// Evaluate `query` over each value of a text array.
fn evaluate<'a>(
    values: impl Iterator<Item = Option<&'a str>>,
    len: usize,
    query: &FullTextQuery,
) -> BooleanArray {
    let mut matcher = query.matcher();
    let mut out = BooleanBuilder::with_capacity(len);
    for v in values {
        out.append_option(v.map(|v| matcher.matches(v)));
    }
    out.finish()
}

impl ScalarUDFImpl for Matches {
    fn name(&self) -> &str {
        "matches"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(DataType::Boolean)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let [values, query] = args.args.as_slice() else {
            return Err(invalid(
                "matches() takes a text column and a query: matches(msg, '通讯超时 AND 网关7')"
                    .into(),
            ));
        };
        let Some(text) = query_text("matches", query)? else {
            return Ok(ColumnarValue::Scalar(ScalarValue::Boolean(None)));
        };
        let analyzer = column_analyzer("matches", args.arg_fields.first())?;
        let query = FullTextQuery::new(&text, analyzer).map_err(|e| invalid(e.to_string()))?;
        over_texts("matches", values, |texts| {
            let len = texts.len();
            Arc::new(evaluate(texts.into_iter(), len, &query))
        })
    }
}
