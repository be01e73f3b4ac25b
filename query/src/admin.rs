//! Admin functions called as `SELECT <name>(<literal args>)`: they act on storage rather
//! than compute over rows, so they are recognised before planning and run directly.
//! Today: `flush()` — persist every buffered partition now.

use datafusion::sql::sqlparser::ast::{
    Expr, FunctionArg, FunctionArgExpr, FunctionArguments, SelectItem, SetExpr, Statement, Value,
};
use wattdb_storage::Storage;

pub const ADMIN_FUNCTIONS: &[&str] = &["flush"];

/// A recognised admin call: function name and its string/number arguments.
#[derive(Debug, Clone, PartialEq)]
pub struct AdminCall {
    pub name: String,
    pub args: Vec<String>,
}

pub fn parse_admin_call(stmt: &Statement) -> Option<AdminCall> {
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
    if !ADMIN_FUNCTIONS.contains(&name.as_str()) {
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
pub async fn run(storage: &Storage, call: &AdminCall) -> Result<String, wattdb_storage::Error> {
    match call.name.as_str() {
        "flush" => {
            let r = storage.flush().await?;
            Ok(format!(
                "persisted {} file(s), {} row(s), {} byte(s)",
                r.files, r.rows, r.bytes
            ))
        }
        other => Err(wattdb_storage::Error::Task(format!(
            "unknown admin function {other}"
        ))),
    }
}
