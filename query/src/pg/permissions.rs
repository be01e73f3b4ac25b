//! What role a statement needs, and the check of the session's user against it
//! (`42501` when the role falls short). Reading is `reader`'s; `INSERT`, `COPY FROM` and
//! `DELETE` are `writer`'s; everything else — DDL, admin functions, users — is `admin`'s,
//! including statements this list does not know (it fails closed).

use datafusion::sql::sqlparser::ast::{CopyTarget, Statement};
use pgwire::api::ClientInfo;
use pgwire::error::{PgWireError, PgWireResult};

use super::sqlstate::{self, user_error};
use crate::admin;
use crate::users::{Role, Users};

/// The role `statement` needs; `admin_functions` are the names `SELECT f(…)` calls that
/// act on storage.
pub fn required(statement: &Statement, admin_functions: &[&str]) -> Role {
    match statement {
        Statement::Query(_) => {
            if admin::parse_admin_call(statement, admin_functions).is_some() {
                Role::Admin
            } else {
                Role::Reader
            }
        }
        // UPDATE is refused as unsupported (0A000), after this check.
        Statement::Insert(_)
        | Statement::Delete(_)
        | Statement::Update(_)
        | Statement::Truncate { .. } => Role::Writer,
        Statement::Copy { to, target, .. } => {
            if *to && *target == CopyTarget::Stdout {
                Role::Reader
            } else {
                Role::Writer
            }
        }
        Statement::Prepare { statement, .. } => required(statement, admin_functions),
        Statement::Explain { statement, .. } => required(statement, admin_functions),
        Statement::Set(_)
        | Statement::Reset(_)
        | Statement::ShowVariable { .. }
        | Statement::ShowVariables { .. }
        | Statement::ShowTables { .. }
        | Statement::ShowColumns { .. }
        | Statement::StartTransaction { .. }
        | Statement::Commit { .. }
        | Statement::Rollback { .. }
        | Statement::Savepoint { .. }
        | Statement::ReleaseSavepoint { .. }
        | Statement::Declare { .. }
        | Statement::Fetch { .. }
        | Statement::Close { .. }
        | Statement::Deallocate { .. }
        | Statement::Execute { .. }
        | Statement::Discard { .. }
        | Statement::LISTEN { .. }
        | Statement::UNLISTEN { .. }
        | Statement::NOTIFY { .. } => Role::Reader,
        _ => Role::Admin,
    }
}

/// The user of `client`'s session (from its startup message).
pub fn session_user<C: ClientInfo + ?Sized>(client: &C) -> String {
    client.metadata().get("user").cloned().unwrap_or_default()
}

/// Refuse `statement` unless the session's user has the role it needs.
pub fn check<C: ClientInfo + ?Sized>(
    client: &C,
    users: &Users,
    statement: &Statement,
    admin_functions: &[&str],
) -> PgWireResult<()> {
    check_private(client, users, statement)?;
    check_role(client, users, required(statement, admin_functions), || {
        statement_kind(statement)
    })
}

/// Refuse `statement` if it names a relation only admins may read and the session's
/// user is not one.
pub fn check_private<C: ClientInfo + ?Sized>(
    client: &C,
    users: &Users,
    statement: &Statement,
) -> PgWireResult<()> {
    if let Some(relation) = private_relation(statement) {
        let user = session_user(client);
        let role = users.role(&user);
        if role != Some(Role::Admin) {
            return Err(user_error(
                sqlstate::INSUFFICIENT_PRIVILEGE,
                format!(
                    "permission denied for table {relation}: it needs the admin role; user \"{user}\" has {}",
                    role_text(role)
                ),
            ));
        }
    }
    Ok(())
}

/// The first relation of [`crate::catalog_roles::PRIVATE_RELATIONS`] `statement` names,
/// anywhere in it (a subquery, a CTE, `EXPLAIN`, `COPY (…) TO`).
fn private_relation(statement: &Statement) -> Option<String> {
    let mut found = None;
    let _ = datafusion::sql::sqlparser::ast::visit_relations(statement, |name| {
        let last = name
            .0
            .last()
            .and_then(|part| part.as_ident())
            .map(|i| i.value.to_ascii_lowercase());
        match last {
            Some(l) if crate::catalog_roles::PRIVATE_RELATIONS.contains(&l.as_str()) => {
                found = Some(l);
                std::ops::ControlFlow::Break(())
            }
            _ => std::ops::ControlFlow::Continue(()),
        }
    });
    found
}

/// Refuse unless the session's user has `needed`; `what` names the action for the
/// message.
pub fn check_role<C: ClientInfo + ?Sized>(
    client: &C,
    users: &Users,
    needed: Role,
    what: impl FnOnce() -> String,
) -> PgWireResult<()> {
    if needed == Role::Reader {
        return Ok(()); // every user that got in may read
    }
    let user = session_user(client);
    let role = users.role(&user);
    if role.is_some_and(|r| r >= needed) {
        return Ok(());
    }
    Err(denied(&user, role, needed, &what()))
}

/// What a user has, for messages.
fn role_text(role: Option<Role>) -> &'static str {
    role.map_or("no role (the user was dropped)", Role::name)
}

fn denied(user: &str, role: Option<Role>, needed: Role, what: &str) -> PgWireError {
    let has = role_text(role);
    user_error(
        sqlstate::INSUFFICIENT_PRIVILEGE,
        format!(
            "permission denied: {what} needs the {} role; user \"{user}\" has {has}",
            needed.name()
        ),
    )
}

/// A short name of what `statement` does, for messages.
fn statement_kind(statement: &Statement) -> String {
    let text = statement.to_string();
    let words: Vec<&str> = text.split_whitespace().take(2).collect();
    match words.as_slice() {
        ["SELECT", f] => format!("SELECT {}", f.split('(').next().unwrap_or(f)),
        [first, second] if matches!(*first, "CREATE" | "DROP" | "ALTER" | "TRUNCATE" | "COPY") => {
            format!("{first} {second}")
        }
        [first, ..] => first.to_string(),
        [] => "this statement".into(),
    }
}

#[cfg(test)]
mod tests {
    use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
    use datafusion::sql::sqlparser::parser::Parser;

    use super::*;

    fn role_of(sql: &str) -> Role {
        let stmts = Parser::parse_sql(&PostgreSqlDialect {}, sql).expect("parse");
        required(&stmts[0], &["flush", "set_retention"])
    }

    #[test]
    fn statements_need_their_roles() {
        assert_eq!(role_of("SELECT avg(p) FROM t"), Role::Reader);
        assert_eq!(role_of("SHOW TIME ZONE"), Role::Reader);
        assert_eq!(role_of("SET TIME ZONE 'UTC'"), Role::Reader);
        assert_eq!(role_of("RESET statement_timeout"), Role::Reader);
        assert_eq!(role_of("RESET ALL"), Role::Reader);
        assert_eq!(role_of("COPY t TO STDOUT"), Role::Reader);
        assert_eq!(role_of("BEGIN"), Role::Reader);
        assert_eq!(role_of("INSERT INTO t VALUES (1)"), Role::Writer);
        assert_eq!(role_of("COPY t FROM STDIN"), Role::Writer);
        assert_eq!(role_of("DELETE FROM t WHERE pid = 'a'"), Role::Writer);
        assert_eq!(
            role_of("PREPARE p AS INSERT INTO t VALUES (1)"),
            Role::Writer
        );
        assert_eq!(role_of("SELECT flush()"), Role::Admin);
        assert_eq!(
            role_of("SELECT set_retention('t', '4 months')"),
            Role::Admin
        );
        assert_eq!(
            role_of("CREATE TABLE x (ts TIMESTAMPTZ NOT NULL)"),
            Role::Admin
        );
        assert_eq!(role_of("DROP TABLE x"), Role::Admin);
        assert_eq!(role_of("UPDATE t SET p = 1"), Role::Writer);
    }

    #[test]
    fn private_relations_are_found_anywhere() {
        let found = |sql: &str| {
            private_relation(&Parser::parse_sql(&PostgreSqlDialect {}, sql).unwrap()[0])
        };
        assert_eq!(
            found("SELECT * FROM pg_authid").as_deref(),
            Some("pg_authid")
        );
        assert_eq!(
            found("SELECT 1 WHERE EXISTS (SELECT 1 FROM pg_catalog.PG_SHADOW)").as_deref(),
            Some("pg_shadow")
        );
        assert_eq!(
            found("EXPLAIN SELECT rolpassword FROM pg_authid").as_deref(),
            Some("pg_authid")
        );
        assert_eq!(
            found("COPY (SELECT * FROM pg_authid) TO STDOUT").as_deref(),
            Some("pg_authid")
        );
        assert_eq!(found("SELECT * FROM pg_roles"), None);
    }

    #[test]
    fn messages_name_the_statement() {
        let kind =
            |sql: &str| statement_kind(&Parser::parse_sql(&PostgreSqlDialect {}, sql).unwrap()[0]);
        assert_eq!(kind("INSERT INTO t VALUES (1)"), "INSERT");
        assert_eq!(kind("SELECT flush()"), "SELECT flush");
        assert_eq!(kind("DROP TABLE x"), "DROP TABLE");
    }
}
