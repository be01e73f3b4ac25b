//! Rows as writers hand them in (`WriteBatch`: named tags and fields) and as they are
//! logged and buffered after validation (`ValidRow`: positional, aligned to a `TableDef`).

use serde::{Deserialize, Serialize};

use super::schema::FieldType;

/// A field value before it is stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum FieldValue {
    Float(f64),
    Integer(i64),
    Boolean(bool),
    Text(String),
    /// UTC microseconds since the epoch.
    Timestamp(i64),
}

impl FieldValue {
    pub fn field_type(&self) -> FieldType {
        match self {
            FieldValue::Float(_) => FieldType::Float,
            FieldValue::Integer(_) => FieldType::Integer,
            FieldValue::Boolean(_) => FieldType::Boolean,
            FieldValue::Text(_) => FieldType::Text,
            FieldValue::Timestamp(_) => FieldType::Timestamp,
        }
    }

    /// Convert to a column's type where that loses nothing (an integer into a float
    /// column); `None` when the types conflict.
    pub fn coerce_to(self, ty: FieldType) -> Option<FieldValue> {
        match (self, ty) {
            (v @ FieldValue::Float(_), FieldType::Float) => Some(v),
            (FieldValue::Integer(i), FieldType::Float) => Some(FieldValue::Float(i as f64)),
            (v @ FieldValue::Integer(_), FieldType::Integer) => Some(v),
            (v @ FieldValue::Boolean(_), FieldType::Boolean) => Some(v),
            (v @ FieldValue::Text(_), FieldType::Text) => Some(v),
            (v @ FieldValue::Timestamp(_), FieldType::Timestamp) => Some(v),
            _ => None,
        }
    }
}

/// One row by name: timestamp in microseconds since the epoch (UTC), tags, fields.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    pub ts: i64,
    pub tags: Vec<(String, String)>,
    pub fields: Vec<(String, FieldValue)>,
}

/// Rows for one table, as a writer (SQL INSERT, MQTT decoder) hands them in.
#[derive(Debug, Clone, PartialEq)]
pub struct WriteBatch {
    pub table: String,
    pub rows: Vec<Row>,
}

/// A validated row aligned to a table definition: `tags[i]` is the table's i-th tag,
/// `fields[i]` its i-th field (a prefix: fields added later are absent = null).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ValidRow {
    pub ts: i64,
    pub tags: Vec<String>,
    pub fields: Vec<Option<FieldValue>>,
}
