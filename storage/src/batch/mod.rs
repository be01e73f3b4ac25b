//! Arrow record batches in a table's layout (`ts`, tags, fields): building them from rows,
//! adapting old batches to a grown schema, and sort + dedup by primary key.

mod adapt;
mod dedup;
mod field_value;
mod from_rows;

pub use adapt::adapt_to_schema;
pub use dedup::{sort_dedup, sort_dedup_batches};
pub use field_value::field_value;
pub use from_rows::rows_to_batch;
