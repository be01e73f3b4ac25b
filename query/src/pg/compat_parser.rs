//! The parser of client SQL: PostgreSQL's dialect, a few whole client catalog queries
//! DataFusion cannot run replaced by their (empty) answers, and the rewrite rules of
//! datafusion-pg-catalog that make PostgreSQL's catalog forms plannable — with one rule
//! of wattdb's in place of that crate's `RemoveSubqueryFromProjection`, which answered
//! every correlated scalar subquery of a select list with NULL, over user tables too
//! (`SELECT (SELECT max(v) FROM m WHERE m.pid = x.pid) FROM m x` gave NULL for every
//! row). Here only subqueries that read nothing but catalog relations are touched
//! ([`catalog_rewrite::catalog_projection_subqueries`]); a user's correlated subquery
//! goes to DataFusion, which decorrelates it or says it cannot.
//!
//! The replacement table and the token matching are datafusion-pg-catalog 0.19.0's
//! (`src/sql/parser.rs`, Apache-2.0), whose parser keeps both private. A statement
//! with no replacement is parsed from its own tokens, so parse errors keep their
//! line and column.

use std::sync::Arc;

use datafusion::sql::sqlparser::ast::Statement;
use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
use datafusion::sql::sqlparser::keywords::Keyword;
use datafusion::sql::sqlparser::parser::{Parser, ParserError};
use datafusion::sql::sqlparser::tokenizer::{Span, Token, TokenWithSpan, Tokenizer};
use datafusion_postgres::datafusion_pg_catalog::sql::rules::{
    AliasDuplicatedProjectionRewrite, CurrentUserVariableToSessionUserFunctionCall,
    FixArrayLiteral, FixVersionColumnName, PrependUnqualifiedPgTableName,
    ResolveUnqualifiedIdentifier, RewriteArrayAnyAllOperation, RewritePgCatalogOperator,
    RewriteRegCastToSubquery, SqlStatementRewriteRule, StripCallableQualifier, StripCollate,
};

use super::catalog_rewrite;

/// Whole client queries DataFusion cannot execute, each with the query that answers
/// it (datafusion-pg-catalog's list: psql's `\d` foreign keys, policies, statistics
/// and publications, a type listing, relation sizes, pgcli's search path). `$n` in a
/// pattern matches any one token.
const REPLACED_QUERIES: &[(&str, &str)] = &[
    // pgcli -- foreign-key column lookup
    //
    // Blocked by: `unnest(<scalar subquery>)` -- DataFusion cannot unnest the
    //   result of a subquery (here, `array_agg(...)` over a correlated join).
    // Remove when: DF supports unnesting arbitrary subquery results.
    (
"SELECT s_p.nspname AS parentschema,
                               t_p.relname AS parenttable,
                               unnest((
                                select
                                    array_agg(attname ORDER BY i)
                                from
                                    (select unnest(confkey) as attnum, generate_subscripts(confkey, 1) as i) x
                                    JOIN pg_catalog.pg_attribute c USING(attnum)
                                    WHERE c.attrelid = fk.confrelid
                                )) AS parentcolumn,
                               s_c.nspname AS childschema,
                               t_c.relname AS childtable,
                               unnest((
                                select
                                    array_agg(attname ORDER BY i)
                                from
                                    (select unnest(conkey) as attnum, generate_subscripts(conkey, 1) as i) x
                                    JOIN pg_catalog.pg_attribute c USING(attnum)
                                    WHERE c.attrelid = fk.conrelid
                                )) AS childcolumn
                        FROM pg_catalog.pg_constraint fk
                        JOIN pg_catalog.pg_class      t_p ON t_p.oid = fk.confrelid
                        JOIN pg_catalog.pg_namespace  s_p ON s_p.oid = t_p.relnamespace
                        JOIN pg_catalog.pg_class      t_c ON t_c.oid = fk.conrelid
                        JOIN pg_catalog.pg_namespace  s_c ON s_c.oid = t_c.relnamespace
                        WHERE fk.contype = 'f'",
"SELECT
   NULL::TEXT AS parentschema,
   NULL::TEXT AS parenttable,
   NULL::TEXT AS parentcolumn,
   NULL::TEXT AS childschema,
   NULL::TEXT AS childtable,
   NULL::TEXT AS childcolumn
 WHERE false"),

    // pgcli -- user-defined type lookup
    //
    // Blocked by: correlated scalar subquery in the WHERE clause --
    //   `SELECT c.relkind = 'c' FROM pg_catalog.pg_class c
    //    WHERE c.oid = t.typrelid` references the outer `t`.
    // Remove when: DF plans correlated scalar subqueries in predicates.
    (
"SELECT n.nspname schema_name,
                                       t.typname type_name
                                FROM   pg_catalog.pg_type t
                                       INNER JOIN pg_catalog.pg_namespace n
                                          ON n.oid = t.typnamespace
                                WHERE ( t.typrelid = 0  -- non-composite types
                                        OR (  -- composite type, but not a table
                                              SELECT c.relkind = 'c'
                                              FROM pg_catalog.pg_class c
                                              WHERE c.oid = t.typrelid
                                            )
                                      )
                                      AND NOT EXISTS( -- ignore array types
                                            SELECT  1
                                            FROM    pg_catalog.pg_type el
                                            WHERE   el.oid = t.typelem AND el.typarray = t.oid
                                          )
                                      AND n.nspname <> 'pg_catalog'
                                      AND n.nspname <> 'information_schema'
                                ORDER BY 1, 2;",
"SELECT NULL::TEXT AS schema_name, NULL::TEXT AS type_name WHERE false"
    ),

    // psql \d <table> -- row policies (polrelid bound via the $1 wildcard)
    //
    // Blocked by: the `array(SELECT ...)` array constructor (here over a
    //   join on `any(pol.polroles)`). DataFusion lacks the array-from-subquery
    //   constructor syntax.
    // Remove when: DF supports the `array(SELECT ...)` constructor.
    (
"SELECT pol.polname, pol.polpermissive,
          CASE WHEN pol.polroles = '{0}' THEN NULL ELSE pg_catalog.array_to_string(array(select rolname from pg_catalog.pg_roles where oid = any (pol.polroles) order by 1),',') END,
          pg_catalog.pg_get_expr(pol.polqual, pol.polrelid),
          pg_catalog.pg_get_expr(pol.polwithcheck, pol.polrelid),
          CASE pol.polcmd
            WHEN 'r' THEN 'SELECT'
            WHEN 'a' THEN 'INSERT'
            WHEN 'w' THEN 'UPDATE'
            WHEN 'd' THEN 'DELETE'
            END AS cmd
        FROM pg_catalog.pg_policy pol
        WHERE pol.polrelid = $1 ORDER BY 1;",
"SELECT
   NULL::TEXT AS polname,
   NULL::TEXT AS polpermissive,
   NULL::TEXT AS array_to_string,
   NULL::TEXT AS pg_get_expr_1,
   NULL::TEXT AS pg_get_expr_2,
   NULL::TEXT AS cmd
 WHERE false"
    ),

    // psql \d <table> -- extended statistics (stxrelid bound via $1)
    //
    // Blocked by: `<char-literal> = any(<array-column>)` -- `stxkind` is a
    //   `char[2]`; DataFusion's `array_has` expects matching element types and
    //   rejects the char-vs-string comparison, so all three `any(stxkind)`
    //   predicates fail to plan.
    // Remove when: DF coerces element types in `any(array_col)` comparisons,
    //   or an analyzer rule lowers `lit = ANY(array_col)` to a proper element
    //   comparison.
    (
"SELECT oid, stxrelid::pg_catalog.regclass, stxnamespace::pg_catalog.regnamespace::pg_catalog.text AS nsp, stxname,
        pg_catalog.pg_get_statisticsobjdef_columns(oid) AS columns,
          'd' = any(stxkind) AS ndist_enabled,
          'f' = any(stxkind) AS deps_enabled,
          'm' = any(stxkind) AS mcv_enabled,
        stxstattarget
        FROM pg_catalog.pg_statistic_ext
        WHERE stxrelid = $1
        ORDER BY nsp, stxname;",
"SELECT
   NULL::INT AS oid,
   NULL::TEXT AS stxrelid,
   NULL::TEXT AS nsp,
   NULL::TEXT AS stxname,
   NULL::TEXT AS columns,
   NULL::BOOLEAN AS ndist_enabled,
   NULL::BOOLEAN AS deps_enabled,
   NULL::BOOLEAN AS mcv_enabled,
   NULL::TEXT AS stxstattarget
 WHERE false"
    ),

    // psql \d <table> -- publications (prrelid / oid bound via $1)
    //
    // Blocked by: the three UNION branches each project two unnamed `NULL`
    //   columns, yielding duplicate/empty projection names that DataFusion
    //   rejects. (The `generate_series(0, array_upper(...))` over a correlated
    //   `int2[]` would also fail, but the duplicate-name error fires first.)
    // Remove when: DF tolerates duplicate/unnamed NULL projection columns,
    //   or an aliasing rule can assign synthetic names.
    (
"SELECT pubname
             , NULL
             , NULL
        FROM pg_catalog.pg_publication p
             JOIN pg_catalog.pg_publication_namespace pn ON p.oid = pn.pnpubid
             JOIN pg_catalog.pg_class pc ON pc.relnamespace = pn.pnnspid
        WHERE pc.oid = $1 and pg_catalog.pg_relation_is_publishable($1)
        UNION
        SELECT pubname
             , pg_get_expr(pr.prqual, c.oid)
             , (CASE WHEN pr.prattrs IS NOT NULL THEN
                 (SELECT string_agg(attname, ', ')
                   FROM pg_catalog.generate_series(0, pg_catalog.array_upper(pr.prattrs::pg_catalog.int2[], 1)) s,
                        pg_catalog.pg_attribute
                  WHERE attrelid = pr.prrelid AND attnum = prattrs[s])
                ELSE NULL END) FROM pg_catalog.pg_publication p
             JOIN pg_catalog.pg_publication_rel pr ON p.oid = pr.prpubid
             JOIN pg_catalog.pg_class c ON c.oid = pr.prrelid
        WHERE pr.prrelid = $1
        UNION
        SELECT pubname
             , NULL
             , NULL
        FROM pg_catalog.pg_publication p
        WHERE p.puballtables AND pg_catalog.pg_relation_is_publishable($1)
        ORDER BY 1;",
"SELECT
   NULL::TEXT AS pubname,
   NULL::TEXT AS _1,
   NULL::TEXT AS _2
 WHERE false"
    ),

    // dbeaver -- relation size lookup. NOTE: re-blacklisted because resolving
    // the implicit `c.relnamespace = 'public'` comparison (bare string vs an
    // oid column) requires schema awareness, which the SQL-rewrite layer does
    // not have. The explicit `'...'::regclass` casts elsewhere are handled by
    // RewriteRegCastToSubquery; only this implicit form needs the stub. The rest
    // of the query (pg_total_relation_size / pg_relation_size) works.
    //
    // Blocked by: implicit `<oid-col> = '<name>'` needs the column's oid-alias
    //   metadata, only available at the analyzer layer.
    // Remove when: an analyzer rule resolves implicit string-vs-oid-column
    //   comparisons (the former OidStringCoercion rule did this), or the client
    //   switches to the explicit `'...'::regnamespace` cast form.
    (
"select c.oid,pg_catalog.pg_total_relation_size(c.oid) as total_rel_size,pg_catalog.pg_relation_size(c.oid) as rel_size\n     FROM pg_class c\n     WHERE c.relnamespace='public'",
"SELECT\n   NULL::INT AS oid,\n   NULL::INT AS total_rel_size,\n   NULL::INT AS rel_size\n WHERE false"
    ),

    // grafana -- search_path membership lookup. NOTE: this is the only entry
    // that is a *partial* replacement -- it matches just the inner subquery and
    // substitutes the empty string `''`, so the surrounding `IN (...)` simply
    // matches nothing and the query returns zero rows.
    //
    // Blocked by: missing `current_setting()` UDF -- the query resolves the
    //   session `search_path` at runtime via `current_setting('search_path')`.
    //   (generate_series over dynamic array bounds now works via the
    //   CoerceIntArgsToBigInt wrapper; current_setting is the remaining gap.)
    // Remove when: a `current_setting()` UDF is registered.
    (r#"SELECT
            CASE WHEN trim(s[i]) = '"$user"' THEN user ELSE trim(s[i]) END
        FROM
            generate_series(
                array_lower(string_to_array(current_setting('search_path'),','),1),
                array_upper(string_to_array(current_setting('search_path'),','),1)
            ) as i,
            string_to_array(current_setting('search_path'),',') s"#,
"''")
];

/// The parser every statement goes through (see the module's documentation).
#[derive(Debug)]
pub struct CompatParser {
    /// [`REPLACED_QUERIES`] tokenized, without whitespace and semicolons.
    replaced: Vec<(Vec<Token>, Vec<Token>)>,
    rules: Vec<Arc<dyn SqlStatementRewriteRule>>,
}

impl Default for CompatParser {
    fn default() -> Self {
        Self::new()
    }
}

fn significant_tokens(sql: &str) -> Vec<Token> {
    Tokenizer::new(&PostgreSqlDialect {}, sql)
        .tokenize()
        .unwrap_or_default()
        .into_iter()
        .filter(|t| !matches!(t, Token::Whitespace(_) | Token::SemiColon))
        .collect()
}

/// wattdb's replacement of datafusion-pg-catalog's `RemoveSubqueryFromProjection`.
#[derive(Debug)]
struct CatalogProjectionSubqueries;

impl SqlStatementRewriteRule for CatalogProjectionSubqueries {
    fn rewrite(&self, mut s: Statement) -> Statement {
        catalog_rewrite::catalog_projection_subqueries(&mut s);
        s
    }
}

impl CompatParser {
    pub fn new() -> Self {
        let replaced = REPLACED_QUERIES
            .iter()
            .map(|(from, to)| (significant_tokens(from), significant_tokens(to)))
            .collect();
        // datafusion-pg-catalog's rules, in its order.
        let rules: Vec<Arc<dyn SqlStatementRewriteRule>> = vec![
            Arc::new(AliasDuplicatedProjectionRewrite),
            Arc::new(ResolveUnqualifiedIdentifier),
            Arc::new(RewriteArrayAnyAllOperation),
            Arc::new(PrependUnqualifiedPgTableName),
            Arc::new(StripCallableQualifier),
            Arc::new(FixArrayLiteral),
            Arc::new(CurrentUserVariableToSessionUserFunctionCall),
            Arc::new(StripCollate),
            Arc::new(RewritePgCatalogOperator),
            Arc::new(RewriteRegCastToSubquery::new()),
            Arc::new(CatalogProjectionSubqueries),
            Arc::new(FixVersionColumnName),
        ];
        CompatParser { replaced, rules }
    }

    /// The statements of `sql`, rewritten.
    pub fn parse(&self, sql: &str) -> Result<Vec<Statement>, ParserError> {
        let tokens = Tokenizer::new(&PostgreSqlDialect {}, sql)
            .tokenize_with_location()
            .map_err(|e| ParserError::TokenizerError(e.to_string()))?;
        let tokens = match self.replace(&tokens) {
            Some(replaced) => replaced
                .into_iter()
                .map(|token| TokenWithSpan {
                    token,
                    span: Span::empty(),
                })
                .collect(),
            None => tokens
                .into_iter()
                .map(|t| match &t.token {
                    Token::Word(w) if w.keyword == Keyword::ABORT => TokenWithSpan {
                        token: Token::make_keyword("ROLLBACK"),
                        span: t.span,
                    },
                    _ => t,
                })
                .collect(),
        };
        let statements = Parser::new(&PostgreSqlDialect {})
            .with_tokens_with_locations(tokens)
            .parse_statements()?;
        Ok(statements.into_iter().map(|s| self.rewrite(s)).collect())
    }

    /// `statement` through the rewrite rules.
    pub fn rewrite(&self, mut statement: Statement) -> Statement {
        for rule in &self.rules {
            statement = rule.rewrite(statement);
        }
        statement
    }

    /// The significant tokens of `tokens` with the replaced queries' patterns replaced
    /// (`ABORT` as `ROLLBACK`, its synonym sqlparser does not know); `None` when no
    /// pattern occurs.
    fn replace(&self, tokens: &[TokenWithSpan]) -> Option<Vec<Token>> {
        let input: Vec<Token> = tokens
            .iter()
            .filter(|t| !matches!(t.token, Token::Whitespace(_)))
            .map(|t| match &t.token {
                Token::Word(w) if w.keyword == Keyword::ABORT => Token::make_keyword("ROLLBACK"),
                other => other.clone(),
            })
            .collect();
        let mut out = Vec::with_capacity(input.len());
        let mut any = false;
        let mut i = 0;
        while i < input.len() {
            if matches!(input[i], Token::SemiColon) {
                out.push(Token::SemiColon);
                i += 1;
                continue;
            }
            match self.replaced.iter().find_map(|(pattern, replacement)| {
                matched_len(&input[i..], pattern).map(|n| (n, replacement))
            }) {
                Some((n, replacement)) => {
                    out.extend(replacement.iter().cloned());
                    i += n;
                    any = true;
                }
                None => {
                    out.push(input[i].clone());
                    i += 1;
                }
            }
        }
        any.then_some(out)
    }
}

/// How many tokens of `input` `pattern` matches from its start (semicolons in the input
/// skipped, a `$n` in the pattern matching any token), if it matches.
fn matched_len(input: &[Token], pattern: &[Token]) -> Option<usize> {
    if pattern.is_empty() {
        return None;
    }
    let (mut j, mut p) = (0, 0);
    while j < input.len() && p < pattern.len() {
        if matches!(input[j], Token::SemiColon) {
            j += 1;
            continue;
        }
        if !matches!(pattern[p], Token::Placeholder(_)) && input[j] != pattern[p] {
            return None;
        }
        p += 1;
        j += 1;
    }
    (p == pattern.len()).then_some(j)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(sql: &str) -> String {
        CompatParser::new()
            .parse(sql)
            .expect("parse")
            .iter()
            .map(|s| s.to_string())
            .collect::<Vec<_>>()
            .join("; ")
    }

    #[test]
    fn a_users_correlated_subquery_is_kept() {
        let sql =
            "SELECT x.pid, (SELECT max(y.v) FROM m AS y WHERE y.pid = x.pid) AS mx FROM m AS x";
        assert_eq!(parsed(sql), sql);
        let uncorrelated = "SELECT (SELECT v FROM m) AS v";
        assert_eq!(
            parsed(uncorrelated),
            uncorrelated,
            "no LIMIT 1 stamped on it"
        );
    }

    #[test]
    fn a_catalog_correlated_subquery_is_null() {
        assert_eq!(
            parsed(
                "SELECT c.relname, (SELECT d.description FROM pg_catalog.pg_description d \
                 WHERE d.objoid = c.oid) AS descr FROM pg_catalog.pg_class c"
            ),
            "SELECT c.relname, NULL AS descr FROM pg_catalog.pg_class c"
        );
    }

    #[test]
    fn a_replaced_query_is_answered_by_its_replacement() {
        let got = parsed(
            "select c.oid,pg_catalog.pg_total_relation_size(c.oid) as total_rel_size,\
             pg_catalog.pg_relation_size(c.oid) as rel_size\n     FROM pg_class c\n     \
             WHERE c.relnamespace='public'",
        );
        assert!(got.contains("WHERE false"), "{got}");
    }

    #[test]
    fn abort_is_rollback_and_errors_keep_their_position() {
        assert_eq!(parsed("ABORT"), "ROLLBACK");
        let e = CompatParser::new()
            .parse("SELECT 1;\nSELEC 2")
            .expect_err("syntax");
        assert!(e.to_string().contains("Line: 2"), "{e}");
    }
}
