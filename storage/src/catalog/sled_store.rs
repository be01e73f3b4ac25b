//! sled-backed [`CatalogStore`]. Trees: `tables` (name → versioned TableDef JSON),
//! `files` (`<table id>/<path>` → versioned FileMeta JSON), `archived`
//! (`<table id>/<month>` → versioned ArchivedPartition JSON) and `pending_deletes`
//! (`<store|archive>/<path>` → versioned PendingDelete JSON) and `rules` (`<kind>/<name>`
//! → versioned RuleEntry JSON) and `tombstones` (`<table id>/<seq>` → versioned Tombstone
//! JSON). Each commit is one sled
//! transaction followed by a flush (fsync) before it returns.

use std::path::Path;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use sled::Transactional;
use sled::transaction::{ConflictableTransactionError, TransactionError};

use crate::error::{Error, Result};
use crate::model::{Month, TableDef, TableId};

use super::{
    ArchivedPartition, CatalogOp, CatalogState, CatalogStore, FileMeta, ObjectPlace, PendingDelete,
    RuleEntry,
};
use crate::model::Tombstone;
use crate::wal::WalSeq;

pub const ENTRY_FORMAT_VERSION: u32 = 1;

#[derive(Serialize, Deserialize)]
struct Versioned<T> {
    v: u32,
    #[serde(flatten)]
    entry: T,
}

pub struct SledCatalogStore {
    db: sled::Db,
    tables: sled::Tree,
    files: sled::Tree,
    archived: sled::Tree,
    pending_deletes: sled::Tree,
    rules: sled::Tree,
    tombstones: sled::Tree,
}

impl SledCatalogStore {
    pub fn open(path: &Path) -> Result<Self> {
        let db = open_waiting_for_lock(path)?;
        let tables = db.open_tree("tables")?;
        let files = db.open_tree("files")?;
        let archived = db.open_tree("archived")?;
        let pending_deletes = db.open_tree("pending_deletes")?;
        let rules = db.open_tree("rules")?;
        let tombstones = db.open_tree("tombstones")?;
        Ok(SledCatalogStore {
            tombstones,
            db,
            tables,
            files,
            archived,
            pending_deletes,
            rules,
        })
    }
}

/// sled releases its file lock from a background thread shortly after the last handle
/// is dropped; a store reopened in the same process right away (a restart in tests,
/// `Storage::open` after `shutdown`) waits briefly for it instead of failing. Another
/// process holding the lock still fails, after ~2 s, with sled's error.
fn open_waiting_for_lock(path: &Path) -> Result<sled::Db> {
    let mut tries = 0;
    loop {
        match sled::open(path) {
            Err(sled::Error::Io(e))
                if e.to_string().contains("could not acquire lock") && tries < 40 =>
            {
                tries += 1;
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
            other => return Ok(other?),
        }
    }
}

fn encode<T: Serialize>(entry: &T) -> Result<Vec<u8>> {
    serde_json::to_vec(&Versioned {
        v: ENTRY_FORMAT_VERSION,
        entry,
    })
    .map_err(|e| Error::CatalogDecode {
        key: "<new entry>".into(),
        reason: e.to_string(),
    })
}

fn decode<T: for<'de> Deserialize<'de>>(key: &[u8], bytes: &[u8]) -> Result<T> {
    let key = String::from_utf8_lossy(key).to_string();
    let unreadable = |e: serde_json::Error| Error::CatalogDecode {
        key: key.clone(),
        reason: e.to_string(),
    };
    // The version first: a newer entry may not have the fields this build expects.
    #[derive(Deserialize)]
    struct Version {
        v: u32,
    }
    let version: Version = serde_json::from_slice(bytes).map_err(unreadable)?;
    if version.v != ENTRY_FORMAT_VERSION {
        return Err(Error::CatalogDecode {
            key: key.clone(),
            reason: format!(
                "entry format version {} is not this build's {ENTRY_FORMAT_VERSION} (written by another wattdb version?)",
                version.v
            ),
        });
    }
    let v: Versioned<T> = serde_json::from_slice(bytes).map_err(unreadable)?;
    Ok(v.entry)
}

fn file_key(f: &FileMeta) -> Vec<u8> {
    format!("{:020}/{}", f.table_id.0, f.path).into_bytes()
}

fn pending_key(place: ObjectPlace, path: &str) -> Vec<u8> {
    let place = match place {
        ObjectPlace::Store => "store",
        ObjectPlace::Archive => "archive",
    };
    format!("{place}/{path}").into_bytes()
}

fn rule_key(kind: &str, name: &str) -> Vec<u8> {
    format!("{kind}/{name}").into_bytes()
}

fn tombstone_key(table: TableId, seq: WalSeq) -> Vec<u8> {
    format!("{:020}/{:020}", table.0, seq.0).into_bytes()
}

fn archived_key(table: TableId, month: Month) -> Vec<u8> {
    format!("{:020}/{month}", table.0).into_bytes()
}

impl CatalogStore for SledCatalogStore {
    fn load(&self) -> Result<CatalogState> {
        let mut state = CatalogState::default();
        for item in self.tables.iter() {
            let (k, v) = item?;
            let def: TableDef = decode(&k, &v)?;
            state.next_table_id = state.next_table_id.max(def.id.0 + 1);
            state.tables.insert(def.name.clone(), Arc::new(def));
        }
        for item in self.files.iter() {
            let (k, v) = item?;
            let f: FileMeta = decode(&k, &v)?;
            state.files.entry(f.table_id).or_default().push(f);
        }
        for item in self.archived.iter() {
            let (k, v) = item?;
            let a: ArchivedPartition = decode(&k, &v)?;
            state.archived.insert((a.table_id, a.month), a);
        }
        for item in self.pending_deletes.iter() {
            let (k, v) = item?;
            let d: PendingDelete = decode(&k, &v)?;
            state.pending_deletes.insert(d.key(), d);
        }
        for item in self.rules.iter() {
            let (k, v) = item?;
            let r: RuleEntry = decode(&k, &v)?;
            state.rules.insert((r.kind.clone(), r.name.clone()), r);
        }
        for item in self.tombstones.iter() {
            let (k, v) = item?;
            let t: Tombstone = decode(&k, &v)?;
            state.tombstones.insert((t.table_id, t.seq), t);
        }
        if let Some(v) = self.db.get("next_table_id")? {
            let mut b = [0u8; 8];
            if v.len() == 8 {
                b.copy_from_slice(&v);
                state.next_table_id = state.next_table_id.max(u64::from_be_bytes(b));
            }
        }
        Ok(state)
    }

    fn write(&self, ops: &[CatalogOp]) -> Result<()> {
        fail::fail_point!("catalog-commit", |_| Err(Error::Task(
            "injected catalog commit failure".into()
        )));
        // Encode outside the transaction so encoding errors are plain errors.
        enum Put {
            Table(Vec<u8>, Vec<u8>),
            DelTable(Vec<u8>),
            File(Vec<u8>, Vec<u8>),
            DelFile(Vec<u8>),
            Archived(Vec<u8>, Vec<u8>),
            DelArchivedOf(TableId),
            Pending(Vec<u8>, Vec<u8>),
            DelPending(Vec<u8>),
            Rule(Vec<u8>, Vec<u8>),
            DelRule(Vec<u8>),
            Tombstone(Vec<u8>, Vec<u8>),
            DelTombstonesOf(TableId),
            NextId(u64),
        }
        let mut puts = Vec::new();
        for op in ops {
            match op {
                CatalogOp::PutTable(def) => {
                    puts.push(Put::Table(def.name.clone().into_bytes(), encode(def)?));
                    puts.push(Put::NextId(def.id.0 + 1));
                }
                CatalogOp::DropTable { def, files } => {
                    puts.push(Put::DelTable(def.name.clone().into_bytes()));
                    for f in files {
                        puts.push(Put::DelFile(file_key(f)));
                    }
                    puts.push(Put::DelArchivedOf(def.id));
                    puts.push(Put::DelTombstonesOf(def.id));
                }
                CatalogOp::AddTombstone(t) => {
                    puts.push(Put::Tombstone(tombstone_key(t.table_id, t.seq), encode(t)?))
                }
                CatalogOp::AddFile(f) | CatalogOp::UpdateFile(f) => {
                    puts.push(Put::File(file_key(f), encode(f)?))
                }
                CatalogOp::RemoveFile(f) => puts.push(Put::DelFile(file_key(f))),
                CatalogOp::PutArchived(a) => {
                    puts.push(Put::Archived(archived_key(a.table_id, a.month), encode(a)?))
                }
                CatalogOp::AddPendingDelete(d) => {
                    puts.push(Put::Pending(pending_key(d.place, &d.path), encode(d)?))
                }
                CatalogOp::RemovePendingDelete { place, path } => {
                    puts.push(Put::DelPending(pending_key(*place, path)))
                }
                CatalogOp::PutRule(r) => {
                    puts.push(Put::Rule(rule_key(&r.kind, &r.name), encode(r)?))
                }
                CatalogOp::DropRule { kind, name } => puts.push(Put::DelRule(rule_key(kind, name))),
            }
        }
        // Archive entries of a dropped table, found before the transaction (sled
        // transactions cannot scan).
        let mut dropped_archived = Vec::new();
        let mut dropped_tombstones = Vec::new();
        for p in &puts {
            if let Put::DelArchivedOf(table) = p {
                for item in self.archived.scan_prefix(format!("{:020}/", table.0)) {
                    dropped_archived.push(item?.0);
                }
            }
            if let Put::DelTombstonesOf(table) = p {
                for item in self.tombstones.scan_prefix(format!("{:020}/", table.0)) {
                    dropped_tombstones.push(item?.0);
                }
            }
        }
        let meta: &sled::Tree = &self.db;
        (
            &self.tables,
            &self.files,
            &self.archived,
            &self.pending_deletes,
            &self.rules,
            &self.tombstones,
            meta,
        )
            .transaction(
                |(tables, files, archived, pending, rules, tombstones, meta)| {
                    for k in &dropped_archived {
                        archived.remove(k)?;
                    }
                    for k in &dropped_tombstones {
                        tombstones.remove(k)?;
                    }
                    for p in &puts {
                        match p {
                            Put::Table(k, v) => {
                                tables.insert(k.as_slice(), v.as_slice())?;
                            }
                            Put::DelTable(k) => {
                                tables.remove(k.as_slice())?;
                            }
                            Put::File(k, v) => {
                                files.insert(k.as_slice(), v.as_slice())?;
                            }
                            Put::DelFile(k) => {
                                files.remove(k.as_slice())?;
                            }
                            Put::Archived(k, v) => {
                                archived.insert(k.as_slice(), v.as_slice())?;
                            }
                            Put::DelArchivedOf(_) => {}
                            Put::Pending(k, v) => {
                                pending.insert(k.as_slice(), v.as_slice())?;
                            }
                            Put::DelPending(k) => {
                                pending.remove(k.as_slice())?;
                            }
                            Put::Rule(k, v) => {
                                rules.insert(k.as_slice(), v.as_slice())?;
                            }
                            Put::DelRule(k) => {
                                rules.remove(k.as_slice())?;
                            }
                            Put::Tombstone(k, v) => {
                                tombstones.insert(k.as_slice(), v.as_slice())?;
                            }
                            Put::DelTombstonesOf(_) => {}
                            Put::NextId(n) => {
                                let cur = meta
                                    .get("next_table_id")?
                                    .filter(|v| v.len() == 8)
                                    .map(|v| {
                                        let mut b = [0u8; 8];
                                        b.copy_from_slice(&v);
                                        u64::from_be_bytes(b)
                                    })
                                    .unwrap_or(0);
                                meta.insert("next_table_id", &n.max(&cur).to_be_bytes())?;
                            }
                        }
                    }
                    Ok::<_, ConflictableTransactionError<()>>(())
                },
            )
            .map_err(|e| match e {
                TransactionError::Storage(e) => Error::Catalog(e),
                TransactionError::Abort(()) => Error::Task("catalog transaction aborted".into()),
            })?;
        Ok(())
    }

    fn sync(&self) -> Result<()> {
        fail::fail_point!("catalog-sync", |_| Err(Error::Task(
            "injected catalog fsync failure".into()
        )));
        self.db.flush()?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::Catalog;
    use crate::model::FieldType;
    use crate::model::schema::FieldDef;
    use crate::wal::WalSeq;

    /// The JSON of catalog entries is pinned: changing it needs a new entry format
    /// version (storage/FORMATS.md). A newer version is refused with the key named.
    #[test]
    fn entry_encoding_is_pinned() {
        let def = crate::catalog::test_samples::electric();
        let file = crate::catalog::test_samples::electric_file();
        let json = |bytes: Vec<u8>| serde_json::from_slice::<serde_json::Value>(&bytes).unwrap();
        assert_eq!(
            json(encode(&def).unwrap()),
            serde_json::json!({"v": 1, "id": 3, "name": "electric", "tags": ["pid"],
                "fields": [{"name": "ua", "type": "float"}]})
        );
        assert_eq!(
            json(encode(&file).unwrap()),
            serde_json::json!({"v": 1, "table_id": 3, "month": "2026-11",
                "path": "electric/month=2026-11/0001.parquet", "min_ts": 10, "max_ts": 20,
                "rows": 2, "bytes": 900, "max_seq": 7, "created_at_ms": 1})
        );
        let back: FileMeta = decode(b"k", &encode(&file).unwrap()).unwrap();
        assert_eq!(back, file);
        // A file with a full-text index lists it (an optional field of version 1).
        let mut indexed = file.clone();
        indexed.fulltext.push(crate::catalog::TextIndexObject {
            column: "msg".into(),
            analyzer: crate::fulltext::Analyzer::Chinese,
            path: "electric/month=2026-11/0001.3.0002.fts".into(),
            bytes: 77,
        });
        assert_eq!(
            json(encode(&indexed).unwrap()),
            serde_json::json!({"v": 1, "table_id": 3, "month": "2026-11",
                "path": "electric/month=2026-11/0001.parquet", "min_ts": 10, "max_ts": 20,
                "rows": 2, "bytes": 900, "max_seq": 7, "created_at_ms": 1,
                "fulltext": [{"column": "msg", "analyzer": "chinese",
                    "path": "electric/month=2026-11/0001.3.0002.fts", "bytes": 77}]})
        );
        let back: FileMeta = decode(b"k", &encode(&indexed).unwrap()).unwrap();
        assert_eq!(back, indexed);
        let newer = br#"{"v": 2}"#;
        let err = decode::<FileMeta>(b"3/x.parquet", newer)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("3/x.parquet") && err.contains("version 2"),
            "{err}"
        );
    }

    #[test]
    fn commits_survive_reopen_and_ids_are_not_reused() {
        let dir = tempfile::tempdir().unwrap();
        let mk = |id: TableId| {
            TableDef::new(
                id,
                "m",
                vec!["pid".into()],
                vec![FieldDef {
                    name: "p".into(),
                    field_type: FieldType::Float,
                }],
            )
        };
        {
            let cat = Catalog::open(Box::new(SledCatalogStore::open(dir.path()).unwrap())).unwrap();
            let (def, created) = cat.create_table("m", mk, false).unwrap();
            assert!(created);
            cat.commit(vec![CatalogOp::AddFile(FileMeta {
                table_id: def.id,
                month: Month::parse("2026-01").unwrap(),
                path: "m/month=2026-01/a.parquet".into(),
                min_ts: 1,
                max_ts: 2,
                rows: 2,
                bytes: 10,
                max_seq: WalSeq(5),
                created_at_ms: 0,
                deletes_applied: WalSeq(0),
                fulltext: Vec::new(),
            })])
            .unwrap();
            assert!(cat.create_table("m", mk, false).is_err());
            let files = cat.files(def.id);
            cat.commit(vec![CatalogOp::DropTable { def, files }])
                .unwrap();
        }
        let cat = Catalog::open(Box::new(SledCatalogStore::open(dir.path()).unwrap())).unwrap();
        assert!(cat.tables().is_empty());
        assert!(cat.all_files().is_empty());
        let (def, _) = cat.create_table("m", mk, false).unwrap();
        assert_eq!(def.id, TableId(2), "a dropped table's id is never reused");
    }

    #[test]
    fn rules_survive_reopen_and_the_manifest() {
        let dir = tempfile::tempdir().unwrap();
        let rule = |name: &str, v: i64| RuleEntry {
            kind: "alarm".into(),
            name: name.into(),
            body: serde_json::json!({ "table": "m", "v": v }),
        };
        {
            let cat = Catalog::open(Box::new(SledCatalogStore::open(dir.path()).unwrap())).unwrap();
            cat.commit(vec![
                CatalogOp::PutRule(rule("a", 1)),
                CatalogOp::PutRule(rule("b", 2)),
            ])
            .unwrap();
            cat.commit(vec![
                CatalogOp::PutRule(rule("a", 3)),
                CatalogOp::DropRule {
                    kind: "alarm".into(),
                    name: "b".into(),
                },
            ])
            .unwrap();
        }
        let cat = Catalog::open(Box::new(SledCatalogStore::open(dir.path()).unwrap())).unwrap();
        assert_eq!(cat.rules("alarm"), vec![rule("a", 3)]);
        assert!(cat.rules("channel").is_empty());
        let m = crate::catalog::manifest::Manifest::from_state(&cat.state(), 0);
        let back = crate::catalog::manifest::Manifest::decode(&m.encode().unwrap()).unwrap();
        assert_eq!(back.into_state().rules, cat.state().rules);
    }
}
