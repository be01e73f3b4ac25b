//! The rules runtime on the write path: threshold alarms (`create_alarm`) evaluated on
//! every durable write batch and data-gap alarms (`create_gap_alarm`) checked by arrival
//! time, with per-series states that survive restarts, transitions written to the
//! `alarm_events` table, and notifications to WeCom, DingTalk, webhook and MQTT channels
//! (`create_channel`) through a durable outbox, with reminders (`repeat`), silences and
//! storm grouping. It must not block the WAL thread on I/O: evaluation is in memory, and
//! every write, fsync and network call happens on tasks of its own.
//!
//! Conditions are SQL boolean expressions compiled once with DataFusion's expression
//! parser into physical expressions; nothing here plans or serves queries.

pub mod admin;
pub mod alarm_rule;
pub mod alarm_runtime;
pub mod appliance_rule;
pub mod channel;
pub mod delivery;
pub mod duration;
pub mod error;
pub mod outbox;
pub mod state_file;
pub mod stored;
pub mod views;

pub use alarm_rule::AlarmDef;
pub use alarm_runtime::{ALARM_KIND, AlarmRuntime, EVENTS_TABLE};
pub use error::RuleError;
