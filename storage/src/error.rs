//! Errors of the storage layer. Each variant names what it was working on (table, file,
//! segment) so that a message in a log or a SQL error can be acted upon.

use std::path::PathBuf;

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("table \"{table}\" does not exist")]
    TableNotFound { table: String },

    #[error("table \"{table}\" already exists")]
    TableExists { table: String },

    #[error("{kind} \"{name}\" already exists")]
    RuleExists { kind: String, name: String },

    #[error("{kind} \"{name}\" does not exist")]
    RuleNotFound { kind: String, name: String },

    #[error("invalid table definition for \"{table}\": {reason}")]
    InvalidTableDef { table: String, reason: String },

    #[error("invalid table name \"{table}\": {reason}")]
    InvalidTableName { table: String, reason: String },

    #[error("table \"{table}\", column \"{column}\": {reason}")]
    TypeConflict {
        table: String,
        column: String,
        reason: String,
    },

    #[error(
        "table \"{table}\": month {month} has expired under the table's retention; rows for it are refused"
    )]
    Expired {
        table: String,
        month: crate::model::Month,
    },

    #[error(
        "no archive is configured (set --archive-store / archive_store), so there is nothing to restore from"
    )]
    NoArchive,

    #[error("table \"{table}\": month {month} is not in the archive{hint}")]
    NotArchived {
        table: String,
        month: crate::model::Month,
        /// What the month's state is instead, for the message.
        hint: String,
    },

    #[error("table \"{table}\" is a rollup maintained by wattdb; it can be read, not written")]
    ReadOnlyTable { table: String },

    #[error("table \"{table}\": {reason}")]
    InvalidRow { table: String, reason: String },

    #[error("DELETE FROM \"{table}\": {reason}")]
    InvalidDelete { table: String, reason: String },

    #[error("WAL I/O error on {path}: {source}")]
    WalIo {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error(
        "disk full: no space to write the WAL ({path}: {source}); writes are refused until \
         space is freed and resume by themselves then, nothing acknowledged is lost, reads \
         keep working"
    )]
    DiskFull {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error(
        "the WAL stopped taking writes after {path} could not be cut back to its last \
         durable record ({reason}); nothing acknowledged is lost, but wattdb must be \
         restarted before it accepts writes again (reads keep working)"
    )]
    WalHalted { path: PathBuf, reason: String },

    #[error(
        "WAL segment {path} is damaged at byte {offset}: {reason}. wattdb does not start \
         rather than lose acknowledged writes; with the server stopped, `wattdb wal inspect \
         --data-dir <dir>` lists what is intact and `wattdb wal salvage --data-dir <dir> --to \
         <new folder>` copies every intact record out (README: \"A damaged WAL\")"
    )]
    WalDamaged {
        path: PathBuf,
        offset: u64,
        reason: String,
    },

    #[error("WAL writer has stopped; the server is shutting down or the disk failed")]
    WalClosed,

    #[error("WAL record encoding failed: {0}")]
    WalEncode(String),

    #[error("catalog error: {0}")]
    Catalog(#[from] sled::Error),

    #[error("catalog entry {key} is unreadable: {reason}")]
    CatalogDecode { key: String, reason: String },

    #[error("object store error on {path}: {source}")]
    ObjectStore {
        path: String,
        #[source]
        source: object_store::Error,
    },

    #[error("invalid object store URL \"{url}\": {reason}")]
    ObjectStoreUrl { url: String, reason: String },

    #[error("Parquet error on {path}: {source}")]
    Parquet {
        path: String,
        #[source]
        source: parquet::errors::ParquetError,
    },

    #[error("Arrow error while {context}: {source}")]
    Arrow {
        context: String,
        #[source]
        source: arrow::error::ArrowError,
    },

    #[error("reading table \"{table}\": {source}")]
    Read {
        table: String,
        #[source]
        source: datafusion::error::DataFusionError,
    },

    #[error("manifest {path} is unreadable: {reason}")]
    Manifest { path: String, reason: String },

    #[error("I/O error on {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error(transparent)]
    FullText(#[from] crate::fulltext::index::IndexError),

    #[error("storage is shutting down")]
    ShuttingDown,

    #[error("background task failed: {0}")]
    Task(String),
}

impl Error {
    /// An I/O error on a WAL file: [`Error::DiskFull`] when the disk (or quota) is full,
    /// [`Error::WalIo`] otherwise.
    pub(crate) fn wal_io(path: &std::path::Path, source: std::io::Error) -> Self {
        let path = path.to_path_buf();
        if is_disk_full(&source) {
            Error::DiskFull { path, source }
        } else {
            Error::WalIo { path, source }
        }
    }

    /// The same error again, for every writer of a failed WAL group (I/O errors are not
    /// `Clone`; the kind and the message are kept).
    pub(crate) fn for_each_writer(&self) -> Self {
        let again = |s: &std::io::Error| std::io::Error::new(s.kind(), s.to_string());
        match self {
            Error::DiskFull { path, source } => Error::DiskFull {
                path: path.clone(),
                source: again(source),
            },
            Error::WalIo { path, source } => Error::WalIo {
                path: path.clone(),
                source: again(source),
            },
            Error::WalHalted { path, reason } => Error::WalHalted {
                path: path.clone(),
                reason: reason.clone(),
            },
            other => Error::WalIo {
                path: PathBuf::from("<wal>"),
                source: std::io::Error::other(other.to_string()),
            },
        }
    }

    pub(crate) fn arrow(
        context: impl Into<String>,
    ) -> impl FnOnce(arrow::error::ArrowError) -> Self {
        let context = context.into();
        move |source| Error::Arrow { context, source }
    }

    pub(crate) fn read(
        table: impl Into<String>,
    ) -> impl FnOnce(datafusion::error::DataFusionError) -> Self {
        let table = table.into();
        move |source| Error::Read { table, source }
    }

    pub(crate) fn object_store(
        path: impl Into<String>,
    ) -> impl FnOnce(object_store::Error) -> Self {
        let path = path.into();
        move |source| Error::ObjectStore { path, source }
    }

    /// True when the caller made a mistake (bad name, bad value) rather than the server.
    pub fn is_user_error(&self) -> bool {
        matches!(
            self,
            Error::TableNotFound { .. }
                | Error::TableExists { .. }
                | Error::RuleExists { .. }
                | Error::RuleNotFound { .. }
                | Error::InvalidTableDef { .. }
                | Error::InvalidTableName { .. }
                | Error::TypeConflict { .. }
                | Error::InvalidRow { .. }
                | Error::InvalidDelete { .. }
                | Error::ReadOnlyTable { .. }
                | Error::Expired { .. }
                | Error::NoArchive
                | Error::NotArchived { .. }
        )
    }
}

impl From<Error> for datafusion::error::DataFusionError {
    fn from(e: Error) -> Self {
        datafusion::error::DataFusionError::External(Box::new(e))
    }
}

impl From<tokio::task::JoinError> for Error {
    fn from(e: tokio::task::JoinError) -> Self {
        Error::Task(e.to_string())
    }
}

/// ENOSPC or EDQUOT: the write may succeed once space is freed.
pub fn is_disk_full(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::StorageFull | std::io::ErrorKind::QuotaExceeded
    )
}
