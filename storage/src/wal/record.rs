//! The logical WAL record: a validated batch of rows for one table, or a `DELETE`.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::model::{DeletePredicate, TableId, ValidRow};

/// Position of a record in the WAL; strictly increasing across restarts.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
pub struct WalSeq(pub u64);

impl WalSeq {
    pub fn is_zero(&self) -> bool {
        self.0 == 0
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WalRecord {
    pub table_id: TableId,
    pub rows: Vec<ValidRow>,
    /// Non-empty for a `DELETE` (then `rows` is empty): rows of the table matching any
    /// of these and written before this record are removed. Segment format 2 on.
    pub delete: Vec<DeletePredicate>,
}

/// A record as segment format 1 wrote it (no deletes).
#[derive(Deserialize)]
struct WalRecordV1 {
    table_id: TableId,
    rows: Vec<ValidRow>,
}

impl WalRecord {
    /// A write of `rows`.
    pub fn write(table_id: TableId, rows: Vec<ValidRow>) -> Self {
        WalRecord {
            table_id,
            rows,
            delete: Vec::new(),
        }
    }

    /// A `DELETE` of the rows matching any of `predicates`.
    pub fn delete(table_id: TableId, predicates: Vec<DeletePredicate>) -> Self {
        WalRecord {
            table_id,
            rows: Vec::new(),
            delete: predicates,
        }
    }

    pub fn is_delete(&self) -> bool {
        !self.delete.is_empty()
    }

    pub fn encode(&self) -> Result<Vec<u8>> {
        // Sized up front: growing the vector byte by byte was a visible share of the cost
        // of logging small records.
        postcard::to_extend(self, Vec::with_capacity(self.size_estimate()))
            .map_err(|e| Error::WalEncode(e.to_string()))
    }

    /// Roughly the encoded size (varints counted at their maximum), to size the buffer.
    fn size_estimate(&self) -> usize {
        let row = |r: &ValidRow| {
            10 + r.tags.iter().map(|t| 5 + t.len()).sum::<usize>()
                + 5
                + r.fields
                    .iter()
                    .map(|f| match f {
                        Some(crate::model::FieldValue::Text(t)) => 7 + t.len(),
                        _ => 10,
                    })
                    .sum::<usize>()
        };
        16 + self.rows.iter().map(row).sum::<usize>()
            + self
                .delete
                .iter()
                .map(|d| {
                    25 + d
                        .tags
                        .iter()
                        .map(|t| {
                            10 + t.tag.len() + t.values.iter().map(|v| 5 + v.len()).sum::<usize>()
                        })
                        .sum::<usize>()
                })
                .sum::<usize>()
    }

    /// Decode a record of the current segment format.
    pub fn decode(bytes: &[u8]) -> Result<Self> {
        postcard::from_bytes(bytes).map_err(|e| Error::WalEncode(e.to_string()))
    }

    /// Decode a record of a segment written in format `version`.
    pub fn decode_version(bytes: &[u8], version: u32) -> Result<Self> {
        match version {
            1 => postcard::from_bytes::<WalRecordV1>(bytes)
                .map(|r| WalRecord::write(r.table_id, r.rows))
                .map_err(|e| Error::WalEncode(e.to_string())),
            _ => Self::decode(bytes),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::FieldValue;

    /// The encoding of a record is what old WAL segments hold: pinned byte for byte
    /// (postcard: varint lengths and enum indexes, zigzag integers, little-endian
    /// floats), so a reordered enum or a changed field cannot silently misread them.
    /// New variants go at the end.
    #[test]
    fn encoding_is_pinned() {
        let record = WalRecord::write(
            TableId(7),
            vec![ValidRow {
                ts: 1,
                tags: vec!["a".into()],
                fields: vec![
                    Some(FieldValue::Float(1.5)),
                    Some(FieldValue::Integer(-2)),
                    Some(FieldValue::Boolean(true)),
                    Some(FieldValue::Text("x".into())),
                    None,
                    Some(FieldValue::Timestamp(3)),
                ],
            }],
        );
        let bytes = record.encode().unwrap();
        #[rustfmt::skip]
        let expected: Vec<u8> = [
            &[7u8][..],                              // table_id
            &[1],                                    // one row
            &[2],                                    // ts = 1, zigzag
            &[1, 1, b'a'],                           // tags: ["a"]
            &[6],                                    // six fields
            &[1, 0], &1.5f64.to_le_bytes(),          // Some(Float(1.5))
            &[1, 1, 3],                              // Some(Integer(-2))
            &[1, 2, 1],                              // Some(Boolean(true))
            &[1, 3, 1, b'x'],                        // Some(Text("x"))
            &[0],                                    // None
            &[1, 4, 6],                              // Some(Timestamp(3))
            &[0],                                    // no delete (format 2)
        ]
        .concat();
        assert_eq!(bytes, expected);
        assert_eq!(WalRecord::decode(&bytes).unwrap(), record);
        // Format 1 had no delete list.
        let v1 = &expected[..expected.len() - 1];
        assert_eq!(WalRecord::decode_version(v1, 1).unwrap(), record);
    }

    #[test]
    fn delete_encoding_is_pinned() {
        let record = WalRecord::delete(
            TableId(2),
            vec![crate::model::DeletePredicate {
                ts_from: Some(1),
                ts_to: None,
                tags: vec![crate::model::TagCondition {
                    tag: "m".into(),
                    values: vec!["a".into()],
                    negated: true,
                }],
            }],
        );
        let bytes = record.encode().unwrap();
        #[rustfmt::skip]
        let expected: Vec<u8> = [
            &[2u8][..],                              // table_id
            &[0],                                    // no rows
            &[1],                                    // one predicate
            &[1, 2],                                 // ts_from: Some(1)
            &[0],                                    // ts_to: None
            &[1, 1, b'm', 1, 1, b'a', 1],            // tags: [m NOT IN (a)]
        ]
        .concat();
        assert_eq!(bytes, expected);
        assert_eq!(WalRecord::decode(&bytes).unwrap(), record);
    }
}
