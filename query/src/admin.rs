//! Admin functions called as `SELECT <name>(<args>)`, each argument a literal or a
//! parameter (`$n`, bound by the driver): they act on storage rather than compute over
//! rows, so they are recognised before planning and run directly.
//! `flush()` (persist every buffered partition now) is served here; the rollup and
//! retention functions (`rebuild_rollups`, `set_rollup_intervals`, `set_counters`,
//! `set_retention`, `run_retention`, `restore_partition`, `compact`) by an [`AdminExtension`]
//! the binary wires in, so this crate does not depend on the background-work crate.

use datafusion::scalar::ScalarValue;
use datafusion::sql::sqlparser::ast::{
    Expr, FunctionArg, FunctionArgExpr, FunctionArguments, SelectItem, SetExpr, Statement,
    UnaryOperator, Value,
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

/// An argument of an admin call as written: a literal, or a parameter bound later
/// (`$n`, from drivers that bind server-side).
#[derive(Debug, Clone, PartialEq)]
pub enum CallArg {
    Value(String),
    /// `$n` (1-based).
    Param(usize),
}

/// An admin call as written, before its parameters are bound.
#[derive(Debug, Clone, PartialEq)]
pub struct ParsedCall {
    pub name: String,
    pub args: Vec<CallArg>,
}

impl ParsedCall {
    /// The highest parameter number it uses (0: none).
    pub fn parameters(&self) -> usize {
        self.args
            .iter()
            .filter_map(|a| match a {
                CallArg::Param(n) => Some(*n),
                CallArg::Value(_) => None,
            })
            .max()
            .unwrap_or(0)
    }

    /// The call with `values` (`$1` first) in place of its parameters: strings as they
    /// are, numbers and booleans as their text, NULL as the JSON `null`.
    pub fn bind(&self, values: &[ScalarValue]) -> Result<AdminCall, AdminError> {
        let args = self
            .args
            .iter()
            .map(|a| match a {
                CallArg::Value(v) => Ok(v.clone()),
                CallArg::Param(n) => match values.get(n - 1) {
                    Some(v) => Ok(argument_text(v)),
                    None => Err(AdminError::new(
                        crate::pg::sqlstate::UNDEFINED_PARAMETER,
                        format!("{}(): there is no parameter ${n}", self.name),
                    )),
                },
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(AdminCall {
            name: self.name.clone(),
            args,
        })
    }
}

/// A bound value as an admin function's argument text.
fn argument_text(v: &ScalarValue) -> String {
    if v.is_null() {
        return "null".to_string();
    }
    match v {
        ScalarValue::Utf8(Some(s))
        | ScalarValue::LargeUtf8(Some(s))
        | ScalarValue::Utf8View(Some(s)) => s.clone(),
        other => other.to_string(),
    }
}

/// One argument expression: a literal (possibly cast, or a negative number) or `$n`.
fn call_arg(e: &Expr) -> Option<CallArg> {
    match e {
        Expr::Value(v) => match &v.value {
            Value::SingleQuotedString(s)
            | Value::EscapedStringLiteral(s)
            | Value::NationalStringLiteral(s) => Some(CallArg::Value(s.clone())),
            Value::DollarQuotedString(d) => Some(CallArg::Value(d.value.clone())),
            Value::Number(n, _) => Some(CallArg::Value(n.clone())),
            Value::Boolean(b) => Some(CallArg::Value(b.to_string())),
            // As the JSON `null` (an options argument: "none").
            Value::Null => Some(CallArg::Value("null".to_string())),
            Value::Placeholder(p) => {
                let n: usize = p.strip_prefix('$')?.parse().ok()?;
                (n >= 1).then_some(CallArg::Param(n))
            }
            _ => None,
        },
        Expr::Cast { expr, .. } => call_arg(expr),
        Expr::Nested(inner) => call_arg(inner),
        Expr::UnaryOp {
            op: UnaryOperator::Minus,
            expr,
        } => match call_arg(expr)? {
            CallArg::Value(n) if n.parse::<f64>().is_ok() => Some(CallArg::Value(format!("-{n}"))),
            _ => None,
        },
        _ => None,
    }
}

/// `stmt` as a call of one of `functions`, if it is one.
pub fn parse_admin_call(stmt: &Statement, functions: &[&str]) -> Option<ParsedCall> {
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
                FunctionArg::Unnamed(FunctionArgExpr::Expr(e)) => call_arg(e),
                _ => None,
            })
            .collect::<Option<Vec<_>>>()?,
        _ => return None,
    };
    Some(ParsedCall { name, args })
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
