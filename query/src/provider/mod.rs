//! DataFusion table providers over wattdb storage.

mod insert;
mod scan;
mod table;

pub use insert::batch_to_rows;
pub use table::WattTable;
pub use wattdb_storage::read::STORE_URL;
