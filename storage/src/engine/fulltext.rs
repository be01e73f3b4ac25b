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
        .inspect(|_| self.inner.text_index_state.wake())
    }
}

impl Storage {
    /// What the full-text indexes of `snapshot`'s files say about the `matches()`
    /// filters among `filters` (`None` when there is none an index could answer).
    pub async fn text_hits(
        &self,
        snapshot: &crate::engine::TableSnapshot,
        filters: &[datafusion::logical_expr::Expr],
    ) -> Option<std::sync::Arc<crate::read::TextHits>> {
        let range = crate::read::TimeRange::from_filters(filters);
        let hits = crate::read::text_hits::text_hits(
            &self.inner.store,
            &self.inner.text_indexes,
            &self.inner.metrics,
            snapshot,
            filters,
            |f| range.overlaps(f.min_ts, f.max_ts),
        )
        .await?;
        if !hits.unusable.is_empty() {
            self.inner
                .text_index_state
                .report_damaged(hits.unusable.iter().cloned());
        }
        Some(std::sync::Arc::new(hits))
    }
}
