//! DataFusion table providers over wattdb storage.

mod delete;
mod insert;
mod last_values;
mod last_values_rewrite;
mod rollup_rewrite;
mod table;

pub use insert::{InsertError, batch_to_rows, write_batch};
pub use last_values::LastValuesFunction;
pub use last_values_rewrite::DistinctOnLastValues;
pub use rollup_rewrite::{RollupRewrite, WattdbOptions};
pub use table::WattTable;
pub use wattdb_storage::read::STORE_URL;

/// `Storage` is not `Debug`; this wrapper is (DataFusion's providers and rules must be).
#[derive(Clone)]
pub(crate) struct StorageHandle(pub wattdb_storage::Storage);

impl std::fmt::Debug for StorageHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Storage")
    }
}
