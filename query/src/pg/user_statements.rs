//! The user statements, recognised from the statement's tokens before the SQL parser
//! sees them (its forms of them vary by dialect and carry options wattdb has no use
//! for): `CREATE USER|ROLE name [[WITH] attribute …]`, `ALTER USER|ROLE name [WITH]
//! attribute …`, `DROP USER|ROLE [IF EXISTS] name [, …]`, `GRANT writer|admin TO name`,
//! `REVOKE writer|admin FROM name`, `ALTER USER|ROLE name SET parameter {=|TO} value`
//! and `ALTER USER|ROLE name RESET parameter|ALL`. Attributes: `PASSWORD 'pw' | NULL`,
//! `SUPERUSER` / `NOSUPERUSER` (the admin role), `LOGIN` / `NOLOGIN`, `CONNECTION LIMIT
//! n` (`-1`: none), `VALID UNTIL 'timestamp' | 'infinity'`; PostgreSQL's others
//! (`CREATEROLE`, `CREATEDB`, `REPLICATION`, …) parse and are refused as not supported.
//! Run by [`execute`] for an admin: a user who is not one gets `42501` for any of them,
//! well-formed or not supported.

use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
use datafusion::sql::sqlparser::tokenizer::{Token, Tokenizer, Word};
use pgwire::api::ClientInfo;
use pgwire::api::results::{Response, Tag};
use pgwire::error::{PgWireError, PgWireResult};

use super::permissions;
use super::sqlstate::{self, user_error};
use crate::users::{Login, Role, Users};

/// Role attributes of `CREATE` / `ALTER USER`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Attributes {
    /// `PASSWORD 'pw'` is `Some(Some(pw))`, `PASSWORD NULL` is `Some(None)`.
    pub password: Option<Option<String>>,
    /// `SUPERUSER` / `NOSUPERUSER`: granting or revoking the admin role.
    pub superuser: Option<bool>,
    /// `LOGIN` / `NOLOGIN`.
    pub login: Option<bool>,
    /// `CONNECTION LIMIT n`: `Some(None)` for `-1` (no limit).
    pub connection_limit: Option<Option<u32>>,
    /// `VALID UNTIL '…'` as microseconds since the epoch: `Some(None)` for `'infinity'`.
    pub valid_until: Option<Option<i64>>,
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
    /// `ALTER ROLE name SET parameter = value` (`Some`) or `RESET parameter` (`None`).
    SetDefault {
        name: String,
        parameter: String,
        value: Option<String>,
    },
    /// `ALTER ROLE name RESET ALL`.
    ResetAll {
        name: String,
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
            UserStatement::Alter { .. }
            | UserStatement::SetDefault { .. }
            | UserStatement::ResetAll { .. } => "ALTER ROLE",
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
                a.login = Some(true);
            } else if self.keyword("nologin") {
                a.login = Some(false);
            } else if self.keyword("connection") {
                if !self.keyword("limit") {
                    return Err(syntax("expected LIMIT after CONNECTION".into()));
                }
                a.connection_limit = Some(self.connection_limit()?);
            } else if self.keyword("valid") {
                if !self.keyword("until") {
                    return Err(syntax("expected UNTIL after VALID".into()));
                }
                match self.next() {
                    Some(Token::SingleQuotedString(s)) => a.valid_until = Some(valid_until(&s)?),
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

    /// `n` of `CONNECTION LIMIT n`: `-1` is no limit.
    fn connection_limit(&mut self) -> Result<Option<u32>, PgWireError> {
        let negative = matches!(self.peek(), Some(Token::Minus));
        if negative {
            self.pos += 1;
        }
        let Some(Token::Number(n, _)) = self.next() else {
            return Err(syntax("CONNECTION LIMIT needs a number".into()));
        };
        match (negative, n.parse::<u32>()) {
            (true, Ok(1)) => Ok(None),
            (false, Ok(n)) => Ok(Some(n)),
            _ => Err(user_error(
                sqlstate::INVALID_PARAMETER_VALUE,
                format!(
                    "invalid connection limit: {}{n} (a count, or -1 for none)",
                    if negative { "-" } else { "" }
                ),
            )),
        }
    }

    /// The value of `SET parameter {=|TO} value`, as text (`DEFAULT`: `None`).
    fn setting_value(&mut self) -> Result<Option<String>, PgWireError> {
        if !matches!(self.peek(), Some(Token::Eq)) && !self.keyword("to") {
            return Err(syntax("expected = or TO after the parameter name".into()));
        }
        if matches!(self.peek(), Some(Token::Eq)) {
            self.pos += 1;
        }
        let negative = matches!(self.peek(), Some(Token::Minus));
        if negative {
            self.pos += 1;
        }
        let value = match self.next() {
            Some(Token::Number(n, _)) => format!("{}{n}", if negative { "-" } else { "" }),
            Some(Token::SingleQuotedString(s)) if !negative => s,
            Some(Token::Word(w))
                if !negative
                    && w.quote_style.is_none()
                    && w.value.eq_ignore_ascii_case("default") =>
            {
                return Ok(None);
            }
            Some(Token::Word(w)) if !negative => w.value,
            _ => return Err(syntax("SET needs a value".into())),
        };
        Ok(Some(value))
    }

    /// A parameter name, possibly dotted (`wattdb.rollup_rewrite`).
    fn parameter(&mut self) -> Result<String, PgWireError> {
        let mut name = self.name()?;
        while matches!(self.peek(), Some(Token::Period)) {
            self.pos += 1;
            name.push('.');
            name.push_str(&self.name()?);
        }
        Ok(name)
    }

    /// One of PostgreSQL's attributes that take no value, other than those above.
    fn other_attribute(&mut self) -> Option<String> {
        const OTHERS: &[&str] = &[
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

/// `VALID UNTIL`'s timestamp as microseconds since the epoch (`'infinity'`: `None`): a
/// date, or a date and time with an optional offset (UTC without one).
fn valid_until(text: &str) -> Result<Option<i64>, PgWireError> {
    use chrono::{DateTime, NaiveDate, NaiveDateTime};
    let t = text.trim();
    if t.eq_ignore_ascii_case("infinity") {
        return Ok(None);
    }
    let with_offset = ["%Y-%m-%d %H:%M:%S%.f%#z", "%Y-%m-%dT%H:%M:%S%.f%#z"]
        .iter()
        .find_map(|f| DateTime::parse_from_str(t, f).ok())
        .map(|d| d.timestamp_micros());
    let naive = || {
        [
            "%Y-%m-%d %H:%M:%S%.f",
            "%Y-%m-%dT%H:%M:%S%.f",
            "%Y-%m-%d %H:%M",
        ]
        .iter()
        .find_map(|f| NaiveDateTime::parse_from_str(t, f).ok())
        .or_else(|| {
            NaiveDate::parse_from_str(t, "%Y-%m-%d")
                .ok()
                .and_then(|d| d.and_hms_opt(0, 0, 0))
        })
        .map(|d| d.and_utc().timestamp_micros())
    };
    with_offset.or_else(naive).map(Some).ok_or_else(|| {
        user_error(
            sqlstate::INVALID_DATETIME_FORMAT,
            format!("invalid input syntax for type timestamp with time zone: \"{text}\""),
        )
    })
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
            if t.keyword("set") {
                let parameter = t.parameter()?;
                let value = t.setting_value()?;
                t.end()?;
                return Ok(UserStatement::SetDefault {
                    name,
                    parameter,
                    value,
                });
            }
            if t.keyword("reset") {
                if t.keyword("all") {
                    t.end()?;
                    return Ok(UserStatement::ResetAll { name });
                }
                let parameter = t.parameter()?;
                t.end()?;
                return Ok(UserStatement::SetDefault {
                    name,
                    parameter,
                    value: None,
                });
            }
            t.keyword("with");
            let attributes = t.attributes()?;
            if attributes == Attributes::default() {
                return Err(syntax(
                    "ALTER USER name [WITH] PASSWORD '…' | NULL | SUPERUSER | NOSUPERUSER | LOGIN | NOLOGIN | CONNECTION LIMIT n | VALID UNTIL '…', or ALTER USER name SET parameter = value | RESET parameter | RESET ALL".into(),
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
            let mut login = Login::default();
            attributes.apply_to(&mut login);
            let password = attributes.password.clone().flatten();
            let admin = attributes.superuser == Some(true);
            users.create(&name, password.as_deref(), admin, login).await
        }
        UserStatement::Alter { name, attributes } => {
            let mut result = Ok(());
            if attributes.changes_login() {
                result = users
                    .alter_login(&name, |login| {
                        attributes.apply_to(login);
                        Ok(())
                    })
                    .await;
            }
            if result.is_ok()
                && let Some(password) = &attributes.password
            {
                result = users.set_password(&name, password.as_deref()).await;
            }
            if result.is_ok()
                && let Some(superuser) = attributes.superuser
            {
                result = users.grant(Role::Admin, &name, superuser).await;
            }
            result
        }
        UserStatement::SetDefault {
            name,
            parameter,
            value,
        } => {
            if let Some(value) = &value {
                check_role_default(&parameter, value)?;
            }
            let parameter = parameter.to_ascii_lowercase();
            users
                .alter_login(&name, |login| {
                    match value {
                        Some(value) => login.settings.insert(parameter, value),
                        None => login.settings.remove(&parameter),
                    };
                    Ok(())
                })
                .await
        }
        UserStatement::ResetAll { name } => {
            users
                .alter_login(&name, |login| {
                    login.settings.clear();
                    Ok(())
                })
                .await
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

impl Attributes {
    /// Whether any attribute kept in the user's [`Login`] is given.
    fn changes_login(&self) -> bool {
        self.login.is_some() || self.connection_limit.is_some() || self.valid_until.is_some()
    }

    fn apply_to(&self, login: &mut Login) {
        if let Some(can) = self.login {
            login.can_login = can;
        }
        if let Some(limit) = self.connection_limit {
            login.connection_limit = limit;
        }
        if let Some(until) = self.valid_until {
            login.valid_until_micros = until;
        }
    }
}

/// Check `ALTER ROLE … SET parameter = value` as a session's `SET` would: an unknown
/// parameter or a bad value is refused now, not at each login.
fn check_role_default(parameter: &str, value: &str) -> PgWireResult<()> {
    super::settings::SessionSettings::default()
        .set(parameter, value)
        .map(|_| ())
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
                    login: Some(true),
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
                    connection_limit: Some(Some(3)),
                    // 2030-01-01T00:00:00Z
                    valid_until: Some(Some(1_893_456_000_000_000)),
                    login: Some(false),
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
                    login: Some(true),
                    ..Attributes::default()
                }
            }
        );
        assert_eq!(
            ok("ALTER USER u CONNECTION LIMIT -1 VALID UNTIL 'infinity' CREATEROLE"),
            UserStatement::Alter {
                name: "u".into(),
                attributes: Attributes {
                    connection_limit: Some(None),
                    valid_until: Some(None),
                    unsupported: vec!["CREATEROLE".into()],
                    ..Attributes::default()
                }
            }
        );
        assert_eq!(
            ok("ALTER USER u VALID UNTIL '2030-01-01 08:00:00+08'"),
            UserStatement::Alter {
                name: "u".into(),
                attributes: Attributes {
                    valid_until: Some(Some(1_893_456_000_000_000)),
                    ..Attributes::default()
                }
            }
        );
        assert_eq!(
            ok("ALTER ROLE grafana SET statement_timeout = '30s'"),
            UserStatement::SetDefault {
                name: "grafana".into(),
                parameter: "statement_timeout".into(),
                value: Some("30s".into())
            }
        );
        assert_eq!(
            ok("ALTER ROLE grafana SET wattdb.rollup_rewrite TO false"),
            UserStatement::SetDefault {
                name: "grafana".into(),
                parameter: "wattdb.rollup_rewrite".into(),
                value: Some("false".into())
            }
        );
        assert_eq!(
            ok("ALTER ROLE grafana SET statement_timeout TO DEFAULT"),
            UserStatement::SetDefault {
                name: "grafana".into(),
                parameter: "statement_timeout".into(),
                value: None
            }
        );
        assert_eq!(
            ok("ALTER ROLE grafana RESET statement_timeout"),
            UserStatement::SetDefault {
                name: "grafana".into(),
                parameter: "statement_timeout".into(),
                value: None
            }
        );
        assert_eq!(
            ok("ALTER ROLE grafana RESET ALL"),
            UserStatement::ResetAll {
                name: "grafana".into()
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
            "ALTER USER u CONNECTION LIMIT -2",
            "ALTER USER u VALID UNTIL 'next tuesday'",
            "ALTER USER u SET statement_timeout",
            "ALTER USER u SET statement_timeout = 1 2",
            "ALTER USER u RESET",
            "GRANT writer u",
        ] {
            assert!(matches!(parse(sql), Some(Err(_))), "{sql}");
        }
    }
}
