//! `COPY t [(columns)] FROM STDIN` in PostgreSQL's text, CSV or binary format.
//!
//! All or nothing on bad input: every line is parsed and checked as it arrives, and
//! the rows are written — durably, last write wins like any write — only when the
//! client ends the COPY without an error; a bad line fails the whole COPY with an error
//! naming the line and column (`22P02` for a value, `22P04` for a line with too few or too
//! many values, `23502` for a missing `ts` or tag) and nothing of it is kept. The rows of
//! one COPY are held until it ends, so one COPY may be at most as large as the write
//! buffer (`--buffer-budget-bytes`; `54000` beyond it: split the data).
//!
//! The text and CSV data is cut at record ends into blocks of about [`BLOCK_BYTES`],
//! parsed on the blocking pool (as many at a time as there are cores) while the
//! connection reads on; each block's rows become one WAL record, encoded by the parser
//! too, and the records are queued in the order of the data when the COPY ends. A
//! server crash while they are written can keep the first records of a COPY that was
//! not acknowledged.
//! In the binary format each value must be in its column's binary form (`timestamptz`
//! or `timestamp`, `text`, `float8` or `float4`, `int8`/`int4`/`int2`, `bool`); a value
//! that is not is `22P03`, and rows are counted instead of lines in errors. Binary data
//! is parsed as it arrives, [`BINARY_ROWS`] rows per WAL record.

mod binary;
mod records;
mod values;

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use pgwire::api::ClientInfo;
use pgwire::error::PgWireError;
use tokio::task::JoinHandle;
use wattdb_storage::{FieldType, FieldValue, Month, PreparedWrite, Storage, TableDef, ValidRow};

use super::copy::{CopyFormat, CopyOptions};
use super::sqlstate::{self, user_error};
use values::{parse_bool, parse_float, parse_timestamp, split_csv, split_text};

/// Bytes of text or CSV data parsed as one block (one WAL record).
pub const BLOCK_BYTES: usize = 1 << 20;
/// Rows of binary data per WAL record.
pub const BINARY_ROWS: usize = 20_000;

#[derive(Debug, Clone, Copy)]
enum Target {
    Ts,
    Tag(usize),
    Field(usize, FieldType),
}

/// One COPY FROM in progress.
pub struct CopyIn {
    storage: Storage,
    def: Arc<TableDef>,
    targets: Vec<(String, Target)>,
    options: CopyOptions,
    limit_bytes: usize,
    /// Blocks parsed at a time.
    parallel: usize,
    /// Locked by one message handler at a time (a connection's messages come in order);
    /// an async lock because a handler waits for parsers while holding it.
    state: tokio::sync::Mutex<InState>,
}

#[derive(Default)]
struct InState {
    /// Data not yet handed to a parser.
    pending: Vec<u8>,
    /// Records (lines) handed to parsers so far.
    records: u64,
    /// Blocks being parsed, in the order of the data.
    parsing: VecDeque<JoinHandle<Result<Block, PgWireError>>>,
    /// Parsed blocks, in the order of the data.
    writes: Vec<PreparedWrite>,
    rows: usize,
    bytes: usize,
    error: Option<PgWireError>,
    /// `\.` (or the binary trailer) seen: the rest is ignored.
    ended: bool,
    /// Binary data's rows not yet in a block.
    binary: ParsedRows,
}

/// The rows parsed from a stretch of the data.
#[derive(Default)]
struct ParsedRows {
    /// The number of the last record read (lines count from 1). Binary data: the number
    /// of the next row, 0 before the header.
    line: u64,
    rows: Vec<ValidRow>,
    /// Their estimated size in the write buffer.
    bytes: usize,
    /// The end marker was read.
    ended: bool,
}

/// A parsed block with its WAL record encoded.
struct Block {
    write: PreparedWrite,
    bytes: usize,
    /// Where it ended, for errors: "line N" (binary: "row N").
    position: String,
    ended: bool,
}

/// What a finished COPY writes.
pub struct Finished {
    writes: Vec<PreparedWrite>,
    rows: usize,
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
            storage: storage.clone(),
            limit_bytes: storage.config().buffer_budget_bytes,
            parallel: std::thread::available_parallelism().map_or(2, |n| n.get()),
            def,
            targets,
            options,
            state: tokio::sync::Mutex::new(InState::default()),
        })
    }

    pub fn table(&self) -> &str {
        &self.def.name
    }

    pub fn columns(&self) -> usize {
        self.targets.len()
    }

    pub fn format(&self) -> i8 {
        self.options.wire_format()
    }

    /// A piece of the data stream (lines may be split anywhere). Waits while the
    /// parsers are busy, which holds the client back.
    pub async fn feed(self: &Arc<Self>, data: &[u8]) {
        let mut s = self.state.lock().await;
        if s.error.is_some() || s.ended {
            return;
        }
        s.pending.extend_from_slice(data);
        if self.options.format == CopyFormat::Binary {
            self.feed_binary(&mut s);
        } else {
            while s.pending.len() >= BLOCK_BYTES && s.error.is_none() && !s.ended {
                let Some((end, records)) =
                    records::block_end(&self.options, &s.pending, BLOCK_BYTES)
                else {
                    break;
                };
                let rest = s.pending.split_off(end);
                let block = std::mem::replace(&mut s.pending, rest);
                let first_line = s.records + 1;
                s.records += records;
                let copy = Arc::clone(self);
                s.parsing.push_back(tokio::task::spawn_blocking(move || {
                    copy.parse_block(&block, first_line)
                }));
                self.bound_parsing(&mut s).await;
            }
        }
        self.bound_parsing(&mut s).await;
    }

    /// Wait for the oldest blocks until no more than one per core are being parsed.
    async fn bound_parsing(&self, s: &mut InState) {
        while s.parsing.len() > self.parallel && s.error.is_none() {
            self.collect_next(s).await;
        }
    }

    /// Parse the binary data at hand; full blocks of rows go to be encoded.
    fn feed_binary(self: &Arc<Self>, s: &mut InState) {
        let pending = std::mem::take(&mut s.pending);
        match self.binary_tuples(&mut s.binary, &pending) {
            Ok(consumed) => s.pending = pending[consumed..].to_vec(),
            Err(e) => return self.fail(s, e),
        }
        if s.binary.rows.len() >= BINARY_ROWS || s.binary.ended {
            let parsed = ParsedRows {
                line: s.binary.line,
                rows: std::mem::take(&mut s.binary.rows),
                bytes: std::mem::take(&mut s.binary.bytes),
                ended: s.binary.ended,
            };
            s.ended = parsed.ended;
            let copy = Arc::clone(self);
            s.parsing
                .push_back(tokio::task::spawn_blocking(move || copy.block(parsed)));
        }
    }

    /// Parse the records of a block (its last one may lack its `\n` only at the end of
    /// the data) and encode them as one WAL record.
    fn parse_block(&self, mut data: &[u8], first_line: u64) -> Result<Block, PgWireError> {
        let mut parsed = ParsedRows {
            line: first_line - 1,
            ..ParsedRows::default()
        };
        while !data.is_empty() && !parsed.ended {
            let record = match records::record_end(&self.options, data) {
                Some(end) => {
                    let record = &data[..end];
                    data = &data[end + 1..];
                    record
                }
                None => std::mem::take(&mut data),
            };
            self.record(&mut parsed, record)?;
        }
        self.block(parsed)
    }

    fn block(&self, parsed: ParsedRows) -> Result<Block, PgWireError> {
        let position = match self.options.format {
            CopyFormat::Binary => format!("row {}", parsed.line.saturating_sub(1)),
            _ => format!("line {}", parsed.line),
        };
        Ok(Block {
            write: self
                .storage
                .prepare_valid(&self.def, parsed.rows)
                .map_err(storage_error)?,
            bytes: parsed.bytes,
            position,
            ended: parsed.ended,
        })
    }

    /// Take the oldest block being parsed: its rows, or its error for the COPY.
    async fn collect_next(&self, s: &mut InState) {
        let Some(parsing) = s.parsing.pop_front() else {
            return;
        };
        let block = match parsing.await {
            Ok(Ok(block)) => block,
            Ok(Err(e)) => return self.fail(s, e),
            Err(e) => {
                let e = user_error(
                    sqlstate::INTERNAL_ERROR,
                    format!("COPY {}: a parser failed: {e}", self.def.name),
                );
                return self.fail(s, e);
            }
        };
        s.rows += block.write.rows();
        s.bytes += block.bytes;
        s.writes.push(block.write);
        if s.bytes > self.limit_bytes {
            let e = user_error(
                sqlstate::PROGRAM_LIMIT_EXCEEDED,
                format!(
                    "COPY {} is larger than the write buffer ({} bytes) at {}: a COPY \
                     is kept whole until it ends, so split the data into several COPYs",
                    self.def.name, self.limit_bytes, block.position
                ),
            );
            return self.fail(s, e);
        }
        if block.ended {
            s.ended = true;
            s.parsing.clear();
        }
    }

    /// The COPY failed: keep the error, drop everything else.
    fn fail(&self, s: &mut InState, e: PgWireError) {
        s.error = Some(e);
        s.parsing.clear();
        s.writes.clear();
        s.pending.clear();
        s.binary = ParsedRows::default();
    }

    /// One complete line (without its `\n`).
    fn record(&self, p: &mut ParsedRows, raw: &[u8]) -> Result<(), PgWireError> {
        p.line += 1;
        let raw = raw.strip_suffix(b"\r").unwrap_or(raw);
        let line = std::str::from_utf8(raw).map_err(|_| {
            user_error(
                sqlstate::CHARACTER_NOT_IN_REPERTOIRE,
                format!(
                    "invalid byte sequence for encoding \"UTF8\" (COPY {}, line {})",
                    self.def.name, p.line
                ),
            )
        })?;
        if self.options.format == CopyFormat::Csv && self.options.header && p.line == 1 {
            return Ok(());
        }
        if line == "\\." {
            p.ended = true;
            return Ok(());
        }
        let values = match self.options.format {
            CopyFormat::Csv => split_csv(line, &self.options),
            _ => split_text(line, &self.options),
        };
        let line_no = p.line;
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
        self.push_row(p, ValidRow { ts, tags, fields }, || {
            context(Some(wattdb_storage::TS_COLUMN))
        })
    }

    /// Keep a parsed row: refused if its month has expired. `context` names the row for
    /// errors.
    fn push_row(
        &self,
        p: &mut ParsedRows,
        row: ValidRow,
        context: impl Fn() -> String,
    ) -> Result<(), PgWireError> {
        if self.def.is_expired(row.ts) {
            let e = wattdb_storage::Error::Expired {
                table: self.def.name.clone(),
                month: Month::of_micros(row.ts),
            };
            return Err(user_error(
                sqlstate::for_storage(&e),
                format!("{e} ({})", context()),
            ));
        }
        p.bytes += 48
            + row.tags.iter().map(|t| t.len() + 24).sum::<usize>()
            + row
                .fields
                .iter()
                .map(|f| match f {
                    Some(FieldValue::Text(t)) => 32 + t.len(),
                    _ => 24,
                })
                .sum::<usize>();
        p.rows.push(row);
        Ok(())
    }

    /// CopyDone: the rest of the data (its last line may lack a line break), then all
    /// blocks parsed — or the COPY's error.
    pub async fn finish(self: &Arc<Self>) -> Result<Finished, PgWireError> {
        let mut s = self.state.lock().await;
        if s.error.is_none() && !s.ended {
            if self.options.format == CopyFormat::Binary {
                let e = user_error(
                    sqlstate::BAD_COPY_FILE_FORMAT,
                    format!(
                        "COPY {}: binary data ended without its trailer (after {} rows{})",
                        self.def.name,
                        s.rows + s.binary.rows.len(),
                        if s.pending.is_empty() {
                            ""
                        } else {
                            ", in the middle of a row"
                        }
                    ),
                );
                self.fail(&mut s, e);
            } else if !s.pending.is_empty() {
                let rest = std::mem::take(&mut s.pending);
                let first_line = s.records + 1;
                let copy = Arc::clone(self);
                s.parsing.push_back(tokio::task::spawn_blocking(move || {
                    copy.parse_block(&rest, first_line)
                }));
            }
        }
        while !s.parsing.is_empty() && s.error.is_none() {
            self.collect_next(&mut s).await;
        }
        if let Some(e) = s.error.take() {
            return Err(e);
        }
        Ok(Finished {
            writes: std::mem::take(&mut s.writes),
            rows: s.rows,
        })
    }
}

/// A NULL for `ts` or a tag.
fn null_key(column: &str, context: &str) -> PgWireError {
    user_error(
        sqlstate::NOT_NULL_VIOLATION,
        format!("null value in column \"{column}\" violates not-null constraint ({context})"),
    )
}

/// PostgreSQL's default options of a format, for the parsers' unit tests.
#[cfg(test)]
fn test_options(format: CopyFormat) -> CopyOptions {
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

fn storage_error(e: wattdb_storage::Error) -> PgWireError {
    user_error(sqlstate::for_storage(&e), e.to_string())
}

/// Write the rows of a finished COPY, in the order of its data; returns once they are
/// durable.
pub async fn write(storage: &Storage, finished: Finished) -> Result<usize, PgWireError> {
    let mut pending = Vec::with_capacity(finished.writes.len());
    for write in finished.writes {
        pending.push(
            storage
                .submit_prepared(write)
                .await
                .map_err(storage_error)?,
        );
    }
    for p in pending {
        p.durable().await.map_err(storage_error)?;
    }
    Ok(finished.rows)
}
