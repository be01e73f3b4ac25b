//! Errors of background work, naming the table or store involved.

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Storage(#[from] wattdb_storage::Error),

    #[error("rollup marks log in {path}: {source}")]
    Marks {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("rollups of table \"{table}\": {reason}")]
    Settings { table: String, reason: String },
}

impl Error {
    /// True when the caller asked for something invalid (bad setting, unknown table).
    pub fn is_user_error(&self) -> bool {
        match self {
            Error::Storage(e) => e.is_user_error(),
            Error::Settings { .. } => true,
            Error::Marks { .. } => false,
        }
    }
}
