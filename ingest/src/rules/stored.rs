//! Rule definitions read back from the catalog, where each is a `RuleEntry` with a JSON
//! body.

use serde::de::DeserializeOwned;
use wattdb_storage::{RuleEntry, Storage};

/// The definitions among `entries` that read as `T`; unreadable ones are skipped (the
/// runtime warns about those when it compiles its rules).
pub fn definitions<T: DeserializeOwned>(entries: Vec<RuleEntry>) -> Vec<T> {
    entries
        .into_iter()
        .filter_map(|r| serde_json::from_value(r.body).ok())
        .collect()
}

/// The names of the stored rules of `kind`.
pub fn names(storage: &Storage, kind: &str) -> Vec<String> {
    storage.rules(kind).into_iter().map(|r| r.name).collect()
}
