//! The statements wattdb answers itself rather than DataFusion: `CREATE TABLE`, `DROP
//! TABLE` (through [`crate::ddl`]) and the admin functions (`SELECT compact(…)`, through
//! [`crate::admin`]), their arguments literals or bound parameters alike. Which
//! statement is one is decided once, in [`super::statement::classify`].

use std::sync::Arc;

use datafusion::logical_expr::LogicalPlan;
use datafusion::prelude::SessionContext;
use datafusion::scalar::ScalarValue;
use datafusion::sql::sqlparser::ast::{ObjectType, Statement};
use pgwire::api::Type;
use pgwire::api::results::{DataRowEncoder, FieldFormat, FieldInfo, QueryResponse, Response, Tag};
use pgwire::error::PgWireResult;
use wattdb_storage::Storage;

use super::sqlstate::{self, user_error};
use crate::{admin, ddl};

pub struct WattdbStatements {
    storage: Storage,
    admin: Option<Arc<dyn admin::AdminExtension>>,
    /// Built-in admin functions and the extension's.
    admin_functions: Vec<&'static str>,
}

impl WattdbStatements {
    pub fn new(storage: Storage, admin: Option<Arc<dyn admin::AdminExtension>>) -> Self {
        let mut admin_functions = admin::BUILT_IN_FUNCTIONS.to_vec();
        if let Some(ext) = &admin {
            admin_functions.extend(ext.functions());
        }
        WattdbStatements {
            storage,
            admin,
            admin_functions,
        }
    }
}

impl WattdbStatements {
    /// The names of the admin functions (`SELECT f(…)`) it serves.
    pub fn admin_functions(&self) -> &[&'static str] {
        &self.admin_functions
    }
}

/// What a statement the hook handles returns.
enum Handled {
    Command,
    Text(String),
}

fn text_response(column: &str, value: &str) -> PgWireResult<Response> {
    let fields = Arc::new(vec![FieldInfo::new(
        column.to_string(),
        None,
        None,
        Type::TEXT,
        FieldFormat::Text,
    )]);
    let mut encoder = DataRowEncoder::new(fields.clone());
    encoder.encode_field(&Some(value))?;
    let row = encoder.take_row();
    Ok(Response::Query(QueryResponse::new(
        fields,
        futures::stream::iter(vec![Ok(row)]),
    )))
}

/// A statement wattdb answers itself.
#[derive(Debug, Clone)]
pub enum WattdbStatement {
    CreateTable,
    DropTable,
    Admin(admin::ParsedCall),
}

/// Which of wattdb's statements `stmt` is, if any (`admin_functions`: the names of the
/// admin functions).
pub fn classify(stmt: &Statement, admin_functions: &[&str]) -> Option<WattdbStatement> {
    match stmt {
        Statement::CreateTable(_) => Some(WattdbStatement::CreateTable),
        Statement::Drop {
            object_type: ObjectType::Table,
            ..
        } => Some(WattdbStatement::DropTable),
        Statement::Query(_) => {
            admin::parse_admin_call(stmt, admin_functions).map(WattdbStatement::Admin)
        }
        _ => None,
    }
}

impl WattdbStatements {
    /// What Describe reports for `kind`: an admin call is one text column named after
    /// the function, with a text parameter for each `$n` it takes (a type the client
    /// gave at Parse wins, as for any parameter).
    pub async fn plan(
        &self,
        kind: &WattdbStatement,
        ctx: &SessionContext,
    ) -> PgWireResult<LogicalPlan> {
        match kind {
            WattdbStatement::Admin(c) if c.parameters() > 0 => {
                let params: Vec<String> = (1..=c.parameters())
                    .map(|n| format!("CAST(${n} AS TEXT) AS p{n}"))
                    .collect();
                let sql = format!(
                    "SELECT CAST(NULL AS TEXT) AS \"{}\" FROM (SELECT {}) AS parameters",
                    c.name,
                    params.join(", ")
                );
                ctx.state()
                    .create_logical_plan(&sql)
                    .await
                    .map_err(|e| user_error(sqlstate::INTERNAL_ERROR, e.to_string()))
            }
            WattdbStatement::Admin(c) => super::set_show::text_plan(&[c.name.as_str()]),
            _ => super::set_show::text_plan(&[]),
        }
    }
}

impl WattdbStatements {
    async fn execute(
        &self,
        kind: &WattdbStatement,
        stmt: &Statement,
        values: &[ScalarValue],
    ) -> PgWireResult<Handled> {
        match kind {
            WattdbStatement::CreateTable => {
                let Statement::CreateTable(ct) = stmt else {
                    return Err(user_error(sqlstate::INTERNAL_ERROR, "not a CREATE TABLE"));
                };
                ddl::create_table(&self.storage, ct)
                    .await
                    .map(|_| Handled::Command)
                    .map_err(|e| user_error(e.code, e.message))
            }
            WattdbStatement::DropTable => match ddl::drop_tables(&self.storage, stmt).await {
                Some(Ok(_)) => Ok(Handled::Command),
                Some(Err(e)) => Err(user_error(e.code, e.message)),
                None => Err(user_error(sqlstate::INTERNAL_ERROR, "not a DROP TABLE")),
            },
            WattdbStatement::Admin(parsed) => {
                let call = parsed
                    .bind(values)
                    .map_err(|e| user_error(e.code, e.message))?;
                // On a task of its own: a cancel request (or the client going away) ends
                // the wait for it, never the work half-way.
                let storage = self.storage.clone();
                let extension = self.admin.clone();
                let work = tokio::spawn(async move {
                    let result = admin::run(&storage, extension.as_deref(), &call).await;
                    tracing::debug!(function = %call.name, ok = result.is_ok(), "admin function ended");
                    result
                });
                work.await
                    .map_err(|e| user_error(sqlstate::INTERNAL_ERROR, e.to_string()))?
                    .map(Handled::Text)
                    .map_err(|e| user_error(e.code, e.message))
            }
        }
    }

    /// Run `kind` (`stmt` its statement; `values` the parameters bound to it).
    pub async fn respond(
        &self,
        kind: &WattdbStatement,
        stmt: &Statement,
        values: &[ScalarValue],
    ) -> PgWireResult<Response> {
        let column = match kind {
            WattdbStatement::Admin(c) => c.name.clone(),
            _ => String::new(),
        };
        let tag = match kind {
            WattdbStatement::CreateTable => "CREATE TABLE",
            WattdbStatement::DropTable => "DROP TABLE",
            WattdbStatement::Admin(_) => "SELECT",
        };
        match self.execute(kind, stmt, values).await? {
            Handled::Command => Ok(Response::Execution(Tag::new(tag))),
            Handled::Text(t) => text_response(&column, &t),
        }
    }
}
