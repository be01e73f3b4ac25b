//! The read path: one streaming last-write-wins design for queries, rollups and
//! compaction. [`plan_scan`] turns a table snapshot into a DataFusion plan: files that
//! overlap nothing are scanned as they are; overlapping files and buffered partitions
//! are merged by [`LastWriteWinsExec`], which reads every Parquet source row group by
//! row group (ranged reads, projection and key filters pushed down) and keeps the newest
//! write of each key, in bounded memory.

mod buffer_source;
mod exec;
mod hit_flags;
mod last_values;
mod merge;
mod merge_candidates;
pub mod merge_memory;
mod plan;
pub mod rollup_view;
mod runtime;
mod selected_pages;
pub mod small_files;
pub mod stored_rows;
pub mod text_hits;
pub mod time_range;

pub use exec::{LastWriteWinsExec, MergeSource};
pub use last_values::LastValues;
pub use merge::{LastWriteWins, MergeInput, MergeShape, merge_stream};
pub use plan::{STORE_URL, ScanRequest, ordered_stream, parquet_readers, plan_scan};
pub use rollup_view::{RollupLayout, RollupLevel, RollupView, Unsettled};
pub use runtime::{DEFAULT_QUERY_MEMORY, internal_runtime, query_runtime};
pub use small_files::SmallFileCache;
pub use text_hits::{LookupContext, TextHits};
pub use time_range::TimeRange;
