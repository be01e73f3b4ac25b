//! [`WattTable`]: one wattdb table as a DataFusion [`TableProvider`].

use std::sync::Arc;

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
use wattdb_storage::{Storage, TableDef};

use super::insert::InsertSink;

#[derive(Debug)]
pub struct WattTable {
    storage: StorageHandle,
    def: TableDef,
    schema: SchemaRef,
    constraints: Constraints,
}

/// `Storage` is not `Debug`; this wrapper is.
#[derive(Clone)]
struct StorageHandle(Storage);

impl std::fmt::Debug for StorageHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Storage")
    }
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
        }
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
        // Used for pruning only; DataFusion still applies every filter on top.
        Ok(vec![TableProviderFilterPushDown::Inexact; filters.len()])
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        let mut snapshot = self.storage.0.snapshot(&self.def.name)?;
        // The table may have grown since planning started: scan in the planned layout.
        if snapshot.def.fields.len() != self.def.fields.len() {
            snapshot.def = self.def.clone();
        }
        // The read path itself (pruning, grouping, the streaming merge) is storage's.
        let request = ScanRequest {
            projection: projection.cloned(),
            filters: filters.to_vec(),
            limit,
            ordered: false,
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
}
