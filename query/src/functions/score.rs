//! `score(column, 'query')`: how relevant a row's text is to a full-text query (the
//! language of `matches()`), for `ORDER BY score(msg, '通讯超时') DESC LIMIT 20`.
//! Okapi BM25 with the term statistics of the column's indexes over the whole table
//! (see `wattdb_storage::fulltext::relevance`); 0 for a row that does not match, NULL
//! for NULL text. On a text column that is not full-text there are no statistics, and
//! every word weighs the same (scores then rank by how often and how densely the words
//! occur). The query must be a constant.
//!
//! An asynchronous function (DataFusion's `AsyncScalarUDFImpl`): the statistics come
//! from index objects that may have to be fetched from the object store. They are
//! remembered per (table, column, query) for as long as the table's set of indexes
//! stays the same.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::{Arc, Mutex};

use arrow::array::Float64Builder;
use arrow::datatypes::{DataType, FieldRef};
use async_trait::async_trait;
use datafusion::common::{Result, ScalarValue};
use datafusion::logical_expr::async_udf::AsyncScalarUDFImpl;
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDFImpl, Signature, Volatility,
};
use wattdb_storage::Storage;
use wattdb_storage::fulltext::relevance::scored_terms;
use wattdb_storage::fulltext::{
    Analyzer, COLUMN_METADATA_KEY, CorpusStats, FullTextQuery, TABLE_METADATA_KEY,
};

use super::matches::{column_analyzer, invalid, over_texts, query_text, text_and_query};

/// Statistics kept for this many (table, column, query) at most.
const REMEMBERED: usize = 256;

pub struct Score {
    signature: Signature,
    storage: Storage,
    remembered: Mutex<HashMap<StatsKey, Remembered>>,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct StatsKey {
    table: String,
    column: String,
    analyzer: Analyzer,
    query: String,
}

struct Remembered {
    /// The index objects the statistics were summed over.
    indexes: Vec<String>,
    stats: Arc<CorpusStats>,
}

impl Score {
    pub fn new(storage: Storage) -> Self {
        Score {
            // Stable: the same row and statistics give the same score.
            signature: text_and_query(Volatility::Stable),
            storage,
            remembered: Mutex::new(HashMap::new()),
        }
    }

    /// The statistics of the full-text column `field` for `query` (empty for a column
    /// that is not full-text).
    async fn stats(&self, field: Option<&FieldRef>, query: &FullTextQuery) -> Arc<CorpusStats> {
        let meta = field.map(|f| f.metadata());
        let (Some(table), Some(column)) = (
            meta.and_then(|m| m.get(TABLE_METADATA_KEY)),
            meta.and_then(|m| m.get(COLUMN_METADATA_KEY)),
        ) else {
            return Arc::new(CorpusStats::default());
        };
        let Ok(objects) = self
            .storage
            .text_index_objects(table, column, query.analyzer)
        else {
            // The table went away under the query: nothing to weigh by.
            return Arc::new(CorpusStats::default());
        };
        let indexes: Vec<String> = objects.iter().map(|o| o.path.clone()).collect();
        let key = StatsKey {
            table: table.clone(),
            column: column.clone(),
            analyzer: query.analyzer,
            query: query.text.clone(),
        };
        if let Some(r) = self.lock().get(&key)
            && r.indexes == indexes
        {
            return r.stats.clone();
        }
        let stats = Arc::new(
            self.storage
                .corpus_stats(&objects, &scored_terms(&query.root))
                .await,
        );
        let mut remembered = self.lock();
        if remembered.len() >= REMEMBERED {
            remembered.clear();
        }
        remembered.insert(
            key,
            Remembered {
                indexes,
                stats: stats.clone(),
            },
        );
        stats
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<StatsKey, Remembered>> {
        self.remembered.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl std::fmt::Debug for Score {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Score").finish_non_exhaustive()
    }
}

impl PartialEq for Score {
    fn eq(&self, other: &Self) -> bool {
        self.signature == other.signature
    }
}

impl Eq for Score {}

impl Hash for Score {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.signature.hash(state);
    }
}

impl ScalarUDFImpl for Score {
    fn name(&self) -> &str {
        "score"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(DataType::Float64)
    }

    fn invoke_with_args(&self, _args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        // Planned as an asynchronous function, so never called.
        Err(invalid(
            "score() is evaluated asynchronously and cannot be used here".into(),
        ))
    }
}

#[async_trait]
impl AsyncScalarUDFImpl for Score {
    async fn invoke_async_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let [values, query] = args.args.as_slice() else {
            return Err(invalid(
                "score() takes a text column and a query: score(msg, '通讯超时 AND 网关7')".into(),
            ));
        };
        let Some(text) = query_text("score", query)? else {
            return Ok(ColumnarValue::Scalar(ScalarValue::Float64(None)));
        };
        let field = args.arg_fields.first();
        let analyzer = column_analyzer("score", field)?;
        let query = FullTextQuery::new(&text, analyzer).map_err(|e| invalid(e.to_string()))?;
        let stats = self.stats(field, &query).await;
        let mut matcher = query.matcher();
        over_texts("score", values, |texts| {
            let mut out = Float64Builder::with_capacity(texts.len());
            for v in texts {
                out.append_option(v.map(|v| matcher.score(v, &stats)));
            }
            Arc::new(out.finish())
        })
    }
}
