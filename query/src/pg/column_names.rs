//! Result column names as PostgreSQL gives them: an unnamed expression in the outermost
//! select list is named after its function (`count(*)` → `count`, `round(avg(p), 1)` →
//! `round`), after the column a cast converts (`ts::text` → `ts`) or its type (`1::int`
//! → `int4` in PostgreSQL; here the type as written), `case` for a CASE, and
//! `?column?` for other expressions — DataFusion would name them after the expression's
//! text, which is what BI tools and `pandas.read_sql` would show as column names.
//! A name two columns would share is left as DataFusion gives it (DataFusion needs
//! distinct names); lists with `*` are left alone.

use datafusion::sql::sqlparser::ast::{Expr, Ident, Query, SelectItem, SetExpr, Statement};

/// PostgreSQL's name for an unnamed expression, `None` when it already has one that
/// DataFusion uses as PostgreSQL does (a column reference).
fn pg_name(e: &Expr) -> Option<String> {
    match e {
        Expr::Identifier(_) | Expr::CompoundIdentifier(_) => None,
        Expr::Nested(inner) => pg_name(inner),
        Expr::Function(f) => f
            .name
            .0
            .last()
            .and_then(|p| p.as_ident())
            .map(|i| i.value.to_ascii_lowercase()),
        Expr::Cast {
            expr, data_type, ..
        } => match expr.as_ref() {
            Expr::Identifier(i) => Some(i.value.clone()),
            Expr::CompoundIdentifier(parts) => parts.last().map(|i| i.value.clone()),
            inner => pg_name(inner)
                .filter(|n| n != "?column?")
                .or_else(|| Some(data_type.to_string().to_ascii_lowercase())),
        },
        Expr::Case { .. } => Some("case".into()),
        _ => Some("?column?".into()),
    }
}

fn name_query(q: &mut Query) {
    let SetExpr::Select(select) = q.body.as_mut() else {
        return;
    };
    if select.projection.iter().any(|i| {
        matches!(
            i,
            SelectItem::Wildcard(_) | SelectItem::QualifiedWildcard(..)
        )
    }) {
        return;
    }
    let names: Vec<Option<String>> = select
        .projection
        .iter()
        .map(|item| match item {
            SelectItem::UnnamedExpr(e) => pg_name(e),
            _ => None,
        })
        .collect();
    // Names every column will have: given aliases, column names, and the new ones.
    let final_name = |i: usize| -> String {
        match (&select.projection[i], &names[i]) {
            (SelectItem::ExprWithAlias { alias, .. }, _) => alias.value.clone(),
            (_, Some(n)) => n.clone(),
            (SelectItem::UnnamedExpr(Expr::Identifier(id)), _) => id.value.clone(),
            (SelectItem::UnnamedExpr(Expr::CompoundIdentifier(p)), _) => {
                p.last().map(|i| i.value.clone()).unwrap_or_default()
            }
            (item, _) => item.to_string(),
        }
    };
    let all: Vec<String> = (0..names.len()).map(final_name).collect();
    for (i, name) in names.into_iter().enumerate() {
        let Some(name) = name else { continue };
        if all.iter().filter(|n| **n == name).count() > 1 {
            continue;
        }
        let item = std::mem::replace(
            &mut select.projection[i],
            SelectItem::UnnamedExpr(Expr::Identifier(Ident::new(""))),
        );
        select.projection[i] = match item {
            SelectItem::UnnamedExpr(expr) => SelectItem::ExprWithAlias {
                expr,
                alias: Ident::with_quote('"', name),
            },
            other => other,
        };
    }
}

/// Name the result columns of a query as PostgreSQL would.
pub fn name_columns(stmt: &mut Statement) {
    if let Statement::Query(q) = stmt {
        name_query(q);
    }
}

#[cfg(test)]
mod tests {
    use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
    use datafusion::sql::sqlparser::parser::Parser;

    use super::*;

    fn named(sql: &str) -> String {
        let mut stmts = Parser::parse_sql(&PostgreSqlDialect {}, sql).expect("parse");
        name_columns(&mut stmts[0]);
        stmts[0].to_string()
    }

    #[test]
    fn unnamed_expressions_get_postgres_names() {
        assert_eq!(
            named(
                "SELECT pid, count(*), round(avg(p), 1), ts::text, 1 + 1 FROM t GROUP BY pid, ts"
            ),
            "SELECT pid, count(*) AS \"count\", round(avg(p), 1) AS \"round\", ts::TEXT AS \"ts\", 1 + 1 AS \"?column?\" FROM t GROUP BY pid, ts"
        );
        // Two columns would both be "max": left alone.
        assert_eq!(
            named("SELECT max(a), max(b) FROM t"),
            "SELECT max(a), max(b) FROM t"
        );
        // Given names and wildcards are kept.
        assert_eq!(
            named("SELECT count(*) AS n FROM t"),
            "SELECT count(*) AS n FROM t"
        );
        assert_eq!(named("SELECT *, 1 FROM t"), "SELECT *, 1 FROM t");
    }
}
