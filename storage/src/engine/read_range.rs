//! Reading deduplicated raw rows of a time range (optionally of some series only) from
//! the buffer and the files, outside SQL: what background work (rollups) recomputes
//! from. The answer equals what a query over the table would return for that range.

use std::collections::HashSet;
use std::sync::Arc;

use arrow::array::{Array, BooleanArray, StringArray, TimestampMicrosecondArray};
use arrow::record_batch::RecordBatch;

use datafusion::prelude::{col, lit};
use datafusion::scalar::ScalarValue;
use futures::StreamExt;

use crate::error::{Error, Result};
use crate::model::TableDef;
use crate::model::schema::TS_COLUMN;
use crate::read::{ScanRequest, ordered_stream};

use super::Storage;

/// A set of series, each named by its tag values in the table's tag order.
#[derive(Debug, Clone, Default)]
pub struct SeriesSet {
    keys: HashSet<String>,
}

/// Separates tag values in a series key; cannot occur in valid UTF-8 tag text a device
/// sends in practice, and a collision would only widen a read, never narrow it.
const SEP: char = '\u{1f}';

impl SeriesSet {
    pub fn insert(&mut self, tags: &[String]) {
        self.keys.insert(tags.join(&SEP.to_string()));
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    fn contains_row(&self, tags: &[&StringArray], row: usize, buf: &mut String) -> bool {
        buf.clear();
        for (i, t) in tags.iter().enumerate() {
            if i > 0 {
                buf.push(SEP);
            }
            buf.push_str(t.value(row));
        }
        self.keys.contains(buf.as_str())
    }
}

/// Keep rows with `lo <= ts < hi` (and, with `series`, of those series only).
fn selector(
    def: &TableDef,
    lo: i64,
    hi: i64,
    series: Option<Arc<SeriesSet>>,
) -> impl Fn(&RecordBatch) -> Result<BooleanArray> {
    let n_tags = def.tags.len();
    move |batch: &RecordBatch| {
        let ts = batch
            .column(0)
            .as_any()
            .downcast_ref::<TimestampMicrosecondArray>()
            .ok_or_else(|| Error::Task("ts column is not a microsecond timestamp".into()))?;
        let tags: Vec<&StringArray> = (1..=n_tags)
            .map(|i| batch.column(i).as_any().downcast_ref::<StringArray>())
            .collect::<Option<_>>()
            .ok_or_else(|| Error::Task("tag column is not text".into()))?;
        // Time first, in a tight loop over the values; the series lookup (string
        // hashing) only for rows in range — usually a small part of the buffer.
        let values = ts.values();
        let mut keep: Vec<bool> = values.iter().map(|&t| t >= lo && t < hi).collect();
        if let Some(series) = &series {
            let mut buf = String::new();
            for (r, k) in keep.iter_mut().enumerate() {
                if *k {
                    *k = series.contains_row(&tags, r, &mut buf);
                }
            }
        }
        Ok(BooleanArray::from(keep))
    }
}

impl Storage {
    /// Deduplicated rows of `table` with `lo <= ts < hi` (of `series` only, when given),
    /// sorted by tags then `ts`, in the table's current layout. `None` if the table does
    /// not exist. Read through the same streaming merge as queries.
    pub async fn read_range(
        &self,
        table: &str,
        lo: i64,
        hi: i64,
        series: Option<Arc<SeriesSet>>,
    ) -> Result<Option<RecordBatch>> {
        let snapshot = match self.snapshot(table) {
            Ok(s) => s,
            Err(Error::TableNotFound { .. }) => return Ok(None),
            Err(e) => return Err(e),
        };
        let def = &snapshot.def;
        let schema = def.arrow_schema();
        let select = selector(def, lo, hi, series);
        let micros = |v: i64| {
            lit(ScalarValue::TimestampMicrosecond(
                Some(v),
                Some("UTC".into()),
            ))
        };
        let mut filters = Vec::new();
        if lo > i64::MIN {
            filters.push(col(TS_COLUMN).gt_eq(micros(lo)));
        }
        if hi < i64::MAX {
            filters.push(col(TS_COLUMN).lt(micros(hi)));
        }
        let request = ScanRequest {
            filters,
            ordered: true,
            small_files: None,
            text_hits: None,
            ..Default::default()
        };
        let mut stream = ordered_stream(&self.inner.read_session, &snapshot, &request)?;
        let mut batches = Vec::new();
        while let Some(batch) = stream.next().await {
            let batch = batch.map_err(Error::read(table))?;
            let kept = arrow::compute::filter_record_batch(&batch, &select(&batch)?)
                .map_err(Error::arrow("filtering rows read"))?;
            if kept.num_rows() > 0 {
                batches.push(kept);
            }
        }
        let merged = arrow::compute::concat_batches(&schema, &batches)
            .map_err(Error::arrow("gathering rows read"))?;
        Ok(Some(merged))
    }
}
