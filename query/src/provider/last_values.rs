//! `last_values('<table>')`: a table function over the storage's last-value cache — the
//! newest row of every series, in the table's layout, sorted by tags.

use std::sync::Arc;

use arrow::datatypes::SchemaRef;
use async_trait::async_trait;
use datafusion::catalog::{Session, TableFunctionArgs, TableFunctionImpl};
use datafusion::common::{Result as DfResult, ScalarValue, plan_err};
use datafusion::datasource::memory::MemorySourceConfig;
use datafusion::datasource::{TableProvider, TableType};
use datafusion::logical_expr::Expr;
use datafusion::logical_expr::simplify::SimplifyContext;
use datafusion::optimizer::simplify_expressions::ExprSimplifier;
use datafusion::physical_plan::ExecutionPlan;
use wattdb_storage::Storage;

pub struct LastValuesFunction {
    storage: Storage,
}

impl LastValuesFunction {
    pub fn new(storage: Storage) -> Self {
        LastValuesFunction { storage }
    }
}

impl std::fmt::Debug for LastValuesFunction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("last_values")
    }
}

impl TableFunctionImpl for LastValuesFunction {
    fn call_with_args(&self, args: TableFunctionArgs) -> DfResult<Arc<dyn TableProvider>> {
        // A constant expression is folded first: `'m'::text` (what a bound parameter
        // becomes, see `pg::late_binding`), `lower('M')`.
        let folded: Vec<Expr> = args
            .exprs()
            .iter()
            .map(|e| {
                ExprSimplifier::new(SimplifyContext::default())
                    .simplify(e.clone())
                    .unwrap_or_else(|_| e.clone())
            })
            .collect();
        let name = match folded.as_slice() {
            [Expr::Literal(ScalarValue::Utf8(Some(s)), _)]
            | [Expr::Literal(ScalarValue::Utf8View(Some(s)), _)]
            | [Expr::Literal(ScalarValue::LargeUtf8(Some(s)), _)] => s.clone(),
            _ => {
                return plan_err!(
                    "last_values takes one argument, a table name: last_values('electric')"
                );
            }
        };
        let Some(def) = self.storage.table(&name) else {
            return Err(wattdb_storage::Error::TableNotFound { table: name }.into());
        };
        Ok(Arc::new(LastValuesTable {
            storage: self.storage.clone(),
            schema: def.arrow_schema(),
            table: name,
        }))
    }
}

pub(super) struct LastValuesTable {
    storage: Storage,
    table: String,
    schema: SchemaRef,
}

impl LastValuesTable {
    pub(super) fn new(storage: Storage, table: String, schema: SchemaRef) -> Self {
        LastValuesTable {
            storage,
            table,
            schema,
        }
    }
}

impl std::fmt::Debug for LastValuesTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "last_values({})", self.table)
    }
}

#[async_trait]
impl TableProvider for LastValuesTable {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn table_type(&self) -> TableType {
        TableType::View
    }

    async fn scan(
        &self,
        _state: &dyn Session,
        projection: Option<&Vec<usize>>,
        _filters: &[Expr],
        _limit: Option<usize>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        let rows = self.storage.last_values(&self.table).await?;
        // The table may have grown since planning: keep the planned layout.
        let rows = wattdb_storage::batch::adapt_to_schema(&rows, &self.schema)?;
        MemorySourceConfig::try_new_exec(&[vec![rows]], self.schema.clone(), projection.cloned())
            .map(|e| e as Arc<dyn ExecutionPlan>)
    }
}
