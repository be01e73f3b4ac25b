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
        postcard::to_stdvec(self).map_err(|e| Error::WalEncode(e.to_string()))
    }

    pub fn decode(bytes: &[u8]) -> Result<Self> {
        postcard::from_bytes(bytes).map_err(|e| Error::WalEncode(e.to_string()))
    }
}
