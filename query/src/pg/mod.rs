//! The PostgreSQL wire-protocol endpoint: [`service`] runs simple and extended queries
//! (parameters, text and binary results) per connection, with the connection's own
//! [`settings`] and [`cursors`]; pg_catalog emulation, the hook trait and result encoding
//! come from `datafusion-postgres`; wattdb adds authentication, its own statements (see
//! [`wattdb_statements`]) and SQLSTATE mapping. Every statement is classified once
//! ([`statement`]) and handled in one place, whatever the protocol. Every connection runs in its own task: a failing
//! statement ends at most that connection.

pub mod auth;
pub mod catalog_rewrite;
pub mod client_socket;
pub mod column_names;
pub mod compat_parser;
pub mod copy;
pub mod copy_in;
pub mod cursors;
pub mod data_access;
pub mod delete_alias;
pub mod fast_insert;
pub mod late_binding;
pub mod limits;
pub mod params;
pub mod permissions;
pub mod service;
pub mod session_functions;
pub mod set_show;
pub mod settings;
pub mod sqlstate;
pub mod statement;
pub mod time_zone;
pub mod transactions;
pub mod user_statements;
pub mod wattdb_statements;

use std::sync::Arc;

use datafusion::prelude::SessionContext;
use pgwire::api::auth::StartupHandler;
use pgwire::api::cancel::{CancelHandler, DefaultCancelHandler};
use pgwire::api::query::{ExtendedQueryHandler, SimpleQueryHandler};
use pgwire::api::{ClientInfo, ConnectionManager, ErrorHandler, PgWireServerHandlers};
use pgwire::error::PgWireError;
use tokio::net::TcpListener;
use wattdb_storage::Storage;

use crate::users::Users;

pub struct PgHandlers {
    session: Arc<service::SqlService>,
    users: Arc<Users>,
    sessions: Arc<crate::sessions::Sessions>,
    /// Clients must authenticate (the server has a `--password`).
    passwords: bool,
    connections: Arc<ConnectionManager>,
    cancel: Arc<DefaultCancelHandler>,
    /// The connections' sockets, watched for a client going away mid-statement.
    sockets: Arc<client_socket::ClientSockets>,
}

impl PgHandlers {
    /// The SQL endpoint over `ctx` (built with the same `users`); `passwords`: clients
    /// must authenticate (the server has a `--password`); `admin` serves the admin
    /// functions of other subsystems; `limits` bound every statement before planning;
    /// statements plan and run on `executor`'s threads; `sessions` (the same the
    /// context's `pg_stat_activity` shows) limit how many connections may open.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        ctx: Arc<SessionContext>,
        storage: Storage,
        users: Arc<Users>,
        sessions: Arc<crate::sessions::Sessions>,
        passwords: bool,
        admin: Option<Arc<dyn crate::admin::AdminExtension>>,
        limits: limits::StatementLimits,
        executor: crate::execution::QueryExecutor,
    ) -> Self {
        let wattdb = wattdb_statements::WattdbStatements::new(storage.clone(), admin);
        let connections = Arc::new(ConnectionManager::new());
        let sockets = Arc::new(client_socket::ClientSockets::default());
        PgHandlers {
            session: Arc::new(service::SqlService::new(
                ctx,
                storage.clone(),
                wattdb,
                users.clone(),
                limits,
                executor,
                sockets.clone(),
            )),
            sockets,
            users,
            sessions,
            passwords,
            cancel: Arc::new(DefaultCancelHandler::new(connections.clone())),
            connections,
        }
    }
}

struct SqlStateErrors;

impl ErrorHandler for SqlStateErrors {
    fn on_error<C>(&self, _client: &C, error: &mut PgWireError)
    where
        C: ClientInfo,
    {
        sqlstate::classify(error);
        tracing::debug!(error = %error, "statement failed");
    }
}

impl PgWireServerHandlers for PgHandlers {
    fn simple_query_handler(&self) -> Arc<impl SimpleQueryHandler> {
        self.session.clone()
    }

    fn extended_query_handler(&self) -> Arc<impl ExtendedQueryHandler> {
        self.session.clone()
    }

    fn startup_handler(&self) -> Arc<impl StartupHandler> {
        Arc::new(auth::WattdbStartup::new(
            self.users.clone(),
            self.sessions.clone(),
            self.passwords,
            self.connections.clone(),
        ))
    }

    fn error_handler(&self) -> Arc<impl ErrorHandler> {
        Arc::new(SqlStateErrors)
    }

    fn cancel_handler(&self) -> Arc<impl CancelHandler> {
        self.cancel.clone()
    }

    fn copy_handler(&self) -> Arc<impl pgwire::api::copy::CopyHandler> {
        self.session.clone()
    }
}

/// Accept connections until `shutdown` flips to true. With `tls`, a client's SSLRequest
/// is answered with a TLS handshake (sslmode=require/verify-full); clients that do not
/// ask for TLS are served in the clear, as PostgreSQL does without `hostssl` rules.
pub async fn serve(
    listener: TcpListener,
    handlers: Arc<PgHandlers>,
    tls: Option<pgwire::tokio::TlsAcceptor>,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((socket, peer)) => {
                    let _ = socket.set_nodelay(true);
                    let h = handlers.clone();
                    let tls = tls.clone();
                    let watched = handlers.sockets.register(peer, &socket);
                    tokio::spawn(async move {
                        if let Err(e) = pgwire::tokio::process_socket(socket, tls, h).await {
                            tracing::debug!(%peer, error = %e, "connection ended with an error");
                        }
                        drop(watched);
                    });
                }
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                }
            },
            _ = shutdown.changed() => {
                if *shutdown.borrow() {
                    return;
                }
            }
        }
    }
}
