//! wattdb-query: SQL over wattdb storage. It owns the DataFusion integration (a table
//! provider per table over buffered rows + Parquet files, with pruning and dedup; the
//! `system` views; wattdb's SQL functions and admin functions; DDL) and the PostgreSQL
//! wire-protocol server (users and roles, auth, SQLSTATE mapping, the statements drivers
//! send on connect).
//!
//! It must not reach into WAL, buffer or catalog internals: everything goes through
//! `wattdb_storage::Storage` (snapshots, writes, DDL). It knows nothing about MQTT or the
//! CLI.

pub mod admin;
pub mod catalog_empty;
pub mod catalog_keys;
pub mod catalog_roles;
pub mod catalog_settings;
pub mod ddl;
pub mod execution;
pub mod fulltext_admin;
pub mod functions;
pub mod oid_types;
pub mod pg;
pub mod provider;
pub mod schema_provider;
pub mod session;
pub mod sessions;
pub mod system_tables;
pub mod table_options;
pub mod users;

pub use session::{build_session, build_session_with};
