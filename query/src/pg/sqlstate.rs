//! Mapping errors to PostgreSQL SQLSTATE codes, so clients can tell an unknown table
//! (42P01) from a syntax error (42601) from a bad value (22P02) and from a server fault.

use datafusion::arrow::error::ArrowError;
use datafusion::common::SchemaError;
use datafusion::error::DataFusionError;
use datafusion::sql::sqlparser::parser::ParserError;
use pgwire::error::{ErrorInfo, PgWireError};

pub const SYNTAX_ERROR: &str = "42601";
pub const UNDEFINED_TABLE: &str = "42P01";
pub const DUPLICATE_TABLE: &str = "42P07";
pub const DUPLICATE_OBJECT: &str = "42710";
pub const UNDEFINED_COLUMN: &str = "42703";
pub const AMBIGUOUS_COLUMN: &str = "42702";
pub const UNDEFINED_FUNCTION: &str = "42883";
pub const DATATYPE_MISMATCH: &str = "42804";
pub const INVALID_TABLE_DEFINITION: &str = "42P16";
pub const INVALID_TEXT_REPRESENTATION: &str = "22P02";
pub const DIVISION_BY_ZERO: &str = "22012";
pub const NUMERIC_OUT_OF_RANGE: &str = "22003";
pub const INVALID_PARAMETER_VALUE: &str = "22023";
pub const NOT_NULL_VIOLATION: &str = "23502";
pub const FEATURE_NOT_SUPPORTED: &str = "0A000";
pub const WRONG_OBJECT_TYPE: &str = "42809";
pub const UNDEFINED_OBJECT: &str = "42704";
pub const STATEMENT_TOO_COMPLEX: &str = "54001";
pub const TOO_MANY_COLUMNS: &str = "54011";
pub const TOO_MANY_ARGUMENTS: &str = "54023";
pub const OUT_OF_MEMORY: &str = "53200";
pub const DISK_FULL: &str = "53100";
pub const IO_ERROR: &str = "58030";
pub const OBJECT_NOT_IN_PREREQUISITE_STATE: &str = "55000";
pub const CANNOT_CONNECT_NOW: &str = "57P03";
pub const CANT_CHANGE_RUNTIME_PARAM: &str = "55P02";
pub const INVALID_CURSOR_NAME: &str = "34000";
pub const DUPLICATE_CURSOR: &str = "42P03";
pub const QUERY_CANCELED: &str = "57014";
pub const IN_FAILED_SQL_TRANSACTION: &str = "25P02";
pub const BAD_COPY_FILE_FORMAT: &str = "22P04";
pub const PROTOCOL_VIOLATION: &str = "08P01";
pub const CHARACTER_NOT_IN_REPERTOIRE: &str = "22021";
pub const PROGRAM_LIMIT_EXCEEDED: &str = "54000";
pub const INTERNAL_ERROR: &str = "XX000";
pub const INSUFFICIENT_PRIVILEGE: &str = "42501";
pub const UNDEFINED_PARAMETER: &str = "42P02";
pub const INVALID_DATETIME_FORMAT: &str = "22007";
pub const INVALID_ESCAPE_SEQUENCE: &str = "22025";
pub const TOO_MANY_CONNECTIONS: &str = "53300";
pub const INSUFFICIENT_RESOURCES: &str = "53000";
pub const INVALID_AUTHORIZATION: &str = "28000";
pub const INVALID_PASSWORD: &str = "28P01";
pub const CARDINALITY_VIOLATION: &str = "21000";
pub const SUBSTRING_ERROR: &str = "22011";
pub const INVALID_ARGUMENT_FOR_POWER_FUNCTION: &str = "2201F";
pub const AMBIGUOUS_FUNCTION: &str = "42725";

pub fn user_error(code: &str, message: impl Into<String>) -> PgWireError {
    PgWireError::UserError(Box::new(ErrorInfo::new(
        "ERROR".to_string(),
        code.to_string(),
        message.into(),
    )))
}

pub fn for_storage(e: &wattdb_storage::Error) -> &'static str {
    use wattdb_storage::Error as E;
    match e {
        E::TableNotFound { .. } => UNDEFINED_TABLE,
        E::TableExists { .. } => DUPLICATE_TABLE,
        E::RuleExists { .. } => DUPLICATE_OBJECT,
        E::RuleNotFound { .. } => UNDEFINED_OBJECT,
        E::InvalidTableDef { .. } => INVALID_TABLE_DEFINITION,
        E::InvalidTableName { .. } => INVALID_TABLE_DEFINITION,
        E::TypeConflict { .. } => DATATYPE_MISMATCH,
        E::ReadOnlyTable { .. } => WRONG_OBJECT_TYPE,
        E::Expired { .. } => INVALID_PARAMETER_VALUE,
        E::NoArchive => OBJECT_NOT_IN_PREREQUISITE_STATE,
        E::NotArchived { .. } => UNDEFINED_OBJECT,
        E::InvalidRow { reason, .. } if reason.contains("null") => NOT_NULL_VIOLATION,
        E::InvalidRow { .. } => INVALID_PARAMETER_VALUE,
        E::InvalidDelete { .. } => FEATURE_NOT_SUPPORTED,
        E::WalClosed | E::ShuttingDown => CANNOT_CONNECT_NOW,
        E::DiskFull { .. } => DISK_FULL,
        E::WalHalted { .. } => IO_ERROR,
        E::WalIo { .. } | E::Io { .. } | E::ObjectStore { .. } | E::Parquet { .. } => IO_ERROR,
        _ => INTERNAL_ERROR,
    }
}

fn for_arrow(e: &ArrowError) -> &'static str {
    match e {
        ArrowError::CastError(_) | ArrowError::ParseError(_) => INVALID_TEXT_REPRESENTATION,
        ArrowError::DivideByZero => DIVISION_BY_ZERO,
        ArrowError::ArithmeticOverflow(_) => NUMERIC_OUT_OF_RANGE,
        ArrowError::ComputeError(m) if m.contains("Overflow") || m.contains("overflow") => {
            NUMERIC_OUT_OF_RANGE
        }
        _ => INTERNAL_ERROR,
    }
}

fn for_message(m: &str) -> Option<&'static str> {
    let lower = m.to_ascii_lowercase();
    if lower.contains("table '") && lower.contains("not found") {
        Some(UNDEFINED_TABLE)
    } else if lower.contains("invalid function") || lower.contains("unknown function") {
        Some(UNDEFINED_FUNCTION)
    } else if lower.contains("cannot cast")
        || lower.contains("cast error")
        || lower.contains("invalid digit")
    {
        Some(INVALID_TEXT_REPRESENTATION)
    } else if lower.contains("divide by zero") || lower.contains("division by zero") {
        Some(DIVISION_BY_ZERO)
    } else if lower.contains("overflow") {
        Some(NUMERIC_OUT_OF_RANGE)
    } else if lower.contains("must not end with escape character")
        || lower.contains("invalid escape string")
    {
        Some(INVALID_ESCAPE_SEQUENCE)
    } else if lower.contains("failed to match any signature")
        || lower.contains("no function matches")
    {
        Some(UNDEFINED_FUNCTION)
    } else if lower.contains("not supported for null") || lower.contains("cannot convert null to") {
        // `sum(NULL)`, `extract(epoch FROM NULL)`: PostgreSQL cannot pick the
        // function for an untyped NULL either.
        Some(AMBIGUOUS_FUNCTION)
    } else if lower.contains("stride must be") {
        Some(INVALID_PARAMETER_VALUE)
    } else if lower.contains("negative count not allowed")
        || lower.contains("negative substring length")
    {
        Some(SUBSTRING_ERROR)
    } else if lower.contains("raised to a negative power")
        || lower.contains("square root of a negative")
    {
        Some(INVALID_ARGUMENT_FOR_POWER_FUNCTION)
    } else if lower.contains("subquery returned more than one row") {
        Some(CARDINALITY_VIOLATION)
    } else if lower.contains("correlated scalar subquery must be aggregated")
        || lower.contains("physical plan does not support logical expression scalarsubquery")
    {
        Some(FEATURE_NOT_SUPPORTED)
    } else if lower.contains("non-nullable")
        || lower.contains("cannot be null")
        || lower.contains("must not be null")
    {
        Some(NOT_NULL_VIOLATION)
    } else {
        None
    }
}

/// The SQLSTATE for a DataFusion error, looking through wrappers to the root cause.
pub fn for_datafusion(e: &DataFusionError) -> &'static str {
    match e {
        DataFusionError::SQL(p, _) => for_parser(p),
        DataFusionError::SchemaError(s, _) => match s.as_ref() {
            SchemaError::FieldNotFound { .. } => UNDEFINED_COLUMN,
            SchemaError::AmbiguousReference { .. } => AMBIGUOUS_COLUMN,
            _ => SYNTAX_ERROR,
        },
        DataFusionError::ArrowError(a, _) => match for_arrow(a) {
            INTERNAL_ERROR => for_message(&a.to_string()).unwrap_or(INTERNAL_ERROR),
            code => code,
        },
        DataFusionError::NotImplemented(_) => FEATURE_NOT_SUPPORTED,
        DataFusionError::Plan(m) => for_message(m).unwrap_or(SYNTAX_ERROR),
        DataFusionError::Execution(m) => for_message(m).unwrap_or(INTERNAL_ERROR),
        DataFusionError::ResourcesExhausted(_) => OUT_OF_MEMORY,
        DataFusionError::Context(_, inner) => for_datafusion(inner),
        DataFusionError::Diagnostic(_, inner) => for_datafusion(inner),
        DataFusionError::Shared(inner) => for_datafusion(inner),
        DataFusionError::Collection(errs) => {
            errs.first().map(for_datafusion).unwrap_or(INTERNAL_ERROR)
        }
        DataFusionError::External(b) => for_dyn(b.as_ref()),
        DataFusionError::ObjectStore(_) | DataFusionError::IoError(_) => IO_ERROR,
        other => for_message(&other.to_string()).unwrap_or(INTERNAL_ERROR),
    }
}

/// One of the codes above by its text (an error built with [`user_error`] inside a
/// function comes back wrapped in DataFusion's).
fn known_code(code: &str) -> &'static str {
    [
        SYNTAX_ERROR,
        UNDEFINED_TABLE,
        DUPLICATE_TABLE,
        DUPLICATE_OBJECT,
        UNDEFINED_COLUMN,
        AMBIGUOUS_COLUMN,
        UNDEFINED_FUNCTION,
        DATATYPE_MISMATCH,
        INVALID_TABLE_DEFINITION,
        INVALID_TEXT_REPRESENTATION,
        DIVISION_BY_ZERO,
        NUMERIC_OUT_OF_RANGE,
        INVALID_PARAMETER_VALUE,
        NOT_NULL_VIOLATION,
        FEATURE_NOT_SUPPORTED,
        WRONG_OBJECT_TYPE,
        UNDEFINED_OBJECT,
        STATEMENT_TOO_COMPLEX,
        OUT_OF_MEMORY,
        IO_ERROR,
        OBJECT_NOT_IN_PREREQUISITE_STATE,
        CANNOT_CONNECT_NOW,
        CANT_CHANGE_RUNTIME_PARAM,
        INVALID_CURSOR_NAME,
        DUPLICATE_CURSOR,
        QUERY_CANCELED,
        IN_FAILED_SQL_TRANSACTION,
        UNDEFINED_PARAMETER,
        INSUFFICIENT_PRIVILEGE,
    ]
    .into_iter()
    .find(|c| *c == code)
    .unwrap_or(INTERNAL_ERROR)
}

fn for_parser(p: &ParserError) -> &'static str {
    match p {
        ParserError::RecursionLimitExceeded => STATEMENT_TOO_COMPLEX,
        _ => SYNTAX_ERROR,
    }
}

fn for_dyn(e: &(dyn std::error::Error + Send + Sync + 'static)) -> &'static str {
    if let Some(s) = e.downcast_ref::<wattdb_storage::Error>() {
        for_storage(s)
    } else if let Some(d) = e.downcast_ref::<DataFusionError>() {
        for_datafusion(d)
    } else if let Some(p) = e.downcast_ref::<ParserError>() {
        for_parser(p)
    } else if let Some(a) = e.downcast_ref::<ArrowError>() {
        for_arrow(a)
    } else if let Some(PgWireError::UserError(info)) = e.downcast_ref::<PgWireError>() {
        known_code(&info.code)
    } else if e.downcast_ref::<crate::execution::Interrupted>().is_some() {
        QUERY_CANCELED
    } else {
        for_message(&e.to_string()).unwrap_or(INTERNAL_ERROR)
    }
}

/// The message for the client: DataFusion's, except that an error of wattdb's own
/// (which names its table) is shown without DataFusion's context around it.
fn message_of(d: &DataFusionError) -> String {
    match d {
        DataFusionError::Context(_, inner) if matches!(**inner, DataFusionError::External(_)) => {
            message_of(inner)
        }
        DataFusionError::External(b) => b.to_string(),
        other => other.message().to_string(),
    }
}

/// The interrupt a stopped statement's error carries, however DataFusion wrapped it.
fn interrupted(d: &DataFusionError) -> Option<crate::execution::Interrupted> {
    match d {
        DataFusionError::External(b) => b
            .downcast_ref::<crate::execution::Interrupted>()
            .copied()
            .or_else(|| b.downcast_ref::<DataFusionError>().and_then(interrupted)),
        DataFusionError::Context(_, inner) | DataFusionError::Diagnostic(_, inner) => {
            interrupted(inner)
        }
        DataFusionError::Shared(inner) => interrupted(inner),
        DataFusionError::Collection(errs) => errs.iter().find_map(interrupted),
        _ => None,
    }
}

/// Rewrite an error about to be sent to the client so it carries the right SQLSTATE.
pub fn classify(error: &mut PgWireError) {
    let replacement = match error {
        PgWireError::ApiError(e) => {
            let code = for_dyn(e.as_ref());
            let message = match e.downcast_ref::<DataFusionError>() {
                Some(d) => match interrupted(d) {
                    Some(i) => i.to_string(),
                    None => message_of(d),
                },
                None => e.to_string(),
            };
            Some(user_error(code, message))
        }
        _ => None,
    };
    if let Some(r) = replacement {
        *error = r;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::prelude::SessionContext;

    async fn code_of(sql: &str) -> &'static str {
        let ctx = SessionContext::new();
        let err = match ctx.sql(sql).await {
            Ok(df) => df.collect().await.expect_err("query should fail"),
            Err(e) => e,
        };
        for_datafusion(&err)
    }

    #[tokio::test]
    async fn datafusion_errors_get_postgres_codes() {
        assert_eq!(code_of("SELECT * FROM nope").await, UNDEFINED_TABLE);
        assert_eq!(code_of("SELEC 1").await, SYNTAX_ERROR);
        assert_eq!(code_of("SELECT no_such_fn(1)").await, UNDEFINED_FUNCTION);
        assert_eq!(
            code_of("SELECT CAST('abc' AS DOUBLE)").await,
            INVALID_TEXT_REPRESENTATION
        );
        assert_eq!(
            code_of("SELECT x FROM (SELECT 1 AS y)").await,
            UNDEFINED_COLUMN
        );
        assert_eq!(
            code_of("SELECT (SELECT column1 FROM (VALUES (1), (2)))").await,
            CARDINALITY_VIOLATION
        );
        for (sql, code) in [
            ("SELECT substr('abc', 1.5, 2.5)", UNDEFINED_FUNCTION),
            ("SELECT sum(NULL)", AMBIGUOUS_FUNCTION),
            (
                "SELECT date_bin(INTERVAL '0 minutes', now())",
                INVALID_PARAMETER_VALUE,
            ),
            ("SELECT substr('abc', 1, -2)", SUBSTRING_ERROR),
            (
                "SELECT power(0.0, -1.0)",
                INVALID_ARGUMENT_FOR_POWER_FUNCTION,
            ),
            (
                "SELECT sqrt(-1.0::decimal(5,2))",
                INVALID_ARGUMENT_FOR_POWER_FUNCTION,
            ),
        ] {
            assert_eq!(code_of(sql).await, code, "{sql}");
        }
    }

    #[test]
    fn storage_errors_get_postgres_codes() {
        let e = wattdb_storage::Error::TableNotFound { table: "t".into() };
        assert_eq!(for_storage(&e), UNDEFINED_TABLE);
        let mut pg = PgWireError::ApiError(Box::new(DataFusionError::External(Box::new(e))));
        classify(&mut pg);
        match pg {
            PgWireError::UserError(info) => assert_eq!(info.code, UNDEFINED_TABLE),
            other => panic!("{other:?}"),
        }
    }
}
