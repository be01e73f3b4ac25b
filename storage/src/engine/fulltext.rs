//! Declaring full-text columns on a table.

use super::Storage;
use crate::error::{Error, Result};
use crate::fulltext::Analyzer;
use crate::model::TableDef;

impl Storage {
    /// Make text field `column` of `table` searchable with `matches()` using `analyzer`,
    /// or stop that (`None`). The table's definition carries the setting (and its
    /// schema the analyzer, for `matches()`).
    pub async fn set_fulltext(
        &self,
        table: &str,
        column: &str,
        analyzer: Option<Analyzer>,
    ) -> Result<TableDef> {
        let column = column.to_string();
        self.update_table(table, move |cur| {
            if cur.is_rollup() {
                return Err(Error::InvalidTableDef {
                    table: cur.name.clone(),
                    reason: "a rollup table has no text to search".into(),
                });
            }
            let mut def = cur.clone();
            match analyzer {
                Some(a) => {
                    def.fulltext.insert(column, a);
                }
                None => {
                    def.fulltext.remove(&column);
                }
            }
            def.validated()
        })
        .await
    }
}
