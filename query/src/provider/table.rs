//! [`WattTable`]: one wattdb table as a DataFusion [`TableProvider`].

use std::sync::Arc;
use wattdb_storage::read::text_hits::is_text_filter;

use arrow::datatypes::SchemaRef;
use async_trait::async_trait;
use datafusion::catalog::Session;
use datafusion::common::{Constraint, Constraints, Result as DfResult};
use datafusion::datasource::sink::DataSinkExec;
use datafusion::datasource::{TableProvider, TableType};
use datafusion::logical_expr::dml::InsertOp;
use datafusion::logical_expr::{Expr, TableProviderFilterPushDown};
use datafusion::physical_plan::ExecutionPlan;
use wattdb_storage::read::{ScanRequest, plan_scan};
use wattdb_storage::{Storage, TableDef, TableSnapshot};

use super::StorageHandle;
use super::insert::InsertSink;

#[derive(Debug)]
pub struct WattTable {
    storage: StorageHandle,
    def: TableDef,
    schema: SchemaRef,
    constraints: Constraints,
    /// Scan this snapshot instead of taking one (a rewritten query's consistent view).
    pinned: Option<Arc<TableSnapshot>>,
    /// Only files and buffered partitions overlapping these `[start, end)` ranges.
    only_ranges: Option<Vec<(i64, i64)>>,
}

impl WattTable {
    pub fn def(&self) -> &TableDef {
        &self.def
    }

    pub fn new(storage: Storage, def: TableDef) -> Self {
        let schema = def.arrow_schema();
        // Primary key: tags then ts (column indexes in the schema).
        let mut pk: Vec<usize> = (1..def.key_len()).collect();
        pk.push(0);
        WattTable {
            storage: StorageHandle(storage),
            def,
            schema,
            constraints: Constraints::new_unverified(vec![Constraint::PrimaryKey(pk)]),
            pinned: None,
            only_ranges: None,
        }
    }

    /// A table that scans `snapshot` (taken earlier) rather than the current state,
    /// skipping files and buffered partitions outside `only_ranges` when given.
    pub fn pinned(
        storage: Storage,
        def: TableDef,
        snapshot: Arc<TableSnapshot>,
        only_ranges: Option<Vec<(i64, i64)>>,
    ) -> Self {
        WattTable {
            pinned: Some(snapshot),
            only_ranges,
            ..WattTable::new(storage, def)
        }
    }

    pub fn is_pinned(&self) -> bool {
        self.pinned.is_some()
    }
}

#[async_trait]
impl TableProvider for WattTable {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn constraints(&self) -> Option<&Constraints> {
        Some(&self.constraints)
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    fn supports_filters_pushdown(
        &self,
        filters: &[&Expr],
    ) -> DfResult<Vec<TableProviderFilterPushDown>> {
        // Used for pruning; DataFusion still applies them on top — except the
        // `matches()` filters the files' full-text indexes answer, which the scan
        // applies itself (to the rows no index answered: the buffer, merges, files
        // without a usable index), so that rows an index found are not analyzed again.
        Ok(filters
            .iter()
            .map(|e| {
                if is_text_filter(&self.def, e) {
                    TableProviderFilterPushDown::Exact
                } else {
                    TableProviderFilterPushDown::Inexact
                }
            })
            .collect())
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        let mut snapshot = match &self.pinned {
            Some(s) => s.as_ref().clone(),
            None => self.storage.0.snapshot(&self.def.name)?,
        };
        if let Some(ranges) = &self.only_ranges {
            let wanted = |min: i64, max: i64| ranges.iter().any(|(a, b)| *a <= max && min < *b);
            snapshot.files.retain(|f| wanted(f.min_ts, f.max_ts));
            snapshot.buffered.retain(|p| wanted(p.min_ts, p.max_ts));
        }
        // The table may have grown since planning started: scan in the planned layout.
        if snapshot.def.fields.len() != self.def.fields.len() {
            snapshot.def = self.def.clone();
        }
        // `matches()` filters are looked up in the files' full-text indexes first.
        let text_hits = self
            .storage
            .0
            .text_hits(
                &snapshot,
                filters,
                Some(state.runtime_env().cache_manager.get_file_metadata_cache()),
            )
            .await;
        // The read path itself (pruning, grouping, the streaming merge) is storage's.
        let request = ScanRequest {
            projection: projection.cloned(),
            filters: filters.to_vec(),
            limit,
            ordered: false,
            small_files: Some(self.storage.0.small_files().clone()),
            text_hits,
            // As `supports_filters_pushdown` answered (the table's definition then).
            exact_filters: filters
                .iter()
                .filter(|e| is_text_filter(&self.def, e))
                .cloned()
                .collect(),
        };
        plan_scan(state, &snapshot, &request)
    }

    async fn insert_into(
        &self,
        _state: &dyn Session,
        input: Arc<dyn ExecutionPlan>,
        insert_op: InsertOp,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        if insert_op != InsertOp::Append {
            return datafusion::common::not_impl_err!(
                "{insert_op} is not supported; INSERT replaces rows with the same key anyway"
            );
        }
        let sink = InsertSink::new(self.storage.0.clone(), self.def.clone());
        Ok(Arc::new(DataSinkExec::new(input, Arc::new(sink), None)))
    }

    /// `DELETE FROM t WHERE …` over tags and `ts` (see [`super::delete`]).
    async fn delete_from(
        &self,
        state: &dyn Session,
        filters: Vec<Expr>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        self.deletable()?;
        let predicate = super::delete::predicate_of(&self.def, &filters, state.execution_props())?;
        Ok(Arc::new(super::delete::DeleteExec::new(
            self.storage.0.clone(),
            self.def.name.clone(),
            predicate,
        )))
    }

    /// `TRUNCATE t`: a DELETE of every row.
    async fn truncate(&self, _state: &dyn Session) -> DfResult<Arc<dyn ExecutionPlan>> {
        self.deletable()?;
        Ok(Arc::new(super::delete::DeleteExec::new(
            self.storage.0.clone(),
            self.def.name.clone(),
            Some(wattdb_storage::DeletePredicate::default()),
        )))
    }

    async fn update(
        &self,
        _state: &dyn Session,
        _assignments: Vec<(String, Expr)>,
        _filters: Vec<Expr>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        datafusion::common::not_impl_err!(
            "UPDATE is not supported: write the rows again (INSERT replaces rows with the same key)"
        )
    }
}

impl WattTable {
    fn deletable(&self) -> DfResult<()> {
        if self.def.is_rollup() || self.pinned.is_some() {
            return Err(wattdb_storage::Error::ReadOnlyTable {
                table: self.def.name.clone(),
            }
            .into());
        }
        Ok(())
    }
}
