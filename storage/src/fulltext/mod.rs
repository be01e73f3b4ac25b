//! Full-text search over text columns: the analyzers that cut values and queries into
//! tokens (`chinese` with jieba, `standard`, `raw`), the query language of
//! `matches(column, 'query')`, and the evaluation of a query against a value that scans
//! use. An index lookup must return exactly the rows this evaluation accepts.

pub mod analyzer;
pub mod compiled;
pub mod file_indexes;
pub mod index;
pub mod index_cache;
pub mod query_syntax;
pub mod relevance;

pub use analyzer::Analyzer;

/// Arrow field metadata naming the analyzer of a full-text column (the table schema
/// carries it, so `matches()` knows how to cut the column's values).
pub const ANALYZER_METADATA_KEY: &str = "wattdb.fulltext";
pub use compiled::{Compiled, FullTextQuery, Matcher, QueryError};
pub use relevance::CorpusStats;

/// Arrow field metadata naming the table and column a full-text column is (for
/// `score()`, which takes its corpus statistics from that column's indexes).
pub const TABLE_METADATA_KEY: &str = "wattdb.fulltext.table";
pub const COLUMN_METADATA_KEY: &str = "wattdb.fulltext.column";
