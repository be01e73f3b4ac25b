//! Write validation: resolve the table (auto-create it or grow it with new fields), then
//! turn each named row into a positional [`ValidRow`] or a per-row error.

use std::collections::HashMap;

use crate::error::{Error, Result};
use crate::model::schema::FieldDef;
use crate::model::{FieldType, FieldValue, Row, TableDef, TableId, ValidRow};

/// The type a new column gets from the values seen for it in a batch: integers and floats
/// mixed make a float column; otherwise the first value's type.
fn inferred_type(seen: &[FieldType]) -> FieldType {
    let first = seen[0];
    let numeric = |t: &FieldType| matches!(t, FieldType::Integer | FieldType::Float);
    if numeric(&first) && seen.iter().all(numeric) && seen.contains(&FieldType::Float) {
        FieldType::Float
    } else {
        first
    }
}

/// New fields the rows introduce, in order of first appearance, with their types.
pub(crate) fn new_fields(existing: Option<&TableDef>, rows: &[Row]) -> Vec<FieldDef> {
    let mut order = Vec::new();
    let mut types: HashMap<&str, Vec<FieldType>> = HashMap::new();
    for row in rows {
        let mut cursor = existing.map(|d| d.cursor());
        for (name, value) in &row.fields {
            let known = name == crate::model::TS_COLUMN
                || cursor
                    .as_mut()
                    .is_some_and(|c| c.field(name).is_some() || c.tag(name).is_some());
            if known || row.tags.iter().any(|(t, _)| t == name) {
                continue;
            }
            let e = types.entry(name.as_str()).or_default();
            if e.is_empty() {
                order.push(name.as_str());
            }
            e.push(value.field_type());
        }
    }
    order
        .into_iter()
        .map(|name| FieldDef {
            name: name.to_string(),
            field_type: inferred_type(&types[name]),
        })
        .collect()
}

/// Tag keys in order of first appearance (for an auto-created table).
pub(crate) fn tag_keys(rows: &[Row]) -> Vec<String> {
    let mut keys: Vec<String> = Vec::new();
    for row in rows {
        for (k, _) in &row.tags {
            if !keys.contains(k) {
                keys.push(k.clone());
            }
        }
    }
    keys
}

/// The definition of a table created from its first batch.
pub(crate) fn def_from_rows(id: TableId, table: &str, rows: &[Row]) -> Result<TableDef> {
    TableDef::new(id, table, tag_keys(rows), new_fields(None, rows))
}

/// Check one named row against a table definition and align it to the table's columns.
/// Integers go into float columns; any other type mismatch, an unknown tag or field, or a
/// key column given as a field is an error naming the table and the column.
pub fn validate_row(def: &TableDef, row: Row) -> Result<ValidRow> {
    if def.is_expired(row.ts) {
        return Err(Error::Expired {
            table: def.name.clone(),
            month: crate::model::Month::of_micros(row.ts),
        });
    }
    let mut cursor = def.cursor();
    let mut tags = vec![String::new(); def.tags.len()];
    for (k, v) in row.tags {
        match cursor.tag(&k) {
            Some(i) => tags[i] = v,
            None => {
                return Err(Error::InvalidRow {
                    table: def.name.clone(),
                    reason: if def.field_index(&k).is_some() {
                        format!("\"{k}\" is a field of this table, not a tag")
                    } else {
                        format!(
                            "unknown tag \"{k}\" (tags are fixed when the table is created: {})",
                            def.tags.join(", ")
                        )
                    },
                });
            }
        }
    }
    let mut fields: Vec<Option<FieldValue>> = vec![None; def.fields.len()];
    for (k, v) in row.fields {
        let Some(i) = cursor.field(&k) else {
            return Err(Error::InvalidRow {
                table: def.name.clone(),
                reason: if def.tag_index(&k).is_some() || k == crate::model::TS_COLUMN {
                    format!("\"{k}\" is a key column, not a field")
                } else {
                    format!("unknown field \"{k}\"")
                },
            });
        };
        let want = def.fields[i].field_type;
        let got = v.field_type();
        fields[i] = Some(v.coerce_to(want).ok_or_else(|| Error::TypeConflict {
            table: def.name.clone(),
            column: k.clone(),
            reason: format!(
                "value of type {} does not fit column type {}",
                got.sql_name(),
                want.sql_name()
            ),
        })?);
    }
    // Trailing nulls cost WAL bytes for nothing.
    while matches!(fields.last(), Some(None)) {
        fields.pop();
    }
    Ok(ValidRow {
        ts: row.ts,
        tags,
        fields,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(tags: &[(&str, &str)], fields: Vec<(&str, FieldValue)>) -> Row {
        Row {
            ts: 0,
            tags: tags
                .iter()
                .map(|(a, b)| (a.to_string(), b.to_string()))
                .collect(),
            fields: fields
                .into_iter()
                .map(|(a, b)| (a.to_string(), b))
                .collect(),
        }
    }

    #[test]
    fn auto_create_infers_types_and_validates() {
        let rows = vec![
            row(
                &[("pid", "p1")],
                vec![
                    ("ua", FieldValue::Integer(220)),
                    ("on", FieldValue::Boolean(true)),
                ],
            ),
            row(&[("pid", "p2")], vec![("ua", FieldValue::Float(221.5))]),
        ];
        let def = def_from_rows(TableId(1), "m", &rows).unwrap();
        assert_eq!(def.tags, vec!["pid"]);
        assert_eq!(def.fields[0].field_type, FieldType::Float);
        assert_eq!(def.fields[1].field_type, FieldType::Boolean);
        let v = validate_row(&def, rows[0].clone()).unwrap();
        assert_eq!(v.fields[0], Some(FieldValue::Float(220.0)));
        let bad = row(&[("pid", "p1")], vec![("on", FieldValue::Text("x".into()))]);
        let err = validate_row(&def, bad).unwrap_err().to_string();
        assert!(err.contains("\"on\"") && err.contains("boolean"), "{err}");
        let unknown_tag = row(&[("site", "s")], vec![]);
        assert!(validate_row(&def, unknown_tag).is_err());
    }
}
