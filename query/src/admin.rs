//! Admin functions called as `SELECT <name>(<literal args>)`: they act on storage rather
//! than compute over rows, so they are recognised before planning and run directly.
//! `flush()` (persist every buffered partition now) is served here; the rollup and
//! retention functions (`rebuild_rollups`, `set_rollup_intervals`, `set_counters`,
//! `set_retention`, `run_retention`, `restore_partition`, `compact`) by an [`AdminExtension`]
//! the binary wires in, so this crate does not depend on the background-work crate.

use datafusion::sql::sqlparser::ast::{
    Expr, FunctionArg, FunctionArgExpr, FunctionArguments, SelectItem, SetExpr, Statement, Value,
};
use wattdb_storage::Storage;

/// The admin functions this crate serves itself; an [`AdminExtension`] declares its own.
pub const BUILT_IN_FUNCTIONS: &[&str] = &["flush", "set_fulltext"];

/// An admin call's failure: SQLSTATE and message.
#[derive(Debug, Clone)]
pub struct AdminError {
    pub code: &'static str,
    pub message: String,
}

impl AdminError {
    pub fn new(code: &'static str, message: impl Into<String>) -> Self {
        AdminError {
            code,
            message: message.into(),
        }
    }
}

impl From<wattdb_storage::Error> for AdminError {
    fn from(e: wattdb_storage::Error) -> Self {
        AdminError::new(crate::pg::sqlstate::for_storage(&e), e.to_string())
    }
}

/// Admin functions served by another subsystem.
#[async_trait::async_trait]
pub trait AdminExtension: Send + Sync {
    /// The names of the functions it serves: `SELECT <name>(…)` is an admin call.
    fn functions(&self) -> Vec<&'static str>;

    /// `None` when `call` is not one of this extension's functions.
    async fn call(&self, call: &AdminCall) -> Option<Result<String, AdminError>>;
}

/// A recognised admin call: function name and its string/number arguments.
#[derive(Debug, Clone, PartialEq)]
pub struct AdminCall {
    pub name: String,
    pub args: Vec<String>,
}

/// `stmt` as a call of one of `functions`, if it is one.
pub fn parse_admin_call(stmt: &Statement, functions: &[&str]) -> Option<AdminCall> {
    let Statement::Query(q) = stmt else {
        return None;
    };
    let SetExpr::Select(s) = q.body.as_ref() else {
        return None;
    };
    if !s.from.is_empty() || s.projection.len() != 1 || s.selection.is_some() {
        return None;
    }
    let expr = match &s.projection[0] {
        SelectItem::UnnamedExpr(e) => e,
        SelectItem::ExprWithAlias { expr, .. } => expr,
        _ => return None,
    };
    let Expr::Function(f) = expr else { return None };
    let name = f.name.to_string().to_ascii_lowercase();
    if !functions.contains(&name.as_str()) {
        return None;
    }
    let args = match &f.args {
        FunctionArguments::None => vec![],
        FunctionArguments::List(l) => l
            .args
            .iter()
            .map(|a| match a {
                FunctionArg::Unnamed(FunctionArgExpr::Expr(Expr::Value(v))) => match &v.value {
                    Value::SingleQuotedString(s) => Some(s.clone()),
                    Value::Number(n, _) => Some(n.clone()),
                    Value::Boolean(b) => Some(b.to_string()),
                    // As the JSON `null` (an options argument: "none").
                    Value::Null => Some("null".to_string()),
                    _ => None,
                },
                _ => None,
            })
            .collect::<Option<Vec<_>>>()?,
        _ => return None,
    };
    Some(AdminCall { name, args })
}

/// Run an admin call; returns the one-line text result.
pub async fn run(
    storage: &Storage,
    extension: Option<&dyn AdminExtension>,
    call: &AdminCall,
) -> Result<String, AdminError> {
    if call.name == "flush" {
        if !call.args.is_empty() {
            return Err(AdminError::new(
                crate::pg::sqlstate::UNDEFINED_FUNCTION,
                "flush() takes no arguments",
            ));
        }
        let r = storage.flush().await?;
        return Ok(format!(
            "persisted {} file(s), {} row(s), {} byte(s)",
            r.files, r.rows, r.bytes
        ));
    }
    if call.name == "set_fulltext" {
        return crate::fulltext_admin::set_fulltext(storage, &call.args).await;
    }
    if let Some(ext) = extension
        && let Some(result) = ext.call(call).await
    {
        return result;
    }
    Err(AdminError::new(
        crate::pg::sqlstate::FEATURE_NOT_SUPPORTED,
        format!("{}() is not available on this server", call.name),
    ))
}
