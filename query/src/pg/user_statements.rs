//! The user statements, recognised from the statement's tokens before the SQL parser
//! sees them (its forms of them vary by dialect and carry options wattdb has no use
//! for): `CREATE USER|ROLE name [[WITH] attribute …]`, `ALTER USER|ROLE name [WITH]
//! attribute …`, `DROP USER|ROLE [IF EXISTS] name [, …]`, `GRANT writer|admin TO name`,
//! `REVOKE writer|admin FROM name`. Attributes: `PASSWORD 'pw' | NULL`, `SUPERUSER` /
//! `NOSUPERUSER` (the admin role), `LOGIN` (every user can); PostgreSQL's others
//! (`CREATEROLE`, `CREATEDB`, `NOLOGIN`, `CONNECTION LIMIT n`, `VALID UNTIL '…'`, …)
//! parse and are refused as not supported. Run by [`execute`] for an admin: a user who
//! is not one gets `42501` for any of them, well-formed or not supported.

use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
use datafusion::sql::sqlparser::tokenizer::{Token, Tokenizer, Word};
use pgwire::api::ClientInfo;
use pgwire::api::results::{Response, Tag};
use pgwire::error::{PgWireError, PgWireResult};

use super::permissions;
use super::sqlstate::{self, user_error};
use crate::users::{Role, Users};

/// Role attributes of `CREATE` / `ALTER USER`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Attributes {
    /// `PASSWORD 'pw'` is `Some(Some(pw))`, `PASSWORD NULL` is `Some(None)`.
    pub password: Option<Option<String>>,
    /// `SUPERUSER` / `NOSUPERUSER`: granting or revoking the admin role.
    pub superuser: Option<bool>,
    /// PostgreSQL attributes wattdb has nothing for, as written.
    pub unsupported: Vec<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum UserStatement {
    Create {
        name: String,
        attributes: Attributes,
    },
    Alter {
        name: String,
        attributes: Attributes,
    },
    Drop {
        names: Vec<String>,
        if_exists: bool,
    },
    Grant {
        role: Role,
        name: String,
        granted: bool,
    },
}

impl UserStatement {
    fn tag(&self) -> &'static str {
        match self {
            UserStatement::Create { .. } => "CREATE ROLE",
            UserStatement::Alter { .. } => "ALTER ROLE",
            UserStatement::Drop { .. } => "DROP ROLE",
            UserStatement::Grant { granted: true, .. } => "GRANT ROLE",
            UserStatement::Grant { granted: false, .. } => "REVOKE ROLE",
        }
    }
}

struct Tokens {
    tokens: Vec<Token>,
    pos: usize,
}

impl Tokens {
    fn peek(&self) -> Option<&Token> {
        self.tokens.get(self.pos)
    }

    fn next(&mut self) -> Option<Token> {
        let t = self.tokens.get(self.pos).cloned();
        self.pos += 1;
        t
    }

    /// The next token is the keyword `kw` (consumed if so).
    fn keyword(&mut self, kw: &str) -> bool {
        match self.peek() {
            Some(Token::Word(w)) if w.quote_style.is_none() && w.value.eq_ignore_ascii_case(kw) => {
                self.pos += 1;
                true
            }
            _ => false,
        }
    }

    fn name(&mut self) -> Result<String, PgWireError> {
        match self.next() {
            Some(Token::Word(Word {
                value, quote_style, ..
            })) => Ok(if quote_style.is_some() {
                value
            } else {
                value.to_lowercase()
            }),
            other => Err(syntax(format!(
                "expected a user name, found {}",
                other.map_or("the end".into(), |t| format!("\"{t}\""))
            ))),
        }
    }

    /// `'password'` or `NULL`.
    fn password(&mut self) -> Result<Option<String>, PgWireError> {
        match self.next() {
            Some(Token::SingleQuotedString(s)) => Ok(Some(s)),
            Some(Token::Word(w)) if w.value.eq_ignore_ascii_case("null") => Ok(None),
            _ => Err(syntax("PASSWORD needs a string literal or NULL".into())),
        }
    }

    /// Role attributes up to the end of the statement.
    fn attributes(&mut self) -> Result<Attributes, PgWireError> {
        let mut a = Attributes::default();
        loop {
            if self.keyword("password") {
                a.password = Some(self.password()?);
            } else if self.keyword("superuser") {
                a.superuser = Some(true);
            } else if self.keyword("nosuperuser") {
                a.superuser = Some(false);
            } else if self.keyword("login") {
                // Every user can log in.
            } else if self.keyword("connection") {
                if !self.keyword("limit") {
                    return Err(syntax("expected LIMIT after CONNECTION".into()));
                }
                match self.next() {
                    Some(Token::Number(n, _)) => {
                        a.unsupported.push(format!("CONNECTION LIMIT {n}"))
                    }
                    Some(Token::Minus) => match self.next() {
                        Some(Token::Number(n, _)) => {
                            a.unsupported.push(format!("CONNECTION LIMIT -{n}"))
                        }
                        _ => return Err(syntax("CONNECTION LIMIT needs a number".into())),
                    },
                    _ => return Err(syntax("CONNECTION LIMIT needs a number".into())),
                }
            } else if self.keyword("valid") {
                if !self.keyword("until") {
                    return Err(syntax("expected UNTIL after VALID".into()));
                }
                match self.next() {
                    Some(Token::SingleQuotedString(s)) => {
                        a.unsupported.push(format!("VALID UNTIL '{s}'"))
                    }
                    _ => return Err(syntax("VALID UNTIL needs a string literal".into())),
                }
            } else if let Some(word) = self.other_attribute() {
                a.unsupported.push(word);
            } else {
                break;
            }
        }
        self.end()?;
        Ok(a)
    }

    /// One of PostgreSQL's attributes that take no value, other than those above.
    fn other_attribute(&mut self) -> Option<String> {
        const OTHERS: &[&str] = &[
            "nologin",
            "createrole",
            "nocreaterole",
            "createdb",
            "nocreatedb",
            "inherit",
            "noinherit",
            "replication",
            "noreplication",
            "bypassrls",
            "nobypassrls",
        ];
        let found = OTHERS.iter().find(|w| self.keyword(w))?;
        Some(found.to_uppercase())
    }

    fn end(&mut self) -> Result<(), PgWireError> {
        while matches!(self.peek(), Some(Token::SemiColon)) {
            self.pos += 1;
        }
        match self.peek() {
            None => Ok(()),
            Some(t) => Err(syntax(format!(
                "unexpected \"{t}\" (wattdb's users take a password and SUPERUSER: {})",
                "CREATE USER name [WITH] PASSWORD '…'"
            ))),
        }
    }
}

fn syntax(message: String) -> PgWireError {
    user_error(sqlstate::SYNTAX_ERROR, message)
}

/// One statement of a query string, as [`split`] finds it.
#[derive(Debug)]
pub enum Chunk {
    User(PgWireResult<UserStatement>),
    /// Any other statement, as written.
    Sql(String),
}

/// Whether `sql` may hold a user statement (cheap; before tokenizing).
fn may_hold_one(sql: &str) -> bool {
    // Every simple query and every Parse passes here: no copy of the text.
    let bytes = sql.as_bytes();
    [&b"user"[..], b"role", b"grant", b"revoke"]
        .iter()
        .any(|w| bytes.windows(w.len()).any(|x| x.eq_ignore_ascii_case(w)))
}

/// The statements of a query string when at least one is a user statement (the others
/// are run as usual, in order); `None` when there is none.
pub fn split(sql: &str) -> Option<Vec<Chunk>> {
    if !may_hold_one(sql) {
        return None;
    }
    let tokens = Tokenizer::new(&PostgreSqlDialect {}, sql).tokenize().ok()?;
    let mut chunks = Vec::new();
    let mut any = false;
    for group in tokens.split(|t| matches!(t, Token::SemiColon)) {
        if group.iter().all(|t| matches!(t, Token::Whitespace(_))) {
            continue;
        }
        match parse_tokens(group.to_vec()) {
            Some(statement) => {
                any = true;
                chunks.push(Chunk::User(statement));
            }
            None => chunks.push(Chunk::Sql(group.iter().map(|t| t.to_string()).collect())),
        }
    }
    any.then_some(chunks)
}

/// `sql` as a user statement: `None` when it is not (only) one, an error when it is one
/// that is malformed.
pub fn parse(sql: &str) -> Option<PgWireResult<UserStatement>> {
    if !may_hold_one(sql) {
        return None;
    }
    let tokens = Tokenizer::new(&PostgreSqlDialect {}, sql).tokenize().ok()?;
    parse_tokens(tokens)
}

fn parse_tokens(tokens: Vec<Token>) -> Option<PgWireResult<UserStatement>> {
    let tokens: Vec<Token> = tokens
        .into_iter()
        .filter(|t| !matches!(t, Token::Whitespace(_)))
        .collect();
    let mut t = Tokens { tokens, pos: 0 };
    let user_or_role = |t: &mut Tokens| t.keyword("user") || t.keyword("role");
    if t.keyword("create") {
        if !user_or_role(&mut t) {
            return None;
        }
        return Some((|| {
            let name = t.name()?;
            t.keyword("with");
            let attributes = t.attributes()?;
            Ok(UserStatement::Create { name, attributes })
        })());
    }
    if t.keyword("alter") {
        if !user_or_role(&mut t) {
            return None;
        }
        return Some((|| {
            let name = t.name()?;
            t.keyword("with");
            let attributes = t.attributes()?;
            if attributes == Attributes::default() {
                return Err(syntax(
                    "ALTER USER name [WITH] PASSWORD '…' | NULL | SUPERUSER | NOSUPERUSER".into(),
                ));
            }
            Ok(UserStatement::Alter { name, attributes })
        })());
    }
    if t.keyword("drop") {
        if !user_or_role(&mut t) {
            return None;
        }
        return Some((|| {
            let if_exists = t.keyword("if") && t.keyword("exists");
            let mut names = vec![t.name()?];
            while matches!(t.peek(), Some(Token::Comma)) {
                t.pos += 1;
                names.push(t.name()?);
            }
            t.end()?;
            Ok(UserStatement::Drop { names, if_exists })
        })());
    }
    let granted = if t.keyword("grant") {
        true
    } else if t.keyword("revoke") {
        false
    } else {
        return None;
    };
    // GRANT <role> TO <user>: only wattdb's role names (GRANT SELECT ON … is not this).
    let role = match t.peek() {
        Some(Token::Word(w)) => Role::parse(&w.value)?,
        _ => return None,
    };
    t.pos += 1;
    Some((|| {
        let joiner = if granted { "to" } else { "from" };
        if !t.keyword(joiner) {
            return Err(syntax(format!(
                "expected {} after the role name",
                joiner.to_uppercase()
            )));
        }
        let name = t.name()?;
        t.end()?;
        Ok(UserStatement::Grant {
            role,
            name,
            granted,
        })
    })())
}

/// Run `statement` for `client`'s user, an admin.
pub async fn execute<C: ClientInfo + ?Sized>(
    statement: UserStatement,
    client: &C,
    users: &Users,
) -> PgWireResult<Response> {
    let tag = statement.tag();
    permissions::check_role(client, users, Role::Admin, || tag.to_string())?;
    let result = match statement {
        UserStatement::Create { attributes, .. } | UserStatement::Alter { attributes, .. }
            if !attributes.unsupported.is_empty() =>
        {
            return Err(user_error(
                sqlstate::FEATURE_NOT_SUPPORTED,
                format!(
                    "{} is not supported: wattdb's users have a password and a role (reader, writer, admin; SUPERUSER is admin)",
                    attributes.unsupported.join(", ")
                ),
            ));
        }
        UserStatement::Create { name, attributes } => {
            let password = attributes.password.flatten();
            match users.create(&name, password.as_deref()).await {
                Ok(()) if attributes.superuser == Some(true) => {
                    users.grant(Role::Admin, &name, true).await
                }
                other => other,
            }
        }
        UserStatement::Alter { name, attributes } => {
            let mut result = Ok(());
            if let Some(password) = &attributes.password {
                result = users.set_password(&name, password.as_deref()).await;
            }
            if result.is_ok()
                && let Some(superuser) = attributes.superuser
            {
                result = users.grant(Role::Admin, &name, superuser).await;
            }
            result
        }
        UserStatement::Drop { names, if_exists } => {
            for name in &names {
                if name == &permissions::session_user(client) {
                    return Err(user_error(
                        "55006",
                        "current user cannot be dropped".to_string(),
                    ));
                }
            }
            let mut result = Ok(());
            for name in names {
                result = users.drop(&name, if_exists).await;
                if result.is_err() {
                    break;
                }
            }
            result
        }
        UserStatement::Grant {
            role,
            name,
            granted,
        } => users.grant(role, &name, granted).await,
    };
    result.map_err(|e| user_error(e.code, e.message))?;
    Ok(Response::Execution(Tag::new(tag)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(sql: &str) -> UserStatement {
        parse(sql).expect("a user statement").expect("well formed")
    }

    #[test]
    fn user_statements_parse() {
        assert_eq!(
            ok("CREATE USER grafana PASSWORD 'it''s secret'"),
            UserStatement::Create {
                name: "grafana".into(),
                attributes: Attributes {
                    password: Some(Some("it's secret".into())),
                    ..Attributes::default()
                }
            }
        );
        assert_eq!(
            ok("create role \"Ops\" with login password 'x';"),
            UserStatement::Create {
                name: "Ops".into(),
                attributes: Attributes {
                    password: Some(Some("x".into())),
                    ..Attributes::default()
                }
            }
        );
        assert_eq!(
            ok("CREATE USER u"),
            UserStatement::Create {
                name: "u".into(),
                attributes: Attributes::default()
            }
        );
        assert_eq!(
            ok("ALTER USER U WITH PASSWORD NULL"),
            UserStatement::Alter {
                name: "u".into(),
                attributes: Attributes {
                    password: Some(None),
                    ..Attributes::default()
                }
            }
        );
        assert_eq!(
            ok("ALTER ROLE viewer SUPERUSER CONNECTION LIMIT 3 VALID UNTIL '2030-01-01' NOLOGIN"),
            UserStatement::Alter {
                name: "viewer".into(),
                attributes: Attributes {
                    superuser: Some(true),
                    unsupported: vec![
                        "CONNECTION LIMIT 3".into(),
                        "VALID UNTIL '2030-01-01'".into(),
                        "NOLOGIN".into()
                    ],
                    ..Attributes::default()
                }
            }
        );
        assert_eq!(
            ok("CREATE USER ops WITH LOGIN SUPERUSER PASSWORD 'pw'"),
            UserStatement::Create {
                name: "ops".into(),
                attributes: Attributes {
                    password: Some(Some("pw".into())),
                    superuser: Some(true),
                    ..Attributes::default()
                }
            }
        );
        assert_eq!(
            ok("DROP USER IF EXISTS a, b"),
            UserStatement::Drop {
                names: vec!["a".into(), "b".into()],
                if_exists: true
            }
        );
        assert_eq!(
            ok("GRANT writer TO u"),
            UserStatement::Grant {
                role: Role::Writer,
                name: "u".into(),
                granted: true
            }
        );
        assert_eq!(
            ok("REVOKE admin FROM u"),
            UserStatement::Grant {
                role: Role::Admin,
                name: "u".into(),
                granted: false
            }
        );
    }

    #[test]
    fn a_query_string_splits_around_user_statements() {
        let chunks = split(
            "CREATE TABLE t (ts TIMESTAMPTZ NOT NULL); CREATE USER a PASSWORD 'x;y'; \
             SELECT 'role'",
        )
        .unwrap();
        assert_eq!(chunks.len(), 3);
        assert!(
            matches!(&chunks[0], Chunk::Sql(s) if s.trim() == "CREATE TABLE t (ts TIMESTAMPTZ NOT NULL)")
        );
        assert!(
            matches!(&chunks[1], Chunk::User(Ok(UserStatement::Create { attributes: Attributes { password: Some(Some(p)), .. }, .. })) if p == "x;y")
        );
        assert!(matches!(&chunks[2], Chunk::Sql(s) if s.trim() == "SELECT 'role'"));
        assert!(split("SELECT current_user; SELECT 1").is_none());
    }

    #[test]
    fn other_statements_are_not_user_statements() {
        for sql in [
            "SELECT 1",
            "CREATE TABLE t (ts TIMESTAMPTZ NOT NULL)",
            "GRANT SELECT ON t TO u",
            "DROP TABLE t",
            "ALTER TABLE t ADD COLUMN x INT",
        ] {
            assert!(parse(sql).is_none(), "{sql}");
        }
    }

    #[test]
    fn malformed_user_statements_are_errors() {
        for sql in [
            "CREATE USER",
            "CREATE USER u PASSWORD",
            "CREATE USER u SUPERMAN",
            "ALTER USER u",
            "ALTER USER u RENAME TO v",
            "ALTER USER u CONNECTION LIMIT",
            "GRANT writer u",
        ] {
            assert!(matches!(parse(sql), Some(Err(_))), "{sql}");
        }
    }
}
