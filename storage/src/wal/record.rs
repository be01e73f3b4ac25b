//! The logical WAL record: a validated batch of rows for one table.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::model::{TableId, ValidRow};

/// Position of a record in the WAL; strictly increasing across restarts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct WalSeq(pub u64);

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WalRecord {
    pub table_id: TableId,
    pub rows: Vec<ValidRow>,
}

impl WalRecord {
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
        15 + self.rows.iter().map(row).sum::<usize>()
    }

    pub fn decode(bytes: &[u8]) -> Result<Self> {
        postcard::from_bytes(bytes).map_err(|e| Error::WalEncode(e.to_string()))
    }
}
