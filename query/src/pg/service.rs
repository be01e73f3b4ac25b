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
use datafusion::logical_expr::LogicalPlan;
use datafusion::prelude::{DataFrame, SessionContext};
use datafusion::sql::parser::Statement as DfStatement;
use datafusion::sql::sqlparser::ast::Statement;
use datafusion_postgres::QueryHook;
use datafusion_postgres::arrow_pg::datatypes::{arrow_schema_to_pg_fields, encode_recordbatch};
use datafusion_postgres::datafusion_pg_catalog::sql::PostgresCompatibilityParser;
use futures::{Sink, SinkExt, StreamExt, TryStreamExt};
use pgwire::api::copy::CopyHandler;
use pgwire::api::portal::{Format, Portal};
use pgwire::api::query::{ExtendedQueryHandler, SimpleQueryHandler};
use pgwire::api::results::{CopyResponse, FieldInfo, QueryResponse, Response, Tag};
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
use super::copy::CopyStatement;
use super::copy_in::{self, CopyIn, CopyInSlot};
use super::cursors::{self, CursorStatement, Cursors};
use super::fast_insert::FastInsert;
use super::limits::{self, StatementLimits};
use super::settings::SessionSettings;
use super::sqlstate::{self, user_error};
use super::user_statements::Chunk;
use super::{
    catalog_rewrite, column_names, copy, data_access, delete_alias, params, permissions,
    session_functions, set_show, time_zone, transactions, user_statements,
};
use crate::execution::{AdmissionError, Interrupt, QueryExecutor, RunError, StatementGuard};
use crate::sessions::SessionSlot;
use crate::sessions::activity_table::CurrentUser;
use crate::users::Users;

/// A prepared statement: its text and, unless empty, the parsed statement and its plan
/// (the same shape datafusion-postgres's hooks expect).
pub type PgStatement = (String, Option<(Statement, LogicalPlan)>);

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

/// `DEALLOCATE name | ALL`: prepared statements are the protocol's (psycopg sends
/// `DEALLOCATE ALL` when it resets its cache; re-used names replace the old ones).
fn deallocate<C>(client: &C, statement: &Statement) -> Option<Response>
where
    C: ClientPortalStore,
    C::PortalStore: PortalStore,
{
    let Statement::Deallocate { name, .. } = statement else {
        return None;
    };
    if name.value.eq_ignore_ascii_case("all") {
        return Some(Response::Execution(Tag::new("DEALLOCATE ALL")));
    }
    client.portal_store().rm_statement(&name.value);
    Some(Response::Execution(Tag::new("DEALLOCATE")))
}

/// A statement's interrupt, fired by a cancel request for this connection or when the
/// session's `statement_timeout` passes; it lives as long as the statement's rows are
/// being sent, or until the client goes away (see [`ClientSockets`]). The session shows `text` as `active` in `pg_stat_activity` meanwhile.
/// A statement that reads data first waits for an execution slot (see
/// [`crate::execution::admission`]), which it keeps until its last row is sent: its
/// wait counts towards its `statement_timeout` and a cancel request stops it.
async fn begin_statement<C: ClientInfo + ?Sized>(
    client: &C,
    settings: &SessionSettings,
    executor: &QueryExecutor,
    sockets: &ClientSockets,
    text: &str,
    reads_data: bool,
) -> PgWireResult<StatementGuard> {
    let cancel = match client.session_extensions().get::<Arc<ConnectionHandle>>() {
        Some(handle) => Some(handle.start_query().await),
        None => None,
    };
    let gone = sockets.gone(client.socket_addr());
    let mut guard =
        StatementGuard::start_watching(cancel, settings.statement_timeout(), Some(Box::pin(gone)));
    let mark = client
        .session_extensions()
        .get::<SessionSlot>()
        .map(|slot| slot.session().begin(text));
    if reads_data {
        let admission = executor.admission();
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
        guard.hold(slot);
    }
    if let Some(mark) = mark {
        guard.hold(mark);
    }
    Ok(guard)
}

/// `57014` for a stopped statement; other failures of its task as internal errors.
fn run_error(e: RunError) -> PgWireError {
    match e {
        RunError::Interrupted(i) => user_error(sqlstate::QUERY_CANCELED, i.0.message()),
        RunError::Failed(m) => user_error(sqlstate::INTERNAL_ERROR, m),
    }
}

/// Plan `statement` on the query threads (planning is stopped by the interrupt too).
async fn plan_statement(
    executor: &QueryExecutor,
    interrupt: &Interrupt,
    ctx: &SessionContext,
    statement: &Statement,
) -> PgWireResult<LogicalPlan> {
    let state = ctx.state();
    let statement = DfStatement::Statement(Box::new(statement.clone()));
    executor
        .run(interrupt, async move {
            state.statement_to_plan(statement).await
        })
        .await
        .map_err(run_error)?
        .map_err(api)
}

/// A planned statement's DataFrame, made on the query threads (DDL-like plans run here).
async fn dataframe(
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
/// The plan runs on the query threads under `guard`, which lives until the last row is
/// sent.
async fn respond(
    executor: &QueryExecutor,
    guard: StatementGuard,
    statement: &Statement,
    df: DataFrame,
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
    if let Some(tag) = tag {
        let stream = executor.execute(guard.interrupt(), df).await.map_err(api)?;
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
    let batches = executor.execute(guard.interrupt(), df).await.map_err(api)?;
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

pub struct SqlService {
    base: Arc<SessionContext>,
    storage: Storage,
    hooks: Vec<Arc<dyn QueryHook>>,
    parser: Arc<SqlParser>,
    users: Arc<Users>,
    /// Names of the admin functions (`SELECT f(…)`), which need the admin role.
    admin_functions: Vec<&'static str>,
    limits: StatementLimits,
    executor: QueryExecutor,
    sockets: Arc<ClientSockets>,
}

impl SqlService {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        base: Arc<SessionContext>,
        storage: Storage,
        hooks: Vec<Arc<dyn QueryHook>>,
        users: Arc<Users>,
        admin_functions: Vec<&'static str>,
        limits: StatementLimits,
        executor: QueryExecutor,
        sockets: Arc<ClientSockets>,
    ) -> SqlService {
        SqlService {
            storage,
            users: users.clone(),
            admin_functions,
            limits,
            executor: executor.clone(),
            parser: Arc::new(SqlParser {
                base: base.clone(),
                sql: PostgresCompatibilityParser::new(),
                hooks: hooks.clone(),
                limits,
                executor,
                users: users.clone(),
                sockets: sockets.clone(),
            }),
            sockets,
            base,
            hooks,
        }
    }

    /// `COPY … TO STDOUT` streams out; `COPY … FROM STDIN` starts reading (the data comes
    /// through [`CopyHandler`]). `extended`: over the extended protocol, where an error
    /// at the start of a COPY FROM is reported at its end (see [`CopyInSlot`]).
    async fn copy<C: ClientInfo + ?Sized>(
        &self,
        copy: CopyStatement,
        ctx: &SessionContext,
        client: &C,
        extended: bool,
    ) -> PgWireResult<Response> {
        match copy {
            CopyStatement::To(to) => {
                let zone = SessionSettings::of(client).time_zone();
                copy::copy_to(to, ctx, &zone, format_options(client)).await
            }
            CopyStatement::From(from) => {
                let started =
                    match CopyIn::start(&self.storage, &from.table, &from.columns, from.options) {
                        Ok(c) => Ok(Arc::new(c)),
                        Err(e) if extended => Err(e),
                        Err(e) => return Err(e),
                    };
                Ok(copy_in_response(client, started))
            }
        }
    }

    /// A cursor statement; `format` is how a FETCH's rows are encoded. A DECLARE also
    /// returns its query and plan (over the extended protocol the cursor becomes a
    /// portal of its name too, so a Describe of it — psycopg does one — answers its
    /// columns).
    async fn cursor<C: ClientInfo + ?Sized>(
        &self,
        kind: CursorStatement<'_>,
        ctx: &SessionContext,
        client: &C,
        format: &Format,
    ) -> PgWireResult<(Response, Option<(Statement, LogicalPlan)>)> {
        let cursors = Cursors::of(client);
        match kind {
            CursorStatement::Declare { name, query } => {
                let zone = SessionSettings::of(client).time_zone();
                let plan = cursors.declare(&name, query, ctx, &zone).await?;
                Ok((
                    Response::Execution(Tag::new("DECLARE CURSOR")),
                    Some((Statement::Query(Box::new(query.clone())), plan)),
                ))
            }
            CursorStatement::Fetch { name, count } => Ok((
                cursors
                    .fetch(&name, count, format, format_options(client))
                    .await?,
                None,
            )),
            CursorStatement::Close { name } => Ok((cursors.close(name.as_deref())?, None)),
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
    async fn simple<C>(&self, client: &mut C, query: &str) -> PgWireResult<Vec<Response>>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore,
        C::Error: std::fmt::Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        limits::check_text(query, &self.limits)?;
        if let Some(chunks) = user_statements::split(query) {
            let mut results = Vec::new();
            for chunk in chunks {
                match chunk {
                    Chunk::User(statement) => results
                        .push(user_statements::execute(statement?, client, &self.users).await?),
                    Chunk::Sql(sql) => results.extend(self.statements(client, &sql).await?),
                }
            }
            return Ok(results);
        }
        self.statements(client, query).await
    }

    /// The statements of `query`, none of them a user statement.
    async fn statements<C>(&self, client: &mut C, query: &str) -> PgWireResult<Vec<Response>>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore,
        C::Error: std::fmt::Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let statements = self
            .parser
            .sql
            .parse(query)
            .map_err(|e| PgWireError::ApiError(Box::new(e)))?;
        if statements.is_empty() {
            return Ok(vec![Response::EmptyQuery]);
        }
        for statement in &statements {
            limits::check_statement(statement, &self.limits)?;
        }
        let mut results = Vec::with_capacity(statements.len());
        'statements: for mut statement in statements {
            catalog_rewrite::rewrite(&mut statement);
            delete_alias::rewrite(&mut statement);
            let mut statement = self.parser.sql.rewrite(statement);
            column_names::name_columns(&mut statement);
            if let Some(response) = transactions::respond(client, &statement) {
                results.push(response?);
                continue;
            }
            permissions::check(client, &self.users, &statement, &self.admin_functions)?;
            if let Some(response) = deallocate(client, &statement) {
                results.push(response);
                continue;
            }
            if let Some(kind) = set_show::classify(&statement) {
                let base = self.base.state_ref().read().config_options().clone();
                results.push(set_show::execute(kind?, client, &base).await?);
                continue;
            }
            let ctx = statement_context(&self.base, client, &self.users);
            if let Some(copy) = copy::classify(&statement) {
                results.push(self.copy(copy?, &ctx, client, false).await?);
                continue;
            }
            for hook in &self.hooks {
                if let Some(result) = hook.handle_simple_query(&statement, &ctx, client).await {
                    results.push(result?);
                    continue 'statements;
                }
            }
            if let Some(kind) = cursors::classify(&statement) {
                let (response, _) = self
                    .cursor(kind?, &ctx, client, &Format::UnifiedText)
                    .await?;
                results.push(response);
                continue;
            }
            if let Some(insert) = FastInsert::compile(&statement, &self.storage)
                && let Some(response) = insert.execute_literal(&self.storage).await
            {
                results.push(response?);
                continue;
            }
            let settings = SessionSettings::of(client);
            let reads = data_access::reads_data(&statement);
            let guard = begin_statement(
                client,
                &settings,
                &self.executor,
                &self.sockets,
                query,
                reads,
            )
            .await?;
            let plan = plan_statement(&self.executor, guard.interrupt(), &ctx, &statement).await?;
            let df = dataframe(&self.executor, guard.interrupt(), &ctx, plan).await?;
            results.push(
                respond(
                    &self.executor,
                    guard,
                    &statement,
                    df,
                    &Format::UnifiedText,
                    format_options(client),
                    &settings.time_zone(),
                )
                .await?,
            );
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
        let (_, Some((statement, plan))) = &portal.statement.statement else {
            if let Some(statement) = user_statements::parse(&portal.statement.statement.0) {
                return user_statements::execute(statement?, client, &self.users).await;
            }
            return Ok(Response::EmptyQuery);
        };
        if let Some(response) = transactions::respond(client, statement) {
            return response;
        }
        if let Err(denied) =
            permissions::check(client, &self.users, statement, &self.admin_functions)
        {
            if let Some(Ok(CopyStatement::From(_))) = copy::classify(statement) {
                // Reported when the client ends the COPY, like any error of a COPY
                // FROM's start over this protocol.
                return Ok(copy_in_response(client, Err(denied)));
            }
            return Err(denied);
        }
        if let Some(response) = deallocate(client, statement) {
            return Ok(response);
        }
        if let Some(kind) = set_show::classify(statement) {
            let base = self.base.state_ref().read().config_options().clone();
            return set_show::execute(kind?, client, &base).await;
        }
        let ctx = statement_context(&self.base, client, &self.users);
        if let Some(copy) = copy::classify(statement) {
            return self.copy(copy?, &ctx, client, true).await;
        }
        if let Some(insert) = FastInsert::compile(statement, &self.storage) {
            return insert.execute(portal, &self.storage).await;
        }
        let values = params::bound_values(portal, plan)?;
        for hook in &self.hooks {
            if let Some(result) = hook
                .handle_extended_query(statement, plan, &values, &ctx, client)
                .await
            {
                return result;
            }
        }
        if let Some(kind) = cursors::classify(statement) {
            let kind = kind?;
            let closed = match &kind {
                CursorStatement::Close { name } => name.clone(),
                _ => None,
            };
            let name = match &kind {
                CursorStatement::Declare { name, .. } => Some(name.clone()),
                _ => None,
            };
            let (response, declared) = self
                .cursor(kind, &ctx, client, &portal.result_column_format)
                .await?;
            if let (Some(name), Some((query, plan))) = (name, declared) {
                let stored = StoredStatement::new(
                    name.clone(),
                    (query.to_string(), Some((query, plan))),
                    vec![],
                );
                client
                    .portal_store()
                    .put_portal(Arc::new(Portal::new_cursor(name, Arc::new(stored))));
            }
            if let Some(name) = closed {
                client.portal_store().rm_portal(&name);
            }
            return Ok(response);
        }
        let plan = plan
            .clone()
            .replace_params_with_values(&values)
            .map_err(api)?;
        let settings = SessionSettings::of(client);
        let reads = data_access::reads_data(statement);
        let text = &portal.statement.statement.0;
        let guard = begin_statement(
            client,
            &settings,
            &self.executor,
            &self.sockets,
            text,
            reads,
        )
        .await?;
        let df = dataframe(&self.executor, guard.interrupt(), &ctx, plan).await?;
        respond(
            &self.executor,
            guard,
            statement,
            df,
            &portal.result_column_format,
            format_options(client),
            &settings.time_zone(),
        )
        .await
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
            let rows = copy_in::write(&self.storage, finished).await?;
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
    base: Arc<SessionContext>,
    sql: PostgresCompatibilityParser,
    hooks: Vec<Arc<dyn QueryHook>>,
    limits: StatementLimits,
    executor: QueryExecutor,
    users: Arc<Users>,
    sockets: Arc<ClientSockets>,
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
        limits::check_text(sql, &self.limits)?;
        if let Some(statement) = user_statements::parse(sql) {
            // Checked now, run at Execute from the text kept here.
            statement?;
            return Ok(Some((sql.to_string(), None)));
        }
        let mut statements = self
            .sql
            .parse(sql)
            .map_err(|e| PgWireError::ApiError(Box::new(e)))?;
        if statements.is_empty() {
            return Ok(None);
        }
        if statements.len() > 1 {
            return Err(user_error(
                sqlstate::SYNTAX_ERROR,
                "cannot insert multiple commands into a prepared statement",
            ));
        }
        let mut statement = statements.remove(0);
        limits::check_statement(&statement, &self.limits)?;
        // Before it is planned: a relation only admins may read is not even described.
        permissions::check_private(client, &self.users, &statement)?;
        catalog_rewrite::rewrite(&mut statement);
        delete_alias::rewrite(&mut statement);
        let mut statement = self.sql.rewrite(statement);
        column_names::name_columns(&mut statement);
        let text = statement.to_string();
        if transactions::is_transaction_statement(&statement)
            || matches!(
                statement,
                Statement::Deallocate { .. } | Statement::Copy { .. }
            )
        {
            return Ok(Some((text, Some((statement, set_show::text_plan(&[])?)))));
        }
        if let Some(kind) = set_show::classify(&statement) {
            let plan = set_show::plan(&kind?)?;
            return Ok(Some((text, Some((statement, plan)))));
        }
        let ctx = statement_context(&self.base, client, &self.users);
        for hook in &self.hooks {
            if let Some(plan) = hook
                .handle_extended_parse_query(&statement, &ctx, client)
                .await
            {
                return Ok(Some((text, Some((statement, plan?)))));
            }
        }
        if let Some(kind) = cursors::classify(&statement) {
            let plan = match kind? {
                CursorStatement::Fetch { name, .. } => Cursors::of(client).fetch_plan(&name)?,
                _ => set_show::text_plan(&[])?,
            };
            return Ok(Some((text, Some((statement, plan)))));
        }
        // Planning at Parse reads no data: it takes no execution slot (the statement
        // waits for one when it is executed).
        let settings = SessionSettings::of(client);
        let guard = begin_statement(
            client,
            &settings,
            &self.executor,
            &self.sockets,
            &text,
            false,
        )
        .await?;
        let plan = plan_statement(&self.executor, guard.interrupt(), &ctx, &statement).await?;
        Ok(Some((text, Some((statement, plan)))))
    }

    fn get_parameter_types(&self, stmt: &Self::Statement) -> PgWireResult<Vec<Type>> {
        match stmt {
            (_, Some((_, plan))) => params::wire_types(plan),
            _ => Ok(vec![]),
        }
    }

    fn get_result_schema(
        &self,
        stmt: &Self::Statement,
        column_format: Option<&Format>,
    ) -> PgWireResult<Vec<FieldInfo>> {
        match stmt {
            (_, Some((_, plan))) if !matches!(plan, LogicalPlan::Ddl(_) | LogicalPlan::Dml(_)) => {
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
