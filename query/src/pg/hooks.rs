//! Statements wattdb answers itself before DataFusion sees them: DDL and admin functions.
//! (`SET`/`SHOW` are [`super::set_show`]'s.)

use std::sync::Arc;

use async_trait::async_trait;
use datafusion::common::ParamValues;
use datafusion::logical_expr::LogicalPlan;
use datafusion::prelude::SessionContext;
use datafusion::scalar::ScalarValue;
use datafusion::sql::sqlparser::ast::{ObjectType, Statement};
use datafusion_postgres::QueryHook;
use datafusion_postgres::hooks::HookClient;
use pgwire::api::ClientInfo;
use pgwire::api::Type;
use pgwire::api::results::{DataRowEncoder, FieldFormat, FieldInfo, QueryResponse, Response, Tag};
use pgwire::error::PgWireResult;
use wattdb_storage::Storage;

use super::sqlstate::{self, user_error};
use crate::{admin, ddl};

pub struct WattdbHook {
    storage: Storage,
    admin: Option<Arc<dyn admin::AdminExtension>>,
    /// Built-in admin functions and the extension's.
    admin_functions: Vec<&'static str>,
}

impl WattdbHook {
    pub fn new(storage: Storage, admin: Option<Arc<dyn admin::AdminExtension>>) -> Self {
        let mut admin_functions = admin::BUILT_IN_FUNCTIONS.to_vec();
        if let Some(ext) = &admin {
            admin_functions.extend(ext.functions());
        }
        WattdbHook {
            storage,
            admin,
            admin_functions,
        }
    }
}

impl WattdbHook {
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

enum Kind {
    CreateTable,
    DropTable,
    Admin(admin::ParsedCall),
}

fn classify(
    stmt: &Statement,
    _client: &(dyn ClientInfo + Send + Sync),
    admin_functions: &[&str],
) -> Option<Kind> {
    match stmt {
        Statement::CreateTable(_) => Some(Kind::CreateTable),
        Statement::Drop {
            object_type: ObjectType::Table,
            ..
        } => Some(Kind::DropTable),
        Statement::Query(_) => admin::parse_admin_call(stmt, admin_functions).map(Kind::Admin),
        _ => None,
    }
}

impl WattdbHook {
    async fn execute(
        &self,
        kind: Kind,
        stmt: &Statement,
        values: &[ScalarValue],
    ) -> PgWireResult<Handled> {
        match kind {
            Kind::CreateTable => {
                let Statement::CreateTable(ct) = stmt else {
                    return Err(user_error(sqlstate::INTERNAL_ERROR, "not a CREATE TABLE"));
                };
                ddl::create_table(&self.storage, ct)
                    .await
                    .map(|_| Handled::Command)
                    .map_err(|e| user_error(e.code, e.message))
            }
            Kind::DropTable => match ddl::drop_tables(&self.storage, stmt).await {
                Some(Ok(_)) => Ok(Handled::Command),
                Some(Err(e)) => Err(user_error(e.code, e.message)),
                None => Err(user_error(sqlstate::INTERNAL_ERROR, "not a DROP TABLE")),
            },
            Kind::Admin(parsed) => {
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

    async fn respond(
        &self,
        kind: Kind,
        stmt: &Statement,
        values: &[ScalarValue],
    ) -> PgWireResult<Response> {
        let column = match &kind {
            Kind::Admin(c) => c.name.clone(),
            _ => String::new(),
        };
        let tag = match &kind {
            Kind::CreateTable => "CREATE TABLE",
            Kind::DropTable => "DROP TABLE",
            Kind::Admin(_) => "SELECT",
        };
        match self.execute(kind, stmt, values).await? {
            Handled::Command => Ok(Response::Execution(Tag::new(tag))),
            Handled::Text(t) => text_response(&column, &t),
        }
    }
}

#[async_trait]
impl QueryHook for WattdbHook {
    async fn handle_simple_query(
        &self,
        statement: &Statement,
        _session_context: &SessionContext,
        client: &mut dyn HookClient,
    ) -> Option<PgWireResult<Response>> {
        let kind = classify(statement, &*client, &self.admin_functions)?;
        Some(self.respond(kind, statement, &[]).await)
    }

    /// An admin call is described as one text column named after the function, with a
    /// text parameter for each `$n` it takes (a type the client gave at Parse wins, as
    /// for any parameter).
    async fn handle_extended_parse_query(
        &self,
        statement: &Statement,
        session_context: &SessionContext,
        client: &(dyn ClientInfo + Send + Sync),
    ) -> Option<PgWireResult<LogicalPlan>> {
        let kind = classify(statement, client, &self.admin_functions)?;
        Some(match &kind {
            Kind::Admin(c) if c.parameters() > 0 => {
                let params: Vec<String> = (1..=c.parameters())
                    .map(|n| format!("CAST(${n} AS TEXT) AS p{n}"))
                    .collect();
                let sql = format!(
                    "SELECT CAST(NULL AS TEXT) AS \"{}\" FROM (SELECT {}) AS parameters",
                    c.name,
                    params.join(", ")
                );
                session_context
                    .state()
                    .create_logical_plan(&sql)
                    .await
                    .map_err(|e| user_error(sqlstate::INTERNAL_ERROR, e.to_string()))
            }
            Kind::Admin(c) => super::set_show::text_plan(&[c.name.as_str()]),
            _ => super::set_show::text_plan(&[]),
        })
    }

    async fn handle_extended_query(
        &self,
        statement: &Statement,
        _logical_plan: &LogicalPlan,
        params: &ParamValues,
        _session_context: &SessionContext,
        client: &mut dyn HookClient,
    ) -> Option<PgWireResult<Response>> {
        let kind = classify(statement, &*client, &self.admin_functions)?;
        let values: Vec<ScalarValue> = match params {
            ParamValues::List(list) => list.iter().map(|p| p.value.clone()).collect(),
            ParamValues::Map(_) => Vec::new(),
        };
        Some(self.respond(kind, statement, &values).await)
    }
}
