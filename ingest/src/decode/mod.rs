//! Payload decoders: bytes from a topic → rows for a table, or a reason per bad item.
//! Pure functions with no I/O; the arrival time is passed in for rows without a timestamp.

pub mod canonical_aligned;
mod canonical_fast;
pub mod canonical_json;
pub mod line_protocol;

use wattdb_storage::Row;

/// Why (part of) a payload could not be decoded. `item` is the array index or line
/// number it concerns, when it concerns one.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{}{reason}", item.map(|i| format!("item {i}: ")).unwrap_or_default())]
pub struct DecodeError {
    pub item: Option<usize>,
    pub reason: String,
}

impl DecodeError {
    pub fn whole(reason: impl Into<String>) -> Self {
        DecodeError {
            item: None,
            reason: reason.into(),
        }
    }

    pub fn at(item: usize, reason: impl Into<String>) -> Self {
        DecodeError {
            item: Some(item),
            reason: reason.into(),
        }
    }
}

/// A row and the table it belongs to.
#[derive(Debug, Clone, PartialEq)]
pub struct TableRow {
    pub table: String,
    pub row: Row,
}

/// What a payload decoded into: the good rows and a reason for each bad item. Valid items
/// of a payload are kept even when others in it are bad.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Decoded {
    pub rows: Vec<TableRow>,
    pub errors: Vec<DecodeError>,
}
