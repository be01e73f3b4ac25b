//! The data model: table definitions (timestamp + tags + fields), the rows a writer hands
//! in, and month partitions. Pure data, no I/O.

pub mod delete;
pub mod interval;
pub mod month;
pub mod rollup;
pub mod row;
pub mod schema;

pub use delete::{CompiledDelete, DeletePredicate, TagCondition, Tombstone};
pub use interval::{BucketCache, Interval};
pub use month::Month;
pub use rollup::{RollupOf, RollupSettings};
pub use row::{FieldValue, Row, ValidRow, WriteBatch};
pub use schema::{FieldType, TS_COLUMN, TS_TIMEZONE, TableDef, TableId};
