//! SQL cursors: `DECLARE name CURSOR FOR query`, `FETCH [n | ALL | NEXT] FROM name`,
//! `CLOSE name | ALL` — what psycopg and psycopg2 "named" (server-side) cursors and
//! JDBC-style batch readers send.
//!
//! A cursor holds its query's running stream (not its rows), so reading a large result
//! through one takes the memory of one batch. Rows are encoded when fetched, in the
//! format the `FETCH` asks for (text, or binary when the client binds it so), in the
//! session's time zone. Cursors live until `CLOSE` or the end of the connection; unlike
//! PostgreSQL, a cursor declared `WITHOUT HOLD` is not closed at `COMMIT`. Only forward
//! fetching is supported; `MOVE` is not.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use datafusion::common::DFSchema;
use datafusion::execution::SendableRecordBatchStream;
use datafusion::logical_expr::{EmptyRelation, LogicalPlan};
use datafusion::prelude::SessionContext;
use datafusion::sql::sqlparser::ast::{CloseCursor, FetchDirection, Query, Statement};
use datafusion_postgres::arrow_pg::datatypes::{arrow_schema_to_pg_fields, encode_recordbatch};
use futures::StreamExt;
use pgwire::api::ClientInfo;
use pgwire::api::portal::Format;
use pgwire::api::results::{QueryResponse, Response, Tag};
use pgwire::error::{PgWireError, PgWireResult};
use pgwire::types::format::FormatOptions;

use super::sqlstate::{self, user_error};
use crate::execution::{Analysis, Interrupt, QueryExecutor, Reason};

/// A cursor statement.
#[derive(Debug, Clone)]
pub enum CursorStatement {
    Declare {
        name: String,
        query: Box<Query>,
    },
    /// `count` `None`: all remaining rows.
    Fetch {
        name: String,
        count: Option<usize>,
    },
    Close {
        name: Option<String>,
    },
}

fn api(e: datafusion::error::DataFusionError) -> PgWireError {
    PgWireError::ApiError(Box::new(e))
}

/// Which cursor statement `stmt` is, if any; an error for the forms not supported.
pub fn classify(stmt: &Statement) -> Option<PgWireResult<CursorStatement>> {
    match stmt {
        Statement::Declare { stmts } => {
            let d = stmts.first()?;
            let (Some(name), Some(query)) = (d.names.first(), d.for_query.as_deref()) else {
                return Some(Err(user_error(
                    sqlstate::SYNTAX_ERROR,
                    "DECLARE needs a cursor name and CURSOR FOR <query>",
                )));
            };
            if d.scroll == Some(true) {
                return Some(Err(user_error(
                    sqlstate::FEATURE_NOT_SUPPORTED,
                    "SCROLL cursors are not supported: cursors only move forward",
                )));
            }
            Some(Ok(CursorStatement::Declare {
                name: name.value.clone(),
                query: Box::new(query.clone()),
            }))
        }
        Statement::Fetch {
            name, direction, ..
        } => {
            let number = |v: &dyn std::fmt::Display| v.to_string().parse::<usize>().ok();
            let count = match direction {
                FetchDirection::Next | FetchDirection::Forward { limit: None } => Some(1),
                FetchDirection::Count { limit }
                | FetchDirection::Forward { limit: Some(limit) } => match number(limit) {
                    Some(n) => Some(n),
                    None => {
                        return Some(Err(user_error(
                            sqlstate::SYNTAX_ERROR,
                            format!("FETCH count must be a number, not {limit}"),
                        )));
                    }
                },
                FetchDirection::All | FetchDirection::ForwardAll => None,
                other => {
                    return Some(Err(user_error(
                        sqlstate::FEATURE_NOT_SUPPORTED,
                        format!("FETCH {other} is not supported: cursors only move forward"),
                    )));
                }
            };
            Some(Ok(CursorStatement::Fetch {
                name: name.value.clone(),
                count,
            }))
        }
        Statement::Close { cursor } => Some(Ok(CursorStatement::Close {
            name: match cursor {
                CloseCursor::All => None,
                CloseCursor::Specific { name } => Some(name.value.clone()),
            },
        })),
        _ => None,
    }
}

struct CursorState {
    stream: SendableRecordBatchStream,
    /// Rows read from the stream but not fetched yet.
    pending: Option<RecordBatch>,
}

struct Cursor {
    schema: SchemaRef,
    state: tokio::sync::Mutex<CursorState>,
    /// Stops the cursor's query (checked inside its operators, see
    /// [`crate::execution`]): fired when the cursor is closed or dropped, and when a
    /// `FETCH` from it is cancelled or times out — the cursor is then gone, as in
    /// PostgreSQL, where the error also ends the transaction the cursor lived in.
    interrupt: Interrupt,
}

impl Drop for Cursor {
    fn drop(&mut self) {
        self.interrupt.fire(Reason::Canceled);
    }
}

/// One connection's open cursors.
#[derive(Default)]
pub struct Cursors {
    open: Mutex<HashMap<String, Arc<Cursor>>>,
}

impl Cursors {
    pub fn of<C: ClientInfo + ?Sized>(client: &C) -> Arc<Cursors> {
        client
            .session_extensions()
            .get_or_insert_with(Cursors::default)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<Cursor>>> {
        self.open
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn get(&self, name: &str) -> PgWireResult<Arc<Cursor>> {
        self.lock().get(name).cloned().ok_or_else(|| {
            user_error(
                sqlstate::INVALID_CURSOR_NAME,
                format!("cursor \"{name}\" does not exist"),
            )
        })
    }

    /// The rows a `FETCH` from `name` returns, as a plan schema (for Describe).
    pub fn fetch_plan(&self, name: &str) -> PgWireResult<LogicalPlan> {
        let cursor = self.get(name)?;
        let schema = DFSchema::try_from(cursor.schema.as_ref().clone()).map_err(api)?;
        Ok(LogicalPlan::EmptyRelation(EmptyRelation {
            produce_one_row: false,
            schema: Arc::new(schema),
        }))
    }

    /// `DECLARE`: plan and start the query on `executor`'s threads, the planning under
    /// the `DECLARE`'s `interrupt`. Returns its plan (for Describe of the cursor as a
    /// portal).
    pub async fn declare(
        &self,
        name: &str,
        query: &Query,
        ctx: &SessionContext,
        time_zone: &str,
        executor: &QueryExecutor,
        interrupt: &Interrupt,
    ) -> PgWireResult<LogicalPlan> {
        if self.lock().contains_key(name) {
            return Err(user_error(
                sqlstate::DUPLICATE_CURSOR,
                format!("cursor \"{name}\" already exists"),
            ));
        }
        let statement = Statement::Query(Box::new(query.clone()));
        let plan = super::service::plan_statement(executor, interrupt, ctx, &statement).await?;
        let df = super::service::dataframe(executor, interrupt, ctx, plan.clone()).await?;
        let df = super::time_zone::in_session_zone(df, time_zone).map_err(api)?;
        let schema = Arc::new(df.schema().as_arrow().clone());
        // The cursor's plan runs while a FETCH (which holds a slot) takes its rows; it
        // holds none of its own (between FETCHes it stops once its buffer is full).
        let own = Interrupt::default();
        let stream = executor
            .execute(&own, df, Analysis::Done, None)
            .await
            .map_err(api)?;
        let cursor = Arc::new(Cursor {
            schema,
            state: tokio::sync::Mutex::new(CursorState {
                stream,
                pending: None,
            }),
            interrupt: own,
        });
        self.lock().insert(name.to_string(), cursor);
        Ok(plan)
    }

    /// `FETCH`: up to `count` rows (all when `None`), encoded in `format`. When the
    /// `FETCH`'s `interrupt` fires while it waits for rows, the cursor's query stops
    /// and the cursor is closed (see [`Cursor::interrupt`]).
    pub async fn fetch(
        &self,
        name: &str,
        count: Option<usize>,
        format: &Format,
        options: Arc<FormatOptions>,
        interrupt: &Interrupt,
    ) -> PgWireResult<Response> {
        let cursor = self.get(name)?;
        let fetched = tokio::select! {
            fetched = Self::take_rows(&cursor, count) => fetched,
            reason = interrupt.fired() => {
                cursor.interrupt.fire(reason);
                self.lock().remove(name);
                return Err(user_error(sqlstate::QUERY_CANCELED, reason.message()));
            }
        };
        let batches = fetched?;
        let fields = Arc::new(arrow_schema_to_pg_fields(
            &cursor.schema,
            format,
            Some(options),
        )?);
        let rows: Vec<_> = batches
            .into_iter()
            .flat_map(|b| encode_recordbatch(fields.clone(), b))
            .collect();
        let mut response = QueryResponse::new(fields, futures::stream::iter(rows));
        response.set_command_tag("FETCH");
        Ok(Response::Query(response))
    }

    /// Up to `count` of `cursor`'s next rows (all the rest when `None`).
    async fn take_rows(cursor: &Cursor, count: Option<usize>) -> PgWireResult<Vec<RecordBatch>> {
        let mut state = cursor.state.lock().await;
        let mut want = count.unwrap_or(usize::MAX);
        let mut batches = Vec::new();
        while want > 0 {
            let batch = match state.pending.take() {
                Some(b) => b,
                None => match state.stream.next().await {
                    Some(b) => b.map_err(api)?,
                    None => break,
                },
            };
            if batch.num_rows() > want {
                state.pending = Some(batch.slice(want, batch.num_rows() - want));
                batches.push(batch.slice(0, want));
                want = 0;
            } else {
                want -= batch.num_rows();
                batches.push(batch);
            }
        }
        Ok(batches)
    }

    /// `CLOSE name` / `CLOSE ALL`.
    pub fn close(&self, name: Option<&str>) -> PgWireResult<Response> {
        match name {
            None => self.lock().clear(),
            Some(n) => {
                if self.lock().remove(n).is_none() {
                    return Err(user_error(
                        sqlstate::INVALID_CURSOR_NAME,
                        format!("cursor \"{n}\" does not exist"),
                    ));
                }
            }
        }
        Ok(Response::Execution(Tag::new("CLOSE CURSOR")))
    }
}
