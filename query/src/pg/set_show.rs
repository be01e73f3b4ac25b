//! `SET`, `RESET` and `SHOW` against the connection's [`SessionSettings`], with the
//! ParameterStatus messages PostgreSQL sends when a reported parameter changes.

use std::sync::Arc;

use arrow::datatypes::{DataType, Field, Schema};
use datafusion::common::DFSchema;
use datafusion::common::config::ConfigOptions;
use datafusion::logical_expr::{EmptyRelation, LogicalPlan};
use datafusion::sql::sqlparser::ast::{Expr, Reset, Set, Statement, UnaryOperator, Value};
use futures::{Sink, SinkExt};
use pgwire::api::ClientInfo;
use pgwire::api::Type;
use pgwire::api::results::{DataRowEncoder, FieldFormat, FieldInfo, QueryResponse, Response, Tag};
use pgwire::error::{PgWireError, PgWireResult};
use pgwire::messages::PgWireBackendMessage;
use pgwire::messages::startup::ParameterStatus;

use super::settings::SessionSettings;
use super::sqlstate::{self, user_error};

/// A settings statement.
#[derive(Debug, Clone)]
pub enum SettingStatement {
    /// Name and value; `None` is `DEFAULT`.
    Set(String, Option<String>),
    Reset(Option<String>),
    Show(String),
    ShowAll,
    /// Accepted and without effect (the tag to answer).
    NoOp(&'static str),
}

/// A value of `SET` as text.
fn value_text(e: &Expr) -> Option<String> {
    match e {
        Expr::Value(v) => Some(match &v.value {
            Value::SingleQuotedString(s) | Value::DoubleQuotedString(s) => s.clone(),
            Value::Number(n, _) => n.to_string(),
            Value::Boolean(b) => b.to_string(),
            other => other.to_string(),
        }),
        Expr::Identifier(i) if i.value.eq_ignore_ascii_case("default") => None,
        Expr::Identifier(i) => Some(i.value.clone()),
        Expr::UnaryOp {
            op: UnaryOperator::Minus,
            expr,
        } => value_text(expr).map(|v| format!("-{v}")),
        other => Some(other.to_string()),
    }
}

fn joined(values: &[Expr]) -> Option<String> {
    let texts: Option<Vec<String>> = values.iter().map(value_text).collect();
    texts.map(|t| t.join(", "))
}

/// The parameter a `SHOW` names (`time zone` is `timezone`).
fn show_name(words: &[String]) -> String {
    let joined = words.join(" ").to_ascii_lowercase();
    match joined.as_str() {
        "time zone" => "timezone".into(),
        "transaction isolation level" => "transaction_isolation".into(),
        "session authorization" => "session_authorization".into(),
        // `SHOW wattdb.rollup_rewrite` comes as two words.
        _ => words.join("."),
    }
}

/// Which settings statement `stmt` is, if any.
pub fn classify(stmt: &Statement) -> Option<PgWireResult<SettingStatement>> {
    let kind = match stmt {
        Statement::Set(set) => match set {
            Set::SingleAssignment {
                hivevar: false,
                variable,
                values,
                ..
            } => SettingStatement::Set(variable.to_string(), joined(values)),
            Set::SetTimeZone { value, .. } => {
                SettingStatement::Set("TimeZone".into(), value_text(value))
            }
            Set::SetNames { charset_name, .. } => {
                SettingStatement::Set("client_encoding".into(), Some(charset_name.value.clone()))
            }
            Set::SetNamesDefault {} => SettingStatement::NoOp("SET"),
            Set::SetTransaction { .. } | Set::SetSessionParam(_) => SettingStatement::NoOp("SET"),
            Set::SetSessionAuthorization(_) | Set::SetRole { .. } => {
                // One user today (issue 15's roles will change this): setting it to
                // itself or back to the default changes nothing.
                SettingStatement::NoOp("SET")
            }
            other => {
                return Some(Err(user_error(
                    sqlstate::FEATURE_NOT_SUPPORTED,
                    format!("{other} is not supported"),
                )));
            }
        },
        Statement::Reset(r) => match &r.reset {
            Reset::ALL => SettingStatement::Reset(None),
            Reset::ConfigurationParameter(name) => SettingStatement::Reset(Some(name.to_string())),
        },
        // wattdb sends no notifications (alarms go to channels): no session ever
        // listens, so UNLISTEN (asyncpg's pool sends `UNLISTEN *`) has nothing to undo.
        Statement::UNLISTEN { .. } => SettingStatement::NoOp("UNLISTEN"),
        Statement::LISTEN { .. } | Statement::NOTIFY { .. } => {
            return Some(Err(user_error(
                sqlstate::FEATURE_NOT_SUPPORTED,
                format!(
                    "{} is not supported: wattdb sends no notifications (alarms are delivered to channels, see create_channel)",
                    if matches!(stmt, Statement::LISTEN { .. }) {
                        "LISTEN"
                    } else {
                        "NOTIFY"
                    }
                ),
            )));
        }
        Statement::ShowVariable { variable } => {
            let words: Vec<String> = variable.iter().map(|i| i.value.clone()).collect();
            if words.len() == 1 && words[0].eq_ignore_ascii_case("all") {
                SettingStatement::ShowAll
            } else {
                SettingStatement::Show(show_name(&words))
            }
        }
        _ => return None,
    };
    Some(Ok(kind))
}

/// An empty plan whose columns are `columns`, all text (what Describe reports for a
/// statement answered without running a query).
pub fn text_plan(columns: &[&str]) -> PgWireResult<LogicalPlan> {
    let schema = Schema::new(
        columns
            .iter()
            .map(|c| Field::new(*c, DataType::Utf8, true))
            .collect::<Vec<_>>(),
    );
    let schema = DFSchema::try_from(schema).map_err(|e| PgWireError::ApiError(Box::new(e)))?;
    Ok(LogicalPlan::EmptyRelation(EmptyRelation {
        produce_one_row: false,
        schema: Arc::new(schema),
    }))
}

const SHOW_ALL_COLUMNS: [&str; 3] = ["name", "setting", "description"];

/// What the statement returns (for Describe).
pub fn plan(kind: &SettingStatement) -> PgWireResult<LogicalPlan> {
    match kind {
        SettingStatement::Show(name) => text_plan(&[name.as_str()]),
        SettingStatement::ShowAll => text_plan(&SHOW_ALL_COLUMNS),
        _ => text_plan(&[]),
    }
}

fn rows(columns: &[&str], rows: Vec<Vec<Option<String>>>) -> PgWireResult<Response> {
    let fields = Arc::new(
        columns
            .iter()
            .map(|c| FieldInfo::new(c.to_string(), None, None, Type::TEXT, FieldFormat::Text))
            .collect::<Vec<_>>(),
    );
    let mut out = Vec::with_capacity(rows.len());
    for row in rows {
        let mut encoder = DataRowEncoder::new(fields.clone());
        for v in row {
            encoder.encode_field(&v)?;
        }
        out.push(Ok(encoder.take_row()));
    }
    let mut response = QueryResponse::new(fields, futures::stream::iter(out));
    response.set_command_tag("SHOW");
    Ok(Response::Query(response))
}

async fn report<C>(client: &mut C, changed: Vec<(String, String)>) -> PgWireResult<()>
where
    C: Sink<PgWireBackendMessage> + Unpin + Send,
    PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
{
    for (name, value) in changed {
        client
            .send(PgWireBackendMessage::ParameterStatus(ParameterStatus::new(
                name, value,
            )))
            .await?;
    }
    Ok(())
}

/// Mirror the output-format parameters where pgwire's encoders read them.
fn sync_format_metadata<C: ClientInfo>(client: &mut C, settings: &SessionSettings) {
    for key in [
        "datestyle",
        "intervalstyle",
        "bytea_output",
        "extra_float_digits",
    ] {
        client.metadata_mut().remove(key);
    }
    for (key, value) in settings.format_metadata() {
        client.metadata_mut().insert(key.to_string(), value);
    }
}

/// Run a settings statement for `client`; `base` answers `SHOW` of engine options.
pub async fn execute<C>(
    kind: SettingStatement,
    client: &mut C,
    base: &ConfigOptions,
) -> PgWireResult<Response>
where
    C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send,
    PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
{
    let settings = SessionSettings::of(client);
    match kind {
        SettingStatement::Set(name, value) => {
            let changed = match value {
                Some(v) => settings.set(&name, &v)?,
                None => settings.reset(&name)?,
            };
            sync_format_metadata(client, &settings);
            report(client, changed.into_iter().collect()).await?;
            Ok(Response::Execution(Tag::new("SET")))
        }
        SettingStatement::Reset(name) => {
            let changed = match name {
                Some(n) => settings.reset(&n)?.into_iter().collect(),
                None => settings.reset_all(),
            };
            sync_format_metadata(client, &settings);
            report(client, changed).await?;
            Ok(Response::Execution(Tag::new("RESET")))
        }
        SettingStatement::Show(name) => match settings.get(&name, base) {
            Some(v) => rows(&[name.as_str()], vec![vec![Some(v)]]),
            None => Err(user_error(
                sqlstate::UNDEFINED_OBJECT,
                format!("unrecognized configuration parameter \"{name}\""),
            )),
        },
        SettingStatement::ShowAll => rows(
            &SHOW_ALL_COLUMNS,
            settings
                .all()
                .into_iter()
                .map(|(n, v)| vec![Some(n), Some(v), None])
                .collect(),
        ),
        SettingStatement::NoOp(tag) => Ok(Response::Execution(Tag::new(tag))),
    }
}
