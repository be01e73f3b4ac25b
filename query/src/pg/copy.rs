//! `COPY … TO STDOUT` (and the statement forms of `COPY … FROM STDIN`, whose data
//! [`super::copy_in`] reads): a table (or some of its columns) or any query's rows, streamed
//! to the client in PostgreSQL's text, CSV or binary COPY format — what `psql`'s `\copy`,
//! psycopg's `cursor.copy()` and JDBC's `CopyManager` read. Rows are encoded batch by
//! batch as the query produces them, so an export of any size holds one batch in memory.
//! Timestamps are printed in the session's time zone, as in query results.
//!
//! The options PostgreSQL takes (`FORMAT`, `HEADER`, `DELIMITER`, `NULL`, `QUOTE`,
//! `ESCAPE`, and the pre-9.0 `CSV HEADER` / `BINARY` forms) are honoured; `COPY … TO
//! 'file'` / `PROGRAM` and `FROM 'file'` are refused (the server reads and writes no files
//! for clients).

use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use bytes::{BufMut, Bytes, BytesMut};
use datafusion::prelude::SessionContext;
use datafusion::sql::sqlparser::ast::{
    CopyLegacyCsvOption, CopyLegacyOption, CopyOption, CopySource, CopyTarget, Statement,
};
use datafusion_postgres::arrow_pg::datatypes::arrow_schema_to_pg_fields;
use datafusion_postgres::arrow_pg::encoder::{Encoder, encode_value};
use futures::StreamExt;
use pgwire::api::portal::Format;
use pgwire::api::results::{
    CopyCsvOptions, CopyEncoder, CopyResponse, CopyTextOptions, FieldInfo, Response,
};
use pgwire::error::{PgWireError, PgWireResult};
use pgwire::messages::copy::CopyData;
use pgwire::types::format::FormatOptions;

use super::sqlstate::{self, user_error};
use crate::execution::{Analysis, QueryExecutor, StatementGuard};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CopyFormat {
    Text,
    Csv,
    Binary,
}

/// The options of one `COPY`, with PostgreSQL's defaults per format.
#[derive(Debug, Clone, PartialEq)]
pub struct CopyOptions {
    pub format: CopyFormat,
    pub header: bool,
    pub delimiter: char,
    pub null: String,
    pub quote: char,
    pub escape: char,
}

impl CopyOptions {
    fn parse(options: &[CopyOption], legacy: &[CopyLegacyOption]) -> PgWireResult<CopyOptions> {
        let mut format = CopyFormat::Text;
        let (mut header, mut delimiter, mut null, mut quote, mut escape) =
            (false, None, None, None, None);
        let unsupported = |what: String| {
            user_error(
                sqlstate::FEATURE_NOT_SUPPORTED,
                format!("COPY option {what} is not supported"),
            )
        };
        for o in options {
            match o {
                CopyOption::Format(f) => {
                    format = match f.value.to_ascii_lowercase().as_str() {
                        "text" => CopyFormat::Text,
                        "csv" => CopyFormat::Csv,
                        "binary" => CopyFormat::Binary,
                        other => {
                            return Err(user_error(
                                sqlstate::INVALID_PARAMETER_VALUE,
                                format!("COPY format \"{other}\" not recognized"),
                            ));
                        }
                    }
                }
                CopyOption::Header(h) => header = *h,
                CopyOption::Delimiter(d) => delimiter = Some(*d),
                CopyOption::Null(n) => null = Some(n.clone()),
                CopyOption::Quote(q) => quote = Some(*q),
                CopyOption::Escape(e) => escape = Some(*e),
                CopyOption::Encoding(e) if e.eq_ignore_ascii_case("utf8") => {}
                CopyOption::Encoding(e) if e.eq_ignore_ascii_case("utf-8") => {}
                CopyOption::Freeze(_) => {}
                other => return Err(unsupported(other.to_string())),
            }
        }
        for o in legacy {
            match o {
                CopyLegacyOption::Binary => format = CopyFormat::Binary,
                CopyLegacyOption::Delimiter(d) => delimiter = Some(*d),
                CopyLegacyOption::Null(n) => null = Some(n.clone()),
                CopyLegacyOption::Header => header = true,
                CopyLegacyOption::Csv(csv) => {
                    format = CopyFormat::Csv;
                    for c in csv {
                        match c {
                            CopyLegacyCsvOption::Header => header = true,
                            CopyLegacyCsvOption::Quote(q) => quote = Some(*q),
                            CopyLegacyCsvOption::Escape(e) => escape = Some(*e),
                            other => return Err(unsupported(other.to_string())),
                        }
                    }
                }
                other => return Err(unsupported(other.to_string())),
            }
        }
        if header && format == CopyFormat::Text {
            return Err(user_error(
                sqlstate::FEATURE_NOT_SUPPORTED,
                "COPY HEADER available only in CSV mode",
            ));
        }
        let csv = format == CopyFormat::Csv;
        let quote = quote.unwrap_or('"');
        Ok(CopyOptions {
            format,
            header,
            delimiter: delimiter.unwrap_or(if csv { ',' } else { '\t' }),
            null: null.unwrap_or_else(|| if csv { String::new() } else { "\\N".into() }),
            quote,
            escape: escape.unwrap_or(quote),
        })
    }

    /// The format code of the CopyOut/CopyIn response.
    pub fn wire_format(&self) -> i8 {
        i8::from(self.format == CopyFormat::Binary)
    }
}

/// A `COPY … TO STDOUT`: the query whose rows are sent.
#[derive(Debug, Clone)]
pub struct CopyTo {
    pub query: String,
    pub options: CopyOptions,
}

/// A `COPY t [(columns)] FROM STDIN`.
#[derive(Debug, Clone)]
pub struct CopyFrom {
    pub table: String,
    pub columns: Vec<String>,
    pub options: CopyOptions,
}

#[derive(Debug, Clone)]
pub enum CopyStatement {
    To(CopyTo),
    From(CopyFrom),
}

/// Which COPY `stmt` is: `Some(Ok(..))` for a supported form, an error for the forms
/// wattdb refuses, `None` for any other statement.
pub fn classify(stmt: &Statement) -> Option<PgWireResult<CopyStatement>> {
    let Statement::Copy {
        source,
        to,
        target,
        options,
        legacy_options,
        ..
    } = stmt
    else {
        return None;
    };
    if !*to {
        if *target != CopyTarget::Stdin {
            return Some(Err(user_error(
                sqlstate::FEATURE_NOT_SUPPORTED,
                format!(
                    "COPY FROM {target} is not supported: the server reads no files; use \
                     COPY … FROM STDIN (psql: \\copy)"
                ),
            )));
        }
        let CopySource::Table {
            table_name,
            columns,
        } = source
        else {
            return Some(Err(user_error(
                sqlstate::SYNTAX_ERROR,
                "COPY FROM needs a table, not a query",
            )));
        };
        let options = match CopyOptions::parse(options, legacy_options) {
            Ok(o) => o,
            Err(e) => return Some(Err(e)),
        };
        let table = table_name
            .0
            .last()
            .and_then(|p| p.as_ident())
            .map_or_else(|| table_name.to_string(), |i| i.value.clone());
        return Some(Ok(CopyStatement::From(CopyFrom {
            table,
            columns: columns.iter().map(|c| c.value.clone()).collect(),
            options,
        })));
    }
    if *target != CopyTarget::Stdout {
        return Some(Err(user_error(
            sqlstate::FEATURE_NOT_SUPPORTED,
            format!(
                "COPY TO {target} is not supported: the server does not write files; use \
                 COPY … TO STDOUT (psql: \\copy)"
            ),
        )));
    }
    let options = match CopyOptions::parse(options, legacy_options) {
        Ok(o) => o,
        Err(e) => return Some(Err(e)),
    };
    let query = match source {
        CopySource::Table {
            table_name,
            columns,
        } => {
            let columns = if columns.is_empty() {
                "*".to_string()
            } else {
                columns
                    .iter()
                    .map(|c| c.to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            format!("SELECT {columns} FROM {table_name}")
        }
        CopySource::Query(q) => q.to_string(),
    };
    Some(Ok(CopyStatement::To(CopyTo { query, options })))
}

/// One value in CSV as PostgreSQL writes it: quoted when it contains the delimiter,
/// the quote character or a line break, or equals the NULL string or `\.`; inside
/// quotes the quote and escape characters are preceded by the escape character.
/// Whether a CSV value must be quoted: it holds the delimiter, the quote or a line
/// break, or would read back as NULL or as the end-of-data marker.
fn csv_needs_quotes(v: &str, o: &CopyOptions) -> bool {
    v.contains(o.delimiter)
        || v.contains(o.quote)
        || v.contains(['\n', '\r'])
        || v == o.null
        || v == "\\."
}

fn csv_value(v: &str, o: &CopyOptions, out: &mut String) {
    if !csv_needs_quotes(v, o) {
        out.push_str(v);
        return;
    }
    out.push(o.quote);
    for ch in v.chars() {
        if ch == o.quote || ch == o.escape {
            out.push(o.escape);
        }
        out.push(ch);
    }
    out.push(o.quote);
}

/// The header line of CSV output: column names, quoted where needed.
fn csv_header(fields: &[FieldInfo], o: &CopyOptions) -> Bytes {
    let mut line = String::new();
    for (i, f) in fields.iter().enumerate() {
        if i > 0 {
            line.push(o.delimiter);
        }
        csv_value(f.name(), o, &mut line);
    }
    line.push('\n');
    Bytes::from(line)
}

/// Rows in PostgreSQL's CSV COPY format, values as [`csv_value`] writes them
/// (pgwire's CSV encoder writes an empty string like a NULL and ignores `ESCAPE`).
struct CsvEncoder {
    copy: CopyOptions,
    options: Arc<FormatOptions>,
    line: BytesMut,
    first: bool,
    /// One value's text, reused from value to value.
    value: BytesMut,
    /// A value that needs quoting, reused.
    quoted: String,
}

impl CsvEncoder {
    fn new(o: &CopyOptions, options: Arc<FormatOptions>) -> CsvEncoder {
        CsvEncoder {
            copy: o.clone(),
            options,
            line: BytesMut::new(),
            first: true,
            value: BytesMut::new(),
            quoted: String::new(),
        }
    }
}

impl Encoder for CsvEncoder {
    type Item = CopyData;

    fn encode_field<T>(&mut self, value: &T, pg_field: &FieldInfo) -> PgWireResult<()>
    where
        T: postgres_types::ToSql + pgwire::types::ToSqlText + Sized,
    {
        if !self.first {
            let mut b = [0u8; 4];
            self.line
                .put_slice(self.copy.delimiter.encode_utf8(&mut b).as_bytes());
        }
        self.first = false;
        self.value.clear();
        let is_null = value
            .to_sql_text(pg_field.datatype(), &mut self.value, &self.options)
            .map_err(PgWireError::ApiError)?;
        if matches!(is_null, postgres_types::IsNull::Yes) {
            self.line.put_slice(self.copy.null.as_bytes());
            return Ok(());
        }
        let text = String::from_utf8_lossy(&self.value);
        if csv_needs_quotes(&text, &self.copy) {
            self.quoted.clear();
            csv_value(&text, &self.copy, &mut self.quoted);
            self.line.put_slice(self.quoted.as_bytes());
        } else {
            // Most values (numbers, timestamps, plain text) go in as they are.
            self.line.put_slice(text.as_bytes());
        }
        Ok(())
    }

    fn take_row(&mut self) -> CopyData {
        self.line.put_u8(b'\n');
        self.first = true;
        CopyData::new(self.line.split().freeze())
    }
}

/// The encoder of one COPY's rows: pgwire's for text and binary, [`CsvEncoder`] for CSV.
enum RowsEncoder {
    Pgwire(CopyEncoder),
    Csv(CsvEncoder),
}

fn encoder(
    fields: Arc<Vec<FieldInfo>>,
    o: &CopyOptions,
    options: Arc<FormatOptions>,
) -> RowsEncoder {
    if o.format == CopyFormat::Csv {
        return RowsEncoder::Csv(CsvEncoder::new(o, options));
    }
    RowsEncoder::Pgwire(pgwire_encoder(fields, o))
}

fn pgwire_encoder(fields: Arc<Vec<FieldInfo>>, o: &CopyOptions) -> CopyEncoder {
    match o.format {
        CopyFormat::Binary => CopyEncoder::new_binary(fields),
        CopyFormat::Text => CopyEncoder::new_text(
            fields,
            CopyTextOptions {
                delimiter: o.delimiter.to_string().into(),
                null_string: o.null.clone().into(),
            },
        ),
        CopyFormat::Csv => CopyEncoder::new_csv(
            fields,
            CopyCsvOptions {
                delimiter: o.delimiter.to_string().into(),
                quote: o.quote.to_string().into(),
                escape: o.escape.to_string().into(),
                null_string: o.null.clone().into(),
                force_quote: vec![],
            },
        ),
    }
}

/// One batch's rows, a CopyData message each (the command tag counts messages).
fn encode_batch(
    enc: &mut RowsEncoder,
    fields: &[FieldInfo],
    schema: &SchemaRef,
    batch: &RecordBatch,
) -> PgWireResult<Vec<CopyData>> {
    fn rows<E: Encoder<Item = CopyData>>(
        enc: &mut E,
        fields: &[FieldInfo],
        schema: &SchemaRef,
        batch: &RecordBatch,
    ) -> PgWireResult<Vec<CopyData>> {
        let mut out = Vec::with_capacity(batch.num_rows());
        for row in 0..batch.num_rows() {
            for (col, field) in fields.iter().enumerate() {
                encode_value(enc, batch.column(col), row, schema.field(col), field)?;
            }
            out.push(enc.take_row());
        }
        Ok(out)
    }
    match enc {
        RowsEncoder::Pgwire(e) => rows(e, fields, schema, batch),
        RowsEncoder::Csv(e) => rows(e, fields, schema, batch),
    }
}

/// The PGCOPY header (the binary encoder writes it with the first row; a COPY of no
/// rows sends it alone).
fn binary_header() -> Bytes {
    let mut b = BytesMut::new();
    b.put_slice(b"PGCOPY\n\xFF\r\n\x00");
    b.put_i32(0);
    b.put_i32(0);
    b.freeze()
}

fn take(slot: &std::sync::Mutex<Option<Bytes>>) -> Option<Bytes> {
    slot.lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
        .take()
}

/// Run `copy`'s query in `ctx` on `executor`'s threads and stream its rows out; `guard`
/// (the statement's interrupt and what it holds) lives until the last row is sent.
pub async fn copy_to(
    copy: CopyTo,
    ctx: &SessionContext,
    zone: &str,
    format_options: Arc<FormatOptions>,
    executor: &QueryExecutor,
    guard: StatementGuard,
) -> PgWireResult<Response> {
    let api = |e: datafusion::error::DataFusionError| PgWireError::ApiError(Box::new(e));
    let planning = ctx.clone();
    let query = copy.query.clone();
    let df = executor
        .run(guard.interrupt(), async move { planning.sql(&query).await })
        .await
        .map_err(|e| api(e.into_datafusion()))?
        .map_err(api)?;
    let df = super::time_zone::in_session_zone(df, zone).map_err(api)?;
    let schema: SchemaRef = Arc::new(df.schema().as_arrow().clone());
    let o = copy.options;
    let wire_format = if o.format == CopyFormat::Binary {
        Format::UnifiedBinary
    } else {
        Format::UnifiedText
    };
    let fields = Arc::new(arrow_schema_to_pg_fields(
        &schema,
        &wire_format,
        Some(format_options.clone()),
    )?);
    let columns = fields.len();
    // The CSV header goes in front of the first row (or alone, when there is none); a
    // binary COPY of no rows still starts with the PGCOPY header.
    let prefix = match o.format {
        CopyFormat::Csv if o.header => Some(csv_header(&fields, &o)),
        CopyFormat::Binary => Some(binary_header()),
        _ => None,
    };
    let prefix = Arc::new(std::sync::Mutex::new(prefix));
    let binary = o.format == CopyFormat::Binary;
    let stream = executor
        .execute(guard.interrupt(), df, Analysis::Needed, guard.lease())
        .await
        .map_err(api)?;
    let mut enc = encoder(fields.clone(), &o, format_options.clone());
    let pending = prefix.clone();
    let body = stream.flat_map(move |batch| {
        // The guard lives (and keeps the deadline armed) as long as rows are sent.
        let _statement = &guard;
        let rows = batch
            .map_err(api)
            .and_then(|b| encode_batch(&mut enc, &fields, &schema, &b));
        let items: Vec<PgWireResult<CopyData>> = match rows {
            Ok(mut rows) => {
                if let Some(first) = rows.first_mut()
                    && let Some(p) = take(&pending)
                    && !binary
                {
                    // (The binary encoder writes its own header with the first row.)
                    let mut b = BytesMut::from(p.as_ref());
                    b.put(first.data.clone());
                    *first = CopyData::new(b.freeze());
                }
                rows.into_iter().map(Ok).collect()
            }
            Err(e) => vec![Err(e)],
        };
        futures::stream::iter(items)
    });
    // No row at all: the header alone.
    let tail = futures::stream::once(async move { take(&prefix).map(|p| Ok(CopyData::new(p))) })
        .filter_map(futures::future::ready);
    let data = body.chain(tail);
    Ok(Response::CopyOut(CopyResponse::new(
        o.wire_format(),
        columns,
        data,
    )))
}

#[cfg(test)]
mod tests {
    use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
    use datafusion::sql::sqlparser::parser::Parser;

    use super::*;

    fn copy(sql: &str) -> PgWireResult<CopyTo> {
        let stmts = Parser::parse_sql(&PostgreSqlDialect {}, sql).expect("parse");
        match classify(&stmts[0]).expect("a COPY")? {
            CopyStatement::To(c) => Ok(c),
            CopyStatement::From(_) => panic!("{sql} is a COPY FROM"),
        }
    }

    #[test]
    fn options_follow_postgres_defaults_and_forms() {
        let c = copy("COPY t TO STDOUT").unwrap();
        assert_eq!(
            (c.options.format, c.options.delimiter),
            (CopyFormat::Text, '\t')
        );
        assert_eq!(c.options.null, "\\N");
        assert_eq!(c.query, "SELECT * FROM t");
        let c = copy("COPY t (a, b) TO STDOUT WITH (FORMAT csv, HEADER true)").unwrap();
        assert_eq!(
            (c.options.format, c.options.header),
            (CopyFormat::Csv, true)
        );
        assert_eq!((c.options.delimiter, c.options.null.as_str()), (',', ""));
        assert_eq!(c.query, "SELECT a, b FROM t");
        // psql's \copy … WITH CSV HEADER sends the pre-9.0 form.
        let c = copy("COPY (SELECT 1) TO STDOUT WITH CSV HEADER").unwrap();
        assert_eq!(
            (c.options.format, c.options.header),
            (CopyFormat::Csv, true)
        );
        let c = copy("COPY t TO STDOUT (FORMAT binary)").unwrap();
        assert_eq!(c.options.wire_format(), 1);
        let code = |sql| match copy(sql) {
            Err(PgWireError::UserError(e)) => e.code,
            other => panic!("{sql}: {:?}", other.map(|c| c.query)),
        };
        assert_eq!(code("COPY t TO '/etc/passwd'"), "0A000");
        assert_eq!(code("COPY t TO STDOUT (FORMAT xml)"), "22023");
        assert_eq!(code("COPY t TO STDOUT (FORMAT text, HEADER)"), "0A000");
    }
}
