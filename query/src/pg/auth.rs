//! Connection start-up: only user `wattdb` and database `wattdb` exist. With a password
//! configured, clients authenticate with SCRAM-SHA-256; without one (allowed only on a
//! loopback address, which the binary enforces) connections are trusted.

use std::fmt::Debug;
use std::sync::Arc;

use async_trait::async_trait;
use futures::{Sink, SinkExt};
use pgwire::api::auth::noop::NoopStartupHandler;
use pgwire::api::auth::sasl::SASLAuthStartupHandler;
use pgwire::api::auth::sasl::scram::{ScramAuth, gen_salted_password};
use pgwire::api::auth::{
    AuthSource, DefaultServerParameterProvider, LoginInfo, Password, ServerParameterProvider,
    StartupHandler,
};
use pgwire::api::{ClientInfo, ConnectionManager};
use pgwire::error::{ErrorInfo, PgWireError, PgWireResult};
use pgwire::messages::startup::ParameterStatus;
use pgwire::messages::{PgWireBackendMessage, PgWireFrontendMessage};

pub const USER: &str = "wattdb";
pub const DATABASE: &str = "wattdb";
const SCRAM_ITERATIONS: usize = 4096;

/// The stored SCRAM secret: salt and salted password, computed once at start.
#[derive(Debug, Clone)]
pub struct ScramSecret {
    salt: Vec<u8>,
    salted: Vec<u8>,
}

#[async_trait]
impl AuthSource for ScramSecret {
    async fn get_password(&self, login: &LoginInfo) -> PgWireResult<Password> {
        if login.user() != Some(USER) {
            return Err(fatal(
                "28P01",
                format!(
                    "password authentication failed for user \"{}\"",
                    login.user().unwrap_or("")
                ),
            ));
        }
        Ok(Password::new(Some(self.salt.clone()), self.salted.clone()))
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

impl ScramSecret {
    /// Salt and hash the password once (PBKDF2 is deliberately slow).
    pub fn new(password: &str) -> Arc<Self> {
        let salt = uuid::Uuid::new_v4().as_bytes().to_vec();
        let salted = gen_salted_password(password, &salt, SCRAM_ITERATIONS);
        Arc::new(ScramSecret { salt, salted })
    }
}

impl WattdbStartup {
    /// One per connection: the SASL exchange keeps per-connection state.
    pub fn new(secret: Option<Arc<ScramSecret>>, connections: Arc<ConnectionManager>) -> Self {
        let scram = secret.map(|secret| {
            let mut auth = ScramAuth::new(secret);
            auth.set_iterations(SCRAM_ITERATIONS);
            SASLAuthStartupHandler::new(Arc::new(server_parameters()))
                .with_scram(auth)
                .with_connection_manager(connections.clone())
        });
        WattdbStartup {
            trust: Trust { connections },
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
            if user != USER {
                return Err(fatal(
                    "28000",
                    format!("role \"{user}\" does not exist (the only user is \"{USER}\")"),
                ));
            }
            if database != DATABASE {
                return Err(fatal(
                    "3D000",
                    format!(
                        "database \"{database}\" does not exist (the only database is \"{DATABASE}\")"
                    ),
                ));
            }
        }
        match &self.scram {
            Some(scram) => scram.on_startup(client, message).await,
            None => self.trust.on_startup(client, message).await,
        }
    }
}
