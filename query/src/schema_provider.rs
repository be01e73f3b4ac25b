//! DataFusion schemas over the storage catalog: `public` holds the user tables (looked up
//! live, so tables created by SQL or by MQTT ingest appear at once); `system` holds the
//! read-only views of the storage state.

use std::sync::Arc;

use async_trait::async_trait;
use datafusion::catalog::{SchemaProvider, TableProvider};
use datafusion::error::{DataFusionError, Result as DfResult};
use wattdb_storage::Storage;

use crate::provider::WattTable;
use crate::system_tables;

pub struct UserTables {
    storage: Storage,
}

impl UserTables {
    pub fn new(storage: Storage) -> Self {
        UserTables { storage }
    }
}

impl std::fmt::Debug for UserTables {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("UserTables")
    }
}

#[async_trait]
impl SchemaProvider for UserTables {
    fn table_names(&self) -> Vec<String> {
        self.storage.tables().into_iter().map(|t| t.name).collect()
    }

    async fn table(&self, name: &str) -> DfResult<Option<Arc<dyn TableProvider>>> {
        Ok(self.storage.table(name).map(|def| {
            Arc::new(WattTable::new(self.storage.clone(), def)) as Arc<dyn TableProvider>
        }))
    }

    fn register_table(
        &self,
        name: String,
        _table: Arc<dyn TableProvider>,
    ) -> DfResult<Option<Arc<dyn TableProvider>>> {
        Err(DataFusionError::NotImplemented(format!(
            "cannot register \"{name}\" here: use CREATE TABLE ... PRIMARY KEY (tags..., ts)"
        )))
    }

    fn table_exist(&self, name: &str) -> bool {
        self.storage.table(name).is_some()
    }
}

pub struct SystemTables {
    storage: Storage,
}

impl SystemTables {
    pub fn new(storage: Storage) -> Self {
        SystemTables { storage }
    }
}

impl std::fmt::Debug for SystemTables {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SystemTables")
    }
}

#[async_trait]
impl SchemaProvider for SystemTables {
    fn table_names(&self) -> Vec<String> {
        let mut names: Vec<String> = system_tables::NAMES.iter().map(|s| s.to_string()).collect();
        names.extend(self.storage.extension_view_names());
        names
    }

    async fn table(&self, name: &str) -> DfResult<Option<Arc<dyn TableProvider>>> {
        system_tables::build(&self.storage, name)
    }

    fn table_exist(&self, name: &str) -> bool {
        system_tables::NAMES.contains(&name) || self.storage.extension_view(name).is_some()
    }
}
