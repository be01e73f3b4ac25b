//! The manifest snapshot: the whole catalog as one versioned JSON document, written to the
//! object store at [`MANIFEST_PATH`] after every catalog change.
//!
//! To add a format version: bump [`MANIFEST_FORMAT_VERSION`], keep decoding the old one
//! (convert on read), and add a snapshot test for the new encoding.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::model::TableDef;

use super::{ArchivedPartition, CatalogState, FileMeta, PendingDelete, RuleEntry};

pub const MANIFEST_PATH: &str = "_wattdb/manifest.json";
pub const MANIFEST_FORMAT_VERSION: u32 = 1;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    pub format_version: u32,
    pub written_at_ms: i64,
    pub next_table_id: u64,
    pub tables: Vec<TableDef>,
    pub files: Vec<FileMeta>,
    /// Archived month partitions (added in format 1 as an optional key: absent = none).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub archived: Vec<ArchivedPartition>,
    /// Objects waiting to be deleted (optional key, like `archived`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pending_deletes: Vec<PendingDelete>,
    /// Rule objects: alarms, channels (optional key, like `archived`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rules: Vec<RuleEntry>,
    /// `DELETE`s (optional key, like `archived`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tombstones: Vec<crate::model::Tombstone>,
}

impl Manifest {
    pub fn from_state(state: &CatalogState, written_at_ms: i64) -> Self {
        Manifest {
            format_version: MANIFEST_FORMAT_VERSION,
            written_at_ms,
            next_table_id: state.next_table_id,
            tables: state.tables.values().map(|t| (**t).clone()).collect(),
            files: state.files.values().flatten().cloned().collect(),
            archived: state.archived.values().cloned().collect(),
            pending_deletes: state.pending_deletes.values().cloned().collect(),
            rules: state.rules.values().cloned().collect(),
            tombstones: state.tombstones.values().cloned().collect(),
        }
    }

    pub fn into_state(self) -> CatalogState {
        let mut state = CatalogState {
            next_table_id: self.next_table_id,
            ..Default::default()
        };
        for t in self.tables {
            state.tables.insert(t.name.clone(), std::sync::Arc::new(t));
        }
        for f in self.files {
            state.files.entry(f.table_id).or_default().push(f);
        }
        for a in self.archived {
            state.archived.insert((a.table_id, a.month), a);
        }
        for d in self.pending_deletes {
            state.pending_deletes.insert(d.key(), d);
        }
        for r in self.rules {
            state.rules.insert((r.kind.clone(), r.name.clone()), r);
        }
        for t in self.tombstones {
            state.tombstones.insert((t.table_id, t.seq), t);
        }
        state
    }

    pub fn encode(&self) -> Result<Vec<u8>> {
        serde_json::to_vec_pretty(self).map_err(|e| Error::Manifest {
            path: MANIFEST_PATH.into(),
            reason: e.to_string(),
        })
    }

    pub fn decode(bytes: &[u8]) -> Result<Self> {
        let err = |reason: String| Error::Manifest {
            path: MANIFEST_PATH.into(),
            reason,
        };
        #[derive(Deserialize)]
        struct VersionOnly {
            format_version: u32,
        }
        let v: VersionOnly = serde_json::from_slice(bytes).map_err(|e| err(e.to_string()))?;
        if v.format_version != MANIFEST_FORMAT_VERSION {
            return Err(err(format!(
                "format version {} is not supported by this build (expects {})",
                v.format_version, MANIFEST_FORMAT_VERSION
            )));
        }
        serde_json::from_slice(bytes).map_err(|e| err(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_samples;
    use super::*;
    use crate::model::TableId;

    fn sample() -> Manifest {
        let mut state = CatalogState {
            next_table_id: 4,
            ..Default::default()
        };
        state.apply(&super::super::CatalogOp::PutTable(test_samples::electric()));
        state.apply(&super::super::CatalogOp::AddFile(
            test_samples::electric_file(),
        ));
        Manifest::from_state(&state, 1_700_000_000_000)
    }

    #[test]
    fn encode_decode_round_trip_keeps_state() {
        let m = sample();
        let back = Manifest::decode(&m.encode().unwrap()).unwrap();
        assert_eq!(back, m);
        let state = back.into_state();
        assert_eq!(state.tables["electric"].tags, vec!["pid".to_string()]);
        assert_eq!(state.files[&TableId(3)].len(), 1);
    }

    /// Pins the persisted encoding: changing it needs a new format version.
    #[test]
    fn encoding_snapshot_v1() {
        let json: serde_json::Value = serde_json::from_slice(&sample().encode().unwrap()).unwrap();
        let expected = serde_json::json!({
            "format_version": 1,
            "written_at_ms": 1_700_000_000_000_i64,
            "next_table_id": 4,
            "tables": [{"id": 3, "name": "electric", "tags": ["pid"],
                        "fields": [{"name": "ua", "type": "float"}]}],
            "files": [{"table_id": 3, "month": "2026-11", "path": "electric/month=2026-11/0001.parquet",
                       "min_ts": 10, "max_ts": 20, "rows": 2, "bytes": 900, "max_seq": 7,
                       "created_at_ms": 1}]
        });
        assert_eq!(json, expected);
    }

    #[test]
    fn unknown_version_is_refused_with_reason() {
        let mut m = sample();
        m.format_version = 99;
        let bytes = serde_json::to_vec(&m).unwrap();
        let err = Manifest::decode(&bytes).unwrap_err().to_string();
        assert!(err.contains("format version 99"), "{err}");
    }
}
