//! Every statement classified once, whatever the protocol brought it: a simple query,
//! a Parse of the extended protocol (then bound and executed any number of times), a
//! portal with a row limit. [`classify`] decides what the statement is — a [`Command`]
//! — and the role it needs; [`super::service`] handles each command in one function
//! (`SqlService::run`). Nothing after this module asks again what a statement is.
//!
//! It does not execute anything, read storage or check the session's user: it only
//! looks at the statement.

use datafusion::logical_expr::LogicalPlan;
use datafusion::sql::sqlparser::ast::{CopyTarget, Statement};
use pgwire::error::PgWireError;

use super::copy::{self, CopyStatement};
use super::cursors::{self, CursorStatement};
use super::data_access;
use super::late_binding;
use super::set_show::{self, SettingStatement};
use super::transactions;
use super::user_statements::UserStatement;
use super::wattdb_statements::{self, WattdbStatement};
use crate::users::Role;

/// What a statement is.
#[derive(Debug, Clone)]
pub enum Command {
    /// `CREATE`/`ALTER`/`DROP USER|ROLE`, `GRANT`/`REVOKE` (read from the text by
    /// [`super::user_statements`]: the SQL parser does not know all their forms).
    User(UserStatement),
    /// `BEGIN`, `COMMIT`, `ROLLBACK [TO SAVEPOINT]`, `SAVEPOINT`, `RELEASE`.
    Transaction,
    /// `DEALLOCATE name` (`None`: `DEALLOCATE ALL`).
    Deallocate(Option<String>),
    /// `SET`, `RESET`, `SHOW`, and the session commands without effect here.
    Setting(SettingStatement),
    /// `COPY … TO STDOUT` or `COPY … FROM STDIN`.
    Copy(CopyStatement),
    /// `DECLARE … CURSOR FOR`, `FETCH`, `CLOSE`; `reads_data`: it waits for an execution
    /// slot (a `DECLARE` whose query reads data, every `FETCH`).
    Cursor {
        kind: CursorStatement,
        reads_data: bool,
    },
    /// `CREATE TABLE`, `DROP TABLE` and the admin functions, which wattdb runs itself.
    Wattdb(WattdbStatement),
    /// `INSERT`: written straight to storage when its rows are literals or parameters
    /// ([`super::fast_insert`]), planned like a query otherwise.
    Insert { reads_data: bool },
    /// Everything else, planned and run by DataFusion. `reads_data`: it waits for an
    /// execution slot first (see [`data_access`]); `late_parameters`: it passes some of
    /// its parameters (that many in all) to a table function — when it cannot be
    /// planned without their values, it is planned once they are bound (see
    /// [`late_binding`]).
    Query {
        reads_data: bool,
        late_parameters: Option<usize>,
    },
    /// A form wattdb does not accept; the error is answered when the statement is run
    /// (after the transaction-block and permission checks, as PostgreSQL orders them).
    Refused { code: String, message: String },
}

/// A statement as [`classify`] found it.
#[derive(Debug, Clone)]
pub struct Classified {
    pub command: Command,
    /// The role the session's user needs to run it.
    pub role: Role,
}

/// A statement ready to run: what the extended protocol keeps from Parse to Execute,
/// and what a simple query's statement becomes before it runs.
#[derive(Debug)]
pub struct Prepared {
    /// The text as the client sent it (shown in `pg_stat_activity`).
    pub text: std::sync::Arc<str>,
    /// The statement after wattdb's rewrites; `None` for a user statement.
    pub statement: Option<Statement>,
    pub classified: Classified,
    /// The plan made at Parse: what Describe reports (result columns, parameter types)
    /// and, for a query, what Execute runs with its parameters bound. `None` for a
    /// statement of a simple query (planned when it runs, after the ones before it).
    pub plan: Option<LogicalPlan>,
    /// For a statement planned only at Bind (see [`Prepared::late_parameters`]): the
    /// columns it answers whatever its parameters' values, when planning it with every
    /// parameter NULL gives them (`generate_series(1, $1)`) — what a Describe of the
    /// statement reports; `None` when they depend on the values (`last_values($1)`).
    pub late_columns: Option<datafusion::common::DFSchemaRef>,
}

impl Prepared {
    pub fn command(&self) -> &Command {
        &self.classified.command
    }

    /// How many parameters it has when it is planned only once they are bound: it
    /// passes one to a table function and was not planned at Parse.
    pub fn late_parameters(&self) -> Option<usize> {
        if self.plan.is_some() {
            return None;
        }
        match self.command() {
            Command::Query {
                late_parameters, ..
            } => *late_parameters,
            _ => None,
        }
    }
}

fn refused(e: PgWireError) -> Command {
    match e {
        PgWireError::UserError(info) => Command::Refused {
            code: info.code,
            message: info.message,
        },
        other => Command::Refused {
            code: super::sqlstate::INTERNAL_ERROR.to_string(),
            message: other.to_string(),
        },
    }
}

/// A user statement, classified.
pub fn user(statement: UserStatement) -> Classified {
    Classified {
        command: Command::User(statement),
        role: Role::Admin,
    }
}

/// What `statement` is, and the role it needs; `admin_functions` are the names of the
/// admin functions (`SELECT f(…)`).
pub fn classify(statement: &Statement, admin_functions: &[&str]) -> Classified {
    let command = command(statement, admin_functions);
    let role = role(statement, &command, admin_functions);
    Classified { command, role }
}

fn command(statement: &Statement, admin_functions: &[&str]) -> Command {
    if transactions::is_transaction_statement(statement) {
        return Command::Transaction;
    }
    if let Statement::Deallocate { name, .. } = statement {
        let all = name.value.eq_ignore_ascii_case("all");
        return Command::Deallocate((!all).then(|| name.value.clone()));
    }
    if let Some(kind) = set_show::classify(statement) {
        return kind.map_or_else(refused, Command::Setting);
    }
    if let Some(kind) = copy::classify(statement) {
        return kind.map_or_else(refused, Command::Copy);
    }
    if let Some(kind) = wattdb_statements::classify(statement, admin_functions) {
        return Command::Wattdb(kind);
    }
    if let Some(kind) = cursors::classify(statement) {
        return kind.map_or_else(refused, |kind| {
            let reads_data = match kind {
                CursorStatement::Declare { .. } => data_access::reads_data(statement),
                CursorStatement::Fetch { .. } => true,
                CursorStatement::Close { .. } => false,
            };
            Command::Cursor { kind, reads_data }
        });
    }
    let reads_data = data_access::reads_data(statement);
    if let Statement::Insert(_) = statement {
        return Command::Insert { reads_data };
    }
    Command::Query {
        reads_data,
        late_parameters: late_binding::parameters(statement),
    }
}

/// Reading is `reader`'s; `INSERT`, `COPY FROM`, `DELETE`, `TRUNCATE` (and `UPDATE`,
/// refused later as unsupported) are `writer`'s; everything else — DDL, admin
/// functions, users — is `admin`'s, including statements this list does not know (it
/// fails closed).
fn role(statement: &Statement, command: &Command, admin_functions: &[&str]) -> Role {
    match command {
        Command::User(_) | Command::Wattdb(_) => Role::Admin,
        Command::Transaction
        | Command::Deallocate(_)
        | Command::Setting(_)
        | Command::Cursor { .. } => Role::Reader,
        Command::Insert { .. } => Role::Writer,
        Command::Copy(CopyStatement::To(_)) => Role::Reader,
        Command::Copy(CopyStatement::From(_)) => Role::Writer,
        Command::Refused { .. } | Command::Query { .. } => match statement {
            Statement::Query(_) => Role::Reader,
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
            Statement::Prepare { statement, .. } | Statement::Explain { statement, .. } => {
                classify(statement, admin_functions).role
            }
            Statement::Set(_)
            | Statement::Reset(_)
            | Statement::ShowVariable { .. }
            | Statement::ShowVariables { .. }
            | Statement::ShowTables { .. }
            | Statement::ShowColumns { .. }
            | Statement::Declare { .. }
            | Statement::Fetch { .. }
            | Statement::Close { .. }
            | Statement::Execute { .. }
            | Statement::Discard { .. }
            | Statement::LISTEN { .. }
            | Statement::UNLISTEN { .. }
            | Statement::NOTIFY { .. } => Role::Reader,
            _ => Role::Admin,
        },
    }
}

#[cfg(test)]
mod tests {
    use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
    use datafusion::sql::sqlparser::parser::Parser;

    use super::*;

    fn classified(sql: &str) -> Classified {
        let stmts = Parser::parse_sql(&PostgreSqlDialect {}, sql).expect("parse");
        classify(&stmts[0], &["flush", "set_retention"])
    }

    fn role_of(sql: &str) -> Role {
        classified(sql).role
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
        assert_eq!(role_of("DECLARE c CURSOR FOR SELECT 1"), Role::Reader);
        assert_eq!(role_of("INSERT INTO t VALUES (1)"), Role::Writer);
        assert_eq!(role_of("COPY t FROM STDIN"), Role::Writer);
        // Refused forms still need their role (checked first, as in PostgreSQL).
        assert_eq!(role_of("COPY t FROM '/etc/passwd'"), Role::Writer);
        assert_eq!(role_of("DELETE FROM t WHERE pid = 'a'"), Role::Writer);
        assert_eq!(
            role_of("PREPARE p AS INSERT INTO t VALUES (1)"),
            Role::Writer
        );
        assert_eq!(role_of("SELECT flush()"), Role::Admin);
        assert_eq!(role_of("EXPLAIN SELECT flush()"), Role::Admin);
        assert_eq!(
            role_of("SELECT set_retention('t', '4 months')"),
            Role::Admin
        );
        assert_eq!(
            role_of("CREATE TABLE x (ts TIMESTAMPTZ NOT NULL)"),
            Role::Admin
        );
        assert_eq!(role_of("DROP TABLE x"), Role::Admin);
        assert_eq!(role_of("CREATE VIEW v AS SELECT 1"), Role::Admin);
        assert_eq!(role_of("UPDATE t SET p = 1"), Role::Writer);
    }

    #[test]
    fn each_statement_is_one_command() {
        let command = |sql: &str| classified(sql).command;
        assert!(matches!(command("BEGIN"), Command::Transaction));
        assert!(matches!(
            command("ROLLBACK TO SAVEPOINT a"),
            Command::Transaction
        ));
        assert!(matches!(
            command("DEALLOCATE ALL"),
            Command::Deallocate(None)
        ));
        assert!(matches!(
            command("DEALLOCATE s1"),
            Command::Deallocate(Some(n)) if n == "s1"
        ));
        assert!(matches!(
            command("SET TimeZone = 'UTC'"),
            Command::Setting(_)
        ));
        assert!(matches!(command("UNLISTEN *"), Command::Setting(_)));
        assert!(matches!(
            command("COPY t TO STDOUT"),
            Command::Copy(CopyStatement::To(_))
        ));
        assert!(matches!(
            command("SELECT set_retention($1, $2)"),
            Command::Wattdb(WattdbStatement::Admin(_))
        ));
        assert!(matches!(
            command("DROP TABLE x"),
            Command::Wattdb(WattdbStatement::DropTable)
        ));
        assert!(matches!(
            command("FETCH 10 FROM c"),
            Command::Cursor {
                reads_data: true,
                ..
            }
        ));
        assert!(matches!(
            command("DECLARE c CURSOR FOR SELECT * FROM t"),
            Command::Cursor {
                reads_data: true,
                ..
            }
        ));
        assert!(matches!(
            command("CLOSE c"),
            Command::Cursor {
                reads_data: false,
                ..
            }
        ));
        assert!(matches!(
            command("INSERT INTO t VALUES ($1)"),
            Command::Insert { reads_data: false }
        ));
        assert!(matches!(
            command("SELECT * FROM t"),
            Command::Query {
                reads_data: true,
                late_parameters: None
            }
        ));
        assert!(matches!(
            command("SELECT 1"),
            Command::Query {
                reads_data: false,
                ..
            }
        ));
        assert!(matches!(
            command("SELECT * FROM last_values($1) WHERE v > $2"),
            Command::Query {
                late_parameters: Some(2),
                ..
            }
        ));
        let Command::Refused { code, .. } = command("LISTEN alarms") else {
            panic!("LISTEN is refused");
        };
        assert_eq!(code, "0A000");
        let Command::Refused { code, .. } = command("DECLARE c SCROLL CURSOR FOR SELECT 1") else {
            panic!("SCROLL is refused");
        };
        assert_eq!(code, "0A000");
    }
}
