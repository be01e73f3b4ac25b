//! Write-ahead log: every validated write is appended here and fsynced before it is
//! acknowledged. A single writer thread does group commit (one fsync for every record that
//! queued up while the previous fsync ran) and then hands each durable record, in sequence
//! order, to a [`DurableObserver`] (the write buffer; later also rule evaluation). The WAL
//! knows nothing about buffers or tables beyond the record it stores.
//!
//! On-disk layout: `<dir>/<first-seq, 20 digits>.wal` segment files; see [`segment`] for the
//! record framing. Segments are deleted once everything in them has been persisted.

mod group_commit;
pub mod record;
pub mod salvage;
pub mod segment;
#[cfg(test)]
mod test_records;
mod writer;

pub use record::{WalRecord, WalSeq};
pub use writer::{Durable, DurableObserver, EncodedRecord, Wal, WalConfig};
