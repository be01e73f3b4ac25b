//! `CREATE TABLE … WITH (…)` options. wattdb knows two: `fulltext = 'msg'` (or
//! `'msg, note'`) makes text fields searchable with `matches()`, and
//! `fulltext_analyzer = 'standard'` chooses their analyzer (default `chinese`; also
//! `raw`). Any other option is refused rather than ignored.

use std::collections::BTreeMap;

use datafusion::sql::sqlparser::ast::{CreateTableOptions, Expr, SqlOption, Value};
use wattdb_storage::fulltext::Analyzer;
use wattdb_storage::{FieldDef, FieldType};

use crate::ddl::DdlError;
use crate::pg::sqlstate;

fn invalid(message: String) -> DdlError {
    DdlError {
        code: sqlstate::INVALID_PARAMETER_VALUE,
        message,
    }
}

fn text_value(key: &str, value: &Expr) -> Result<String, DdlError> {
    match value {
        Expr::Value(v) => match &v.value {
            Value::SingleQuotedString(s) => Ok(s.clone()),
            _ => Err(invalid(format!(
                "table option {key} takes a quoted text value, e.g. {key} = 'msg'"
            ))),
        },
        Expr::Identifier(i) => Ok(i.value.clone()),
        _ => Err(invalid(format!(
            "table option {key} takes a quoted text value, e.g. {key} = 'msg'"
        ))),
    }
}

/// The full-text columns a `CREATE TABLE`'s options ask for, checked against its fields.
pub fn fulltext_columns(
    table: &str,
    options: &CreateTableOptions,
    fields: &[FieldDef],
    tags: &[String],
) -> Result<BTreeMap<String, Analyzer>, DdlError> {
    let opts: &[SqlOption] = match options {
        CreateTableOptions::None => return Ok(BTreeMap::new()),
        CreateTableOptions::With(o) => o,
        other => {
            return Err(DdlError {
                code: sqlstate::FEATURE_NOT_SUPPORTED,
                message: format!(
                    "table options {other} are not supported; use WITH (fulltext = 'column')"
                ),
            });
        }
    };
    let mut columns: Vec<String> = Vec::new();
    let mut analyzer = Analyzer::default();
    for o in opts {
        let SqlOption::KeyValue { key, value } = o else {
            return Err(invalid(format!("unknown table option {o}")));
        };
        match key.value.to_ascii_lowercase().as_str() {
            "fulltext" => {
                columns.extend(
                    text_value("fulltext", value)?
                        .split(',')
                        .map(|c| c.trim().to_string())
                        .filter(|c| !c.is_empty()),
                );
            }
            "fulltext_analyzer" => {
                let name = text_value("fulltext_analyzer", value)?;
                analyzer = Analyzer::named(&name).map_err(invalid)?;
            }
            other => {
                return Err(invalid(format!(
                    "unknown table option {other} (wattdb knows fulltext and fulltext_analyzer)"
                )));
            }
        }
    }
    let mut out = BTreeMap::new();
    for c in columns {
        match fields.iter().find(|f| f.name == c) {
            Some(f) if f.field_type == FieldType::Text => {
                out.insert(c, analyzer);
            }
            Some(f) => {
                return Err(DdlError {
                    code: sqlstate::DATATYPE_MISMATCH,
                    message: format!(
                        "{table}.{c} is {}; full-text search needs a text column",
                        f.field_type.sql_name()
                    ),
                });
            }
            None if tags.contains(&c) => {
                return Err(invalid(format!(
                    "{table}.{c} is part of the primary key; full-text search is for text fields \
                     (compare key columns with = or LIKE)"
                )));
            }
            None => {
                return Err(DdlError {
                    code: sqlstate::UNDEFINED_COLUMN,
                    message: format!("fulltext: {table} has no column \"{c}\""),
                });
            }
        }
    }
    Ok(out)
}
