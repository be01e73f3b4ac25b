//! The rules runtime on the write path. Today: threshold alarms (`create_alarm`),
//! evaluated on every durable write batch, with per-series states that survive restarts
//! and transitions written to the `alarm_events` table. Notification channels, data-gap
//! alarms and silences come next (issue 13).
//!
//! Conditions are SQL boolean expressions compiled once with DataFusion's expression
//! parser into physical expressions; nothing here plans or serves queries.

pub mod admin;
pub mod alarm_rule;
pub mod alarm_runtime;
pub mod duration;
pub mod error;
pub mod state_file;
pub mod views;

pub use alarm_rule::AlarmDef;
pub use alarm_runtime::{ALARM_KIND, AlarmRuntime, EVENTS_TABLE};
pub use error::RuleError;
