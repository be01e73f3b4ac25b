//! Rewrites of the catalog queries clients send, where DataFusion cannot run
//! PostgreSQL's form as written. They run on what the parser returns
//! ([`super::compat_parser`], which applies datafusion-pg-catalog's rewrite rules while
//! parsing) and before the service applies those rules once more; among them
//! [`catalog_projection_subqueries`]: a correlated scalar subquery in a select list that
//! reads only catalog tables is answered with NULL — for wattdb's tables the true answer
//! to what clients ask that way (column defaults, identity sequences, collations: none).
//!
//! `ARRAY(SELECT x FROM …)` becomes `(SELECT array_agg(x) FROM …)`; over `unnest` of a
//! catalog array column wattdb answers NULL (`reloptions`, ACLs), it is NULL.
//!
//! SQLAlchemy's column reflection wraps such subqueries in `CASE WHEN c THEN (SELECT …)
//! ELSE NULL END`; a CASE whose every result is such a subquery (or NULL) is NULL.
//!
//! A `pg_type` function column compared with a `regproc` literal is compared with the
//! function's name (the emulation holds names there, not oids); `x::regtype::text` is
//! the type's name, `format_type(x, NULL)`.
//!
//! A scalar subquery in a filter that does not aggregate is made to (`max` of its one
//! value), since DataFusion runs correlated scalar subqueries only then. Only
//! subqueries that read `pg_*` or `information_schema` tables are touched.

use std::ops::ControlFlow;

use datafusion::sql::sqlparser::ast::{
    AccessExpr, BinaryOperator, DataType, Expr, Function, FunctionArg, FunctionArgExpr,
    FunctionArgumentList, FunctionArguments, GroupByExpr, Ident, LimitClause, ObjectName, Query,
    Select, SelectItem, SetExpr, Statement, TableFactor, Value, VisitMut, VisitorMut,
    visit_expressions, visit_expressions_mut, visit_relations,
};

/// Whether `name` is a relation of the catalog emulation: `pg_catalog.*`,
/// `information_schema.*`, or an unqualified `pg_*`.
pub fn is_catalog_table(name: &ObjectName) -> bool {
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

/// `ARRAY(SELECT x FROM …)` (psql's `\du`, `\d+`) is `(SELECT array_agg(x) FROM …)`.
/// The subquery of `ARRAY(subquery)`.
fn array_of_subquery(e: &Expr) -> Option<&Query> {
    let Expr::Function(f) = e else {
        return None;
    };
    if !f.name.to_string().eq_ignore_ascii_case("array") {
        return None;
    }
    match &f.args {
        FunctionArguments::Subquery(q) => Some(q),
        _ => None,
    }
}

/// The column a (possibly qualified) column reference names.
fn column_name(e: &Expr) -> Option<&str> {
    match e {
        Expr::Identifier(i) => Some(&i.value),
        Expr::CompoundIdentifier(parts) => parts.last().map(|i| i.value.as_str()),
        _ => None,
    }
}

fn array_subquery(e: &mut Expr) {
    let Some(q) = array_of_subquery(e) else {
        return;
    };
    let mut q = Box::new(q.clone());
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
        *x = call("array_agg", inner);
    } else {
        return;
    }
    *e = Expr::Subquery(q);
}

/// Aggregate functions a subquery's projection may already be.
const AGGREGATES: &[&str] = &[
    "count",
    "max",
    "min",
    "sum",
    "avg",
    "bool_or",
    "bool_and",
    "array_agg",
    "string_agg",
];

/// A scalar subquery over catalog tables in a filter, `(SELECT e FROM … WHERE …)`,
/// becomes `(SELECT max(e) FROM … WHERE …)`: DataFusion runs a correlated scalar subquery
/// only when it aggregates. Catalog subqueries that clients write this way look a row up
/// by its oid (pgjdbc's type list: `t.typrelid = 0 OR (SELECT c.relkind = 'c' FROM
/// pg_class c WHERE c.oid = t.typrelid)`), so there is at most one row and the maximum
/// of it is it (NULL for none, as the subquery).
fn aggregate_scalar_subquery(e: &mut Expr) {
    let Expr::Subquery(q) = e else {
        return;
    };
    let SetExpr::Select(select) = q.body.as_mut() else {
        return;
    };
    let grouped = match &select.group_by {
        GroupByExpr::Expressions(exprs, _) => !exprs.is_empty(),
        GroupByExpr::All(_) => true,
    };
    if grouped || select.projection.len() != 1 || !reads_catalog(select) {
        return;
    }
    let (SelectItem::UnnamedExpr(x) | SelectItem::ExprWithAlias { expr: x, .. }) =
        &mut select.projection[0]
    else {
        return;
    };
    if let Expr::Function(f) = x
        && AGGREGATES
            .iter()
            .any(|a| f.name.to_string().eq_ignore_ascii_case(a))
    {
        return;
    }
    let inner = std::mem::replace(x, Expr::value(Value::Null));
    *x = call("max", inner);
}

fn call(name: &str, arg: Expr) -> Expr {
    call_with(name, vec![arg])
}

fn call_with(name: &str, args: Vec<Expr>) -> Expr {
    Expr::Function(Function {
        name: ObjectName::from(vec![Ident::new(name)]),
        uses_odbc_syntax: false,
        parameters: FunctionArguments::None,
        args: FunctionArguments::List(FunctionArgumentList {
            duplicate_treatment: None,
            args: args
                .into_iter()
                .map(|a| FunctionArg::Unnamed(FunctionArgExpr::Expr(a)))
                .collect(),
            clauses: vec![],
        }),
        filter: None,
        null_treatment: None,
        over: None,
        within_group: vec![],
    })
}

/// `pg_type`'s function columns, which the pg_catalog emulation holds as names (text).
const TYPE_FUNCTION_COLUMNS: &[&str] = &[
    "typinput",
    "typoutput",
    "typreceive",
    "typsend",
    "typmodin",
    "typmodout",
    "typanalyze",
];

/// `typinput = 'pg_catalog.array_in'::regproc` (pgjdbc's type cache) compares with the
/// function's name, as the emulation holds these columns: the cast has become a lookup
/// of the function's oid by the parser's own rewrite, `(SELECT oid FROM
/// pg_catalog.pg_proc WHERE proname = 'pg_catalog.array_in')`, which is turned back into
/// the unqualified name.
fn regproc_comparison(e: &mut Expr) {
    let Expr::BinaryOp {
        left,
        op: BinaryOperator::Eq,
        right,
    } = e
    else {
        return;
    };
    let Some(column) = column_name(left) else {
        return;
    };
    if !TYPE_FUNCTION_COLUMNS.contains(&column.to_ascii_lowercase().as_str()) {
        return;
    }
    let Some(name) = proc_oid_lookup(right) else {
        return;
    };
    let unqualified = name
        .strip_prefix("pg_catalog.")
        .unwrap_or(&name)
        .to_string();
    **right = Expr::value(Value::SingleQuotedString(unqualified));
}

/// `x::regtype::text` (asyncpg's type introspection names element and base types so)
/// is the type's name, `format_type(x, NULL)`; the emulation holds a regtype as its
/// number and would print that.
fn regtype_name(e: &mut Expr) {
    let Expr::Cast {
        expr: inner,
        data_type,
        ..
    } = e
    else {
        return;
    };
    let is_text = matches!(
        data_type,
        DataType::Text | DataType::Varchar(_) | DataType::String(_)
    );
    let Expr::Cast {
        expr: x,
        data_type: DataType::Custom(name, args),
        ..
    } = inner.as_ref()
    else {
        return;
    };
    let regtype = args.is_empty()
        && name
            .0
            .last()
            .and_then(|p| p.as_ident())
            .is_some_and(|i| i.value.eq_ignore_ascii_case("regtype"));
    if is_text && regtype {
        *e = call_with(
            "format_type",
            vec![x.as_ref().clone(), Expr::value(Value::Null)],
        );
    }
}

/// The name in `(SELECT oid FROM pg_catalog.pg_proc WHERE proname = 'name')`.
fn proc_oid_lookup(e: &Expr) -> Option<String> {
    let Expr::Subquery(q) = e else { return None };
    let SetExpr::Select(select) = q.body.as_ref() else {
        return None;
    };
    let [from] = select.from.as_slice() else {
        return None;
    };
    let TableFactor::Table { name, .. } = &from.relation else {
        return None;
    };
    if !name.to_string().eq_ignore_ascii_case("pg_catalog.pg_proc") || !from.joins.is_empty() {
        return None;
    }
    let Some(Expr::BinaryOp {
        left,
        op: BinaryOperator::Eq,
        right,
    }) = &select.selection
    else {
        return None;
    };
    let (Expr::Identifier(column), Expr::Value(v)) = (left.as_ref(), right.as_ref()) else {
        return None;
    };
    match &v.value {
        Value::SingleQuotedString(s) if column.value.eq_ignore_ascii_case("proname") => {
            Some(s.clone())
        }
        _ => None,
    }
}

/// A scalar subquery of a select list (directly, in parentheses or as a `CASE` result)
/// that reads catalog relations and nothing else: NULL when it is correlated — for
/// wattdb's tables the answer to what clients ask that way (column defaults, identity
/// sequences, collations, a domain's base type: none), and DataFusion could not run it —
/// and limited to one row when it is not (clients' catalog lookups by name). Subqueries
/// that read a user's table are left alone, correlated or not: DataFusion decorrelates
/// them or refuses them, and a subquery of more than one row is an error, not its first.
pub fn catalog_projection_subqueries(stmt: &mut Statement) {
    let _ = stmt.visit(&mut ProjectionSubqueries);
}

struct ProjectionSubqueries;

impl VisitorMut for ProjectionSubqueries {
    type Break = ();

    fn pre_visit_query(&mut self, query: &mut Query) -> ControlFlow<()> {
        if let SetExpr::Select(select) = query.body.as_mut() {
            for item in &mut select.projection {
                if let SelectItem::UnnamedExpr(e) | SelectItem::ExprWithAlias { expr: e, .. } = item
                {
                    catalog_subquery_in_projection(e);
                }
            }
        }
        ControlFlow::Continue(())
    }
}

fn catalog_subquery_in_projection(e: &mut Expr) {
    match e {
        Expr::Nested(inner) => catalog_subquery_in_projection(inner),
        Expr::Case {
            conditions,
            else_result,
            ..
        } => {
            for when in conditions.iter_mut() {
                catalog_subquery_in_projection(&mut when.result);
            }
            if let Some(x) = else_result {
                catalog_subquery_in_projection(x);
            }
            // NULL whatever the conditions are (which may hold catalog subqueries of
            // their own, as SQLAlchemy's collation lookup does): NULL.
            let is_null = |x: &Expr| matches!(x, Expr::Value(v) if v.value == Value::Null);
            if conditions.iter().all(|w| is_null(&w.result))
                && else_result.as_deref().is_none_or(is_null)
            {
                *e = Expr::value(Value::Null);
            }
        }
        Expr::Subquery(q) if reads_only_catalog(q) => {
            if is_correlated(q) {
                *e = Expr::value(Value::Null);
            } else if q.limit_clause.is_none() && q.fetch.is_none() {
                q.limit_clause = Some(LimitClause::LimitOffset {
                    limit: Some(Expr::value(Value::Number("1".into(), false))),
                    offset: None,
                    limit_by: vec![],
                });
            }
        }
        _ => {}
    }
}

/// Whether `query` reads at least one catalog relation and, besides its own `WITH`
/// names, nothing else.
fn reads_only_catalog(query: &Query) -> bool {
    let ctes: Vec<String> = query
        .with
        .iter()
        .flat_map(|w| w.cte_tables.iter())
        .map(|c| c.alias.name.value.to_ascii_lowercase())
        .collect();
    let (mut catalog, mut other) = (false, false);
    let _ = visit_relations(query, |name| {
        if is_catalog_table(name) {
            catalog = true;
        } else if !(name.0.len() == 1 && ctes.contains(&name.to_string().to_ascii_lowercase())) {
            other = true;
        }
        ControlFlow::<()>::Continue(())
    });
    catalog && !other
}

/// Whether `query` names a column of a relation it does not alias itself (or a
/// parameter), the test datafusion-pg-catalog's rule made.
fn is_correlated(query: &Query) -> bool {
    let SetExpr::Select(select) = query.body.as_ref() else {
        return false;
    };
    let mut aliases = Vec::new();
    for t in &select.from {
        for relation in std::iter::once(&t.relation).chain(t.joins.iter().map(|j| &j.relation)) {
            if let TableFactor::Table {
                alias: Some(alias), ..
            } = relation
            {
                aliases.push(alias.name.value.clone());
            }
        }
    }
    let mut correlated = false;
    let _ = visit_expressions(query, |e| {
        match e {
            Expr::Value(v) if matches!(v.value, Value::Placeholder(_)) => correlated = true,
            Expr::CompoundIdentifier(parts)
                if parts.first().is_some_and(|p| !aliases.contains(&p.value)) =>
            {
                correlated = true
            }
            _ => {}
        }
        ControlFlow::<()>::Continue(())
    });
    correlated
}

/// Visits every query's filter (`WHERE`) for [`aggregate_scalar_subquery`].
struct Filters;

impl VisitorMut for Filters {
    type Break = ();

    fn post_visit_select(&mut self, select: &mut Select) -> ControlFlow<()> {
        if let Some(filter) = &mut select.selection {
            let _ = visit_expressions_mut(filter, |e| {
                aggregate_scalar_subquery(e);
                table_is_visible(e);
                ControlFlow::<()>::Continue(())
            });
        }
        ControlFlow::Continue(())
    }
}

/// `pg_table_is_visible(oid)` in a filter (psql's `\dt`, `\d`, its tab completion) is
/// true only for relations in the schemas of the default search path, `public` and
/// `pg_catalog`, so that unqualified names are offered only where they resolve; the
/// emulation answers true for every relation, `system.*` ones too.
fn table_is_visible(e: &mut Expr) {
    if let Some(args) = call_args(e, "pg_table_is_visible")
        && let [oid] = args.as_slice()
        && let Some(x) = parsed(&format!(
            "({oid} IN (SELECT visible_c.oid FROM pg_catalog.pg_class visible_c \
             JOIN pg_catalog.pg_namespace visible_n ON visible_c.relnamespace = visible_n.oid \
             WHERE visible_n.nspname IN ('public', 'pg_catalog')))"
        ))
    {
        *e = x;
    }
}

/// Catalog array columns the pg_catalog emulation answers with NULL for wattdb's tables
/// (no storage options, no ACLs, no per-function settings).
const NULL_ARRAY_COLUMNS: &[&str] = &[
    "reloptions",
    "attoptions",
    "relacl",
    "attacl",
    "proacl",
    "datacl",
    "nspacl",
    "proconfig",
    "setconfig",
];

/// `ARRAY(SELECT … FROM unnest(c.reloptions) x)` (psql's `\d+` lists a table's storage
/// options so) is NULL: the unnested column is always NULL here, and DataFusion has no
/// `unnest` table function over a column of the outer query.
fn unnest_of_null_array(e: &mut Expr) {
    let Some(q) = array_of_subquery(e) else {
        return;
    };
    let SetExpr::Select(select) = q.body.as_ref() else {
        return;
    };
    let [from] = select.from.as_slice() else {
        return;
    };
    let unnested: Vec<&Expr> = match &from.relation {
        TableFactor::UNNEST { array_exprs, .. } => array_exprs.iter().collect(),
        TableFactor::Table {
            name,
            args: Some(args),
            ..
        } if name
            .0
            .last()
            .and_then(|p| p.as_ident())
            .is_some_and(|i| i.value.eq_ignore_ascii_case("unnest")) =>
        {
            args.args
                .iter()
                .filter_map(|a| match a {
                    FunctionArg::Unnamed(FunctionArgExpr::Expr(x)) => Some(x),
                    _ => None,
                })
                .collect()
        }
        _ => return,
    };
    let null_column = |x: &Expr| {
        // Already made NULL by `missing_class_column` (inner expressions go first).
        if let Expr::Cast { expr, .. } = x {
            return matches!(expr.as_ref(), Expr::Value(v) if matches!(v.value, Value::Null));
        }
        let Some(column) = column_name(x) else {
            return false;
        };
        NULL_ARRAY_COLUMNS.contains(&column.to_ascii_lowercase().as_str())
    };
    if !unnested.is_empty() && unnested.iter().all(|x| null_column(x)) {
        *e = null_text_array();
    }
}

/// `pg_class` columns PostgreSQL has and the pg_catalog emulation does not; wattdb's
/// tables have none of them (NULL in PostgreSQL too).
const MISSING_CLASS_COLUMNS: &[&str] = &["reloptions", "relacl"];

/// `CAST(NULL AS TEXT[])`: the catalog's NULL arrays, typed so that `||` and
/// `array_to_string` over them plan.
fn null_text_array() -> Expr {
    use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
    use datafusion::sql::sqlparser::parser::Parser;
    Parser::new(&PostgreSqlDialect {})
        .try_with_sql("CAST(NULL AS TEXT[])")
        .and_then(|mut p| p.parse_expr())
        .unwrap_or_else(|_| Expr::value(Value::Null))
}

/// A reference to one of [`MISSING_CLASS_COLUMNS`] (`c.reloptions`,
/// `pg_catalog.pg_class.reloptions`) is NULL.
fn missing_class_column(e: &mut Expr) {
    let Expr::CompoundIdentifier(parts) = e else {
        return;
    };
    // `c.reloptions`, `pg_class.reloptions` or `pg_catalog.pg_class.reloptions`.
    let qualified_by_class = match parts.len() {
        2 => true,
        3 => parts[1].value.eq_ignore_ascii_case("pg_class"),
        _ => false,
    };
    if qualified_by_class
        && parts
            .last()
            .is_some_and(|p| MISSING_CLASS_COLUMNS.contains(&p.value.to_ascii_lowercase().as_str()))
    {
        *e = null_text_array();
    }
}

/// The arguments of a call to `name` (unqualified or `pg_catalog.`/`information_schema.`).
fn call_args<'a>(e: &'a Expr, name: &str) -> Option<Vec<&'a Expr>> {
    let Expr::Function(f) = e else {
        return None;
    };
    let last = f.name.0.last()?.as_ident()?;
    if !last.value.eq_ignore_ascii_case(name) {
        return None;
    }
    let FunctionArguments::List(list) = &f.args else {
        return None;
    };
    Some(
        list.args
            .iter()
            .filter_map(|a| match a {
                FunctionArg::Unnamed(FunctionArgExpr::Expr(x)) => Some(x),
                _ => None,
            })
            .collect(),
    )
}

fn parsed(sql: &str) -> Option<Expr> {
    use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
    use datafusion::sql::sqlparser::parser::Parser;
    Parser::new(&PostgreSqlDialect {})
        .try_with_sql(sql)
        .and_then(|mut p| p.parse_expr())
        .ok()
}

/// `generate_subscripts(a, 1)` (SQLAlchemy's key reflection, beside `unnest(a)`): the
/// subscripts as a second unnested column, `unnest(range(1, cardinality(a) + 1))`, which
/// DataFusion zips with the first as PostgreSQL runs set-returning functions in step.
fn generate_subscripts(e: &mut Expr) {
    let Some(args) = call_args(e, "generate_subscripts") else {
        return;
    };
    let Some(array) = args.first() else { return };
    if let Some(x) = unnested_subscripts(array) {
        *e = x;
    }
}

/// `unnest(range(1, cardinality(a) + 1))`: the positions of `a`'s elements as a
/// set-returning column.
fn unnested_subscripts(array: &Expr) -> Option<Expr> {
    parsed(&format!(
        "unnest(range(1, CAST(cardinality({array}) AS BIGINT) + 1))"
    ))
}

/// pgjdbc's key lookups (`getPrimaryKeys`) expand `int2vector`s with
/// `information_schema._pg_expandarray(a)`, a set-returning function of composites
/// `(x, n)` (element, position): `_pg_expandarray(a)` becomes `unnest(a)`, its `.x` the
/// element itself, `.n` a second unnested column of positions, and a later
/// `(<alias>.keys).x` the unnested column. (Expressions are visited inner first.)
fn pg_expandarray(e: &mut Expr) {
    if let Some(args) = call_args(e, "_pg_expandarray")
        && let Some(array) = args.first()
        && let Some(x) = parsed(&format!("unnest({array})"))
    {
        *e = x;
        return;
    }
    let Expr::CompoundFieldAccess { root, access_chain } = e else {
        return;
    };
    let [AccessExpr::Dot(Expr::Identifier(field))] = access_chain.as_slice() else {
        return;
    };
    let mut base = root.as_ref();
    while let Expr::Nested(inner) = base {
        base = inner;
    }
    let field = field.value.to_ascii_lowercase();
    let replacement = if let Some(args) = call_args(base, "unnest") {
        let Some(array) = args.first() else { return };
        match field.as_str() {
            "x" => Some(base.clone()),
            "n" => unnested_subscripts(array),
            _ => None,
        }
    } else {
        let names_keys = match base {
            Expr::Identifier(i) => i.value.eq_ignore_ascii_case("keys"),
            Expr::CompoundIdentifier(parts) => parts
                .last()
                .is_some_and(|p| p.value.eq_ignore_ascii_case("keys")),
            _ => false,
        };
        (names_keys && field == "x").then(|| base.clone())
    };
    if let Some(r) = replacement {
        *e = r;
    }
}

/// `x [I]LIKE p ESCAPE 'c'` with `c` other than the backslash (DataFusion's only one)
/// is `x [I]LIKE wattdb_like_escape(p, 'c')`: the same pattern written with backslash
/// escapes (see [`crate::functions::like_escape`]).
fn like_escape(e: &mut Expr) {
    let (Expr::Like {
        pattern,
        escape_char,
        ..
    }
    | Expr::ILike {
        pattern,
        escape_char,
        ..
    }) = e
    else {
        return;
    };
    let Some(escape) = escape_char.as_ref() else {
        return;
    };
    let text = match &escape.value {
        Value::SingleQuotedString(t) | Value::EscapedStringLiteral(t) => t.clone(),
        _ => return,
    };
    if text == "\\" {
        return;
    }
    let inner = std::mem::replace(pattern.as_mut(), Expr::value(Value::Null));
    **pattern = call_with(
        crate::functions::like_escape::NAME,
        vec![inner, Expr::value(Value::SingleQuotedString(text))],
    );
    *escape_char = None;
}

/// The `pg_catalog` relations wattdb adds to the emulation's, which its parser does not
/// qualify.
fn is_emulated_here(relation: &str) -> bool {
    [
        "pg_user",
        "pg_shadow",
        crate::sessions::activity_table::NAME,
    ]
    .contains(&relation)
        || crate::catalog_empty::EMPTY_RELATIONS.contains(&relation)
}

/// Apply the rewrites to `stmt`.
pub fn rewrite(stmt: &mut Statement) {
    let _ = visit_expressions_mut(stmt, |e| {
        pg_expandarray(e);
        generate_subscripts(e);
        unnest_of_null_array(e);
        missing_class_column(e);
        array_subquery(e);
        regproc_comparison(e);
        regtype_name(e);
        like_escape(e);
        ControlFlow::<()>::Continue(())
    });
    let _ = stmt.visit(&mut Filters);
    let _ = stmt.visit(&mut QualifyRoleRelations);
}

/// `pg_user`, `pg_shadow` and `pg_stat_activity` unqualified are `pg_catalog`'s (on
/// PostgreSQL's default search path; the emulation's parser qualifies only the relations
/// it has itself).
struct QualifyRoleRelations;

impl VisitorMut for QualifyRoleRelations {
    type Break = ();

    fn pre_visit_table_factor(&mut self, t: &mut TableFactor) -> ControlFlow<()> {
        if let TableFactor::Table {
            name, args: None, ..
        } = t
            && let [part] = name.0.as_slice()
            && let Some(ident) = part.as_ident()
            && ident.quote_style.is_none()
            && is_emulated_here(&ident.value.to_ascii_lowercase())
        {
            let relation = ident.value.to_ascii_lowercase();
            *name = ObjectName(vec![
                datafusion::sql::sqlparser::ast::ObjectNamePart::Identifier(Ident::new(
                    "pg_catalog",
                )),
                datafusion::sql::sqlparser::ast::ObjectNamePart::Identifier(Ident::new(relation)),
            ]);
        }
        ControlFlow::Continue(())
    }
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
    fn pgjdbc_primary_key_lookup_unnests_its_expanded_arrays() {
        let sql = "SELECT result.COLUMN_NAME, result.KEY_SEQ FROM (SELECT a.attname AS COLUMN_NAME, \
            (information_schema._pg_expandarray(i.indkey)).n AS KEY_SEQ, \
            information_schema._pg_expandarray(i.indkey) AS KEYS, a.attnum AS A_ATTNUM \
            FROM pg_catalog.pg_attribute a JOIN pg_catalog.pg_index i ON (a.attrelid = i.indrelid)) result \
            where result.A_ATTNUM = (result.KEYS).x";
        let out = rewritten(sql);
        assert!(
            out.contains("unnest(range(1, CAST(cardinality(i.indkey) AS BIGINT) + 1)) AS KEY_SEQ"),
            "{out}"
        );
        assert!(out.contains("unnest(i.indkey) AS KEYS"), "{out}");
        assert!(out.contains("result.A_ATTNUM = result.KEYS"), "{out}");
    }

    #[test]
    fn table_visibility_in_a_filter_asks_for_the_search_path_schemas() {
        let out = rewritten(
            "SELECT c.relname FROM pg_catalog.pg_class c WHERE c.relname LIKE 'e%' \
             AND pg_catalog.pg_table_is_visible(c.oid)",
        );
        assert!(
            out.contains("c.oid IN (SELECT visible_c.oid FROM pg_catalog.pg_class visible_c")
                && out.contains("visible_n.nspname IN ('public', 'pg_catalog')"),
            "{out}"
        );
    }

    #[test]
    fn generate_subscripts_becomes_unnested_positions() {
        let out = rewritten(
            "SELECT unnest(i.indkey) AS attnum, generate_subscripts(i.indkey, 1) AS ord FROM pg_catalog.pg_index i",
        );
        assert!(
            out.contains("unnest(range(1, CAST(cardinality(i.indkey) AS BIGINT) + 1)) AS ord"),
            "{out}"
        );
    }

    fn projected(sql: &str) -> String {
        let mut stmt = Parser::parse_sql(&PostgreSqlDialect {}, sql).expect("parse");
        catalog_projection_subqueries(&mut stmt[0]);
        stmt[0].to_string()
    }

    #[test]
    fn correlated_catalog_subqueries_of_a_select_list_are_null() {
        assert_eq!(
            projected(
                "SELECT CASE WHEN a.atthasdef THEN (SELECT adbin FROM pg_attrdef d WHERE d.adnum = a.attnum) ELSE NULL END AS def FROM pg_attribute a"
            ),
            "SELECT NULL AS def FROM pg_attribute a"
        );
        // Every result NULL: the CASE is, whatever its conditions hold.
        assert_eq!(
            projected(
                "SELECT CASE WHEN (SELECT t.typcollation FROM pg_type t WHERE t.oid = a.atttypid) <> 0 \
                 THEN (SELECT c.collname FROM pg_collation c WHERE c.oid = a.attcollation) END FROM pg_attribute a"
            ),
            "SELECT NULL FROM pg_attribute a"
        );
        let other_else = "SELECT CASE WHEN c THEN (SELECT d.adbin FROM pg_attrdef d WHERE d.adnum = t.n) ELSE 1 END FROM t";
        assert_eq!(
            projected(other_else),
            "SELECT CASE WHEN c THEN NULL ELSE 1 END FROM t"
        );
        // Uncorrelated over the catalog: its first row, as clients' lookups by name expect.
        assert_eq!(
            projected("SELECT (SELECT oid FROM pg_namespace n WHERE n.nspname = 'public')"),
            "SELECT (SELECT oid FROM pg_namespace n WHERE n.nspname = 'public' LIMIT 1)"
        );
        // Users' tables, correlated or not, and a mix with the catalog: untouched.
        for user in [
            "SELECT CASE WHEN c THEN (SELECT r.v FROM readings r WHERE r.k = t.k) END FROM t",
            "SELECT (SELECT max(r.v) FROM readings r WHERE r.k = t.k) FROM t",
            "SELECT (SELECT v FROM readings) FROM t",
            "SELECT (SELECT c.relname FROM pg_class c JOIN readings r ON r.k = c.oid WHERE c.oid = t.k) FROM t",
        ] {
            assert_eq!(projected(user), user);
        }
    }

    #[test]
    fn a_catalog_scalar_subquery_in_a_filter_aggregates() {
        assert_eq!(
            rewritten(
                "SELECT t.typname FROM pg_type t WHERE t.typrelid = 0 OR (SELECT c.relkind = 'c' FROM pg_class c WHERE c.oid = t.typrelid)"
            ),
            "SELECT t.typname FROM pg_type t WHERE t.typrelid = 0 OR (SELECT max(c.relkind = 'c') FROM pg_class c WHERE c.oid = t.typrelid)"
        );
        let counted = "SELECT 1 FROM pg_type t WHERE (SELECT count(*) FROM pg_class c) > 0";
        assert_eq!(rewritten(counted), counted);
        let user = "SELECT 1 FROM t WHERE (SELECT v FROM readings r WHERE r.k = t.k) > 0";
        assert_eq!(rewritten(user), user);
    }

    #[test]
    fn a_type_function_compared_with_a_regproc_is_compared_with_its_name() {
        let parser = super::super::compat_parser::CompatParser::new();
        let mut stmts = parser
            .parse("SELECT typinput='pg_catalog.array_in'::regproc as is_array FROM pg_catalog.pg_type")
            .expect("parse");
        rewrite(&mut stmts[0]);
        assert_eq!(
            stmts[0].to_string(),
            "SELECT typinput = 'array_in' AS is_array FROM pg_catalog.pg_type"
        );
    }

    #[test]
    fn an_array_over_unnest_of_a_null_catalog_column_is_null() {
        assert_eq!(
            rewritten(
                "SELECT array_to_string(c.reloptions || array(select 'toast.' || x from pg_catalog.unnest(tc.reloptions) x), ', ') FROM pg_class c"
            ),
            "SELECT array_to_string(CAST(NULL AS TEXT[]) || CAST(NULL AS TEXT[]), ', ') FROM pg_class c"
        );
        let other = "SELECT ARRAY(SELECT x FROM unnest(t.values) x) FROM t";
        assert_ne!(rewritten(other), "SELECT NULL FROM t");
    }

    #[test]
    fn an_array_of_a_subquery_is_an_aggregating_subquery() {
        assert_eq!(
            rewritten("SELECT ARRAY(SELECT b.rolname FROM pg_auth_members m) AS memberof"),
            "SELECT (SELECT array_agg(b.rolname) FROM pg_auth_members m) AS memberof"
        );
    }
}
