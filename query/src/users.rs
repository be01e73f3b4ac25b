//! Users and roles. Every user has a role — `reader` (queries), `writer` (also INSERT,
//! COPY FROM, DELETE) or `admin` (also DDL, admin functions, users) — and, to log in when
//! the server asks for passwords, a password kept only as its SCRAM-SHA-256 salted hash.
//!
//! `wattdb` is the built-in admin: its password is the server's `--password`. Other users
//! come from the config file (`[[users]]`, stored at start-up, replacing what SQL set for
//! them) and from SQL (`CREATE USER`, `ALTER USER … PASSWORD`, `DROP USER`, `GRANT
//! writer|admin TO u`, `REVOKE … FROM u`); they are catalog entries (kind `user`), so they
//! survive restarts and `wattdb recover` brings them back. A user's role is what it was
//! granted: `admin` over `writer` over `reader`, the default.
//!
//! This module keeps the users and checks passwords; it does not decide what a statement
//! needs (see [`crate::pg::permissions`]).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, RwLock};

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use pgwire::api::auth::sasl::scram::gen_salted_password;
use serde::{Deserialize, Serialize};
use wattdb_storage::{RuleEntry, Storage};

/// The catalog kind users are stored under.
pub const USER_KIND: &str = "user";
/// The built-in admin.
pub const BUILT_IN: &str = "wattdb";
pub const SCRAM_ITERATIONS: usize = 4096;

/// What a user may do; ordered, each role may do what the roles below it may.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Reader,
    Writer,
    Admin,
}

impl Role {
    pub fn name(self) -> &'static str {
        match self {
            Role::Reader => "reader",
            Role::Writer => "writer",
            Role::Admin => "admin",
        }
    }

    pub fn parse(name: &str) -> Option<Role> {
        match name.to_ascii_lowercase().as_str() {
            "reader" => Some(Role::Reader),
            "writer" => Some(Role::Writer),
            "admin" => Some(Role::Admin),
            _ => None,
        }
    }
}

/// A password as SCRAM keeps it: salt and PBKDF2-salted password.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Secret {
    pub salt: Vec<u8>,
    pub salted: Vec<u8>,
}

impl Secret {
    /// Salt and hash `password` (PBKDF2 is deliberately slow: once per change).
    pub fn new(password: &str) -> Secret {
        let salt = uuid::Uuid::new_v4().as_bytes().to_vec();
        let salted = gen_salted_password(password, &salt, SCRAM_ITERATIONS);
        Secret { salt, salted }
    }

    /// Whether `password` is this one's (for clients that send it in the clear, over
    /// TLS: MQTT devices).
    pub fn matches(&self, password: &str) -> bool {
        let salted = gen_salted_password(password, &self.salt, SCRAM_ITERATIONS);
        // Equal length; compare without an early exit.
        salted.len() == self.salted.len()
            && salted
                .iter()
                .zip(&self.salted)
                .fold(0u8, |acc, (a, b)| acc | (a ^ b))
                == 0
    }
}

/// How and when a user may log in, and the settings its sessions start with — the role
/// attributes `LOGIN`/`NOLOGIN`, `CONNECTION LIMIT n`, `VALID UNTIL '…'` and `ALTER
/// ROLE … SET name = value`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Login {
    /// `NOLOGIN` makes it false: the user cannot connect.
    #[serde(default = "can_login_by_default")]
    pub can_login: bool,
    /// `CONNECTION LIMIT n`: at most this many sessions at once (admins are not held to
    /// it, as PostgreSQL's superusers are not); `None` (`-1`): no limit of its own.
    #[serde(default)]
    pub connection_limit: Option<u32>,
    /// `VALID UNTIL '…'`: the password is refused after this instant (microseconds since
    /// the Unix epoch); `None` (`'infinity'`): always valid.
    #[serde(default)]
    pub valid_until_micros: Option<i64>,
    /// `ALTER ROLE name SET parameter = value`: each session of the user starts with
    /// them (a startup-packet parameter still wins, as in PostgreSQL).
    #[serde(default)]
    pub settings: BTreeMap<String, String>,
}

fn can_login_by_default() -> bool {
    true
}

impl Default for Login {
    fn default() -> Self {
        Login {
            can_login: true,
            connection_limit: None,
            valid_until_micros: None,
            settings: BTreeMap::new(),
        }
    }
}

impl Login {
    /// Whether the password may still be used at `now_micros`.
    pub fn password_valid_at(&self, now_micros: i64) -> bool {
        self.valid_until_micros
            .is_none_or(|until| now_micros <= until)
    }
}

/// A user as stored in the catalog.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct StoredUser {
    /// Roles granted (`writer`, `admin`); none makes a reader.
    #[serde(default)]
    grants: BTreeSet<Role>,
    /// Base64 salt and salted password; absent: no password (cannot log in when the
    /// server asks for passwords).
    #[serde(default)]
    salt: Option<String>,
    #[serde(default)]
    salted: Option<String>,
    #[serde(default, flatten)]
    login: Login,
}

#[derive(Debug, Clone)]
struct User {
    grants: BTreeSet<Role>,
    secret: Option<Secret>,
    login: Login,
}

impl User {
    fn role(&self) -> Role {
        self.grants.iter().copied().max().unwrap_or(Role::Reader)
    }

    fn stored(&self) -> StoredUser {
        StoredUser {
            grants: self.grants.clone(),
            salt: self.secret.as_ref().map(|s| B64.encode(&s.salt)),
            salted: self.secret.as_ref().map(|s| B64.encode(&s.salted)),
            login: self.login.clone(),
        }
    }

    fn from_stored(s: StoredUser) -> Option<User> {
        let secret = match (s.salt, s.salted) {
            (Some(salt), Some(salted)) => Some(Secret {
                salt: B64.decode(salt).ok()?,
                salted: B64.decode(salted).ok()?,
            }),
            _ => None,
        };
        Some(User {
            grants: s.grants,
            secret,
            login: s.login,
        })
    }
}

/// A failed user command: SQLSTATE and message.
#[derive(Debug, Clone, PartialEq)]
pub struct UserError {
    pub code: &'static str,
    pub message: String,
}

impl UserError {
    fn new(code: &'static str, message: impl Into<String>) -> Self {
        UserError {
            code,
            message: message.into(),
        }
    }
}

const DUPLICATE_OBJECT: &str = "42710";
const UNDEFINED_OBJECT: &str = "42704";
const INSUFFICIENT_PRIVILEGE: &str = "42501";

/// A user declared in the config file.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ConfiguredUser {
    pub name: String,
    pub password: Option<String>,
    /// `reader` (default), `writer` or `admin`.
    pub role: Option<String>,
}

/// The users of a server.
pub struct Users {
    storage: Storage,
    /// `wattdb`'s password (`--password`).
    built_in: Option<Secret>,
    users: RwLock<BTreeMap<String, User>>,
}

impl std::fmt::Debug for Users {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Users").finish_non_exhaustive()
    }
}

impl Users {
    /// The users stored in `storage`'s catalog, `wattdb` with `password`.
    pub fn load(storage: Storage, password: Option<&str>) -> Arc<Users> {
        let mut users = BTreeMap::new();
        for entry in storage.rules(USER_KIND) {
            match serde_json::from_value::<StoredUser>(entry.body)
                .ok()
                .and_then(User::from_stored)
            {
                Some(u) => {
                    users.insert(entry.name, u);
                }
                None => tracing::warn!(user = %entry.name, "ignoring an unreadable user entry"),
            }
        }
        Arc::new(Users {
            storage,
            built_in: password.map(Secret::new),
            users: RwLock::new(users),
        })
    }

    /// Store the config file's users (created, or replaced with the file's password and
    /// role).
    pub async fn configure(&self, configured: &[ConfiguredUser]) -> Result<(), UserError> {
        for c in configured {
            let role = match c.role.as_deref() {
                None => Role::Reader,
                Some(r) => Role::parse(r).ok_or_else(|| {
                    UserError::new(
                        "22023",
                        format!(
                            "user \"{}\": role \"{r}\" is not reader, writer or admin",
                            c.name
                        ),
                    )
                })?,
            };
            if c.name == BUILT_IN {
                return Err(UserError::new(
                    DUPLICATE_OBJECT,
                    format!("user \"{BUILT_IN}\" is built in: its password is --password"),
                ));
            }
            // What SQL set for the user besides its password and role stays.
            let login = self.get(&c.name).map(|u| u.login).unwrap_or_default();
            let user = User {
                grants: (role != Role::Reader).then_some(role).into_iter().collect(),
                secret: c.password.as_deref().map(Secret::new),
                login,
            };
            let exists = self.exists(&c.name);
            self.store(&c.name, user, !exists).await?;
        }
        Ok(())
    }

    pub fn exists(&self, name: &str) -> bool {
        name == BUILT_IN || self.read().contains_key(name)
    }

    /// `name`'s role; `None` for no such user.
    pub fn role(&self, name: &str) -> Option<Role> {
        if name == BUILT_IN {
            return Some(Role::Admin);
        }
        self.read().get(name).map(User::role)
    }

    /// `name`'s password secret, when it has one.
    pub fn secret(&self, name: &str) -> Option<Secret> {
        if name == BUILT_IN {
            return self.built_in.clone();
        }
        self.read().get(name).and_then(|u| u.secret.clone())
    }

    /// How `name` may log in; `None` for no such user. The built-in admin has no
    /// restrictions.
    pub fn login(&self, name: &str) -> Option<Login> {
        if name == BUILT_IN {
            return Some(Login::default());
        }
        self.read().get(name).map(|u| u.login.clone())
    }

    /// Every user and its role, `wattdb` first.
    pub fn list(&self) -> Vec<(String, Role)> {
        std::iter::once((BUILT_IN.to_string(), Role::Admin))
            .chain(self.read().iter().map(|(n, u)| (n.clone(), u.role())))
            .collect()
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, BTreeMap<String, User>> {
        self.users.read().unwrap_or_else(|e| e.into_inner())
    }

    fn not_built_in(name: &str, what: &str) -> Result<(), UserError> {
        if name == BUILT_IN {
            return Err(UserError::new(
                INSUFFICIENT_PRIVILEGE,
                format!("user \"{BUILT_IN}\" is built in: {what}"),
            ));
        }
        Ok(())
    }

    fn get(&self, name: &str) -> Result<User, UserError> {
        self.read().get(name).cloned().ok_or_else(|| {
            UserError::new(UNDEFINED_OBJECT, format!("role \"{name}\" does not exist"))
        })
    }

    async fn store(&self, name: &str, user: User, create: bool) -> Result<(), UserError> {
        let body = serde_json::to_value(user.stored())
            .map_err(|e| UserError::new("XX000", e.to_string()))?;
        self.storage
            .put_rule(
                RuleEntry {
                    kind: USER_KIND.into(),
                    name: name.to_string(),
                    body,
                },
                create,
            )
            .await
            .map_err(|e| match e {
                wattdb_storage::Error::RuleExists { .. } => {
                    UserError::new(DUPLICATE_OBJECT, format!("role \"{name}\" already exists"))
                }
                other => {
                    UserError::new(crate::pg::sqlstate::for_storage(&other), other.to_string())
                }
            })?;
        self.users
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(name.to_string(), user);
        Ok(())
    }

    /// `CREATE USER name [PASSWORD '…'] [attributes]`: a reader, or an admin with
    /// `admin`.
    pub async fn create(
        &self,
        name: &str,
        password: Option<&str>,
        admin: bool,
        login: Login,
    ) -> Result<(), UserError> {
        if self.exists(name) {
            return Err(UserError::new(
                DUPLICATE_OBJECT,
                format!("role \"{name}\" already exists"),
            ));
        }
        let user = User {
            grants: admin.then_some(Role::Admin).into_iter().collect(),
            secret: password.map(Secret::new),
            login,
        };
        self.store(name, user, true).await
    }

    /// `ALTER USER name attributes`: changes `name`'s login rules and settings.
    pub async fn alter_login(
        &self,
        name: &str,
        change: impl FnOnce(&mut Login) -> Result<(), UserError>,
    ) -> Result<(), UserError> {
        Self::not_built_in(name, "its login cannot be changed")?;
        let mut user = self.get(name)?;
        change(&mut user.login)?;
        self.store(name, user, false).await
    }

    /// `ALTER USER name PASSWORD '…' | NULL`.
    pub async fn set_password(&self, name: &str, password: Option<&str>) -> Result<(), UserError> {
        Self::not_built_in(name, "its password is the server's --password")?;
        let mut user = self.get(name)?;
        user.secret = password.map(Secret::new);
        self.store(name, user, false).await
    }

    /// `DROP USER [IF EXISTS] name`.
    pub async fn drop(&self, name: &str, if_exists: bool) -> Result<(), UserError> {
        Self::not_built_in(name, "it cannot be dropped")?;
        if !self.read().contains_key(name) {
            return if if_exists {
                Ok(())
            } else {
                Err(UserError::new(
                    UNDEFINED_OBJECT,
                    format!("role \"{name}\" does not exist"),
                ))
            };
        }
        self.storage
            .drop_rule(USER_KIND, name)
            .await
            .map_err(|e| UserError::new(crate::pg::sqlstate::for_storage(&e), e.to_string()))?;
        self.users
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .remove(name);
        Ok(())
    }

    /// `GRANT role TO name` (`granted`) or `REVOKE role FROM name`.
    pub async fn grant(&self, role: Role, name: &str, granted: bool) -> Result<(), UserError> {
        Self::not_built_in(name, "it is always an admin")?;
        if role == Role::Reader {
            return Err(UserError::new(
                "22023",
                "every user is a reader: grant writer or admin",
            ));
        }
        let mut user = self.get(name)?;
        if granted {
            user.grants.insert(role);
        } else {
            user.grants.remove(&role);
        }
        self.store(name, user, false).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_secret_matches_its_password_only() {
        let s = Secret::new("correct horse");
        assert!(s.matches("correct horse"));
        assert!(!s.matches("correct hors"));
        assert!(!s.matches(""));
        // Salted: the same password hashes differently each time.
        assert_ne!(Secret::new("correct horse").salted, s.salted);
    }

    #[test]
    fn the_role_is_the_highest_grant() {
        let user = |grants: &[Role]| User {
            grants: grants.iter().copied().collect(),
            secret: None,
            login: Login::default(),
        };
        assert_eq!(user(&[]).role(), Role::Reader);
        assert_eq!(user(&[Role::Writer]).role(), Role::Writer);
        assert_eq!(user(&[Role::Writer, Role::Admin]).role(), Role::Admin);
    }

    #[test]
    fn stored_users_round_trip() {
        let u = User {
            grants: [Role::Writer].into_iter().collect(),
            secret: Some(Secret::new("pw")),
            login: Login {
                can_login: false,
                connection_limit: Some(3),
                valid_until_micros: Some(1_700_000_000_000_000),
                settings: [("statement_timeout".to_string(), "5s".to_string())].into(),
            },
        };
        let json = serde_json::to_value(u.stored()).unwrap();
        assert_eq!(json["grants"], serde_json::json!(["writer"]));
        let back = User::from_stored(serde_json::from_value(json).unwrap()).unwrap();
        assert_eq!(back.grants, u.grants);
        assert_eq!(back.secret, u.secret);
        assert_eq!(back.login, u.login);
        assert!(back.secret.unwrap().matches("pw"));
    }

    #[test]
    fn users_stored_before_login_rules_can_log_in() {
        let old = serde_json::json!({"grants": ["writer"], "salt": null, "salted": null});
        let user = User::from_stored(serde_json::from_value(old).unwrap()).unwrap();
        assert_eq!(user.login, Login::default());
        assert!(user.login.can_login);
    }

    #[test]
    fn a_password_is_valid_until_its_instant() {
        let login = Login {
            valid_until_micros: Some(1_000),
            ..Login::default()
        };
        assert!(login.password_valid_at(999));
        assert!(login.password_valid_at(1_000));
        assert!(!login.password_valid_at(1_001));
        assert!(Login::default().password_valid_at(i64::MAX));
    }
}
