//! `wattdb recover`: rebuild a node's local catalog from the manifest in the object store.

use std::path::Path;

use object_store::ObjectStoreExt;
use object_store::path::Path as ObjectPath;

use crate::catalog::manifest::MANIFEST_PATH;
use crate::catalog::{CatalogOp, Manifest, SledCatalogStore};
use crate::error::{Error, Result};
use crate::model::TableDef;
use crate::object_store_url::ObjectStoreLocation;

use super::StorageConfig;

/// Rebuild the local catalog of `data_dir` from the manifest in the object store alone.
/// Refuses to overwrite an existing catalog.
pub async fn recover_catalog(data_dir: &Path, location: &ObjectStoreLocation) -> Result<Manifest> {
    let config = StorageConfig {
        object_store: location.clone(),
        ..StorageConfig::new(data_dir)
    };
    let catalog_dir = config.catalog_dir();
    if catalog_dir.exists() {
        return Err(Error::Io {
            path: catalog_dir,
            source: std::io::Error::new(
                std::io::ErrorKind::AlreadyExists,
                "a catalog already exists here; move it away before recovering",
            ),
        });
    }
    let store = location.open()?;
    let bytes = store
        .get(&ObjectPath::from(MANIFEST_PATH))
        .await
        .map_err(Error::object_store(MANIFEST_PATH))?
        .bytes()
        .await
        .map_err(Error::object_store(MANIFEST_PATH))?;
    let manifest = Manifest::decode(&bytes)?;
    let m2 = manifest.clone();
    tokio::task::spawn_blocking(move || -> Result<()> {
        std::fs::create_dir_all(&config.data_dir).map_err(|source| Error::Io {
            path: config.data_dir.clone(),
            source,
        })?;
        let store = SledCatalogStore::open(&catalog_dir)?;
        let mut ops: Vec<CatalogOp> = m2
            .tables
            .iter()
            .cloned()
            .map(|t| CatalogOp::PutTable(flag_rollups_for_rebuild(t, &m2.tables)))
            .collect();
        ops.extend(m2.files.iter().cloned().map(CatalogOp::AddFile));
        ops.extend(m2.archived.iter().cloned().map(CatalogOp::PutArchived));
        ops.extend(m2.rules.iter().cloned().map(CatalogOp::PutRule));
        ops.extend(m2.tombstones.iter().cloned().map(CatalogOp::AddTombstone));
        ops.extend(
            m2.pending_deletes
                .iter()
                .cloned()
                .map(CatalogOp::AddPendingDelete),
        );
        use crate::catalog::CatalogStore;
        store.write(&ops)?;
        store.sync()
    })
    .await??;
    Ok(manifest)
}

/// Which rollup buckets still have to be recomputed (the rollup marks) is kept in local
/// files that a recovered node does not have, so its rollup tables may lag the raw rows
/// they summarise. A table that has rollup tables is therefore flagged as rebuilding:
/// queries read its raw rows until the server, at its first start, has rebuilt them.
fn flag_rollups_for_rebuild(mut table: TableDef, all: &[TableDef]) -> TableDef {
    let has_rollups = all
        .iter()
        .any(|t| t.rollup_of.as_ref().is_some_and(|r| r.source == table.id));
    if has_rollups {
        table.rollups.rebuilding = true;
    }
    table
}
