//! DataFusion table providers over wattdb storage.

mod insert;
mod scan;
mod table;
pub mod time_range;

pub use insert::batch_to_rows;
pub use scan::STORE_URL;
pub use table::WattTable;
