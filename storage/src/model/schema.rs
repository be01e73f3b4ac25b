//! Table definitions. A table has a timestamp column `ts`, tag columns (strings that name a
//! series; primary key = tags + `ts`) and typed field columns. Fields are only ever added,
//! so a row written under an older definition is a prefix of the current one.

use std::sync::Arc;

use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

use super::rollup::{RollupOf, RollupSettings};

/// Name of the timestamp column every table has.
pub const TS_COLUMN: &str = "ts";

/// Time zone of the `ts` column in Arrow (values are UTC microseconds).
pub const TS_TIMEZONE: &str = "UTC";

/// Never reused: a table dropped and created again gets a new id, so WAL records of the
/// dropped table are not replayed into the new one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct TableId(pub u64);

impl std::fmt::Display for TableId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FieldType {
    Float,
    Integer,
    Boolean,
    Text,
    /// A point in time other than the row's `ts` (e.g. when an appliance switched off):
    /// UTC microseconds, like `ts`.
    Timestamp,
}

impl FieldType {
    pub fn arrow_type(self) -> DataType {
        match self {
            FieldType::Float => DataType::Float64,
            FieldType::Integer => DataType::Int64,
            FieldType::Boolean => DataType::Boolean,
            FieldType::Text => DataType::Utf8,
            FieldType::Timestamp => {
                DataType::Timestamp(TimeUnit::Microsecond, Some(TS_TIMEZONE.into()))
            }
        }
    }

    pub fn from_arrow(dt: &DataType) -> Option<Self> {
        Some(match dt {
            DataType::Float64 | DataType::Float32 => FieldType::Float,
            DataType::Int64 | DataType::Int32 | DataType::Int16 | DataType::Int8 => {
                FieldType::Integer
            }
            DataType::Boolean => FieldType::Boolean,
            DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => FieldType::Text,
            DataType::Timestamp(_, _) => FieldType::Timestamp,
            _ => return None,
        })
    }

    pub fn sql_name(self) -> &'static str {
        match self {
            FieldType::Float => "double precision",
            FieldType::Integer => "bigint",
            FieldType::Boolean => "boolean",
            FieldType::Text => "text",
            FieldType::Timestamp => "timestamp with time zone",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FieldDef {
    pub name: String,
    #[serde(rename = "type")]
    pub field_type: FieldType,
}

/// Looks up tag and field positions by name, first trying the position after the previous
/// hit: rows from one device name their columns in the same order message after
/// message, so the lookup is usually one comparison instead of a scan.
pub struct ColumnCursor<'a> {
    def: &'a TableDef,
    next_tag: usize,
    next_field: usize,
}

impl ColumnCursor<'_> {
    pub fn tag(&mut self, name: &str) -> Option<usize> {
        let tags = &self.def.tags;
        let i = match tags.get(self.next_tag) {
            Some(t) if t == name => self.next_tag,
            _ => tags.iter().position(|t| t == name)?,
        };
        self.next_tag = i + 1;
        Some(i)
    }

    pub fn field(&mut self, name: &str) -> Option<usize> {
        let fields = &self.def.fields;
        let i = match fields.get(self.next_field) {
            Some(f) if f.name == name => self.next_field,
            _ => fields.iter().position(|f| f.name == name)?,
        };
        self.next_field = i + 1;
        Some(i)
    }
}

/// A table's definition as stored in the catalog and the manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TableDef {
    pub id: TableId,
    pub name: String,
    pub tags: Vec<String>,
    pub fields: Vec<FieldDef>,
    /// Rollup settings (intervals, counter fields) of a raw table.
    #[serde(default, skip_serializing_if = "RollupSettings::is_default")]
    pub rollups: RollupSettings,
    /// Set on a rollup table: which table and interval it summarises.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollup_of: Option<RollupOf>,
    /// How long rows are kept, as set (`"4 months"`); `None` keeps them forever.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retention: Option<String>,
    /// Months before this one have expired and been dropped: writes to them are refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expired_before: Option<super::Month>,
    /// Months before `expired_before` brought back from the archive, each with the time
    /// (ms since the epoch) until which retention leaves it alone.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub restored: std::collections::BTreeMap<super::Month, i64>,
    /// Text fields searchable with `matches()`, each with its analyzer.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub fulltext: std::collections::BTreeMap<String, crate::fulltext::Analyzer>,
}

impl TableDef {
    /// Build and validate a definition: names are unique, `ts` is not a tag or field.
    pub fn new(id: TableId, name: &str, tags: Vec<String>, fields: Vec<FieldDef>) -> Result<Self> {
        TableDef {
            id,
            name: name.to_string(),
            tags,
            fields,
            rollups: RollupSettings::default(),
            rollup_of: None,
            retention: None,
            expired_before: None,
            restored: Default::default(),
            fulltext: Default::default(),
        }
        .validated()
    }

    /// Check a (changed) definition: names are unique, `ts` is not a tag or field.
    pub fn validated(self) -> Result<Self> {
        let name = self.name.as_str();
        validate_table_name(name)?;
        let mut seen = std::collections::HashSet::new();
        seen.insert(TS_COLUMN.to_string());
        for col in self.tags.iter().chain(self.fields.iter().map(|f| &f.name)) {
            if col.is_empty() {
                return Err(Error::InvalidTableDef {
                    table: name.into(),
                    reason: "empty column name".into(),
                });
            }
            if !seen.insert(col.clone()) {
                return Err(Error::InvalidTableDef {
                    table: name.into(),
                    reason: format!("column \"{col}\" is defined twice (or is named ts)"),
                });
            }
        }
        for col in self.fulltext.keys() {
            match self.fields.iter().find(|f| &f.name == col) {
                Some(f) if f.field_type == FieldType::Text => {}
                Some(f) => {
                    return Err(Error::InvalidTableDef {
                        table: name.into(),
                        reason: format!(
                            "column \"{col}\" is {}; full-text search needs a text column",
                            f.field_type.sql_name()
                        ),
                    });
                }
                None => {
                    return Err(Error::InvalidTableDef {
                        table: name.into(),
                        reason: if self.tags.contains(col) {
                            format!(
                                "column \"{col}\" is part of the key; full-text search is for text fields"
                            )
                        } else {
                            format!("column \"{col}\" does not exist")
                        },
                    });
                }
            }
        }
        Ok(self)
    }

    /// True when a row at `ts` falls in a month retention has dropped.
    pub fn is_expired(&self, ts: i64) -> bool {
        self.is_month_expired(super::Month::of_micros(ts))
    }

    /// True when `month` has been dropped by retention (and not restored).
    pub fn is_month_expired(&self, month: super::Month) -> bool {
        self.expired_before.is_some_and(|e| month < e) && !self.restored.contains_key(&month)
    }

    /// True for a rollup table wattdb maintains (read-only to users).
    pub fn is_rollup(&self) -> bool {
        self.rollup_of.is_some()
    }

    pub fn field_index(&self, name: &str) -> Option<usize> {
        self.fields.iter().position(|f| f.name == name)
    }

    pub fn tag_index(&self, name: &str) -> Option<usize> {
        self.tags.iter().position(|t| t == name)
    }

    pub fn has_column(&self, name: &str) -> bool {
        name == TS_COLUMN || self.tag_index(name).is_some() || self.field_index(name).is_some()
    }

    /// Name lookups for a run of rows (see [`ColumnCursor`]).
    pub fn cursor(&self) -> ColumnCursor<'_> {
        ColumnCursor {
            def: self,
            next_tag: 0,
            next_field: 0,
        }
    }

    /// Arrow schema: `ts`, then tags, then fields (in the order they were added).
    pub fn arrow_schema(&self) -> SchemaRef {
        let mut cols = Vec::with_capacity(1 + self.tags.len() + self.fields.len());
        cols.push(ts_field());
        for tag in &self.tags {
            cols.push(Field::new(tag, DataType::Utf8, false));
        }
        for f in &self.fields {
            let field = Field::new(&f.name, f.field_type.arrow_type(), true);
            cols.push(match self.fulltext.get(&f.name) {
                // The analyzer travels with the column, to `matches()`, and the table,
                // to `score()`.
                Some(a) => field.with_metadata(
                    [
                        (
                            crate::fulltext::ANALYZER_METADATA_KEY.to_string(),
                            a.name().to_string(),
                        ),
                        (
                            crate::fulltext::TABLE_METADATA_KEY.to_string(),
                            self.name.clone(),
                        ),
                        (
                            crate::fulltext::COLUMN_METADATA_KEY.to_string(),
                            f.name.clone(),
                        ),
                    ]
                    .into(),
                ),
                None => field,
            });
        }
        Arc::new(Schema::new(cols))
    }

    /// Number of key columns at the start of the Arrow schema (ts + tags).
    pub fn key_len(&self) -> usize {
        1 + self.tags.len()
    }
}

pub fn ts_field() -> Field {
    Field::new(
        TS_COLUMN,
        DataType::Timestamp(TimeUnit::Microsecond, Some(TS_TIMEZONE.into())),
        false,
    )
}

/// Table names become object-store path segments and SQL identifiers: keep them plain.
pub fn validate_table_name(name: &str) -> Result<()> {
    let ok_chars = name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    let reason = if name.is_empty() {
        Some("empty name")
    } else if name.len() > 128 {
        Some("longer than 128 characters")
    } else if !ok_chars {
        Some("only ASCII letters, digits, '_' and '-' are allowed")
    } else if name.starts_with('_') || name.starts_with('-') {
        Some("must not start with '_' or '-'")
    } else {
        None
    };
    match reason {
        Some(reason) => Err(Error::InvalidTableName {
            table: name.into(),
            reason: reason.into(),
        }),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn duplicate_columns_rejected() {
        let f = |n: &str| FieldDef {
            name: n.into(),
            field_type: FieldType::Float,
        };
        assert!(TableDef::new(TableId(1), "t", vec!["pid".into()], vec![f("ua")]).is_ok());
        assert!(TableDef::new(TableId(1), "t", vec!["pid".into()], vec![f("pid")]).is_err());
        assert!(TableDef::new(TableId(1), "t", vec![], vec![f("ts")]).is_err());
        assert!(TableDef::new(TableId(1), "a/b", vec![], vec![]).is_err());
        assert!(TableDef::new(TableId(1), "_x", vec![], vec![]).is_err());
    }

    #[test]
    fn cursor_finds_columns_in_any_order() {
        let f = |n: &str| FieldDef {
            name: n.into(),
            field_type: FieldType::Float,
        };
        let def = TableDef::new(
            TableId(1),
            "t",
            vec!["a".into(), "b".into()],
            vec![f("x"), f("y"), f("z")],
        )
        .unwrap();
        let mut c = def.cursor();
        // In order, out of order, repeated, and missing names: always what a scan gives.
        for name in ["x", "y", "z", "x", "z", "y", "y", "nope", "a", "x"] {
            assert_eq!(c.field(name), def.field_index(name), "field {name}");
        }
        for name in ["b", "a", "a", "b", "x", "b"] {
            assert_eq!(c.tag(name), def.tag_index(name), "tag {name}");
        }
    }
}
