//! Whether a statement reads data, and so needs one of the execution slots
//! ([`crate::execution::admission`]) before it plans: it does when any relation it
//! names is not a catalog relation (`pg_catalog.*`, `information_schema.*`, an
//! unqualified `pg_*`), or when it calls a table function or unnests — everything that
//! can grow with the data or its arguments (`generate_series`, a recursive CTE). The
//! constant statements and catalog queries clients send on connecting do not, so they
//! are answered while every slot is busy.

use std::ops::ControlFlow;

use datafusion::sql::sqlparser::ast::{Statement, TableFactor, Visit, Visitor};

use super::catalog_rewrite::is_catalog_table;

struct ReadsData;

impl Visitor for ReadsData {
    type Break = ();

    fn pre_visit_table_factor(&mut self, factor: &TableFactor) -> ControlFlow<()> {
        match factor {
            TableFactor::Table { name, args, .. } if args.is_none() && is_catalog_table(name) => {
                ControlFlow::Continue(())
            }
            // Their own relations are visited.
            TableFactor::Derived { .. } | TableFactor::NestedJoin { .. } => {
                ControlFlow::Continue(())
            }
            _ => ControlFlow::Break(()),
        }
    }
}

/// Whether `statement` reads data (see the module docs).
pub fn reads_data(statement: &Statement) -> bool {
    statement.visit(&mut ReadsData).is_break()
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
    use datafusion::sql::sqlparser::parser::Parser;

    fn reads(sql: &str) -> bool {
        let statements = Parser::parse_sql(&PostgreSqlDialect {}, sql).unwrap();
        reads_data(&statements[0])
    }

    #[test]
    fn tables_table_functions_and_ctes_read_data() {
        for sql in [
            "SELECT * FROM meters",
            "SELECT count(*) FROM public.meters m JOIN pg_catalog.pg_class c ON true",
            "SELECT (SELECT max(v) FROM meters) AS m",
            "SELECT count(*) FROM generate_series(1, 200000) a CROSS JOIN generate_series(1, 200000) b",
            "WITH RECURSIVE t(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM t) SELECT count(*) FROM t",
            "SELECT * FROM system.partitions",
            "SELECT * FROM unnest(ARRAY[1, 2])",
            "DELETE FROM meters WHERE ts < now()",
            "SELECT * FROM (SELECT * FROM meters) s",
            "SELECT * FROM last_values('meters')",
        ] {
            assert!(reads(sql), "{sql}");
        }
    }

    #[test]
    fn constants_and_catalog_queries_do_not() {
        for sql in [
            "SELECT 1",
            "SELECT version(), current_setting('TimeZone')",
            "SELECT typname FROM pg_type WHERE oid = 23",
            "SELECT * FROM pg_catalog.pg_stat_activity",
            "SELECT table_name FROM information_schema.tables t JOIN pg_namespace n ON true",
            "SELECT * FROM (SELECT oid FROM pg_class) c",
            "SHOW TimeZone",
        ] {
            assert!(!reads(sql), "{sql}");
        }
    }
}
