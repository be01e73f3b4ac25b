//! `system` views that other subsystems provide (e.g. the alarm runtime's
//! `system.alarm_state`): registered by name, built fresh on every query. Storage only
//! keeps the registry.

use std::sync::Arc;

use arrow::record_batch::RecordBatch;

use crate::error::Result;

use super::Storage;

/// A view's current rows.
pub trait ExtensionView: Send + Sync {
    fn batch(&self) -> Result<RecordBatch>;
}

impl Storage {
    /// Serve `system.<name>` from `view` (replacing one of the same name).
    pub fn register_view(&self, name: &str, view: Arc<dyn ExtensionView>) {
        self.inner
            .extension_views
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(name.to_string(), view);
    }

    pub fn extension_view(&self, name: &str) -> Option<Arc<dyn ExtensionView>> {
        self.inner
            .extension_views
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(name)
            .cloned()
    }

    pub fn extension_view_names(&self) -> Vec<String> {
        self.inner
            .extension_views
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .keys()
            .cloned()
            .collect()
    }
}
