//! Declaring full-text columns on a table; what their indexes say about a scan's
//! `matches()` filters and about term weights for `score()`.

use super::Storage;
use crate::catalog::TextIndexObject;
use crate::error::{Error, Result};
use crate::fulltext::{Analyzer, CorpusStats};
use crate::model::TableDef;
use futures::StreamExt;

/// Index statistics gathered at a time for `score()`.
const CONCURRENT_STATS: usize = 8;

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
    /// Overlapping files are narrowed to the keys that can match by reading their key
    /// columns through `metadata_cache` (the query's footer cache); without it they
    /// are merged whole.
    pub async fn text_hits(
        &self,
        snapshot: &crate::engine::TableSnapshot,
        filters: &[datafusion::logical_expr::Expr],
        metadata_cache: Option<
            std::sync::Arc<datafusion::execution::cache::cache_manager::FileMetadataCache>,
        >,
    ) -> Option<std::sync::Arc<crate::read::TextHits>> {
        let readers =
            metadata_cache.map(|cache| crate::read::parquet_readers(&self.inner.store, cache));
        let hits = crate::read::text_hits::text_hits(
            crate::read::LookupContext {
                store: &self.inner.store,
                cache: &self.inner.text_indexes,
                metrics: &self.inner.metrics,
                readers: readers
                    .as_ref()
                    .map(|r| r as &dyn datafusion::datasource::physical_plan::parquet::ParquetFileReaderFactory),
            },
            snapshot,
            filters,
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

impl Storage {
    /// The indexes of `table`'s files for `column` built with `analyzer` (every month):
    /// the corpus `score()` weighs terms by.
    pub fn text_index_objects(
        &self,
        table: &str,
        column: &str,
        analyzer: Analyzer,
    ) -> Result<Vec<TextIndexObject>> {
        // From the catalog alone: the buffer's lock (which a snapshot takes) is the
        // write path's, and this runs for every batch score() sees.
        let catalog = &self.inner.catalog;
        let def = catalog
            .shared_table(table)
            .ok_or_else(|| Error::TableNotFound {
                table: table.into(),
            })?;
        Ok(catalog
            .files(def.id)
            .iter()
            .filter_map(|f| f.text_index(column, analyzer).cloned())
            .collect())
    }

    /// BM25 counts for `terms` summed over `indexes` (see [`Self::text_index_objects`]).
    /// An index that cannot be read is left out, logged, and reported for rebuilding.
    pub async fn corpus_stats(&self, indexes: &[TextIndexObject], terms: &[String]) -> CorpusStats {
        // Several indexes at a time: the first score() of a query may have to fetch
        // every index of the column from the object store.
        // Owned inputs: this runs inside `async_trait` futures, where closures over
        // borrowed items trip the compiler's higher-ranked lifetime checks.
        let lookups = indexes.iter().cloned().map(|obj| {
            let storage = self.clone();
            let terms = terms.to_vec();
            async move {
                let inner = &storage.inner;
                let counted = inner
                    .text_indexes
                    .with_index(&inner.store, &obj, move |ix| ix.stats(&terms))
                    .await;
                (obj, counted)
            }
        });
        let counts: Vec<(TextIndexObject, Result<CorpusStats>)> = futures::stream::iter(lookups)
            .buffer_unordered(CONCURRENT_STATS)
            .collect()
            .await;
        let mut total = CorpusStats::default();
        let mut unusable = Vec::new();
        for (obj, counted) in counts {
            match counted {
                Ok(s) => total.add(&s),
                Err(e) => {
                    self.inner.text_indexes.unusable(
                        &self.inner.metrics,
                        &obj,
                        &e,
                        "score() leaves its counts out",
                    );
                    unusable.push(obj.path);
                }
            }
        }
        if !unusable.is_empty() {
            self.inner.text_index_state.report_damaged(unusable);
        }
        total
    }
}
