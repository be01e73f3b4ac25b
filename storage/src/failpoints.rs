//! Fault injection for tests. With the `failpoints` feature, `fail::fail_point!` sites on
//! the storage layer's I/O can be made to fail, from a test (`fail::cfg`) or, for the
//! server binary, from the `FAILPOINTS` environment variable (`name=action;...`, see the
//! `fail` crate). Without the feature every site compiles to nothing.
//!
//! | failpoint        | where                                            |
//! |------------------|--------------------------------------------------|
//! | `wal-create`     | creating a WAL segment                           |
//! | `wal-append`     | buffering a WAL record                           |
//! | `wal-fsync`      | writing and fsyncing a WAL group                 |
//! | `wal-abandon`    | cutting a failed segment back to its durable end |
//! | `wal-release-after-keep-from` | between choosing which WAL segments to keep and deleting the rest |
//! | `catalog-commit` | writing a catalog change (sled)                  |
//! | `catalog-sync`   | making catalog changes durable (sled flush)      |
//! | `text-index-build` | finishing a full-text index (persist, compaction, background build) |
//! | `marks-log-write`| appending to / rewriting the rollup marks log (wattdb-compaction) |
//! | `persist-upload` | writing a `.parquet` object (persist, compaction, archive) |
//! | `manifest-write` | writing the catalog manifest to the object store |
//! | `object-put`     | writing any other object                         |
//! | `object-delete`  | deleting an object                               |
//!
//! The last four are consulted by [`crate::faulty_store`], which wraps every object
//! store the server opens in a build with the feature.
//! A site's action `return` fails with an I/O error (EIO); `return(enospc)` fails as a
//! full disk does (ENOSPC).

/// The I/O error a failpoint returns: ENOSPC for `return(enospc)`, EIO otherwise.
#[cfg_attr(not(feature = "failpoints"), allow(dead_code))]
pub(crate) fn io_error(arg: Option<String>) -> std::io::Error {
    const ENOSPC: i32 = 28;
    const EIO: i32 = 5;
    match arg.as_deref() {
        Some("enospc") => std::io::Error::from_raw_os_error(ENOSPC),
        _ => std::io::Error::from_raw_os_error(EIO),
    }
}

/// Configure failpoints from the `FAILPOINTS` environment variable (`name=action;...`)
/// for the life of the process; nothing without the feature. Panics on a malformed
/// value, as `fail` does: only tests set it.
pub fn configure_from_env() {
    #[cfg(feature = "failpoints")]
    if std::env::var_os("FAILPOINTS").is_some() {
        std::mem::forget(fail::FailScenario::setup());
        tracing::warn!(failpoints = ?fail::list(), "failpoints configured (test build)");
    }
}

/// True when this build has failpoints (the `failpoints` feature).
pub fn enabled() -> bool {
    cfg!(feature = "failpoints")
}
