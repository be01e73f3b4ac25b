//! The SQL session service behind the wire protocol: simple and extended queries, each
//! statement run in a context built for its connection (the connection's settings, its
//! time zone, its `current_setting`), after the statements wattdb answers itself
//! (settings, cursors, hooks for DDL/admin/transactions).
//!
//! Replaces datafusion-postgres's `DfSessionService`, whose single shared context made
//! one connection's `SET` everyone's and whose cursors could not be described or fetched
//! in binary; the parts kept (query hooks, the pg_catalog parser, arrow-pg encoding)
//! are used as they are.

use std::sync::Arc;

use async_trait::async_trait;
use datafusion::common::ParamValues;
use datafusion::logical_expr::LogicalPlan;
use datafusion::prelude::{DataFrame, SessionContext};
use datafusion::sql::parser::Statement as DfStatement;
use datafusion::sql::sqlparser::ast::Statement;
use datafusion_postgres::arrow_pg::datatypes::{arrow_schema_to_pg_fields, encode_recordbatch};
use futures::{Sink, SinkExt, StreamExt, TryStreamExt};
use pgwire::api::copy::CopyHandler;
use pgwire::api::portal::{Format, Portal};
use pgwire::api::query::{ExtendedQueryHandler, SimpleQueryHandler};
use pgwire::api::results::{
    CopyResponse, DescribePortalResponse, DescribeStatementResponse, FieldInfo, QueryResponse,
    Response, Tag,
};
use pgwire::api::stmt::{QueryParser, StoredStatement};
use pgwire::api::store::Entry;
use pgwire::api::store::PortalStore;
use pgwire::api::{ClientInfo, ClientPortalStore, ConnectionHandle, Type};
use pgwire::error::{PgWireError, PgWireResult};
use pgwire::messages::PgWireBackendMessage;
use pgwire::messages::copy::{CopyData, CopyDone, CopyFail};
use pgwire::messages::data::{DataRow, NoData, ParameterDescription};
use pgwire::messages::extendedquery::{Describe, TARGET_TYPE_BYTE_STATEMENT};
use pgwire::types::format::FormatOptions;
use wattdb_storage::Storage;

use super::client_socket::ClientSockets;
use super::compat_parser::CompatParser;
use super::copy::CopyStatement;
use super::copy_in::{self, CopyIn, CopyInSlot};
use super::cursors::{CursorStatement, Cursors};
use super::fast_insert::FastInsert;
use super::limits::{self, StatementLimits};
use super::settings::SessionSettings;
use super::sqlstate::{self, user_error};
use super::statement::{self, Command, Prepared};
use super::user_statements::{Chunk, UserStatement};
use super::wattdb_statements::WattdbStatements;
use super::{
    catalog_rewrite, column_names, copy, delete_alias, late_binding, params, permissions,
    session_functions, set_show, time_zone, transactions, user_statements,
};
use crate::execution::{
    AdmissionError, Analysis, Interrupt, QueryExecutor, RunError, SlotLease, StatementGuard,
};
use crate::sessions::SessionSlot;
use crate::sessions::activity_table::CurrentUser;
use crate::users::Users;

/// A prepared statement (see [`Prepared`]); an empty one is pgwire's empty portal.
pub type PgStatement = Arc<Prepared>;

fn api(e: datafusion::error::DataFusionError) -> PgWireError {
    PgWireError::ApiError(Box::new(e))
}

/// One connection's DataFusion context: the server's, with the connection's engine
/// options and session functions; it lives as long as the connection (SQL `PREPARE`d
/// statements stay in it).
struct ConnectionContext {
    ctx: SessionContext,
    /// The settings' engine generation its options reflect.
    generation: std::sync::atomic::AtomicU64,
}

/// The context `client`'s next statement runs in; it knows who `users` say the
/// session's user is now ([`CurrentUser`], for the catalog relations that show a reader
/// less than an admin).
fn statement_context<C: ClientInfo + ?Sized>(
    base: &SessionContext,
    client: &C,
    users: &Users,
) -> SessionContext {
    use std::sync::atomic::Ordering;
    let settings = SessionSettings::of(client);
    let conn = client.session_extensions().get_or_insert_with(|| {
        let ctx = SessionContext::new_with_state(base.state());
        session_functions::register(&ctx, settings.clone());
        ConnectionContext {
            ctx,
            generation: std::sync::atomic::AtomicU64::new(u64::MAX),
        }
    });
    let generation = settings.engine_generation();
    if conn.generation.load(Ordering::Relaxed) != generation {
        let config = base.state_ref().read().config().clone();
        let state = conn.ctx.state_ref();
        let mut state = state.write();
        *state.config_mut() = config;
        settings.apply(state.config_mut().options_mut());
        conn.generation.store(generation, Ordering::Relaxed);
    }
    let name = permissions::session_user(client);
    let admin = users.role(&name) == Some(crate::users::Role::Admin);
    let state = conn.ctx.state_ref();
    let known = state.read().config().get_extension::<CurrentUser>();
    if known.is_none_or(|u| u.name != name || u.admin != admin) {
        state
            .write()
            .config_mut()
            .set_extension(Arc::new(CurrentUser { name, admin }));
    }
    conn.ctx.clone()
}

fn format_options<C: ClientInfo + ?Sized>(client: &C) -> Arc<FormatOptions> {
    Arc::new(FormatOptions::from_client_metadata(client.metadata()))
}

/// `DEALLOCATE name | ALL` (`None`): prepared statements are the protocol's (psycopg
/// sends `DEALLOCATE ALL` when it resets its cache; re-used names replace the old ones).
fn deallocate<C>(client: &C, name: Option<&str>) -> Response
where
    C: ClientPortalStore,
    C::PortalStore: PortalStore,
{
    match name {
        None => Response::Execution(Tag::new("DEALLOCATE ALL")),
        Some(name) => {
            client.portal_store().rm_statement(name);
            Response::Execution(Tag::new("DEALLOCATE"))
        }
    }
}

/// `57014` for a stopped statement; other failures of its task as internal errors.
fn run_error(e: RunError) -> PgWireError {
    match e {
        RunError::Interrupted(i) => user_error(sqlstate::QUERY_CANCELED, i.0.message()),
        RunError::Failed(m) => user_error(sqlstate::INTERNAL_ERROR, m),
    }
}

/// Plan `statement` on the query threads (planning is stopped by the interrupt too),
/// analyzed: the plan's schema is then the one its rows have — types coerced, as in
/// `SELECT NULL UNION ALL SELECT now()` (a timestamp column, not an untyped one), which
/// is what Describe reports and the rows are encoded by.
pub(super) async fn plan_statement(
    executor: &QueryExecutor,
    interrupt: &Interrupt,
    ctx: &SessionContext,
    statement: &Statement,
) -> PgWireResult<LogicalPlan> {
    let state = ctx.state();
    let statement = DfStatement::Statement(Box::new(statement.clone()));
    executor
        .run(interrupt, async move {
            let plan = state.statement_to_plan(statement).await?;
            state
                .analyzer()
                .execute_and_check(plan, state.config_options(), |_, _| {})
        })
        .await
        .map_err(run_error)?
        .map_err(api)
}

/// A planned statement's DataFrame, made on the query threads (DDL-like plans run here).
pub(super) async fn dataframe(
    executor: &QueryExecutor,
    interrupt: &Interrupt,
    ctx: &SessionContext,
    plan: LogicalPlan,
) -> PgWireResult<DataFrame> {
    let ctx = ctx.clone();
    executor
        .run(
            interrupt,
            async move { ctx.execute_logical_plan(plan).await },
        )
        .await
        .map_err(run_error)?
        .map_err(api)
}

/// The answer to a query: the row count for an INSERT or DELETE, else rows in `format`.
/// The plan (`planned`: the DataFrame and whether it was analyzed) runs on the query
/// threads under `guard`, which lives until the last row is sent.
async fn respond(
    executor: &QueryExecutor,
    guard: StatementGuard,
    statement: &Statement,
    planned: (DataFrame, Analysis),
    format: &Format,
    options: Arc<FormatOptions>,
    zone: &str,
) -> PgWireResult<Response> {
    let tag = match statement {
        Statement::Insert(_) => Some(Tag::new("INSERT").with_oid(0)),
        Statement::Delete(_) => Some(Tag::new("DELETE")),
        Statement::Truncate { .. } => Some(Tag::new("TRUNCATE TABLE")),
        _ => None,
    };
    let (df, analysis) = planned;
    if let Some(tag) = tag {
        let stream = executor
            .execute(guard.interrupt(), df, analysis, guard.lease())
            .await
            .map_err(api)?;
        let batches: Vec<_> = stream.try_collect().await.map_err(api)?;
        let rows = batches
            .first()
            .and_then(|b| b.column_by_name("count"))
            .and_then(|c| c.as_any().downcast_ref::<arrow::array::UInt64Array>())
            .map_or(0, |a| a.value(0) as usize);
        // PostgreSQL reports no row count for TRUNCATE.
        let tag = if matches!(statement, Statement::Truncate { .. }) {
            tag
        } else {
            tag.with_rows(rows)
        };
        return Ok(Response::Execution(tag));
    }
    let df = time_zone::in_session_zone(df, zone).map_err(api)?;
    let fields = Arc::new(arrow_schema_to_pg_fields(
        df.schema().as_arrow(),
        format,
        Some(options),
    )?);
    let batches = executor
        .execute(guard.interrupt(), df, analysis, guard.lease())
        .await
        .map_err(api)?;
    let encoding = fields.clone();
    let rows = batches
        .map(move |batch| {
            // The guard lives (and keeps the deadline armed) as long as rows are sent.
            let _statement = &guard;
            let rows: Box<dyn Iterator<Item = PgWireResult<DataRow>> + Send + Sync> = match batch {
                Ok(batch) => encode_recordbatch(encoding.clone(), batch),
                Err(e) => Box::new(std::iter::once(Err(api(e)))),
            };
            futures::stream::iter(rows)
        })
        .flatten();
    Ok(Response::Query(QueryResponse::new(fields, rows)))
}

/// The CopyInResponse of a COPY FROM that `started` (its data then goes to the copy), or
/// that failed to start over the extended protocol (the error is reported at CopyDone,
/// see [`CopyInSlot`]).
fn copy_in_response<C: ClientInfo + ?Sized>(
    client: &C,
    started: Result<Arc<CopyIn>, PgWireError>,
) -> Response {
    let (format, columns) = started
        .as_ref()
        .map_or((0, 0), |c| (c.format(), c.columns()));
    CopyInSlot::of(client).set(started);
    Response::CopyIn(CopyResponse::new(format, columns, futures::stream::empty()))
}

/// What the service and its parser share: the server's context and everything a
/// statement needs from parse to its last row.
struct Core {
    base: Arc<SessionContext>,
    storage: Storage,
    wattdb: WattdbStatements,
    sql: CompatParser,
    users: Arc<Users>,
    limits: StatementLimits,
    executor: QueryExecutor,
    sockets: Arc<ClientSockets>,
}

/// One statement of a query string as parsed.
enum Parsed {
    User(PgWireResult<UserStatement>),
    Sql(Box<Statement>),
}

/// What running a statement did besides its response: over the extended protocol a
/// declared cursor becomes a portal of its name too (so a Describe of it — psycopg does
/// one — answers its columns), and a closed one stops being one.
enum CursorChange {
    Declared(String, Box<Prepared>),
    Closed(String),
}

struct Ran {
    response: Response,
    cursor: Option<CursorChange>,
}

impl From<Response> for Ran {
    fn from(response: Response) -> Ran {
        Ran {
            response,
            cursor: None,
        }
    }
}

impl Core {
    /// The statements of `query` (a simple query may hold several), each within the
    /// statement limits; none for an empty query.
    fn parse(&self, query: &str) -> PgWireResult<Vec<Parsed>> {
        limits::check_text(query, &self.limits)?;
        let mut parsed = Vec::new();
        match user_statements::split(query) {
            Some(chunks) => {
                for chunk in chunks {
                    match chunk {
                        Chunk::User(statement) => parsed.push(Parsed::User(statement)),
                        Chunk::Sql(sql) => self.parse_sql(&sql, &mut parsed)?,
                    }
                }
            }
            None => self.parse_sql(query, &mut parsed)?,
        }
        Ok(parsed)
    }

    fn parse_sql(&self, sql: &str, into: &mut Vec<Parsed>) -> PgWireResult<()> {
        let statements = self
            .sql
            .parse(sql)
            .map_err(|e| PgWireError::ApiError(Box::new(e)))?;
        for statement in &statements {
            limits::check_statement(statement, &self.limits)?;
        }
        into.extend(statements.into_iter().map(|s| Parsed::Sql(Box::new(s))));
        Ok(())
    }

    /// `parsed` rewritten (catalog names, `DELETE` aliases, the pg_catalog parser's
    /// rewrites, output column names) and classified, not planned yet.
    fn classify(&self, text: Arc<str>, parsed: Parsed) -> PgWireResult<Prepared> {
        let (statement, classified) = match parsed {
            Parsed::User(statement) => (None, statement::user(statement?)),
            Parsed::Sql(statement) => {
                let mut statement = *statement;
                catalog_rewrite::rewrite(&mut statement);
                delete_alias::rewrite(&mut statement);
                let mut statement = self.sql.rewrite(statement);
                column_names::name_columns(&mut statement);
                let classified = statement::classify(&statement, self.wattdb.admin_functions());
                (Some(statement), classified)
            }
        };
        Ok(Prepared {
            text,
            statement,
            classified,
            plan: None,
            late_columns: None,
        })
    }

    /// A Parse of the extended protocol: one statement (`None` when `sql` is empty),
    /// classified and planned.
    async fn prepare<C: ClientInfo + ?Sized>(
        &self,
        client: &C,
        sql: &str,
    ) -> PgWireResult<Option<Prepared>> {
        let mut parsed = self.parse(sql)?;
        if parsed.is_empty() {
            return Ok(None);
        }
        if parsed.len() > 1 {
            return Err(user_error(
                sqlstate::SYNTAX_ERROR,
                "cannot insert multiple commands into a prepared statement",
            ));
        }
        let parsed = parsed.remove(0);
        if let Parsed::Sql(statement) = &parsed {
            // Before it is planned: a relation only admins may read is not even described.
            permissions::check_private(client, &self.users, statement)?;
        }
        let mut prepared = self.classify(Arc::from(sql), parsed)?;
        prepared.plan = self.describe_plan(client, &prepared).await?;
        if let (Some(count), Some(statement)) = (prepared.late_parameters(), &prepared.statement) {
            prepared.late_columns = self
                .columns_of_any_values(client, &prepared.text, statement, count)
                .await;
        }
        Ok(Some(prepared))
    }

    /// The columns `statement`, planned only once its `count` parameters are bound,
    /// answers when they are all NULL — the columns it answers for any values when its
    /// table functions' columns do not depend on them; `None` when it does not plan so.
    async fn columns_of_any_values<C: ClientInfo + ?Sized>(
        &self,
        client: &C,
        text: &str,
        statement: &Statement,
        count: usize,
    ) -> Option<datafusion::common::DFSchemaRef> {
        let nulls = late_binding::bind(statement, &vec![None; count], false).ok()?;
        let ctx = statement_context(&self.base, client, &self.users);
        let guard = self.begin(client, text, false).await.ok()?;
        let plan = plan_statement(&self.executor, guard.interrupt(), &ctx, &nulls)
            .await
            .ok()?;
        Some(plan.schema().clone())
    }

    /// The plan Describe reports for `prepared`: a query's (and an INSERT's) own, made
    /// on the query threads under the statement's deadline; for the others the columns
    /// they answer with. `None` for a query that passes a parameter to a table function
    /// that cannot be planned without its value: it is planned once they are bound.
    async fn describe_plan<C: ClientInfo + ?Sized>(
        &self,
        client: &C,
        prepared: &Prepared,
    ) -> PgWireResult<Option<LogicalPlan>> {
        let Some(statement) = &prepared.statement else {
            return set_show::text_plan(&[]).map(Some);
        };
        let plan = match prepared.command() {
            Command::Setting(kind) => set_show::plan(kind),
            Command::Wattdb(kind) => {
                let ctx = statement_context(&self.base, client, &self.users);
                self.wattdb.plan(kind, &ctx).await
            }
            Command::Cursor {
                kind: CursorStatement::Fetch { name, .. },
                ..
            } => Cursors::of(client).fetch_plan(name),
            Command::Insert { .. } | Command::Query { .. } => {
                let ctx = statement_context(&self.base, client, &self.users);
                // Planning at Parse reads no data: it takes no execution slot (the
                // statement waits for one when it is executed).
                let guard = self.begin(client, &prepared.text, false).await?;
                let planned =
                    plan_statement(&self.executor, guard.interrupt(), &ctx, statement).await;
                if planned.is_err() && prepared.late_parameters().is_some() {
                    // A table function that needs its argument's value (`last_values`):
                    // planned at Bind.
                    return Ok(None);
                }
                planned
            }
            Command::User(_)
            | Command::Transaction
            | Command::Deallocate(_)
            | Command::Copy(_)
            | Command::Cursor { .. }
            | Command::Refused { .. } => set_show::text_plan(&[]),
        };
        plan.map(Some)
    }

    /// The plan of a statement whose parameters are bound late (see [`late_binding`]):
    /// `portal`'s values written into it, planned in `ctx` until `interrupt` fires.
    async fn plan_bound(
        &self,
        ctx: &SessionContext,
        statement: &Statement,
        portal: &Portal<PgStatement>,
        interrupt: &Interrupt,
    ) -> PgWireResult<LogicalPlan> {
        let values = late_binding::text_values(portal)?;
        let bound = late_binding::bind(statement, &values, false)?;
        limits::check_statement(&bound, &self.limits)?;
        let plan = match plan_statement(&self.executor, interrupt, ctx, &bound).await {
            Ok(plan) => plan,
            // As strings the values do not plan: those that read as numbers as numbers
            // (a PostgreSQL literal of unknown type becomes what the function takes).
            Err(as_strings) => {
                let numbers = late_binding::bind(statement, &values, true)?;
                if numbers == bound {
                    return Err(as_strings);
                }
                plan_statement(&self.executor, interrupt, ctx, &numbers)
                    .await
                    .map_err(|_| as_strings)?
            }
        };
        // The client may have read the columns from a Describe of the statement.
        if let Some(described) = &portal.statement.statement.late_columns {
            late_binding::check_columns(described, plan.schema())?;
        }
        Ok(plan)
    }

    /// A statement's interrupt, fired by a cancel request for this connection or when the
    /// session's `statement_timeout` passes; it lives as long as the statement's rows are
    /// being sent, or until the client goes away (see [`ClientSockets`]). The session
    /// shows `text` as `active` in `pg_stat_activity` meanwhile.
    /// A statement that reads data first waits for an execution slot (see
    /// [`crate::execution::admission`]), which it holds while it plans and its plan runs
    /// (the plan gives it back while its rows wait for the client, see
    /// [`SlotLease`]): its wait counts towards its `statement_timeout` and a cancel
    /// request stops it.
    async fn begin<C: ClientInfo + ?Sized>(
        &self,
        client: &C,
        text: &str,
        reads_data: bool,
    ) -> PgWireResult<StatementGuard> {
        let cancel = match client.session_extensions().get::<Arc<ConnectionHandle>>() {
            Some(handle) => Some(handle.start_query().await),
            None => None,
        };
        let gone = self.sockets.gone(client.socket_addr());
        let mut guard = StatementGuard::start_watching(
            cancel,
            SessionSettings::of(client).statement_timeout(),
            Some(Box::pin(gone)),
        );
        let mark = client
            .session_extensions()
            .get::<SessionSlot>()
            .map(|slot| slot.session().begin(text));
        if reads_data {
            let admission = self.executor.admission();
            let slot = match admission.try_admit() {
                Some(slot) => slot,
                None => {
                    if let Some(mark) = &mark {
                        mark.set_queued(true);
                    }
                    let admitted = admission.admit(guard.interrupt()).await;
                    if let Some(mark) = &mark {
                        mark.set_queued(false);
                    }
                    admitted.map_err(|e| match e {
                        AdmissionError::Interrupted(i) => {
                            user_error(sqlstate::QUERY_CANCELED, i.0.message())
                        }
                        timeout @ AdmissionError::QueueTimeout { .. } => {
                            user_error(sqlstate::INSUFFICIENT_RESOURCES, timeout.to_string())
                        }
                    })?
                }
            };
            let flag = mark.as_ref().map(|m| m.queued_flag());
            guard.hold_slot(SlotLease::new(admission.clone(), slot, flag));
        }
        if let Some(mark) = mark {
            guard.hold(mark);
        }
        Ok(guard)
    }
}

pub struct SqlService {
    core: Arc<Core>,
    parser: Arc<SqlParser>,
}

impl SqlService {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        base: Arc<SessionContext>,
        storage: Storage,
        wattdb: WattdbStatements,
        users: Arc<Users>,
        limits: StatementLimits,
        executor: QueryExecutor,
        sockets: Arc<ClientSockets>,
    ) -> SqlService {
        let core = Arc::new(Core {
            base,
            storage,
            wattdb,
            sql: CompatParser::new(),
            users,
            limits,
            executor,
            sockets,
        });
        SqlService {
            parser: Arc::new(SqlParser { core: core.clone() }),
            core,
        }
    }

    /// Run one statement, whatever the protocol brought it: `portal` is the Execute's
    /// (its bound parameters and result formats) over the extended protocol, `None` for
    /// a statement of a simple query. The one place every [`Command`] is handled.
    async fn run<C>(
        &self,
        client: &mut C,
        prepared: &Prepared,
        portal: Option<&Portal<PgStatement>>,
    ) -> PgWireResult<Ran>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore,
        C::Error: std::fmt::Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let core = &self.core;
        let extended = portal.is_some();
        // Inside a failed block only the transaction statements run.
        let statement = match &prepared.statement {
            Some(statement) => {
                if let Some(response) = transactions::respond(client, statement) {
                    return Ok(response?.into());
                }
                statement
            }
            None => {
                transactions::refuse_in_failed_block(client)?;
                let Command::User(user) = prepared.command() else {
                    return Err(user_error(
                        sqlstate::INTERNAL_ERROR,
                        "a statement without SQL that is not a user statement",
                    ));
                };
                return Ok(user_statements::execute(user.clone(), client, &core.users)
                    .await?
                    .into());
            }
        };
        if let Err(denied) =
            permissions::check(client, &core.users, statement, prepared.classified.role)
        {
            if extended && matches!(prepared.command(), Command::Copy(CopyStatement::From(_))) {
                // Reported when the client ends the COPY, like any error of a COPY
                // FROM's start over this protocol.
                return Ok(copy_in_response(client, Err(denied)).into());
            }
            return Err(denied);
        }
        let format = portal.map_or(Format::UnifiedText, |p| p.result_column_format.clone());
        match prepared.command() {
            Command::Refused { code, message } => Err(user_error(code, message.clone())),
            Command::User(_) | Command::Transaction => Err(user_error(
                sqlstate::INTERNAL_ERROR,
                "a transaction or user statement reached the statement handler",
            )),
            Command::Deallocate(name) => Ok(deallocate(client, name.as_deref()).into()),
            Command::Setting(kind) => {
                let base = core.base.state_ref().read().config_options().clone();
                Ok(set_show::execute(kind.clone(), client, &base).await?.into())
            }
            Command::Copy(copy) => Ok(self.copy(copy, client, prepared, extended).await?.into()),
            Command::Wattdb(kind) => {
                let values = match (portal, &prepared.plan) {
                    (Some(portal), Some(plan)) => match params::bound_values(portal, plan)? {
                        ParamValues::List(list) => list.into_iter().map(|p| p.value).collect(),
                        ParamValues::Map(_) => Vec::new(),
                    },
                    _ => Vec::new(),
                };
                Ok(core.wattdb.respond(kind, statement, &values).await?.into())
            }
            Command::Cursor { kind, reads_data } => {
                self.cursor(kind, *reads_data, client, prepared, &format)
                    .await
            }
            Command::Insert { reads_data } => {
                if let Some(insert) = FastInsert::compile(statement, &core.storage) {
                    match portal {
                        Some(portal) => {
                            return Ok(insert.execute(portal, &core.storage).await?.into());
                        }
                        None => {
                            if let Some(response) = insert.execute_literal(&core.storage).await {
                                return Ok(response?.into());
                            }
                        }
                    }
                }
                Ok(self
                    .query(client, prepared, statement, portal, *reads_data, &format)
                    .await?
                    .into())
            }
            Command::Query { reads_data, .. } => Ok(self
                .query(client, prepared, statement, portal, *reads_data, &format)
                .await?
                .into()),
        }
    }

    /// A statement DataFusion plans and runs: planned now (a simple query's) or bound
    /// to `portal`'s parameters (planned at Parse), under one deadline and cancel token
    /// from here to its last row.
    async fn query<C: ClientInfo + ?Sized>(
        &self,
        client: &C,
        prepared: &Prepared,
        statement: &Statement,
        portal: Option<&Portal<PgStatement>>,
        reads_data: bool,
        format: &Format,
    ) -> PgWireResult<Response> {
        let core = &self.core;
        let ctx = statement_context(&core.base, client, &core.users);
        let guard = core.begin(client, &prepared.text, reads_data).await?;
        // Planned plans are analyzed; one whose placeholders were replaced by the
        // bound values is analyzed again (the values' types may call for other casts).
        let (plan, analysis) = match (portal, &prepared.plan) {
            (Some(portal), Some(plan)) => {
                let values = params::bound_values(portal, plan)?;
                if matches!(&values, ParamValues::List(v) if v.is_empty()) {
                    (plan.clone(), Analysis::Done)
                } else {
                    let bound = plan.clone().replace_params_with_values(&values);
                    (bound.map_err(api)?, Analysis::Needed)
                }
            }
            (Some(portal), None) => {
                let plan = core.plan_bound(&ctx, statement, portal, guard.interrupt());
                (plan.await?, Analysis::Done)
            }
            (None, _) => {
                let plan = plan_statement(&core.executor, guard.interrupt(), &ctx, statement);
                (plan.await?, Analysis::Done)
            }
        };
        let df = dataframe(&core.executor, guard.interrupt(), &ctx, plan).await?;
        respond(
            &core.executor,
            guard,
            statement,
            (df, analysis),
            format,
            format_options(client),
            &SessionSettings::of(client).time_zone(),
        )
        .await
    }

    /// `COPY … TO STDOUT` streams out (under the statement's deadline, in an execution
    /// slot); `COPY … FROM STDIN` starts reading (the data comes through
    /// [`CopyHandler`]). `extended`: over the extended protocol, where an error at the
    /// start of a COPY FROM is reported at its end (see [`CopyInSlot`]).
    async fn copy<C: ClientInfo + ?Sized>(
        &self,
        copy: &CopyStatement,
        client: &C,
        prepared: &Prepared,
        extended: bool,
    ) -> PgWireResult<Response> {
        let core = &self.core;
        match copy {
            CopyStatement::To(to) => {
                let ctx = statement_context(&core.base, client, &core.users);
                let zone = SessionSettings::of(client).time_zone();
                let guard = core.begin(client, &prepared.text, true).await?;
                copy::copy_to(
                    to.clone(),
                    &ctx,
                    &zone,
                    format_options(client),
                    &core.executor,
                    guard,
                )
                .await
            }
            CopyStatement::From(from) => {
                let started = match CopyIn::start(
                    &core.storage,
                    &from.table,
                    &from.columns,
                    from.options.clone(),
                ) {
                    Ok(c) => Ok(Arc::new(c)),
                    Err(e) if extended => Err(e),
                    Err(e) => return Err(e),
                };
                Ok(copy_in_response(client, started))
            }
        }
    }

    /// A cursor statement; `format` is how a FETCH's rows are encoded. Each runs under
    /// its own deadline and cancel token, and waits for an execution slot when its query
    /// reads data.
    async fn cursor<C: ClientInfo + ?Sized>(
        &self,
        kind: &CursorStatement,
        reads_data: bool,
        client: &C,
        prepared: &Prepared,
        format: &Format,
    ) -> PgWireResult<Ran> {
        let core = &self.core;
        let cursors = Cursors::of(client);
        match kind {
            CursorStatement::Declare { name, query } => {
                let ctx = statement_context(&core.base, client, &core.users);
                let zone = SessionSettings::of(client).time_zone();
                let guard = core.begin(client, &prepared.text, reads_data).await?;
                let plan = cursors
                    .declare(name, query, &ctx, &zone, &core.executor, guard.interrupt())
                    .await?;
                let query = Statement::Query(query.clone());
                let declared = Prepared {
                    text: Arc::from(query.to_string()),
                    classified: statement::classify(&query, core.wattdb.admin_functions()),
                    statement: Some(query),
                    plan: Some(plan),
                    late_columns: None,
                };
                Ok(Ran {
                    response: Response::Execution(Tag::new("DECLARE CURSOR")),
                    cursor: Some(CursorChange::Declared(name.clone(), Box::new(declared))),
                })
            }
            CursorStatement::Fetch { name, count } => {
                let guard = core.begin(client, &prepared.text, reads_data).await?;
                Ok(cursors
                    .fetch(
                        name,
                        *count,
                        format,
                        format_options(client),
                        guard.interrupt(),
                    )
                    .await?
                    .into())
            }
            CursorStatement::Close { name } => Ok(Ran {
                response: cursors.close(name.as_deref())?,
                cursor: name.clone().map(CursorChange::Closed),
            }),
        }
    }
}

#[async_trait]
impl SimpleQueryHandler for SqlService {
    async fn do_query<C>(&self, client: &mut C, query: &str) -> PgWireResult<Vec<Response>>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore,
        C::Error: std::fmt::Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let result = self.simple(client, query).await;
        if result.is_err() {
            transactions::BlockState::of(client).failed_again();
        }
        result
    }
}

impl SqlService {
    /// A simple query's statements, each classified and planned when the ones before
    /// it have run (a `CREATE TABLE` or a `SET` changes how the next one plans).
    async fn simple<C>(&self, client: &mut C, query: &str) -> PgWireResult<Vec<Response>>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore,
        C::Error: std::fmt::Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let parsed = self.core.parse(query)?;
        if parsed.is_empty() {
            return Ok(vec![Response::EmptyQuery]);
        }
        let text: Arc<str> = Arc::from(query);
        let mut results = Vec::with_capacity(parsed.len());
        for statement in parsed {
            let ran = match self.core.classify(text.clone(), statement) {
                Ok(prepared) => self.run(client, &prepared, None).await,
                Err(e) => Err(e),
            };
            match ran {
                Ok(ran) => results.push(ran.response),
                Err(e) if results.is_empty() => return Err(e),
                // Those before it ran: their answers go out, then its error, and the
                // rest do not run — as PostgreSQL answers such a query.
                Err(mut e) => {
                    sqlstate::classify(&mut e);
                    let PgWireError::UserError(info) = e else {
                        return Err(e);
                    };
                    transactions::BlockState::of(client).failed_again();
                    results.push(Response::Error(info));
                    break;
                }
            }
        }
        Ok(results)
    }
}

#[async_trait]
impl ExtendedQueryHandler for SqlService {
    type Statement = PgStatement;
    type QueryParser = SqlParser;

    fn query_parser(&self) -> Arc<Self::QueryParser> {
        self.parser.clone()
    }

    /// As pgwire's, except that a statement with parameters and no result columns (an
    /// INSERT) is described with NoData, as PostgreSQL does: pgwire sends an empty
    /// RowDescription, which pgjdbc takes for a query returning rows (its batch update
    /// counts were all 0).
    async fn on_describe<C>(&self, client: &mut C, message: Describe) -> PgWireResult<()>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore<Statement = Self::Statement>,
        C::Error: std::fmt::Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        if message.target_type == TARGET_TYPE_BYTE_STATEMENT
            && let Some(Entry::Value(stmt)) = client
                .portal_store()
                .get_statement(message.name.as_deref().unwrap_or(""))
        {
            let described = self.do_describe_statement(client, &stmt).await?;
            if described.fields.is_empty() && !described.parameters.is_empty() {
                let oids = described.parameters.iter().map(|t| t.oid()).collect();
                client
                    .feed(PgWireBackendMessage::ParameterDescription(
                        ParameterDescription::new(oids),
                    ))
                    .await?;
                client
                    .send(PgWireBackendMessage::NoData(NoData::new()))
                    .await?;
                return Ok(());
            }
        }
        self._on_describe(client, message).await
    }

    /// As pgwire's; a statement planned only once its parameters are bound cannot
    /// answer its columns before (see [`late_binding`]).
    async fn do_describe_statement<C>(
        &self,
        _client: &mut C,
        target: &StoredStatement<Self::Statement>,
    ) -> PgWireResult<DescribeStatementResponse>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore<Statement = Self::Statement>,
        C::Error: std::fmt::Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        if let Some(count) = target.statement.late_parameters() {
            let Some(columns) = &target.statement.late_columns else {
                return Err(late_binding::not_describable(count));
            };
            let fields = arrow_schema_to_pg_fields(columns.as_arrow(), &Format::UnifiedText, None)?;
            return Ok(DescribeStatementResponse::new(
                late_binding::parameter_types(count),
                fields,
            ));
        }
        let parameters = self.parser.get_parameter_types(&target.statement)?;
        let fields = self.parser.get_result_schema(&target.statement, None)?;
        // A type the client gave at Parse wins over the one inferred.
        let parameters = (0..parameters.len().max(target.parameter_types.len()))
            .map(|i| {
                target
                    .parameter_types
                    .get(i)
                    .cloned()
                    .flatten()
                    .or_else(|| parameters.get(i).cloned())
                    .unwrap_or(Type::UNKNOWN)
            })
            .collect();
        Ok(DescribeStatementResponse::new(parameters, fields))
    }

    /// As pgwire's; a statement planned only once its parameters are bound is planned
    /// with the portal's values to answer its columns.
    async fn do_describe_portal<C>(
        &self,
        client: &mut C,
        target: &Portal<Self::Statement>,
    ) -> PgWireResult<DescribePortalResponse>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore<Statement = Self::Statement>,
        C::Error: std::fmt::Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let prepared = &target.statement.statement;
        if prepared.late_parameters().is_some()
            && let Some(statement) = &prepared.statement
        {
            let ctx = statement_context(&self.core.base, client, &self.core.users);
            let guard = self.core.begin(client, &prepared.text, false).await?;
            let plan = self
                .core
                .plan_bound(&ctx, statement, target, guard.interrupt())
                .await?;
            let fields = arrow_schema_to_pg_fields(
                plan.schema().as_arrow(),
                &target.result_column_format,
                None,
            )?;
            return Ok(DescribePortalResponse::new(fields));
        }
        let fields = self
            .parser
            .get_result_schema(prepared, Some(&target.result_column_format))?;
        Ok(DescribePortalResponse::new(fields))
    }

    async fn do_query<C>(
        &self,
        client: &mut C,
        portal: &Portal<Self::Statement>,
        _max_rows: usize,
    ) -> PgWireResult<Response>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore<Statement = Self::Statement>,
        C::Error: std::fmt::Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let result = self.extended(client, portal).await;
        if result.is_err() {
            transactions::BlockState::of(client).failed_again();
        }
        result
    }
}

impl SqlService {
    /// An Execute: the prepared statement run with the portal's parameters (pgwire
    /// sends at most the Execute's row limit of the rows and suspends the portal).
    async fn extended<C>(
        &self,
        client: &mut C,
        portal: &Portal<PgStatement>,
    ) -> PgWireResult<Response>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore<Statement = PgStatement>,
        C::Error: std::fmt::Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let prepared = portal.statement.statement.clone();
        let ran = self.run(client, &prepared, Some(portal)).await?;
        match ran.cursor {
            Some(CursorChange::Declared(name, declared)) => {
                let stored = StoredStatement::new(name.clone(), Arc::new(*declared), vec![]);
                client
                    .portal_store()
                    .put_portal(Arc::new(Portal::new_cursor(name, Arc::new(stored))));
            }
            Some(CursorChange::Closed(name)) => client.portal_store().rm_portal(&name),
            None => {}
        }
        Ok(ran.response)
    }
}

#[async_trait]
impl CopyHandler for SqlService {
    async fn on_copy_data<C>(&self, client: &mut C, copy_data: CopyData) -> PgWireResult<()>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: std::fmt::Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        if let Some(copy) = CopyInSlot::of(client).get() {
            copy.feed(&copy_data.data).await;
        }
        Ok(())
    }

    async fn on_copy_done<C>(&self, client: &mut C, _done: CopyDone) -> PgWireResult<()>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: std::fmt::Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let Some(copy) = CopyInSlot::of(client).take() else {
            return Err(user_error(
                sqlstate::PROTOCOL_VIOLATION,
                "CopyDone without a COPY FROM STDIN",
            ));
        };
        let result = async {
            let copy = copy?;
            let ended = std::time::Instant::now();
            let finished = copy.finish().await?;
            let parsed = ended.elapsed();
            let rows = copy_in::write(&self.core.storage, finished).await?;
            tracing::debug!(
                table = %copy.table(),
                rows,
                parse_tail_ms = parsed.as_millis() as u64,
                write_ms = (ended.elapsed() - parsed).as_millis() as u64,
                "COPY FROM ended"
            );
            Ok(rows)
        }
        .await;
        match result {
            Ok(n) => {
                client
                    .send(PgWireBackendMessage::CommandComplete(
                        Tag::new("COPY").with_rows(n).into(),
                    ))
                    .await?;
                Ok(())
            }
            Err(e) => {
                transactions::BlockState::of(client).failed_again();
                Err(e)
            }
        }
    }

    async fn on_copy_fail<C>(&self, client: &mut C, fail: CopyFail) -> PgWireError
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: std::fmt::Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        CopyInSlot::of(client).take();
        user_error(
            sqlstate::QUERY_CANCELED,
            format!("COPY from stdin failed: {}", fail.message),
        )
    }
}

pub struct SqlParser {
    core: Arc<Core>,
}

#[async_trait]
impl QueryParser for SqlParser {
    type Statement = PgStatement;

    async fn parse_sql<C>(
        &self,
        client: &C,
        sql: &str,
        _types: &[Option<Type>],
    ) -> PgWireResult<Option<Self::Statement>>
    where
        C: ClientInfo + Unpin + Send + Sync,
    {
        Ok(self.core.prepare(client, sql).await?.map(Arc::new))
    }

    fn get_parameter_types(&self, stmt: &Self::Statement) -> PgWireResult<Vec<Type>> {
        if let Some(count) = stmt.late_parameters() {
            return Ok(late_binding::parameter_types(count));
        }
        stmt.plan.as_ref().map_or(Ok(vec![]), params::wire_types)
    }

    fn get_result_schema(
        &self,
        stmt: &Self::Statement,
        column_format: Option<&Format>,
    ) -> PgWireResult<Vec<FieldInfo>> {
        match &stmt.plan {
            Some(plan) if !matches!(plan, LogicalPlan::Ddl(_) | LogicalPlan::Dml(_)) => {
                arrow_schema_to_pg_fields(
                    plan.schema().as_arrow(),
                    column_format.unwrap_or(&Format::UnifiedText),
                    None,
                )
            }
            _ => Ok(vec![]),
        }
    }
}
