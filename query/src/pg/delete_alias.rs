//! `DELETE FROM t AS x WHERE x.pid = …`: DataFusion resolves a DELETE's columns only by
//! the table's own name, so the alias is dropped and `x.col` becomes `col` (a DELETE
//! has one table; `USING` is refused later anyway).

use std::ops::ControlFlow;

use datafusion::sql::sqlparser::ast::{
    Expr, FromTable, Statement, TableFactor, visit_expressions_mut,
};

/// Rewrite `stmt` if it is a DELETE with a table alias.
pub fn rewrite(stmt: &mut Statement) {
    let Statement::Delete(delete) = stmt else {
        return;
    };
    let (FromTable::WithFromKeyword(tables) | FromTable::WithoutKeyword(tables)) = &mut delete.from;
    let [table] = tables.as_mut_slice() else {
        return;
    };
    if !table.joins.is_empty() || delete.using.is_some() {
        return;
    }
    let TableFactor::Table { alias, .. } = &mut table.relation else {
        return;
    };
    let Some(alias) = alias.take() else {
        return;
    };
    let name = alias.name.value;
    if let Some(selection) = &mut delete.selection {
        let _ = visit_expressions_mut(selection, |e| {
            if let Expr::CompoundIdentifier(parts) = e
                && parts.len() == 2
                && parts[0].value == name
            {
                *e = Expr::Identifier(parts[1].clone());
            }
            ControlFlow::<()>::Continue(())
        });
    }
}

#[cfg(test)]
mod tests {
    use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
    use datafusion::sql::sqlparser::parser::Parser;

    fn rewritten(sql: &str) -> String {
        let mut stmts = Parser::parse_sql(&PostgreSqlDialect {}, sql).expect("parse");
        super::rewrite(&mut stmts[0]);
        stmts[0].to_string()
    }

    #[test]
    fn the_alias_goes_and_its_columns_are_unqualified() {
        assert_eq!(
            rewritten("DELETE FROM m AS x WHERE x.pid = 'a' AND x.ts < now() AND m.pid <> 'b'"),
            "DELETE FROM m WHERE pid = 'a' AND ts < now() AND m.pid <> 'b'"
        );
        assert_eq!(
            rewritten("DELETE FROM m x WHERE x.pid = 'a'"),
            "DELETE FROM m WHERE pid = 'a'"
        );
        // Nothing to do without an alias.
        assert_eq!(
            rewritten("DELETE FROM m WHERE pid = 'a'"),
            "DELETE FROM m WHERE pid = 'a'"
        );
    }
}
