//! Errors of rule definitions and of the rules runtime. Each variant is what a user can
//! act on; the SQL layer maps them to SQLSTATEs (`RuleError::sqlstate`).

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum RuleError {
    /// An expression that does not parse or is not boolean.
    #[error("{0}")]
    Syntax(String),
    #[error("{0}")]
    UnknownColumn(String),
    #[error("table \"{0}\" does not exist")]
    UnknownTable(String),
    /// An unknown option or channel, or a bad option value.
    #[error("{0}")]
    InvalidOption(String),
    /// An object others depend on (a channel an alarm uses).
    #[error("{0}")]
    InUse(String),
    /// A call with the wrong arguments.
    #[error("{0}")]
    Usage(String),
    #[error("{0}")]
    Storage(#[from] wattdb_storage::Error),
    #[error("alarm state file {path}: {reason}")]
    State { path: PathBuf, reason: String },
}

impl RuleError {
    /// The PostgreSQL SQLSTATE for this error.
    pub fn sqlstate(&self) -> &'static str {
        match self {
            RuleError::Syntax(_) => "42601",
            RuleError::UnknownColumn(_) => "42703",
            RuleError::UnknownTable(_) => "42P01",
            RuleError::InvalidOption(_) => "22023",
            RuleError::Usage(_) => "42883",
            RuleError::InUse(_) => "2BP01",
            RuleError::Storage(wattdb_storage::Error::RuleExists { .. }) => "42710",
            RuleError::Storage(wattdb_storage::Error::RuleNotFound { .. }) => "42704",
            RuleError::Storage(_) | RuleError::State { .. } => "58030",
        }
    }
}
