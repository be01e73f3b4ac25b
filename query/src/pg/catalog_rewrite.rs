//! Rewrites of the catalog queries clients send, where DataFusion cannot run
//! PostgreSQL's form as written. They run before the pg_catalog emulation's own
//! rewrites (datafusion-pg-catalog), which answer a correlated scalar subquery in a
//! projection over catalog tables with NULL — for wattdb's tables the true answer to
//! what clients ask that way (column defaults, identity sequences, collations: none).
//!
//! `ARRAY(SELECT x FROM …)` becomes `(SELECT array_agg(x) FROM …)`.
//!
//! SQLAlchemy's column reflection wraps such subqueries in `CASE WHEN c THEN (SELECT …)
//! ELSE NULL END`, which neither DataFusion nor that rewrite handles; it is turned into
//! the subquery with `c` added to its filter (the same value in every case). Only
//! subqueries that read `pg_*` or `information_schema` tables are touched.

use std::ops::ControlFlow;

use datafusion::sql::sqlparser::ast::{
    BinaryOperator, Expr, Function, FunctionArg, FunctionArgExpr, FunctionArgumentList,
    FunctionArguments, Ident, ObjectName, Select, SelectItem, SetExpr, Statement, TableFactor,
    Value, visit_expressions_mut,
};

fn is_catalog_table(name: &ObjectName) -> bool {
    let parts: Vec<String> = name
        .0
        .iter()
        .map(|p| match p.as_ident() {
            Some(i) => i.value.to_ascii_lowercase(),
            None => p.to_string().to_ascii_lowercase(),
        })
        .collect();
    match parts.as_slice() {
        [.., schema, _] if schema == "pg_catalog" || schema == "information_schema" => true,
        [table] => table.starts_with("pg_"),
        _ => false,
    }
}

fn reads_catalog(select: &Select) -> bool {
    select.from.iter().any(|t| {
        std::iter::once(&t.relation)
            .chain(t.joins.iter().map(|j| &j.relation))
            .any(|r| matches!(r, TableFactor::Table { name, .. } if is_catalog_table(name)))
    })
}

/// `CASE WHEN c THEN (SELECT e FROM … WHERE w) ELSE NULL END` is `(SELECT e FROM …
/// WHERE c AND w)`: DataFusion cannot run a correlated subquery inside CASE, and with
/// no ELSE value both are NULL when `c` is false.
fn case_into_subquery(e: &mut Expr) {
    let Expr::Case {
        operand: None,
        conditions,
        else_result,
        ..
    } = e
    else {
        return;
    };
    let null_else = match else_result.as_deref() {
        None => true,
        Some(Expr::Value(v)) => matches!(v.value, Value::Null),
        _ => false,
    };
    if !null_else || conditions.len() != 1 {
        return;
    }
    let Expr::Subquery(q) = &conditions[0].result else {
        return;
    };
    let SetExpr::Select(select) = q.body.as_ref() else {
        return;
    };
    if !reads_catalog(select) {
        return;
    }
    let condition = conditions[0].condition.clone();
    let Expr::Subquery(mut q) = conditions[0].result.clone() else {
        return;
    };
    if let SetExpr::Select(select) = q.body.as_mut() {
        select.selection = Some(match select.selection.take() {
            Some(w) => Expr::BinaryOp {
                left: Box::new(Expr::Nested(Box::new(condition))),
                op: BinaryOperator::And,
                right: Box::new(Expr::Nested(Box::new(w))),
            },
            None => condition,
        });
    }
    *e = Expr::Subquery(q);
}

/// `ARRAY(SELECT x FROM …)` (psql's `\du`, `\d+`) is `(SELECT array_agg(x) FROM …)`.
fn array_subquery(e: &mut Expr) {
    let Expr::Function(f) = e else {
        return;
    };
    if !f.name.to_string().eq_ignore_ascii_case("array") {
        return;
    }
    let FunctionArguments::Subquery(q) = &f.args else {
        return;
    };
    let mut q = q.clone();
    let SetExpr::Select(select) = q.body.as_mut() else {
        return;
    };
    if select.projection.len() != 1 {
        return;
    }
    if let SelectItem::UnnamedExpr(x) | SelectItem::ExprWithAlias { expr: x, .. } =
        &mut select.projection[0]
    {
        let inner = std::mem::replace(x, Expr::value(Value::Null));
        *x = Expr::Function(Function {
            name: ObjectName::from(vec![Ident::new("array_agg")]),
            uses_odbc_syntax: false,
            parameters: FunctionArguments::None,
            args: FunctionArguments::List(FunctionArgumentList {
                duplicate_treatment: None,
                args: vec![FunctionArg::Unnamed(FunctionArgExpr::Expr(inner))],
                clauses: vec![],
            }),
            filter: None,
            null_treatment: None,
            over: None,
            within_group: vec![],
        });
    } else {
        return;
    }
    *e = Expr::Subquery(q);
}

/// Apply the rewrites to `stmt`.
pub fn rewrite(stmt: &mut Statement) {
    let _ = visit_expressions_mut(stmt, |e| {
        array_subquery(e);
        case_into_subquery(e);
        ControlFlow::<()>::Continue(())
    });
}

#[cfg(test)]
mod tests {
    use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
    use datafusion::sql::sqlparser::parser::Parser;

    use super::*;

    fn rewritten(sql: &str) -> String {
        let mut stmts = Parser::parse_sql(&PostgreSqlDialect {}, sql).expect("parse");
        rewrite(&mut stmts[0]);
        stmts[0].to_string()
    }

    #[test]
    fn a_case_around_a_catalog_subquery_becomes_the_subquery() {
        assert_eq!(
            rewritten(
                "SELECT CASE WHEN a.atthasdef THEN (SELECT adbin FROM pg_attrdef WHERE adnum = a.attnum) ELSE NULL END FROM pg_attribute a"
            ),
            "SELECT (SELECT adbin FROM pg_attrdef WHERE (a.atthasdef) AND (adnum = a.attnum)) FROM pg_attribute a"
        );
        let other_else = "SELECT CASE WHEN c THEN (SELECT x FROM pg_class) ELSE 1 END FROM t";
        assert_eq!(rewritten(other_else), other_else);
        let user = "SELECT CASE WHEN c THEN (SELECT v FROM readings) END FROM t";
        assert_eq!(rewritten(user), user);
    }

    #[test]
    fn an_array_of_a_subquery_is_an_aggregating_subquery() {
        assert_eq!(
            rewritten("SELECT ARRAY(SELECT b.rolname FROM pg_auth_members m) AS memberof"),
            "SELECT (SELECT array_agg(b.rolname) FROM pg_auth_members m) AS memberof"
        );
    }
}
