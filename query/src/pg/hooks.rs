//! Statements wattdb answers itself before DataFusion sees them: DDL, admin functions,
//! `SET search_path` and the `SHOW` parameters drivers ask for on connect.

use std::sync::Arc;

use arrow::datatypes::{DataType, Field, Schema};
use async_trait::async_trait;
use datafusion::common::{DFSchema, ParamValues};
use datafusion::logical_expr::{EmptyRelation, LogicalPlan};
use datafusion::prelude::SessionContext;
use datafusion::sql::sqlparser::ast::{ObjectType, Set, Statement};
use datafusion_postgres::QueryHook;
use datafusion_postgres::hooks::HookClient;
use pgwire::api::ClientInfo;
use pgwire::api::Type;
use pgwire::api::results::{DataRowEncoder, FieldFormat, FieldInfo, QueryResponse, Response, Tag};
use pgwire::error::{PgWireError, PgWireResult};
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

fn plan_with_columns(columns: &[&str]) -> PgWireResult<LogicalPlan> {
    let schema = Schema::new(
        columns
            .iter()
            .map(|c| Field::new(*c, DataType::Utf8, false))
            .collect::<Vec<_>>(),
    );
    let df_schema = DFSchema::try_from(schema).map_err(|e| PgWireError::ApiError(Box::new(e)))?;
    Ok(LogicalPlan::EmptyRelation(EmptyRelation {
        produce_one_row: !columns.is_empty(),
        schema: Arc::new(df_schema),
    }))
}

/// Server parameters answered by `SHOW`, as PostgreSQL 16 would.
fn show_value(name: &str) -> Option<&'static str> {
    Some(match name {
        "standard_conforming_strings" => "on",
        "server_version" => "16.6",
        "server_version_num" => "160006",
        "server_encoding" | "client_encoding" => "UTF8",
        "integer_datetimes" => "on",
        "max_identifier_length" => "63",
        "default_transaction_isolation" | "transaction_isolation" => "read committed",
        "default_transaction_read_only" | "transaction_read_only" => "off",
        "lc_collate" | "lc_ctype" => "C",
        "is_superuser" => "on",
        _ => return None,
    })
}

/// SHOW variables the datafusion-postgres hook (next in line) answers itself.
fn shown_elsewhere(name: &str) -> bool {
    matches!(
        name,
        "timezone"
            | "time zone"
            | "statement_timeout"
            | "search_path"
            | "transaction isolation level"
            | "datestyle"
            | "intervalstyle"
            | "bytea_output"
            | "extra_float_digits"
            | "application_name"
            | "catalogs"
    )
}

enum Kind {
    CreateTable,
    DropTable,
    Admin(admin::AdminCall),
    SetSearchPath,
    Show(String),
}

fn classify(
    stmt: &Statement,
    client: &(dyn ClientInfo + Send + Sync),
    admin_functions: &[&str],
) -> Option<Kind> {
    match stmt {
        Statement::CreateTable(_) => Some(Kind::CreateTable),
        Statement::Drop {
            object_type: ObjectType::Table,
            ..
        } => Some(Kind::DropTable),
        Statement::Query(_) => admin::parse_admin_call(stmt, admin_functions).map(Kind::Admin),
        Statement::Set(Set::SingleAssignment { variable, .. })
            if variable.to_string().eq_ignore_ascii_case("search_path") =>
        {
            Some(Kind::SetSearchPath)
        }
        Statement::ShowVariable { variable } => {
            let name = variable
                .iter()
                .map(|i| i.value.to_ascii_lowercase())
                .collect::<Vec<_>>()
                .join(" ");
            if shown_elsewhere(&name) || client.metadata().contains_key(&name) {
                None
            } else {
                Some(Kind::Show(name))
            }
        }
        _ => None,
    }
}

impl WattdbHook {
    async fn execute(
        &self,
        kind: Kind,
        stmt: &Statement,
        client: &mut dyn HookClient,
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
            Kind::Admin(call) => admin::run(&self.storage, self.admin.as_deref(), &call)
                .await
                .map(Handled::Text)
                .map_err(|e| user_error(e.code, e.message)),
            Kind::SetSearchPath => {
                // Only `public` (user tables) and `system` exist; the path is remembered
                // for SHOW but table lookup always searches public first.
                if let Statement::Set(Set::SingleAssignment { values, .. }) = stmt {
                    let v = values
                        .iter()
                        .map(|v| v.to_string())
                        .collect::<Vec<_>>()
                        .join(", ");
                    client.metadata_mut().insert("search_path".into(), v);
                }
                Ok(Handled::Command)
            }
            Kind::Show(name) => match show_value(&name) {
                Some(v) => Ok(Handled::Text(v.to_string())),
                None => Err(user_error(
                    sqlstate::UNDEFINED_OBJECT,
                    format!("unrecognized configuration parameter \"{name}\""),
                )),
            },
        }
    }

    async fn respond(
        &self,
        kind: Kind,
        stmt: &Statement,
        client: &mut dyn HookClient,
    ) -> PgWireResult<Response> {
        let column = match &kind {
            Kind::Admin(c) => c.name.clone(),
            Kind::Show(n) => n.clone(),
            _ => String::new(),
        };
        let tag = match &kind {
            Kind::CreateTable => "CREATE TABLE",
            Kind::DropTable => "DROP TABLE",
            _ => "SET",
        };
        match self.execute(kind, stmt, client).await? {
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
        Some(self.respond(kind, statement, client).await)
    }

    async fn handle_extended_parse_query(
        &self,
        statement: &Statement,
        _session_context: &SessionContext,
        client: &(dyn ClientInfo + Send + Sync),
    ) -> Option<PgWireResult<LogicalPlan>> {
        let kind = classify(statement, client, &self.admin_functions)?;
        Some(match &kind {
            Kind::Admin(c) => plan_with_columns(&[c.name.as_str()]),
            Kind::Show(n) => plan_with_columns(&[n.as_str()]),
            _ => plan_with_columns(&[]),
        })
    }

    async fn handle_extended_query(
        &self,
        statement: &Statement,
        _logical_plan: &LogicalPlan,
        _params: &ParamValues,
        _session_context: &SessionContext,
        client: &mut dyn HookClient,
    ) -> Option<PgWireResult<Response>> {
        let kind = classify(statement, &*client, &self.admin_functions)?;
        Some(self.respond(kind, statement, client).await)
    }
}
