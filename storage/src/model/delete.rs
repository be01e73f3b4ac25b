//! What a `DELETE` removes: a predicate over a table's key (tags and `ts`), and the
//! tombstone that applies it to everything written before it.
//!
//! Predicates may only name key columns: every version of a key agrees on them, so a
//! tombstone can drop matching rows from each source before last-write-wins merging and
//! still remove exactly the keys that were visible (a condition on a field could drop a
//! newer version and let an older one through).

use std::sync::Arc;

use arrow::array::{Array, BooleanArray};
use arrow::record_batch::RecordBatch;
use datafusion::common::{DFSchema, ScalarValue};
use datafusion::logical_expr::{Expr, col, lit};
use datafusion::physical_expr::{PhysicalExpr, create_physical_expr};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::model::schema::{TS_COLUMN, TS_TIMEZONE};
use crate::model::{TableDef, TableId};
use crate::wal::WalSeq;

/// A condition on one tag: its value is (or, `negated`, is not) one of `values`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TagCondition {
    pub tag: String,
    pub values: Vec<String>,
    pub negated: bool,
}

/// Rows with `ts_from <= ts < ts_to` (bounds absent: unbounded) whose tags meet every
/// condition. No bounds and no conditions: every row.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct DeletePredicate {
    pub ts_from: Option<i64>,
    pub ts_to: Option<i64>,
    pub tags: Vec<TagCondition>,
}

impl DeletePredicate {
    /// Refuse conditions on columns that are not tags of `def`.
    pub fn check(&self, def: &TableDef) -> Result<()> {
        for c in &self.tags {
            if !def.tags.contains(&c.tag) {
                return Err(Error::InvalidDelete {
                    table: def.name.clone(),
                    reason: format!("{} is not a tag of the table", c.tag),
                });
            }
        }
        Ok(())
    }

    /// Can a row with `ts` in `[min, max]` match?
    pub fn overlaps(&self, min: i64, max: i64) -> bool {
        self.ts_from.is_none_or(|f| max >= f) && self.ts_to.is_none_or(|t| min < t)
    }

    /// Does a row of this series at `ts` match? (`tags` in the table's tag order.)
    pub fn matches(&self, def: &TableDef, tags: &[String], ts: i64) -> bool {
        self.overlaps(ts, ts) && self.matches_tags(def, tags)
    }

    /// Do this series' tags meet the tag conditions?
    pub fn matches_tags(&self, def: &TableDef, tags: &[String]) -> bool {
        self.tags.iter().all(|c| {
            let Some(i) = def.tags.iter().position(|t| *t == c.tag) else {
                return false;
            };
            let found = tags.get(i).is_some_and(|v| c.values.contains(v));
            found != c.negated
        })
    }

    /// The predicate as a DataFusion expression over the table's columns.
    pub fn to_expr(&self) -> Expr {
        let micros = |v: i64| {
            lit(ScalarValue::TimestampMicrosecond(
                Some(v),
                Some(TS_TIMEZONE.into()),
            ))
        };
        let mut parts = Vec::new();
        if let Some(f) = self.ts_from {
            parts.push(col(TS_COLUMN).gt_eq(micros(f)));
        }
        if let Some(t) = self.ts_to {
            parts.push(col(TS_COLUMN).lt(micros(t)));
        }
        for c in &self.tags {
            let list = c.values.iter().map(|v| lit(v.as_str())).collect();
            parts.push(col(c.tag.as_str()).in_list(list, c.negated));
        }
        datafusion::logical_expr::utils::conjunction(parts).unwrap_or(lit(true))
    }
}

/// A durable `DELETE`: rows of `table` matching any of `predicates` and written before
/// `seq` (the position of the delete in the WAL) are gone. It applies to a Parquet file
/// whose rows all predate it (`max_seq < seq`) and that has not had it applied yet
/// (`deletes_applied < seq`, set by compaction); buffered rows are removed when the
/// delete is logged.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tombstone {
    pub table_id: TableId,
    pub seq: WalSeq,
    pub predicates: Vec<DeletePredicate>,
}

impl Tombstone {
    /// Does it apply to a file with these sequence numbers and time range?
    pub fn applies_to(&self, max_seq: WalSeq, deletes_applied: WalSeq, min: i64, max: i64) -> bool {
        self.seq > max_seq
            && self.seq > deletes_applied
            && self.predicates.iter().any(|p| p.overlaps(min, max))
    }

    /// The rows it removes, as an expression over the table's columns.
    pub fn to_expr(&self) -> Expr {
        self.predicates
            .iter()
            .map(DeletePredicate::to_expr)
            .reduce(Expr::or)
            .unwrap_or(lit(false))
    }
}

/// The expression keeping rows that none of `tombstones` removes.
pub fn survivors_expr<'a>(tombstones: impl IntoIterator<Item = &'a Tombstone>) -> Option<Expr> {
    tombstones
        .into_iter()
        .map(Tombstone::to_expr)
        .reduce(Expr::or)
        .map(|removed| Expr::Not(Box::new(removed)))
}

/// `tombstones` compiled against a batch schema, to drop the rows they remove.
pub struct CompiledDelete {
    keep: Arc<dyn PhysicalExpr>,
}

impl CompiledDelete {
    pub fn new(
        schema: &arrow::datatypes::Schema,
        tombstones: &[&Tombstone],
    ) -> Result<Option<Self>> {
        let Some(keep) = survivors_expr(tombstones.iter().copied()) else {
            return Ok(None);
        };
        let df_schema =
            DFSchema::try_from(schema.clone()).map_err(|e| Error::Task(format!("DELETE: {e}")))?;
        let keep =
            create_physical_expr(&keep, &df_schema, &Default::default(), &Default::default())
                .map_err(|e| Error::Task(format!("DELETE: {e}")))?;
        Ok(Some(CompiledDelete { keep }))
    }

    /// Which rows of `batch` survive.
    pub fn keep_mask(&self, batch: &RecordBatch) -> Result<BooleanArray> {
        let value = self
            .keep
            .evaluate(batch)
            .and_then(|v| v.into_array(batch.num_rows()))
            .map_err(|e| Error::Task(format!("DELETE: {e}")))?;
        let mask = value
            .as_any()
            .downcast_ref::<BooleanArray>()
            .ok_or_else(|| Error::Task("DELETE: the predicate is not boolean".into()))?;
        // Key columns are never NULL; a NULL would mean "unknown": keep the row.
        Ok(mask.iter().map(|v| Some(v.unwrap_or(true))).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::schema::FieldDef;
    use crate::model::{FieldType, ValidRow};

    fn def() -> TableDef {
        TableDef::new(
            TableId(1),
            "t",
            vec!["meter".into(), "phase".into()],
            vec![FieldDef {
                name: "v".into(),
                field_type: FieldType::Float,
            }],
        )
        .unwrap()
    }

    fn batch(rows: &[(&str, &str, i64)]) -> RecordBatch {
        let def = def();
        let rows: Vec<ValidRow> = rows
            .iter()
            .map(|(m, p, ts)| ValidRow {
                ts: *ts,
                tags: vec![m.to_string(), p.to_string()],
                fields: vec![Some(crate::model::FieldValue::Float(1.0))],
            })
            .collect();
        crate::batch::rows_to_batch(&def, rows.iter()).unwrap()
    }

    /// The compiled expression and the row-by-row definition agree.
    #[test]
    fn mask_agrees_with_matches() {
        let def = def();
        let rows = [
            ("a", "1", 5),
            ("a", "2", 10),
            ("b", "1", 10),
            ("c", "3", 15),
            ("a", "1", 20),
        ];
        let preds = [
            DeletePredicate {
                ts_from: Some(10),
                ts_to: Some(20),
                tags: vec![],
            },
            DeletePredicate {
                ts_from: None,
                ts_to: None,
                tags: vec![TagCondition {
                    tag: "meter".into(),
                    values: vec!["a".into(), "c".into()],
                    negated: false,
                }],
            },
            DeletePredicate {
                ts_from: Some(6),
                ts_to: None,
                tags: vec![
                    TagCondition {
                        tag: "meter".into(),
                        values: vec!["a".into()],
                        negated: true,
                    },
                    TagCondition {
                        tag: "phase".into(),
                        values: vec!["1".into(), "3".into()],
                        negated: false,
                    },
                ],
            },
        ];
        let b = batch(&rows);
        for p in &preds {
            let t = Tombstone {
                table_id: TableId(1),
                seq: WalSeq(9),
                predicates: vec![p.clone()],
            };
            let compiled = CompiledDelete::new(&b.schema(), &[&t]).unwrap().unwrap();
            let mask = compiled.keep_mask(&b).unwrap();
            for (i, (m, ph, ts)) in rows.iter().enumerate() {
                let gone = p.matches(&def, &[m.to_string(), ph.to_string()], *ts);
                assert_eq!(mask.value(i), !gone, "{p:?} row {i}");
            }
        }
    }

    #[test]
    fn applies_only_to_older_files_in_range() {
        let t = Tombstone {
            table_id: TableId(1),
            seq: WalSeq(10),
            predicates: vec![DeletePredicate {
                ts_from: Some(100),
                ts_to: Some(200),
                tags: vec![],
            }],
        };
        assert!(t.applies_to(WalSeq(9), WalSeq(0), 150, 300));
        assert!(!t.applies_to(WalSeq(11), WalSeq(0), 150, 300), "newer file");
        assert!(
            !t.applies_to(WalSeq(9), WalSeq(10), 150, 300),
            "applied by compaction"
        );
        assert!(
            !t.applies_to(WalSeq(9), WalSeq(0), 200, 300),
            "after the range"
        );
        assert!(
            !t.applies_to(WalSeq(9), WalSeq(0), 0, 99),
            "before the range"
        );
    }
}
