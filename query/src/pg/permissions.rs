//! The check of the session's user against the role a statement needs (`42501` when
//! the role falls short; which role each statement needs is decided with its
//! classification, [`super::statement`]), and of relations only admins may read.

use datafusion::sql::sqlparser::ast::Statement;
use pgwire::api::ClientInfo;
use pgwire::error::{PgWireError, PgWireResult};

use super::sqlstate::{self, user_error};
use crate::users::{Role, Users};

/// The user of `client`'s session (from its startup message).
pub fn session_user<C: ClientInfo + ?Sized>(client: &C) -> String {
    client.metadata().get("user").cloned().unwrap_or_default()
}

/// Refuse `statement` unless the session's user has the role it `needed` (see
/// [`super::statement::classify`]).
pub fn check<C: ClientInfo + ?Sized>(
    client: &C,
    users: &Users,
    statement: &Statement,
    needed: Role,
) -> PgWireResult<()> {
    check_private(client, users, statement)?;
    check_role(client, users, needed, || statement_kind(statement))
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
