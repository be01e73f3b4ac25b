//! Connection start-up: the user must exist (see [`crate::users`]) and the database is
//! `wattdb`. With passwords required (the server's `--password` is set), clients
//! authenticate with SCRAM-SHA-256 against the user's stored secret; without (allowed
//! only on a loopback address, which the binary enforces) known users are trusted.
//!
//! A user with `NOLOGIN` is refused (`28000`), a password past its `VALID UNTIL` fails
//! like a wrong one (`28P01`), and the session must fit the server's
//! [`Sessions`] limits (`53300`): all decided at the startup packet, before the password
//! exchange, as PostgreSQL counts a connection from its start. The session then starts
//! with the user's own defaults (`ALTER ROLE … SET`).

use std::fmt::Debug;
use std::sync::Arc;

use async_trait::async_trait;
use futures::{Sink, SinkExt};
use pgwire::api::auth::noop::NoopStartupHandler;
use pgwire::api::auth::sasl::SASLAuthStartupHandler;
use pgwire::api::auth::sasl::scram::ScramAuth;
use pgwire::api::auth::{
    AuthSource, DefaultServerParameterProvider, LoginInfo, Password, ServerParameterProvider,
    StartupHandler,
};
use pgwire::api::{ClientInfo, ConnectionManager};
use pgwire::error::{ErrorInfo, PgWireError, PgWireResult};
use pgwire::messages::startup::ParameterStatus;
use pgwire::messages::{PgWireBackendMessage, PgWireFrontendMessage};

use super::settings::SessionSettings;
use super::sqlstate;
use crate::sessions::{Opening, SessionSlot, Sessions};
use crate::users::{Role, SCRAM_ITERATIONS, Users};

pub const USER: &str = crate::users::BUILT_IN;
pub const DATABASE: &str = "wattdb";

/// SCRAM secrets by user, from [`Users`].
#[derive(Debug)]
struct UserSecrets(Arc<Users>);

#[async_trait]
impl AuthSource for UserSecrets {
    async fn get_password(&self, login: &LoginInfo) -> PgWireResult<Password> {
        let user = login.user().unwrap_or("");
        let now = chrono::Utc::now().timestamp_micros();
        let expired = self
            .0
            .login(user)
            .is_some_and(|l| !l.password_valid_at(now));
        match self.0.secret(user) {
            Some(secret) if !expired => Ok(Password::new(Some(secret.salt), secret.salted)),
            // No password set (or it expired): it cannot log in while passwords are
            // required.
            _ => Err(fatal(
                "28P01",
                format!("password authentication failed for user \"{user}\""),
            )),
        }
    }
}

struct Trust {
    connections: Arc<ConnectionManager>,
}

#[async_trait]
impl NoopStartupHandler for Trust {
    fn connection_manager(&self) -> Option<Arc<ConnectionManager>> {
        Some(self.connections.clone())
    }

    /// pgwire's trusted start-up announces its own default parameters (a
    /// `server_version` of `16.6-pgwire-…`, from which pgjdbc takes the major version);
    /// wattdb's are sent after them and, like any later ParameterStatus, replace them.
    async fn post_startup<C>(
        &self,
        client: &mut C,
        _message: PgWireFrontendMessage,
    ) -> PgWireResult<()>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        if let Some(parameters) = server_parameters().server_parameters(client) {
            for (name, value) in parameters {
                client
                    .feed(PgWireBackendMessage::ParameterStatus(ParameterStatus::new(
                        name, value,
                    )))
                    .await?;
            }
        }
        Ok(())
    }
}

pub struct WattdbStartup {
    trust: Trust,
    users: Arc<Users>,
    sessions: Arc<Sessions>,
    scram: Option<SASLAuthStartupHandler<DefaultServerParameterProvider>>,
}

fn fatal(code: &str, message: String) -> PgWireError {
    PgWireError::UserError(Box::new(ErrorInfo::new(
        "FATAL".into(),
        code.into(),
        message,
    )))
}

pub fn server_parameters() -> DefaultServerParameterProvider {
    let mut p = DefaultServerParameterProvider::default();
    p.server_version = super::settings::server_version();
    p.time_zone = "UTC".into();
    p
}

impl WattdbStartup {
    /// One per connection: the SASL exchange keeps per-connection state. `passwords`:
    /// clients must authenticate.
    pub fn new(
        users: Arc<Users>,
        sessions: Arc<Sessions>,
        passwords: bool,
        connections: Arc<ConnectionManager>,
    ) -> Self {
        let scram = passwords.then(|| {
            let mut auth = ScramAuth::new(Arc::new(UserSecrets(users.clone())));
            auth.set_iterations(SCRAM_ITERATIONS);
            SASLAuthStartupHandler::new(Arc::new(server_parameters()))
                .with_scram(auth)
                .with_connection_manager(connections.clone())
        });
        WattdbStartup {
            trust: Trust { connections },
            users,
            sessions,
            scram,
        }
    }
}

#[async_trait]
impl StartupHandler for WattdbStartup {
    async fn on_startup<C>(
        &self,
        client: &mut C,
        message: PgWireFrontendMessage,
    ) -> PgWireResult<()>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        if let PgWireFrontendMessage::Startup(startup) = &message {
            let user = startup
                .parameters
                .get("user")
                .map(String::as_str)
                .unwrap_or("");
            let database = startup
                .parameters
                .get("database")
                .map(String::as_str)
                .unwrap_or(user);
            if !self.users.exists(user) {
                return Err(fatal("28000", format!("role \"{user}\" does not exist")));
            }
            if database != DATABASE {
                return Err(fatal(
                    "3D000",
                    format!(
                        "database \"{database}\" does not exist (the only database is \"{DATABASE}\")"
                    ),
                ));
            }
            let login = self.users.login(user).unwrap_or_default();
            if !login.can_login {
                return Err(fatal(
                    sqlstate::INVALID_AUTHORIZATION,
                    format!("role \"{user}\" is not permitted to log in"),
                ));
            }
            let slot = self
                .sessions
                .open(Opening {
                    user,
                    admin: self.users.role(user) == Some(Role::Admin),
                    connection_limit: login.connection_limit,
                    application_name: startup
                        .parameters
                        .get("application_name")
                        .map_or("", String::as_str),
                    client: client.socket_addr(),
                })
                .map_err(|refused| fatal(refused.code, refused.message))?;
            client.session_extensions().insert(slot);
            self.delegate(client, message).await?;
            // The startup packet's parameters are in the metadata now.
            SessionSettings::start_session(client, login.settings);
            return Ok(());
        }
        self.delegate(client, message).await
    }
}

impl WattdbStartup {
    /// The password exchange (or trust); once it is done, the session knows the process
    /// id the client was given.
    async fn delegate<C>(&self, client: &mut C, message: PgWireFrontendMessage) -> PgWireResult<()>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        match &self.scram {
            Some(scram) => scram.on_startup(client, message).await?,
            None => self.trust.on_startup(client, message).await?,
        }
        if let Some(slot) = client.session_extensions().get::<SessionSlot>() {
            slot.session().set_pid(client.pid_and_secret_key().0);
        }
        Ok(())
    }
}
