//! Planning a table scan: the read path itself (pruning, grouping overlapping sources,
//! the streaming last-write-wins merge) lives in `wattdb_storage::read`; this adapts a
//! DataFusion `scan()` call to it.

use std::sync::Arc;

use datafusion::catalog::Session;
use datafusion::common::Result as DfResult;
use datafusion::error::DataFusionError;
use datafusion::logical_expr::Expr;
use datafusion::physical_plan::ExecutionPlan;
use wattdb_storage::TableSnapshot;
use wattdb_storage::read::{ScanRequest, plan_scan as plan_storage_scan};

pub async fn plan_scan(
    state: &dyn Session,
    snapshot: &TableSnapshot,
    projection: Option<&Vec<usize>>,
    filters: &[Expr],
    limit: Option<usize>,
) -> DfResult<Arc<dyn ExecutionPlan>> {
    let request = ScanRequest {
        projection: projection.cloned(),
        filters: filters.to_vec(),
        limit,
        ordered: false,
    };
    plan_storage_scan(state, snapshot, &request)
}

pub(crate) fn ext(e: wattdb_storage::Error) -> DataFusionError {
    DataFusionError::External(Box::new(e))
}

#[cfg(test)]
mod tests {
    use datafusion::physical_plan::displayable;
    use datafusion::prelude::{SessionContext, col, lit};
    use datafusion::scalar::ScalarValue;
    use wattdb_storage::model::schema::FieldDef;
    use wattdb_storage::wal::WalSeq;
    use wattdb_storage::{FieldType, FileMeta, Month, TableDef, TableId};

    use super::*;

    fn file(month: &str, n: u32, min_ts: i64, max_ts: i64) -> FileMeta {
        FileMeta {
            table_id: TableId(1),
            month: Month::parse(month).unwrap(),
            path: format!("t/month={month}/f{n}.parquet"),
            min_ts,
            max_ts,
            rows: 10,
            bytes: 1000,
            max_seq: WalSeq(n as u64),
            created_at_ms: 0,
        }
    }

    fn ts(us: i64) -> Expr {
        lit(ScalarValue::TimestampMicrosecond(
            Some(us),
            Some("UTC".into()),
        ))
    }

    #[tokio::test]
    async fn months_and_files_outside_the_filter_are_not_scanned() {
        let def = TableDef::new(
            TableId(1),
            "t",
            vec!["pid".into()],
            vec![FieldDef {
                name: "v".into(),
                field_type: FieldType::Float,
            }],
        )
        .unwrap();
        let sep = Month::parse("2026-09").unwrap();
        let oct = Month::parse("2026-10").unwrap();
        let nov = Month::parse("2026-11").unwrap();
        let snapshot = TableSnapshot {
            def,
            files: vec![
                file("2026-09", 1, sep.start_micros(), sep.end_micros() - 1),
                file("2026-10", 2, oct.start_micros(), oct.start_micros() + 1000),
                file(
                    "2026-10",
                    3,
                    oct.start_micros() + 5000,
                    oct.end_micros() - 1,
                ),
                file("2026-11", 4, nov.start_micros(), nov.end_micros() - 1),
            ],
            buffered: vec![],
        };
        let ctx = SessionContext::new();
        let filters = vec![
            col("ts").gt_eq(ts(oct.start_micros() + 4000)),
            col("ts").lt(ts(nov.start_micros())),
        ];
        let plan = plan_scan(&ctx.state(), &snapshot, None, &filters, None)
            .await
            .unwrap();
        let shown = displayable(plan.as_ref()).indent(true).to_string();
        assert!(shown.contains("f3.parquet"), "{shown}");
        for pruned in ["f1.parquet", "f2.parquet", "f4.parquet"] {
            assert!(
                !shown.contains(pruned),
                "{pruned} should be pruned:\n{shown}"
            );
        }
        // No filter: every file, and none merged (no overlaps).
        let plan = plan_scan(&ctx.state(), &snapshot, None, &[], None)
            .await
            .unwrap();
        let shown = displayable(plan.as_ref()).indent(true).to_string();
        for f in ["f1", "f2", "f3", "f4"] {
            assert!(shown.contains(f), "{shown}");
        }
        assert!(!shown.contains("LastWriteWinsExec"), "{shown}");
    }
}
