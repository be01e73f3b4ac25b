//! Statements planned only once their parameters are bound: those that pass a
//! parameter to a table function that cannot be planned without its value
//! (`SELECT * FROM last_values($1)`: `last_values` answers the columns of the table it
//! names), so the statement has no plan before the values are known. (Those that plan
//! with the parameter in place — `generate_series(1, $1)` — are planned at Parse.) Its
//! parameters are text; at Bind they are written into the statement as literals and the
//! statement is planned then — the same statement, the same answer as with the literals
//! written by hand.
//!
//! A Describe of the portal (what psycopg, pgjdbc and node-postgres send after Bind)
//! answers its columns. A Describe of the statement before any Bind (asyncpg's and
//! tokio-postgres's `prepare`) answers the columns of the statement planned with every
//! parameter NULL when that plans (`generate_series(1, $1)`: a `value` bigint, whatever
//! the bound); when it does not (`last_values($1)` names no table) it is refused with
//! `0A000` saying why. Executed, the statement must then answer those columns.

use std::ops::ControlFlow;

use datafusion::sql::sqlparser::ast::{
    Expr, FunctionArg, FunctionArgExpr, Statement, TableFactor, Value, Visit, VisitMut, Visitor,
    VisitorMut,
};
use pgwire::api::Type;
use pgwire::api::portal::Portal;
use pgwire::error::{PgWireError, PgWireResult};

use super::sqlstate::{self, user_error};

/// The highest `$n` in `expr`, if any.
fn highest_placeholder(expr: &Expr) -> Option<usize> {
    let mut highest = None;
    let _ = datafusion::sql::sqlparser::ast::visit_expressions(expr, |e| {
        if let Expr::Value(v) = e
            && let Value::Placeholder(p) = &v.value
            && let Some(n) = p.strip_prefix('$').and_then(|n| n.parse::<usize>().ok())
        {
            highest = highest.max(Some(n));
        }
        ControlFlow::<()>::Continue(())
    });
    highest
}

/// Finds a table function called with a parameter among its arguments.
struct ParameterToTableFunction;

impl Visitor for ParameterToTableFunction {
    type Break = ();

    fn pre_visit_table_factor(&mut self, factor: &TableFactor) -> ControlFlow<()> {
        let args: Vec<&Expr> = match factor {
            TableFactor::Table {
                args: Some(args), ..
            } => args
                .args
                .iter()
                .filter_map(|a| match a {
                    FunctionArg::Unnamed(FunctionArgExpr::Expr(e))
                    | FunctionArg::Named {
                        arg: FunctionArgExpr::Expr(e),
                        ..
                    }
                    | FunctionArg::ExprNamed {
                        arg: FunctionArgExpr::Expr(e),
                        ..
                    } => Some(e),
                    _ => None,
                })
                .collect(),
            TableFactor::Function { args, .. } => args
                .iter()
                .filter_map(|a| match a {
                    FunctionArg::Unnamed(FunctionArgExpr::Expr(e)) => Some(e),
                    _ => None,
                })
                .collect(),
            _ => return ControlFlow::Continue(()),
        };
        if args.into_iter().any(|e| highest_placeholder(e).is_some()) {
            return ControlFlow::Break(());
        }
        ControlFlow::Continue(())
    }
}

/// The number of parameters of `statement` when it must be planned after Bind (a table
/// function takes one of them); `None` when it can be planned at Parse.
pub fn parameters(statement: &Statement) -> Option<usize> {
    if !statement.visit(&mut ParameterToTableFunction).is_break() {
        return None;
    }
    let mut highest = 0;
    let _ = datafusion::sql::sqlparser::ast::visit_expressions(statement, |e| {
        highest = highest.max(highest_placeholder(e).unwrap_or(0));
        ControlFlow::<()>::Continue(())
    });
    Some(highest)
}

/// The types such a statement's parameters are described with.
pub fn parameter_types(count: usize) -> Vec<Type> {
    vec![Type::TEXT; count]
}

/// The error for a Describe of such a statement before Bind.
pub fn not_describable(count: usize) -> PgWireError {
    user_error(
        sqlstate::FEATURE_NOT_SUPPORTED,
        format!(
            "this statement passes a parameter to a table function, whose columns depend on \
             its arguments: its {count} parameter(s) must be bound before it can be \
             described (bind them and describe the portal, as psycopg, pgjdbc and \
             node-postgres do, or write the table function's arguments as literals)"
        ),
    )
}

/// That a statement planned with its values answers the columns `described` (its
/// Describe, planned with NULLs) said it would: names and types.
pub fn check_columns(
    described: &datafusion::common::DFSchemaRef,
    planned: &datafusion::common::DFSchemaRef,
) -> PgWireResult<()> {
    let same = described.fields().len() == planned.fields().len()
        && described
            .fields()
            .iter()
            .zip(planned.fields())
            .all(|(a, b)| a.name() == b.name() && a.data_type() == b.data_type());
    if same {
        return Ok(());
    }
    Err(user_error(
        sqlstate::FEATURE_NOT_SUPPORTED,
        "the columns of this statement depend on the values bound to its parameters, \
         not as its Describe reported them: describe the portal after Bind instead",
    ))
}

/// `portal`'s parameters as text (`None`: NULL); text-format values as sent, binary ones
/// only when the client declared them text.
pub fn text_values<S: Clone>(portal: &Portal<S>) -> PgWireResult<Vec<Option<String>>> {
    portal
        .parameters
        .iter()
        .enumerate()
        .map(|(i, value)| {
            let Some(bytes) = value else {
                return Ok(None);
            };
            let declared = portal.statement.parameter_types.get(i).cloned().flatten();
            let textual = matches!(
                declared,
                None | Some(Type::TEXT) | Some(Type::VARCHAR) | Some(Type::UNKNOWN)
            );
            if portal.parameter_format.is_binary(i) && !textual {
                return Err(user_error(
                    sqlstate::FEATURE_NOT_SUPPORTED,
                    format!(
                        "parameter ${} of a statement that passes parameters to a table \
                         function must be bound as text",
                        i + 1
                    ),
                ));
            }
            String::from_utf8(bytes.to_vec()).map(Some).map_err(|_| {
                user_error(
                    sqlstate::CHARACTER_NOT_IN_REPERTOIRE,
                    format!("parameter ${} is not valid UTF-8", i + 1),
                )
            })
        })
        .collect()
}

struct Bind<'a> {
    values: &'a [Option<String>],
    /// Values that read as numbers written as numbers.
    numbers: bool,
    missing: Option<usize>,
}

/// Whether `text` reads as a number (`4`, `-2.5`, `1e3`).
fn is_number(text: &str) -> bool {
    let t = text.trim();
    !t.is_empty()
        && t.parse::<f64>().is_ok()
        && !t
            .chars()
            .any(|c| c.is_ascii_alphabetic() && c != 'e' && c != 'E')
}

impl VisitorMut for Bind<'_> {
    type Break = ();

    fn post_visit_expr(&mut self, expr: &mut Expr) -> ControlFlow<()> {
        if let Expr::Value(v) = expr
            && let Value::Placeholder(p) = &v.value
            && let Some(n) = p.strip_prefix('$').and_then(|n| n.parse::<usize>().ok())
        {
            match n.checked_sub(1).and_then(|i| self.values.get(i)) {
                Some(Some(text)) if self.numbers && is_number(text) => {
                    v.value = Value::Number(text.trim().to_string(), false)
                }
                Some(Some(text)) => v.value = Value::SingleQuotedString(text.clone()),
                Some(None) => v.value = Value::Null,
                None => {
                    self.missing = Some(n);
                    return ControlFlow::Break(());
                }
            }
        }
        ControlFlow::Continue(())
    }
}

/// `statement` with its `$n` replaced by `values` as literals: strings, or with
/// `numbers` those that read as numbers as numbers (`generate_series(1, $1)`, whose
/// arguments must be integers: an untyped PostgreSQL literal would become one).
pub fn bind(
    statement: &Statement,
    values: &[Option<String>],
    numbers: bool,
) -> PgWireResult<Statement> {
    let mut bound = statement.clone();
    let mut binder = Bind {
        values,
        numbers,
        missing: None,
    };
    let _ = VisitMut::visit(&mut bound, &mut binder);
    if let Some(n) = binder.missing {
        return Err(user_error(
            sqlstate::UNDEFINED_PARAMETER,
            format!("there is no parameter ${n}"),
        ));
    }
    Ok(bound)
}

#[cfg(test)]
mod tests {
    use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
    use datafusion::sql::sqlparser::parser::Parser;

    use super::*;

    fn parsed(sql: &str) -> Statement {
        Parser::parse_sql(&PostgreSqlDialect {}, sql)
            .unwrap()
            .remove(0)
    }

    #[test]
    fn only_parameters_given_to_a_table_function_bind_late() {
        assert_eq!(
            parameters(&parsed("SELECT * FROM last_values($1)")),
            Some(1)
        );
        assert_eq!(
            parameters(&parsed(
                "SELECT pid FROM last_values($2) WHERE v > $1 ORDER BY pid LIMIT $3"
            )),
            Some(3)
        );
        assert_eq!(parameters(&parsed("SELECT * FROM t WHERE pid = $1")), None);
        assert_eq!(parameters(&parsed("SELECT * FROM last_values('t')")), None);
        assert_eq!(parameters(&parsed("SELECT $1")), None);
    }

    #[test]
    fn a_statement_answers_the_columns_it_was_described_with() {
        use arrow::datatypes::{DataType, Field, Schema};
        let schema = |t: DataType| {
            std::sync::Arc::new(
                datafusion::common::DFSchema::try_from(Schema::new(vec![Field::new(
                    "value", t, true,
                )]))
                .unwrap(),
            )
        };
        assert!(check_columns(&schema(DataType::Int64), &schema(DataType::Int64)).is_ok());
        assert!(check_columns(&schema(DataType::Int64), &schema(DataType::Utf8)).is_err());
    }

    #[test]
    fn values_become_literals() {
        let bound = bind(
            &parsed("SELECT * FROM last_values($1) WHERE pid = $2 OR pid = $3"),
            &[Some("m".into()), Some("it's".into()), None],
            false,
        )
        .unwrap();
        assert_eq!(
            bound.to_string(),
            "SELECT * FROM last_values('m') WHERE pid = 'it''s' OR pid = NULL"
        );
        let missing = bind(
            &parsed("SELECT * FROM last_values($2)"),
            &[Some("m".into())],
            false,
        );
        assert!(missing.is_err());
        let numbers = bind(
            &parsed("SELECT * FROM generate_series($1, $2) WHERE $3 = 'x'"),
            &[Some("4".into()), Some("-2.5e1".into()), Some("x1".into())],
            true,
        )
        .unwrap();
        assert_eq!(
            numbers.to_string(),
            "SELECT * FROM generate_series(4, -2.5e1) WHERE 'x1' = 'x'"
        );
    }
}
