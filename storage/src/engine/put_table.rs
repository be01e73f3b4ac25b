//! Creating or changing one table definition in one catalog commit. Every path that
//! does so — tables created or grown by writes, rollup tables, settings changed by SQL,
//! retention marking months expired — goes through [`Storage::put_table`].

use std::sync::Arc;

use crate::catalog::CatalogOp;
use crate::error::{Error, Result};
use crate::model::{TableDef, TableId};

use super::Storage;

impl Storage {
    /// Create or change table `name`: `decide` gets its current definition (`None`: no
    /// such table) and the id a new table would get, under the catalog's commit lock,
    /// and returns the definition the table should have. It is validated and stored
    /// unless unchanged; then the manifest is rewritten.
    pub(crate) async fn put_table(
        &self,
        name: &str,
        decide: impl FnOnce(Option<&TableDef>, TableId) -> Result<TableDef> + Send + 'static,
    ) -> Result<Arc<TableDef>> {
        let catalog = self.inner.catalog.clone();
        let name2 = name.to_string();
        let (def, changed) = tokio::task::spawn_blocking(move || -> Result<(TableDef, bool)> {
            let mut result = None;
            catalog.commit_checked(|state| {
                let cur = state.tables.get(&name2).map(|t| &**t);
                let def = decide(cur, TableId(state.next_table_id.max(1)))?;
                if cur == Some(&def) {
                    result = Some((def, false));
                    return Ok(vec![]);
                }
                let def = def.validated()?;
                result = Some((def.clone(), true));
                Ok(vec![CatalogOp::PutTable(def)])
            })?;
            result.ok_or_else(|| Error::Task(format!("changing table {name2} produced nothing")))
        })
        .await??;
        if changed {
            self.write_manifest().await;
        }
        Ok(Arc::new(def))
    }

    /// Change an existing table's definition (see [`Storage::put_table`]).
    pub(crate) async fn update_table(
        &self,
        table: &str,
        change: impl FnOnce(&TableDef) -> Result<TableDef> + Send + 'static,
    ) -> Result<TableDef> {
        let table2 = table.to_string();
        let def = self
            .put_table(table, move |cur, _| match cur {
                Some(cur) => change(cur),
                None => Err(Error::TableNotFound { table: table2 }),
            })
            .await?;
        Ok((*def).clone())
    }
}
