//! `LIKE … ESCAPE 'c'` for any escape character (SQLAlchemy's reflection writes
//! `LIKE 'pg/_%' ESCAPE '/'`): DataFusion's LIKE takes only the backslash, so the
//! statement rewrite ([`crate::pg::catalog_rewrite`]) turns `x LIKE p ESCAPE 'c'` into
//! `x LIKE wattdb_like_escape(p, 'c')`, which writes `p` with backslash escapes instead —
//! the same pattern, also when `p` is a bound parameter or a column.

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, StringArray};
use arrow::datatypes::DataType;
use datafusion::common::{DataFusionError, Result};
use datafusion::logical_expr::{ColumnarValue, ScalarUDF, Volatility, create_udf};

/// The function's name (the rewrite calls it).
pub const NAME: &str = "wattdb_like_escape";

/// `pattern` with escape character `escape` as the same pattern with backslash escapes.
/// An empty `escape` means no escape character at all (PostgreSQL's `ESCAPE ''`).
pub fn with_backslash_escapes(pattern: &str, escape: Option<char>) -> Result<String> {
    let mut out = String::with_capacity(pattern.len() + 2);
    let mut chars = pattern.chars();
    while let Some(c) = chars.next() {
        if Some(c) == escape {
            let Some(next) = chars.next() else {
                return Err(DataFusionError::Execution(
                    "LIKE pattern must not end with escape character".into(),
                ));
            };
            out.push('\\');
            out.push(next);
        } else if c == '\\' {
            // Not the escape character here: a literal backslash.
            out.push_str("\\\\");
        } else {
            out.push(c);
        }
    }
    Ok(out)
}

fn escape_char(text: &str) -> Result<Option<char>> {
    let mut chars = text.chars();
    match (chars.next(), chars.next()) {
        (None, _) => Ok(None),
        (Some(c), None) => Ok(Some(c)),
        _ => Err(DataFusionError::Execution(format!(
            "invalid escape string \"{text}\": it must be empty or one character"
        ))),
    }
}

fn like_escape(args: &[ColumnarValue]) -> Result<ColumnarValue> {
    let arrays = ColumnarValue::values_to_arrays(args)?;
    let patterns = arrow::compute::cast(&arrays[0], &DataType::Utf8)?;
    let escapes = arrow::compute::cast(&arrays[1], &DataType::Utf8)?;
    let (patterns, escapes) = (patterns.as_string::<i32>(), escapes.as_string::<i32>());
    let mut out = Vec::with_capacity(patterns.len());
    for i in 0..patterns.len() {
        if patterns.is_null(i) || escapes.is_null(i) {
            out.push(None);
            continue;
        }
        let escape = escape_char(escapes.value(i))?;
        out.push(Some(with_backslash_escapes(patterns.value(i), escape)?));
    }
    Ok(ColumnarValue::Array(
        Arc::new(StringArray::from(out)) as ArrayRef
    ))
}

pub fn udf() -> ScalarUDF {
    create_udf(
        NAME,
        vec![DataType::Utf8, DataType::Utf8],
        DataType::Utf8,
        Volatility::Immutable,
        Arc::new(like_escape),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_keep_their_meaning() {
        let w = |p: &str, e: Option<char>| with_backslash_escapes(p, e).unwrap();
        assert_eq!(w("pg/_%", Some('/')), "pg\\_%");
        assert_eq!(w("a//b", Some('/')), "a\\/b");
        assert_eq!(w("100#%", Some('#')), "100\\%");
        // A backslash is literal when it is not the escape character.
        assert_eq!(w("C:\\x%", Some('/')), "C:\\\\x%");
        assert_eq!(w("a\\_b", None), "a\\\\_b");
        assert!(with_backslash_escapes("ab/", Some('/')).is_err());
        assert!(escape_char("//").is_err());
    }
}
