//! `COPY t [(columns)] FROM STDIN` in PostgreSQL's text, CSV or binary format.
//!
//! All or nothing on bad input: every line is parsed and checked as it arrives, and
//! the rows are written — durably, last write wins like any write — only when the
//! client ends the COPY without an error; a bad line fails the whole COPY with an error
//! naming the line and column (`22P02` for a value, `22P04` for a line with too few or too
//! many values, `23502` for a missing `ts` or tag) and nothing of it is kept. The rows of
//! one COPY are held until it ends, so one COPY may be at most as large as the write
//! buffer (`--buffer-budget-bytes`; `54000` beyond it: split the data). The rows are
//! written in pieces of [`WRITE_CHUNK`] rows, one WAL record each: a server crash while
//! they are written can keep the first pieces of a COPY that was not acknowledged.
//! In the binary format each value must be in its column's binary form (`timestamptz`
//! or `timestamp`, `text`, `float8` or `float4`, `int8`/`int4`/`int2`, `bool`); a value
//! that is not is `22P03`, and rows are counted instead of lines in errors.

use std::borrow::Cow;
use std::sync::{Arc, Mutex};

use pgwire::api::ClientInfo;
use pgwire::error::PgWireError;
use wattdb_storage::{FieldType, FieldValue, Month, Storage, TableDef, ValidRow};

use super::copy::{CopyFormat, CopyOptions};
use super::sqlstate::{self, user_error};

/// Rows per WAL record when a COPY is written.
pub const WRITE_CHUNK: usize = 20_000;

#[derive(Debug, Clone, Copy)]
enum Target {
    Ts,
    Tag(usize),
    Field(usize, FieldType),
}

/// One COPY FROM in progress.
pub struct CopyIn {
    def: Arc<TableDef>,
    targets: Vec<(String, Target)>,
    options: CopyOptions,
    limit_bytes: usize,
    state: Mutex<InState>,
}

#[derive(Default)]
struct InState {
    pending: Vec<u8>,
    line: u64,
    rows: Vec<ValidRow>,
    bytes: usize,
    error: Option<PgWireError>,
    /// `\.` seen: the rest is ignored.
    ended: bool,
}

/// The COPY FROM of a connection, between its start and CopyDone/CopyFail: the copy,
/// or the error it failed with at its start. (Over the extended protocol an error at the
/// start is reported at CopyDone: clients such as tokio-postgres have already queued
/// their Sync and copy messages, and pgwire would take the copy messages that follow
/// an early error for a protocol violation.)
#[derive(Default)]
pub struct CopyInSlot(Mutex<Option<Result<Arc<CopyIn>, PgWireError>>>);

impl CopyInSlot {
    pub fn of<C: ClientInfo + ?Sized>(client: &C) -> Arc<CopyInSlot> {
        client
            .session_extensions()
            .get_or_insert_with(CopyInSlot::default)
    }

    pub fn set(&self, copy: Result<Arc<CopyIn>, PgWireError>) {
        *self.0.lock().unwrap_or_else(|p| p.into_inner()) = Some(copy);
    }

    /// The copy in progress, if it started well.
    pub fn get(&self) -> Option<Arc<CopyIn>> {
        match &*self.0.lock().unwrap_or_else(|p| p.into_inner()) {
            Some(Ok(c)) => Some(c.clone()),
            _ => None,
        }
    }

    pub fn take(&self) -> Option<Result<Arc<CopyIn>, PgWireError>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).take()
    }
}

impl CopyIn {
    /// Check the statement against the table and get ready for data.
    pub fn start(
        storage: &Storage,
        table: &str,
        columns: &[String],
        options: CopyOptions,
    ) -> Result<CopyIn, PgWireError> {
        let def = storage.shared_table(table).ok_or_else(|| {
            user_error(
                sqlstate::UNDEFINED_TABLE,
                format!("relation \"{table}\" does not exist"),
            )
        })?;
        if def.is_rollup() {
            return Err(user_error(
                sqlstate::WRONG_OBJECT_TYPE,
                format!("\"{table}\" is a rollup table: it is written by wattdb only"),
            ));
        }
        let all: Vec<String> = std::iter::once(wattdb_storage::TS_COLUMN.to_string())
            .chain(def.tags.iter().cloned())
            .chain(def.fields.iter().map(|f| f.name.clone()))
            .collect();
        let names = if columns.is_empty() {
            all
        } else {
            columns.to_vec()
        };
        let mut targets = Vec::with_capacity(names.len());
        for name in names {
            let target = if name == wattdb_storage::TS_COLUMN {
                Target::Ts
            } else if let Some(i) = def.tags.iter().position(|t| *t == name) {
                Target::Tag(i)
            } else if let Some(i) = def.fields.iter().position(|f| f.name == name) {
                Target::Field(i, def.fields[i].field_type)
            } else {
                return Err(user_error(
                    sqlstate::UNDEFINED_COLUMN,
                    format!("column \"{name}\" of relation \"{table}\" does not exist"),
                ));
            };
            if targets.iter().any(|(n, _)| *n == name) {
                return Err(user_error(
                    sqlstate::SYNTAX_ERROR,
                    format!("column \"{name}\" specified more than once"),
                ));
            }
            targets.push((name, target));
        }
        let has = |t: &dyn Fn(&Target) -> bool| targets.iter().any(|(_, x)| t(x));
        if !has(&|t| matches!(t, Target::Ts)) {
            return Err(user_error(
                sqlstate::NOT_NULL_VIOLATION,
                format!("COPY into \"{table}\" needs its ts column"),
            ));
        }
        for (i, tag) in def.tags.iter().enumerate() {
            if !has(&|t| matches!(t, Target::Tag(j) if *j == i)) {
                return Err(user_error(
                    sqlstate::NOT_NULL_VIOLATION,
                    format!("COPY into \"{table}\" needs its tag column \"{tag}\""),
                ));
            }
        }
        Ok(CopyIn {
            limit_bytes: storage.config().buffer_budget_bytes,
            def,
            targets,
            options,
            state: Mutex::new(InState::default()),
        })
    }

    pub fn columns(&self) -> usize {
        self.targets.len()
    }

    pub fn format(&self) -> i8 {
        self.options.wire_format()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, InState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A piece of the data stream (lines may be split anywhere).
    pub fn feed(&self, data: &[u8]) {
        let mut s = self.lock();
        if s.error.is_some() || s.ended {
            return;
        }
        let mut pending = std::mem::take(&mut s.pending);
        pending.extend_from_slice(data);
        if self.options.format == CopyFormat::Binary {
            let consumed = match self.binary_tuples(&mut s, &pending) {
                Ok(n) => n,
                Err(e) => {
                    s.error = Some(e);
                    0
                }
            };
            pending.drain(..consumed);
            s.pending = pending;
            return;
        }
        let mut consumed = 0;
        while let Some(end) = self.record_end(&pending[consumed..]) {
            let record = &pending[consumed..consumed + end];
            consumed += end + 1;
            if let Err(e) = self.record(&mut s, record) {
                s.error = Some(e);
                break;
            }
            if s.ended {
                break;
            }
        }
        pending.drain(..consumed);
        s.pending = pending;
    }

    /// Where the first complete record of `data` ends (its `\n`), if it is complete: in
    /// CSV, a line break inside quotes belongs to the value.
    fn record_end(&self, data: &[u8]) -> Option<usize> {
        if self.options.format != CopyFormat::Csv {
            return data.iter().position(|b| *b == b'\n');
        }
        let (quote, escape) = (self.options.quote as u8, self.options.escape as u8);
        // Usually the line holds no quote at all: its end is the first line break.
        let newline = data.iter().position(|b| *b == b'\n');
        let upto = newline.unwrap_or(data.len());
        if !data[..upto].contains(&quote) {
            return newline;
        }
        let mut in_quotes = false;
        let mut i = 0;
        while i < data.len() {
            let b = data[i];
            if in_quotes && b == escape && escape != quote && data.get(i + 1) == Some(&quote) {
                i += 2;
                continue;
            }
            if b == quote {
                in_quotes = !in_quotes;
            } else if b == b'\n' && !in_quotes {
                return Some(i);
            }
            i += 1;
        }
        None
    }

    /// One complete line (without its `\n`).
    fn record(&self, s: &mut InState, raw: &[u8]) -> Result<(), PgWireError> {
        s.line += 1;
        let raw = raw.strip_suffix(b"\r").unwrap_or(raw);
        let line = std::str::from_utf8(raw).map_err(|_| {
            user_error(
                sqlstate::CHARACTER_NOT_IN_REPERTOIRE,
                format!(
                    "invalid byte sequence for encoding \"UTF8\" (COPY {}, line {})",
                    self.def.name, s.line
                ),
            )
        })?;
        if self.options.format == CopyFormat::Csv && self.options.header && s.line == 1 {
            return Ok(());
        }
        if line == "\\." {
            s.ended = true;
            return Ok(());
        }
        let values = match self.options.format {
            CopyFormat::Csv => split_csv(line, &self.options),
            _ => split_text(line, &self.options),
        };
        let line_no = s.line;
        let context = |column: Option<&str>| match column {
            Some(c) => format!("COPY {}, line {line_no}, column {c}", self.def.name),
            None => format!("COPY {}, line {line_no}", self.def.name),
        };
        if values.len() < self.targets.len() {
            let missing = &self.targets[values.len()].0;
            return Err(user_error(
                sqlstate::BAD_COPY_FILE_FORMAT,
                format!("missing data for column \"{missing}\" ({})", context(None)),
            ));
        }
        if values.len() > self.targets.len() {
            return Err(user_error(
                sqlstate::BAD_COPY_FILE_FORMAT,
                format!("extra data after last expected column ({})", context(None)),
            ));
        }
        let mut ts = None;
        let mut tags = vec![String::new(); self.def.tags.len()];
        let mut fields: Vec<Option<FieldValue>> = vec![None; self.def.fields.len()];
        for ((name, target), value) in self.targets.iter().zip(values) {
            let bad = |type_name: &str, v: &str| {
                user_error(
                    sqlstate::INVALID_TEXT_REPRESENTATION,
                    format!(
                        "invalid input syntax for type {type_name}: \"{v}\" ({})",
                        context(Some(name))
                    ),
                )
            };
            match (target, value) {
                (Target::Ts | Target::Tag(_), None) => {
                    return Err(null_key(name, &context(Some(name))));
                }
                (Target::Ts, Some(v)) => {
                    ts = Some(
                        parse_timestamp(&v).ok_or_else(|| bad("timestamp with time zone", &v))?,
                    );
                }
                (Target::Tag(i), Some(v)) => tags[*i] = v.into_owned(),
                (Target::Field(..), None) => {}
                (Target::Field(i, t), Some(v)) => {
                    fields[*i] = Some(match t {
                        FieldType::Float => FieldValue::Float(
                            parse_float(&v).ok_or_else(|| bad("double precision", &v))?,
                        ),
                        FieldType::Integer => {
                            FieldValue::Integer(v.trim().parse().map_err(|_| bad("bigint", &v))?)
                        }
                        FieldType::Boolean => {
                            FieldValue::Boolean(parse_bool(&v).ok_or_else(|| bad("boolean", &v))?)
                        }
                        FieldType::Text => FieldValue::Text(v.into_owned()),
                        FieldType::Timestamp => FieldValue::Timestamp(
                            parse_timestamp(&v)
                                .ok_or_else(|| bad("timestamp with time zone", &v))?,
                        ),
                    });
                }
            }
        }
        let Some(ts) = ts else {
            return Err(user_error(sqlstate::INTERNAL_ERROR, "COPY row without ts"));
        };
        self.push_row(s, ValidRow { ts, tags, fields }, || {
            context(Some(wattdb_storage::TS_COLUMN))
        })
    }

    /// Keep a parsed row: refused if its month has expired or the COPY outgrows the
    /// write buffer. `context` names the row for errors.
    fn push_row(
        &self,
        s: &mut InState,
        row: ValidRow,
        context: impl Fn() -> String,
    ) -> Result<(), PgWireError> {
        let ValidRow { ts, tags, fields } = row;
        if self.def.is_expired(ts) {
            let e = wattdb_storage::Error::Expired {
                table: self.def.name.clone(),
                month: Month::of_micros(ts),
            };
            return Err(user_error(
                sqlstate::for_storage(&e),
                format!("{e} ({})", context()),
            ));
        }
        s.bytes += 48
            + tags.iter().map(|t| t.len() + 24).sum::<usize>()
            + fields
                .iter()
                .map(|f| match f {
                    Some(FieldValue::Text(t)) => 32 + t.len(),
                    _ => 24,
                })
                .sum::<usize>();
        if s.bytes > self.limit_bytes {
            return Err(user_error(
                sqlstate::PROGRAM_LIMIT_EXCEEDED,
                format!(
                    "COPY {} is larger than the write buffer ({} bytes) at {context}: a COPY \
                     is kept whole until it ends, so split the data into several COPYs",
                    self.def.name,
                    self.limit_bytes,
                    context = context()
                ),
            ));
        }
        s.rows.push(ValidRow { ts, tags, fields });
        Ok(())
    }

    /// CopyDone: the last line (if it had no line break), then the rows — or the error.
    pub fn finish(&self) -> Result<(Arc<TableDef>, Vec<ValidRow>), PgWireError> {
        let mut s = self.lock();
        if s.error.is_none() && self.options.format == CopyFormat::Binary && !s.ended {
            s.error = Some(user_error(
                sqlstate::BAD_COPY_FILE_FORMAT,
                format!(
                    "COPY {}: binary data ended without its trailer (after {} rows{})",
                    self.def.name,
                    s.rows.len(),
                    if s.pending.is_empty() {
                        ""
                    } else {
                        ", in the middle of a row"
                    }
                ),
            ));
        }
        if s.error.is_none() && !s.ended && !s.pending.is_empty() {
            let last = std::mem::take(&mut s.pending);
            if let Err(e) = self.record(&mut s, &last) {
                s.error = Some(e);
            }
        }
        if let Some(e) = s.error.take() {
            return Err(e);
        }
        Ok((self.def.clone(), std::mem::take(&mut s.rows)))
    }
}

/// The signature that starts PostgreSQL's binary COPY data.
const BINARY_SIGNATURE: &[u8] = b"PGCOPY\n\xff\r\n\0";
/// Microseconds from 1970-01-01 to PostgreSQL's epoch 2000-01-01.
const PG_EPOCH_MICROS: i64 = 946_684_800_000_000;

impl CopyIn {
    /// Parse the complete tuples at the start of `data` (PostgreSQL's binary COPY
    /// format: header, then per tuple a field count and each field's length and bytes in
    /// the type's binary form, then a `-1` trailer); returns how many bytes were used.
    fn binary_tuples(&self, s: &mut InState, data: &[u8]) -> Result<usize, PgWireError> {
        let mut at = 0;
        if s.line == 0 {
            // The header: signature, flags, extension length and extension.
            if data.len() < BINARY_SIGNATURE.len() + 8 {
                return Ok(0);
            }
            if !data.starts_with(BINARY_SIGNATURE) {
                return Err(user_error(
                    sqlstate::BAD_COPY_FILE_FORMAT,
                    format!(
                        "COPY {}: binary data does not start with the COPY signature",
                        self.def.name
                    ),
                ));
            }
            let flags = be_u32(&data[11..15]);
            if flags & (1 << 16) != 0 {
                return Err(user_error(
                    sqlstate::BAD_COPY_FILE_FORMAT,
                    format!(
                        "COPY {}: binary data with OIDs is not supported",
                        self.def.name
                    ),
                ));
            }
            let ext = be_u32(&data[15..19]) as usize;
            if data.len() < 19 + ext {
                return Ok(0);
            }
            at = 19 + ext;
            s.line = 1;
        }
        while !s.ended {
            let Some(tuple) = data.get(at..) else { break };
            let Some(count) = tuple.get(..2).map(|b| i16::from_be_bytes([b[0], b[1]])) else {
                break;
            };
            if count == -1 {
                s.ended = true;
                at += 2;
                break;
            }
            // All of the tuple's fields, or wait for more data.
            let mut fields = Vec::with_capacity(count.max(0) as usize);
            let mut pos = 2;
            let mut complete = true;
            for _ in 0..count.max(0) {
                let Some(len) = tuple.get(pos..pos + 4).map(be_u32) else {
                    complete = false;
                    break;
                };
                pos += 4;
                if len == u32::MAX {
                    fields.push(None);
                    continue;
                }
                let len = len as usize;
                let Some(bytes) = tuple.get(pos..pos + len) else {
                    complete = false;
                    break;
                };
                fields.push(Some(bytes));
                pos += len;
            }
            if !complete {
                break;
            }
            let row = s.line;
            self.binary_row(s, row, count, &fields)?;
            s.line += 1;
            at += pos;
        }
        Ok(at)
    }

    /// One binary tuple (`row` counts from 1).
    fn binary_row(
        &self,
        s: &mut InState,
        row: u64,
        count: i16,
        values: &[Option<&[u8]>],
    ) -> Result<(), PgWireError> {
        let context = |column: Option<&str>| match column {
            Some(c) => format!("COPY {}, row {row}, column {c}", self.def.name),
            None => format!("COPY {}, row {row}", self.def.name),
        };
        if count as usize != self.targets.len() {
            return Err(user_error(
                sqlstate::BAD_COPY_FILE_FORMAT,
                format!(
                    "row field count is {count}, expected {} ({})",
                    self.targets.len(),
                    context(None)
                ),
            ));
        }
        let mut ts = None;
        let mut tags = vec![String::new(); self.def.tags.len()];
        let mut fields: Vec<Option<FieldValue>> = vec![None; self.def.fields.len()];
        for ((name, target), value) in self.targets.iter().zip(values.iter().copied()) {
            let bad = |type_name: &str, v: &[u8]| {
                user_error(
                    INVALID_BINARY_REPRESENTATION,
                    format!(
                        "{} bytes are not a binary {type_name} ({})",
                        v.len(),
                        context(Some(name))
                    ),
                )
            };
            match (target, value) {
                (Target::Ts | Target::Tag(_), None) => {
                    return Err(null_key(name, &context(Some(name))));
                }
                (Target::Ts, Some(v)) => {
                    ts = Some(binary_timestamp(v).ok_or_else(|| bad("timestamp", v))?);
                }
                (Target::Tag(i), Some(v)) => {
                    tags[*i] = String::from_utf8(v.to_vec()).map_err(|_| bad("text", v))?;
                }
                (Target::Field(..), None) => {}
                (Target::Field(i, t), Some(v)) => {
                    fields[*i] = Some(match t {
                        FieldType::Float => FieldValue::Float(match v.len() {
                            8 => f64::from_be_bytes(v.try_into().map_err(|_| bad("float8", v))?),
                            4 => f32::from_be_bytes(v.try_into().map_err(|_| bad("float4", v))?)
                                as f64,
                            _ => return Err(bad("double precision", v)),
                        }),
                        FieldType::Integer => {
                            FieldValue::Integer(match v.len() {
                                8 => i64::from_be_bytes(v.try_into().map_err(|_| bad("int8", v))?),
                                4 => i32::from_be_bytes(v.try_into().map_err(|_| bad("int4", v))?)
                                    as i64,
                                2 => i16::from_be_bytes(v.try_into().map_err(|_| bad("int2", v))?)
                                    as i64,
                                _ => return Err(bad("bigint", v)),
                            })
                        }
                        FieldType::Boolean => match v {
                            [b] => FieldValue::Boolean(*b != 0),
                            _ => return Err(bad("boolean", v)),
                        },
                        FieldType::Text => FieldValue::Text(
                            String::from_utf8(v.to_vec()).map_err(|_| bad("text", v))?,
                        ),
                        FieldType::Timestamp => FieldValue::Timestamp(
                            binary_timestamp(v).ok_or_else(|| bad("timestamp", v))?,
                        ),
                    });
                }
            }
        }
        let Some(ts) = ts else {
            return Err(user_error(sqlstate::INTERNAL_ERROR, "COPY row without ts"));
        };
        self.push_row(s, ValidRow { ts, tags, fields }, || {
            context(Some(wattdb_storage::TS_COLUMN))
        })
    }
}

const INVALID_BINARY_REPRESENTATION: &str = "22P03";

/// A NULL for `ts` or a tag.
fn null_key(column: &str, context: &str) -> PgWireError {
    user_error(
        sqlstate::NOT_NULL_VIOLATION,
        format!("null value in column \"{column}\" violates not-null constraint ({context})"),
    )
}

fn be_u32(b: &[u8]) -> u32 {
    u32::from_be_bytes([b[0], b[1], b[2], b[3]])
}

/// A binary `timestamp`/`timestamptz`: microseconds since 2000-01-01 UTC.
fn binary_timestamp(v: &[u8]) -> Option<i64> {
    let micros = i64::from_be_bytes(v.try_into().ok()?);
    micros.checked_add(PG_EPOCH_MICROS)
}

/// Write the rows of a finished COPY; returns once they are durable.
pub async fn write(
    storage: &Storage,
    def: &TableDef,
    rows: Vec<ValidRow>,
) -> Result<usize, PgWireError> {
    let n = rows.len();
    let mut pending = Vec::new();
    let mut rows = rows.into_iter().peekable();
    while rows.peek().is_some() {
        let chunk: Vec<ValidRow> = rows.by_ref().take(WRITE_CHUNK).collect();
        let p = storage
            .submit_valid(def, chunk)
            .await
            .map_err(|e| user_error(sqlstate::for_storage(&e), e.to_string()))?;
        pending.push(p);
    }
    for p in pending {
        p.durable()
            .await
            .map_err(|e| user_error(sqlstate::for_storage(&e), e.to_string()))?;
    }
    Ok(n)
}

/// The fields of a text-format line: split at the delimiter, the NULL string recognised
/// before backslash escapes are undone. Values without escapes are borrowed.
fn split_text<'a>(line: &'a str, o: &CopyOptions) -> Vec<Option<Cow<'a, str>>> {
    line.split(o.delimiter)
        .map(|raw| (raw != o.null).then(|| unescape_text(raw)))
        .collect()
}

fn unescape_text(raw: &str) -> Cow<'_, str> {
    if !raw.contains('\\') {
        return Cow::Borrowed(raw);
    }
    let mut out = String::with_capacity(raw.len());
    let mut chars = raw.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('b') => out.push('\u{8}'),
            Some('f') => out.push('\u{c}'),
            Some('n') => out.push('\n'),
            Some('r') => out.push('\r'),
            Some('t') => out.push('\t'),
            Some('v') => out.push('\u{b}'),
            Some('x') => {
                let mut v = 0u32;
                let mut n = 0;
                while n < 2 && chars.peek().is_some_and(|c| c.is_ascii_hexdigit()) {
                    v = v * 16 + chars.next().and_then(|c| c.to_digit(16)).unwrap_or(0);
                    n += 1;
                }
                if n == 0 {
                    out.push('x');
                } else if let Some(ch) = char::from_u32(v) {
                    out.push(ch);
                }
            }
            Some(d @ '0'..='7') => {
                let mut v = d.to_digit(8).unwrap_or(0);
                let mut n = 1;
                while n < 3 && chars.peek().is_some_and(|c| ('0'..='7').contains(c)) {
                    v = v * 8 + chars.next().and_then(|c| c.to_digit(8)).unwrap_or(0);
                    n += 1;
                }
                if let Some(ch) = char::from_u32(v) {
                    out.push(ch);
                }
            }
            Some(other) => out.push(other),
            None => {}
        }
    }
    Cow::Owned(out)
}

/// The fields of a CSV record: quoted values may hold the delimiter, line breaks and
/// (escaped) quotes; an unquoted value equal to the NULL string is NULL. A line without
/// quotes (the usual case) is split without copying its values.
fn split_csv<'a>(line: &'a str, o: &CopyOptions) -> Vec<Option<Cow<'a, str>>> {
    if !line.contains(o.quote) {
        return line
            .split(o.delimiter)
            .map(|v| (v != o.null).then_some(Cow::Borrowed(v)))
            .collect();
    }
    let field =
        |value: String, quoted: bool| (quoted || value != o.null).then_some(Cow::Owned(value));
    let mut out = Vec::new();
    let mut value = String::new();
    let mut quoted = false;
    let mut in_quotes = false;
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        if in_quotes {
            if c == o.escape
                && chars
                    .peek()
                    .is_some_and(|n| *n == o.quote || *n == o.escape)
            {
                if let Some(n) = chars.next() {
                    value.push(n);
                }
            } else if c == o.quote {
                in_quotes = false;
            } else {
                value.push(c);
            }
        } else if c == o.quote {
            in_quotes = true;
            quoted = true;
        } else if c == o.delimiter {
            out.push(field(std::mem::take(&mut value), quoted));
            quoted = false;
        } else {
            value.push(c);
        }
    }
    out.push(field(value, quoted));
    out
}

fn parse_float(v: &str) -> Option<f64> {
    let t = v.trim();
    // Numbers first, without the lower-casing the names need.
    if let Ok(f) = t.parse::<f64>()
        && f.is_finite()
    {
        return Some(f);
    }
    match t.to_ascii_lowercase().as_str() {
        "infinity" | "+infinity" | "inf" | "+inf" => Some(f64::INFINITY),
        "-infinity" | "-inf" => Some(f64::NEG_INFINITY),
        "nan" => Some(f64::NAN),
        _ => None,
    }
}

fn parse_bool(v: &str) -> Option<bool> {
    let t = v.trim().to_ascii_lowercase();
    if t.is_empty() {
        return None;
    }
    let prefix_of = |word: &str| word.starts_with(t.as_str());
    match t.as_str() {
        "1" | "on" => Some(true),
        "0" | "of" | "off" => Some(false),
        _ if prefix_of("true") || prefix_of("yes") => Some(true),
        _ if prefix_of("false") || prefix_of("no") => Some(false),
        _ => None,
    }
}

/// A `timestamptz` as PostgreSQL prints and reads it: `2026-03-01 08:00:00+08`,
/// `2026-03-01T00:00:00.5Z`, `… +05:30`, `… -0330`, a date alone (midnight); without an
/// offset the time is UTC. Microseconds since the epoch.
pub fn parse_timestamp(v: &str) -> Option<i64> {
    let t = v.trim();
    fast_timestamp(t.as_bytes()).or_else(|| parse_general(t))
}

/// [`parse_timestamp`] for every form it takes (chrono's format parsers).
fn parse_general(t: &str) -> Option<i64> {
    let (date, rest) = t.split_at(t.find([' ', 'T', 't']).unwrap_or(t.len()));
    let date = chrono::NaiveDate::parse_from_str(date, "%Y-%m-%d").ok()?;
    let rest = rest.trim_start_matches([' ', 'T', 't']);
    if rest.is_empty() {
        return Some(date.and_hms_opt(0, 0, 0)?.and_utc().timestamp_micros());
    }
    // Split the time from its offset (the first '+', '-', 'Z' after the time starts).
    let at = rest.find(['+', '-', 'Z', 'z']).unwrap_or(rest.len());
    let (time, offset) = rest.split_at(at);
    let time = chrono::NaiveTime::parse_from_str(time.trim(), "%H:%M:%S%.f")
        .or_else(|_| chrono::NaiveTime::parse_from_str(time.trim(), "%H:%M"))
        .ok()?;
    let offset = offset.trim();
    let offset_secs: i64 = if offset.is_empty() || offset.eq_ignore_ascii_case("z") {
        0
    } else {
        let sign = if offset.starts_with('-') { -1 } else { 1 };
        let digits: String = offset[1..].chars().filter(|c| *c != ':').collect();
        if !digits.chars().all(|c| c.is_ascii_digit()) || digits.is_empty() {
            return None;
        }
        let (h, m, s) = match digits.len() {
            1 | 2 => (digits.parse::<i64>().ok()?, 0, 0),
            4 => (digits[..2].parse().ok()?, digits[2..].parse().ok()?, 0),
            6 => (
                digits[..2].parse().ok()?,
                digits[2..4].parse().ok()?,
                digits[4..].parse().ok()?,
            ),
            _ => return None,
        };
        sign * (h * 3600 + m * 60 + s)
    };
    let local = date.and_time(time).and_utc().timestamp_micros();
    local.checked_sub(offset_secs * 1_000_000)
}

/// `YYYY-MM-DD HH:MM:SS[.ffffff]` (or `T` between), optionally followed by `Z`, `+HH`,
/// `+HH:MM` or `+HHMM` — what exports and PostgreSQL itself print — read without
/// parsing a format; anything else (or an invalid date) is left to the general parser.
fn fast_timestamp(b: &[u8]) -> Option<i64> {
    let digits = |r: std::ops::Range<usize>| -> Option<i64> {
        let part = b.get(r)?;
        let mut v = 0i64;
        for &c in part {
            if !c.is_ascii_digit() {
                return None;
            }
            v = v * 10 + i64::from(c - b'0');
        }
        Some(v)
    };
    if b.len() < 19 || b[4] != b'-' || b[7] != b'-' || !matches!(b[10], b' ' | b'T') {
        return None;
    }
    if b[13] != b':' || b[16] != b':' {
        return None;
    }
    let (year, month, day) = (digits(0..4)?, digits(5..7)?, digits(8..10)?);
    let (hour, minute, second) = (digits(11..13)?, digits(14..16)?, digits(17..19)?);
    if hour > 23 || minute > 59 || second > 59 {
        return None;
    }
    let date = chrono::NaiveDate::from_ymd_opt(year as i32, month as u32, day as u32)?;
    let mut pos = 19;
    let mut micros = 0i64;
    if b.get(pos) == Some(&b'.') {
        pos += 1;
        let start = pos;
        while pos < b.len() && b[pos].is_ascii_digit() {
            pos += 1;
        }
        let n = pos - start;
        if n == 0 || n > 6 {
            return None; // more than microseconds: the general parser rounds
        }
        micros = digits(start..pos)? * 10i64.pow((6 - n) as u32);
    }
    let offset = match b.get(pos) {
        None => 0,
        Some(b'Z' | b'z') if pos + 1 == b.len() => 0,
        Some(&sign @ (b'+' | b'-')) => {
            let rest = &b[pos + 1..];
            let (h, m) = match rest.len() {
                2 => (digits(pos + 1..pos + 3)?, 0),
                4 => (digits(pos + 1..pos + 3)?, digits(pos + 3..pos + 5)?),
                5 if rest[2] == b':' => (digits(pos + 1..pos + 3)?, digits(pos + 4..pos + 6)?),
                _ => return None,
            };
            let secs = h * 3600 + m * 60;
            if sign == b'-' { -secs } else { secs }
        }
        _ => return None,
    };
    let days = date
        .signed_duration_since(chrono::NaiveDate::from_ymd_opt(1970, 1, 1)?)
        .num_days();
    let local = ((days * 24 + hour) * 60 + minute) * 60 + second;
    (local - offset).checked_mul(1_000_000)?.checked_add(micros)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(format: CopyFormat) -> CopyOptions {
        let csv = format == CopyFormat::Csv;
        CopyOptions {
            format,
            header: false,
            delimiter: if csv { ',' } else { '\t' },
            null: if csv { String::new() } else { "\\N".into() },
            quote: '"',
            escape: '"',
        }
    }

    #[test]
    fn text_lines_unescape_and_know_null() {
        let o = opts(CopyFormat::Text);
        assert_eq!(
            split_text("a\\tb\t\\N\tx\\\\y\\n\t\\101", &o),
            vec![
                Some("a\tb".into()),
                None,
                Some("x\\y\n".into()),
                Some("A".into())
            ]
        );
    }

    #[test]
    fn csv_quotes_hold_delimiters_and_tell_empty_from_null() {
        let o = opts(CopyFormat::Csv);
        assert_eq!(
            split_csv("m1,\"a,b\",,\"\",\"say \"\"hi\"\"\"", &o),
            vec![
                Some("m1".into()),
                Some("a,b".into()),
                None,
                Some("".into()),
                Some("say \"hi\"".into())
            ]
        );
    }

    #[test]
    fn timestamps_in_postgres_forms() {
        let t0 = 1_772_323_200_000_000_i64; // 2026-03-01 00:00:00 UTC
        for (text, want) in [
            ("2026-03-01 00:00:00+00", t0),
            ("2026-03-01 08:00:00+08", t0),
            ("2026-03-01T00:00:00Z", t0),
            ("2026-03-01 05:30:00+05:30", t0),
            ("2026-02-28 20:30:00-0330", t0),
            ("2026-03-01", t0),
            ("2026-03-01 00:00:00.5+00", t0 + 500_000),
            ("2026-03-01 00:01", t0 + 60_000_000),
            ("2026-03-01 00:00:00.123456", t0 + 123_456),
            ("2026-03-01T01:00:00+0100", t0),
            ("1969-12-31 23:59:59-00", -1_000_000),
        ] {
            assert_eq!(parse_timestamp(text), Some(want), "{text}");
        }
        // The fast path agrees with the general parser wherever it answers.
        for text in [
            "2026-03-01 08:00:00+08",
            "2024-02-29 23:59:59.5-05:30",
            "2000-01-01T00:00:00Z",
            "1900-06-15 12:00:00",
        ] {
            let fast = super::fast_timestamp(text.as_bytes());
            assert!(fast.is_some(), "{text}");
            assert_eq!(fast, parse_general(text), "{text}");
        }
        assert_eq!(super::fast_timestamp(b"2026-02-30 00:00:00"), None);
        assert_eq!(parse_timestamp("yesterday"), None);
        assert_eq!(parse_timestamp("2026-13-01 00:00:00"), None);
    }

    #[test]
    fn booleans_and_floats_as_postgres_reads_them() {
        for (t, b) in [
            ("t", true),
            ("TRUE", true),
            ("yes", true),
            ("on", true),
            ("1", true),
            ("f", false),
            ("no", false),
            ("off", false),
            ("0", false),
        ] {
            assert_eq!(parse_bool(t), Some(b), "{t}");
        }
        assert_eq!(parse_bool("maybe"), None);
        assert_eq!(parse_float("1e-05"), Some(1e-5));
        assert_eq!(parse_float("-Infinity"), Some(f64::NEG_INFINITY));
        assert_eq!(parse_float("12abc"), None);
    }
}
