//! Tables wattdb maintains itself (rollups): creating and growing them, writing to them
//! (users may only read them), and the rollup settings kept on raw tables.

use std::sync::Arc;

use crate::error::{Error, Result};
use crate::model::{RollupOf, RollupSettings, TableDef, ValidRow};

use super::{Storage, WriteOutcome};

impl Storage {
    /// Create the rollup table `name` (tags and fields as given, marked as summarising
    /// `rollup_of`, with `retention` as its initial retention), or append the fields it
    /// lacks. Fails if a user table of that name
    /// exists, or a rollup of another table.
    pub async fn ensure_rollup_table(
        &self,
        name: &str,
        tags: Vec<String>,
        fields: Vec<crate::model::schema::FieldDef>,
        rollup_of: RollupOf,
        retention: Option<String>,
    ) -> Result<Arc<TableDef>> {
        if let Some(cur) = self.shared_table(name) {
            let same_source = cur.rollup_of.as_ref() == Some(&rollup_of);
            let complete = fields.iter().all(|f| cur.fields.contains(f)) && cur.tags == tags;
            if same_source && complete {
                return Ok(cur);
            }
        }
        let name2 = name.to_string();
        let def = self
            .put_table(name, move |cur, new_id| match cur {
                None => {
                    let mut def = TableDef::new(new_id, &name2, tags, fields)?;
                    def.rollup_of = Some(rollup_of);
                    def.retention = retention;
                    Ok(def)
                }
                Some(cur) if cur.rollup_of.as_ref() != Some(&rollup_of) => {
                    Err(Error::InvalidTableDef {
                        table: name2,
                        reason: "a table of this name exists and is not this rollup; \
                                 rename or drop it"
                            .into(),
                    })
                }
                Some(cur) if cur.tags != tags => Err(Error::InvalidTableDef {
                    table: name2,
                    reason: format!(
                        "rollup has tags {:?} but its source has {:?}",
                        cur.tags, tags
                    ),
                }),
                Some(cur) => {
                    let mut grown = cur.clone();
                    for f in fields {
                        match grown.fields.iter().find(|g| g.name == f.name) {
                            None => grown.fields.push(f),
                            Some(g) if g.field_type == f.field_type => {}
                            Some(g) => {
                                return Err(Error::TypeConflict {
                                    table: name2,
                                    column: f.name.clone(),
                                    reason: format!(
                                        "rollup column is {} but would now be {}",
                                        g.field_type.sql_name(),
                                        f.field_type.sql_name()
                                    ),
                                });
                            }
                        }
                    }
                    Ok(grown)
                }
            })
            .await?;
        tracing::info!(table = %def.name, fields = def.fields.len(), "rollup table ready");
        Ok(def)
    }

    /// Write rows aligned to rollup table `def` (as [`Storage::ensure_rollup_table`]
    /// returned it; last write wins replaces a bucket's row). Only wattdb's own
    /// maintenance calls this; users' writes to rollup tables are refused.
    pub async fn write_rollup_rows(
        &self,
        def: &TableDef,
        rows: Vec<ValidRow>,
    ) -> Result<WriteOutcome> {
        if !def.is_rollup() {
            return Err(Error::InvalidTableDef {
                table: def.name.clone(),
                reason: "not a rollup table".into(),
            });
        }
        self.enqueue_valid(def, rows).await?.durable().await
    }

    /// Replace a raw table's rollup settings (intervals, counter fields).
    pub async fn set_rollup_settings(
        &self,
        table: &str,
        settings: RollupSettings,
    ) -> Result<TableDef> {
        self.update_table(table, move |cur| {
            if cur.is_rollup() {
                return Err(Error::InvalidTableDef {
                    table: cur.name.clone(),
                    reason: "rollup tables have no rollups of their own".into(),
                });
            }
            let mut def = cur.clone();
            def.rollups = settings;
            Ok(def)
        })
        .await
    }
}
