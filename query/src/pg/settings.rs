//! One connection's run-time parameters (`SET`, `RESET`, `SHOW`, `current_setting`,
//! `set_config`), kept per connection in pgwire's session extensions, so one session's
//! `SET TIME ZONE` or `SET wattdb.rollup_rewrite = false` never reaches another.
//!
//! PostgreSQL's parameters that clients set or read are known here with PostgreSQL 15's
//! defaults; `datafusion.*` and `wattdb.*` options are validated against the engine's
//! options and applied to each of the session's statements; other names with a dot are
//! custom parameters (PostgreSQL's placeholder variables) and are only stored.

use std::collections::BTreeMap;
use std::str::FromStr;
use std::sync::{Arc, Mutex};

use arrow::array::timezone::Tz;
use datafusion::common::config::ConfigOptions;
use pgwire::api::ClientInfo;
use pgwire::error::PgWireError;

use super::sqlstate::{self, user_error};

/// The PostgreSQL version wattdb answers as: clients parse it to choose the catalog
/// queries they send.
pub const PG_VERSION: &str = "15.0";
/// `server_version_num` for [`PG_VERSION`].
pub const PG_VERSION_NUM: &str = "150000";

/// `server_version` as reported at startup and by `SHOW`.
pub fn server_version() -> String {
    format!("{PG_VERSION} (wattdb {})", env!("CARGO_PKG_VERSION"))
}

/// What `version()` answers, in PostgreSQL's format (SQLAlchemy and others parse it).
pub fn version_string() -> String {
    format!(
        "PostgreSQL {PG_VERSION} (wattdb {}) on {}-pc-linux-gnu, compiled by rustc, 64-bit",
        env!("CARGO_PKG_VERSION"),
        std::env::consts::ARCH
    )
}

/// A parameter PostgreSQL has: its name as shown, default, whether a change is
/// reported to the client (ParameterStatus) and whether it can be set.
struct Known {
    name: &'static str,
    default: &'static str,
    reported: bool,
    settable: bool,
}

const fn known(name: &'static str, default: &'static str, reported: bool, settable: bool) -> Known {
    Known {
        name,
        default,
        reported,
        settable,
    }
}

/// PostgreSQL 15 parameters clients set on connect or read back, with their defaults.
const KNOWN: &[Known] = &[
    known("application_name", "", true, true),
    known("bytea_output", "hex", false, true),
    known("client_encoding", "UTF8", true, true),
    known("client_min_messages", "notice", false, true),
    known("DateStyle", "ISO, MDY", true, true),
    known(
        "default_transaction_isolation",
        "read committed",
        false,
        true,
    ),
    known("default_transaction_read_only", "off", true, true),
    known(
        "default_text_search_config",
        "pg_catalog.simple",
        false,
        true,
    ),
    known("escape_string_warning", "on", false, true),
    known("extra_float_digits", "1", false, true),
    known("idle_in_transaction_session_timeout", "0", false, true),
    known("idle_session_timeout", "0", false, true),
    known("integer_datetimes", "on", true, false),
    known("IntervalStyle", "postgres", true, true),
    known("is_superuser", "on", true, false),
    known("jit", "off", false, true),
    known("lc_collate", "C", false, false),
    known("lc_ctype", "C", false, false),
    known("lc_messages", "C", false, true),
    known("lc_monetary", "C", false, true),
    known("lc_numeric", "C", false, true),
    known("lc_time", "C", false, true),
    known("lock_timeout", "0", false, true),
    known("max_identifier_length", "63", false, false),
    known("row_security", "on", false, true),
    known("search_path", "\"$user\", public", false, true),
    known("server_encoding", "UTF8", true, false),
    known("server_version", "", true, false),
    known("server_version_num", PG_VERSION_NUM, false, false),
    known("session_authorization", "wattdb", true, false),
    known("standard_conforming_strings", "on", true, true),
    known("statement_timeout", "0", false, true),
    known("synchronous_commit", "on", false, true),
    known("TimeZone", "UTC", true, true),
    known("transaction_isolation", "read committed", false, true),
    known("transaction_read_only", "off", false, true),
    known("work_mem", "4MB", false, true),
    known("xmloption", "content", false, true),
];

fn find(name: &str) -> Option<&'static Known> {
    KNOWN.iter().find(|k| k.name.eq_ignore_ascii_case(name))
}

/// Engine options set by `SET datafusion.… / wattdb.…`.
fn is_engine_option(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    lower.starts_with("datafusion.") || lower.starts_with("wattdb.")
}

/// The parameters reported to every client at startup, with their values.
pub fn startup_parameters() -> Vec<(&'static str, String)> {
    KNOWN
        .iter()
        .filter(|k| k.reported)
        .map(|k| (k.name, default_of(k)))
        .collect()
}

/// A parameter as `pg_settings` lists it.
pub struct CatalogSetting {
    pub name: &'static str,
    pub default: String,
    pub settable: bool,
}

/// Every parameter wattdb knows, for `pg_settings`.
pub fn catalog_settings() -> Vec<CatalogSetting> {
    KNOWN
        .iter()
        .map(|k| CatalogSetting {
            name: k.name,
            default: default_of(k),
            settable: k.settable,
        })
        .collect()
}

fn default_of(k: &Known) -> String {
    if k.name == "server_version" {
        server_version()
    } else if k.name == "statement_timeout"
        && let Some(ms) = SERVER_STATEMENT_TIMEOUT.get()
    {
        ms.to_string()
    } else {
        k.default.to_string()
    }
}

/// The server's `statement_timeout` (milliseconds, 0: none), the default of every
/// session's.
static SERVER_STATEMENT_TIMEOUT: std::sync::OnceLock<u64> = std::sync::OnceLock::new();

/// Set the server's default `statement_timeout` (once, at startup).
pub fn set_server_statement_timeout(timeout: std::time::Duration) {
    let _ = SERVER_STATEMENT_TIMEOUT.set(timeout.as_millis() as u64);
}

/// A changed parameter the client must be told about (ParameterStatus).
pub type Report = Option<(String, String)>;

#[derive(Debug, Default)]
struct Values {
    /// PostgreSQL parameters changed from their default, by lowercase name.
    params: BTreeMap<String, String>,
    /// `datafusion.*` / `wattdb.*` options, by the name as given.
    engine: BTreeMap<String, String>,
    /// Custom (dotted) parameters.
    custom: BTreeMap<String, String>,
}

/// One connection's parameters.
#[derive(Debug, Default)]
pub struct SessionSettings {
    values: Mutex<Values>,
    /// The user's own defaults (`ALTER ROLE … SET`), which `RESET` returns to.
    role_defaults: BTreeMap<String, String>,
    /// Bumped whenever an engine option changes (the connection's context re-applies
    /// them).
    engine_generation: std::sync::atomic::AtomicU64,
}

fn invalid(name: &str, value: &str, why: impl std::fmt::Display) -> PgWireError {
    user_error(
        sqlstate::INVALID_PARAMETER_VALUE,
        format!("invalid value for parameter \"{name}\": \"{value}\": {why}"),
    )
}

fn unrecognized(name: &str) -> PgWireError {
    user_error(
        sqlstate::UNDEFINED_OBJECT,
        format!("unrecognized configuration parameter \"{name}\""),
    )
}

/// A time zone as `SET TIME ZONE` takes it: a zone name (any case), `UTC`, an offset
/// `+08:00`, or hours as a number (`8`, `-5`); `LOCAL`/`DEFAULT` are UTC. The canonical
/// form is returned.
pub fn normalize_time_zone(value: &str) -> Result<String, PgWireError> {
    let v = value.trim();
    if v.eq_ignore_ascii_case("local") || v.eq_ignore_ascii_case("default") {
        return Ok("UTC".into());
    }
    if v.eq_ignore_ascii_case("utc") || v.eq_ignore_ascii_case("gmt") || v.eq_ignore_ascii_case("z")
    {
        return Ok("UTC".into());
    }
    if let Some(tz) = chrono_tz::TZ_VARIANTS
        .iter()
        .find(|tz| tz.name().eq_ignore_ascii_case(v))
    {
        return Ok(tz.name().to_string());
    }
    if let Ok(hours) = v.parse::<f64>()
        && hours.abs() <= 15.0
    {
        let minutes = (hours * 60.0).round() as i64;
        let sign = if minutes < 0 { '-' } else { '+' };
        return Ok(format!(
            "{sign}{:02}:{:02}",
            minutes.abs() / 60,
            minutes.abs() % 60
        ));
    }
    if (v.starts_with('+') || v.starts_with('-')) && Tz::from_str(v).is_ok() {
        return Ok(v.to_string());
    }
    Err(invalid("TimeZone", value, "time zone not recognized"))
}

/// `statement_timeout` in milliseconds from `5000`, `'5s'`, `'100ms'`, `'1min'`, `'2h'`.
pub fn parse_duration_ms(name: &str, value: &str) -> Result<u64, PgWireError> {
    let v = value.trim();
    let split = v
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(v.len());
    let (number, unit) = v.split_at(split);
    let n: f64 = number
        .parse()
        .map_err(|_| invalid(name, value, "not a duration"))?;
    let factor = match unit.trim() {
        "" | "ms" => 1.0,
        "us" => 0.001,
        "s" => 1000.0,
        "min" => 60_000.0,
        "h" => 3_600_000.0,
        "d" => 86_400_000.0,
        _ => {
            return Err(invalid(
                name,
                value,
                "valid units are us, ms, s, min, h and d",
            ));
        }
    };
    Ok((n * factor).round() as u64)
}

impl SessionSettings {
    /// The connection's settings (created on first use).
    pub fn of<C: ClientInfo + ?Sized>(client: &C) -> Arc<SessionSettings> {
        client
            .session_extensions()
            .get_or_insert_with(|| SessionSettings::starting(client, BTreeMap::new()))
    }

    /// Start `client`'s settings at its user's defaults (`ALTER ROLE … SET`), called
    /// once the connection's startup packet has been read.
    pub fn start_session<C: ClientInfo + ?Sized>(
        client: &C,
        role_defaults: BTreeMap<String, String>,
    ) -> Arc<SessionSettings> {
        client
            .session_extensions()
            .get_or_insert_with(|| SessionSettings::starting(client, role_defaults))
    }

    /// The user's defaults, then the parameters in the startup packet (pgjdbc sends
    /// TimeZone, DateStyle, …) over them, as in PostgreSQL; a bad one is ignored.
    fn starting<C: ClientInfo + ?Sized>(
        client: &C,
        role_defaults: BTreeMap<String, String>,
    ) -> SessionSettings {
        let s = SessionSettings {
            role_defaults,
            ..SessionSettings::default()
        };
        s.apply_role_defaults();
        for (name, value) in client.metadata() {
            if let Some(k) = find(name)
                && k.settable
                && let Err(e) = s.set(k.name, value)
            {
                tracing::debug!(parameter = %name, error = %e, "startup parameter ignored");
            }
        }
        s
    }

    fn apply_role_defaults(&self) {
        for (name, value) in &self.role_defaults {
            if let Err(e) = self.set(name, value) {
                tracing::warn!(parameter = %name, error = %e, "role default ignored");
            }
        }
    }

    /// `name`'s value from the user's defaults, when it has one.
    fn role_default(&self, name: &str) -> Option<&String> {
        self.role_defaults.get(&name.to_ascii_lowercase())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Values> {
        self.values
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// `SET name = value` (the value as text). Returns the ParameterStatus to send.
    pub fn set(&self, name: &str, value: &str) -> Result<Report, PgWireError> {
        if let Some(k) = find(name) {
            if !k.settable {
                return Err(user_error(
                    sqlstate::CANT_CHANGE_RUNTIME_PARAM,
                    format!("parameter \"{}\" cannot be changed", k.name),
                ));
            }
            let value = match k.name {
                "TimeZone" => normalize_time_zone(value)?,
                "statement_timeout"
                | "lock_timeout"
                | "idle_in_transaction_session_timeout"
                | "idle_session_timeout" => {
                    parse_duration_ms(k.name, value)?;
                    value.trim().to_string()
                }
                "client_encoding" => {
                    let v = value.trim();
                    if !(v.eq_ignore_ascii_case("utf8") || v.eq_ignore_ascii_case("utf-8")) {
                        return Err(user_error(
                            sqlstate::FEATURE_NOT_SUPPORTED,
                            format!("client encoding \"{v}\" is not supported: wattdb speaks UTF8"),
                        ));
                    }
                    "UTF8".to_string()
                }
                _ => value.to_string(),
            };
            self.lock()
                .params
                .insert(k.name.to_ascii_lowercase(), value.clone());
            return Ok(k.reported.then(|| (k.name.to_string(), value)));
        }
        if is_engine_option(name) {
            let mut probe = ConfigOptions::new();
            probe
                .extensions
                .insert(crate::provider::WattdbOptions::default());
            probe
                .set(name, value)
                .map_err(|e| invalid(name, value, e.strip_backtrace()))?;
            self.lock()
                .engine
                .insert(name.to_string(), value.to_string());
            self.bump();
            return Ok(None);
        }
        if name.contains('.') {
            self.lock()
                .custom
                .insert(name.to_string(), value.to_string());
            return Ok(None);
        }
        Err(unrecognized(name))
    }

    /// `RESET name`.
    pub fn reset(&self, name: &str) -> Result<Report, PgWireError> {
        if let Some(value) = self.role_default(name) {
            return self.set(name, &value.clone());
        }
        if let Some(k) = find(name) {
            self.lock().params.remove(&k.name.to_ascii_lowercase());
            return Ok(k.reported.then(|| (k.name.to_string(), default_of(k))));
        }
        let mut v = self.lock();
        if v.engine.remove(name).is_some() {
            drop(v);
            self.bump();
            return Ok(None);
        }
        if v.custom.remove(name).is_some() {
            return Ok(None);
        }
        if is_engine_option(name) || name.contains('.') {
            return Ok(None);
        }
        Err(unrecognized(name))
    }

    /// `RESET ALL`: the parameters to report back at their defaults.
    pub fn reset_all(&self) -> Vec<(String, String)> {
        let mut v = self.lock();
        let changed: Vec<String> = v.params.keys().cloned().collect();
        *v = Values::default();
        drop(v);
        self.bump();
        self.apply_role_defaults();
        let v = self.lock();
        changed
            .iter()
            .filter_map(|n| find(n))
            .filter(|k| k.reported)
            .map(|k| {
                let value = v.params.get(&k.name.to_ascii_lowercase()).cloned();
                (k.name.to_string(), value.unwrap_or_else(|| default_of(k)))
            })
            .collect()
    }

    fn bump(&self) {
        self.engine_generation
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }

    /// Changes with every change of an engine option.
    pub fn engine_generation(&self) -> u64 {
        self.engine_generation
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// The value `SHOW name` / `current_setting(name)` answers, `None` when unknown.
    pub fn get(&self, name: &str, base: &ConfigOptions) -> Option<String> {
        let v = self.lock();
        if let Some(k) = find(name) {
            return Some(
                v.params
                    .get(&k.name.to_ascii_lowercase())
                    .cloned()
                    .unwrap_or_else(|| default_of(k)),
            );
        }
        if let Some(value) = v.engine.get(name).or_else(|| v.custom.get(name)) {
            return Some(value.clone());
        }
        if is_engine_option(name) {
            let lower = name.to_ascii_lowercase();
            return base
                .entries()
                .into_iter()
                .find(|e| {
                    // Extension options are listed without their prefix.
                    let key = e.key.to_ascii_lowercase();
                    key == lower || format!("wattdb.{key}") == lower
                })
                .map(|e| e.value.unwrap_or_default());
        }
        None
    }

    /// Every PostgreSQL parameter with its current value (`SHOW ALL`).
    pub fn all(&self) -> Vec<(String, String)> {
        let v = self.lock();
        let mut out: Vec<(String, String)> = KNOWN
            .iter()
            .map(|k| {
                let value = v
                    .params
                    .get(&k.name.to_ascii_lowercase())
                    .cloned()
                    .unwrap_or_else(|| default_of(k));
                (k.name.to_string(), value)
            })
            .collect();
        out.extend(v.engine.iter().map(|(k, v)| (k.clone(), v.clone())));
        out.extend(v.custom.iter().map(|(k, v)| (k.clone(), v.clone())));
        out
    }

    /// The session's time zone (results' timestamps are printed in it).
    pub fn time_zone(&self) -> String {
        self.lock()
            .params
            .get("timezone")
            .cloned()
            .unwrap_or_else(|| "UTC".into())
    }

    /// The statement timeout, if one is set.
    pub fn statement_timeout(&self) -> Option<std::time::Duration> {
        let ms = match self.lock().params.get("statement_timeout") {
            Some(v) => parse_duration_ms("statement_timeout", v).ok()?,
            None => *SERVER_STATEMENT_TIMEOUT.get()?,
        };
        (ms > 0).then(|| std::time::Duration::from_millis(ms))
    }

    /// Apply the session's engine options to a statement's configuration.
    pub fn apply(&self, options: &mut ConfigOptions) {
        for (k, v) in &self.lock().engine {
            if let Err(e) = options.set(k, v) {
                // Validated when set; a failure here would be an engine upgrade.
                tracing::warn!(option = %k, error = %e, "session option no longer applies");
            }
        }
    }

    /// pgwire's output options read these from the connection's metadata.
    pub fn format_metadata(&self) -> Vec<(&'static str, String)> {
        let v = self.lock();
        [
            ("datestyle", "datestyle"),
            ("intervalstyle", "intervalstyle"),
            ("bytea_output", "bytea_output"),
            ("extra_float_digits", "extra_float_digits"),
        ]
        .iter()
        .filter_map(|(param, key)| v.params.get(*param).map(|value| (*key, value.clone())))
        .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_zones_are_checked_and_canonical() {
        assert_eq!(
            normalize_time_zone("asia/shanghai").unwrap(),
            "Asia/Shanghai"
        );
        assert_eq!(normalize_time_zone("utc").unwrap(), "UTC");
        assert_eq!(normalize_time_zone("8").unwrap(), "+08:00");
        assert_eq!(normalize_time_zone("-5.5").unwrap(), "-05:30");
        assert_eq!(normalize_time_zone("+05:30").unwrap(), "+05:30");
        assert!(normalize_time_zone("Mars/Olympus").is_err());
    }

    #[test]
    fn durations_take_postgres_units() {
        assert_eq!(parse_duration_ms("t", "5000").unwrap(), 5000);
        assert_eq!(parse_duration_ms("t", "5s").unwrap(), 5000);
        assert_eq!(parse_duration_ms("t", "1min").unwrap(), 60_000);
        assert!(parse_duration_ms("t", "5 parsecs").is_err());
    }

    #[test]
    fn set_reset_and_show() {
        let s = SessionSettings::default();
        let base = ConfigOptions::new();
        assert_eq!(s.get("timezone", &base).as_deref(), Some("UTC"));
        let report = s.set("TIMEZONE", "europe/berlin").unwrap();
        assert_eq!(report, Some(("TimeZone".into(), "Europe/Berlin".into())));
        assert_eq!(s.time_zone(), "Europe/Berlin");
        assert!(s.set("server_version", "9").is_err());
        assert!(s.set("no_such_thing", "1").is_err());
        assert!(s.set("myapp.user", "42").is_ok());
        assert_eq!(s.get("myapp.user", &base).as_deref(), Some("42"));
        assert!(s.set("wattdb.rollup_rewrite", "maybe").is_err());
        let generation = s.engine_generation();
        s.set("wattdb.rollup_rewrite", "false").unwrap();
        assert_ne!(s.engine_generation(), generation, "contexts must re-apply");
        let mut options = ConfigOptions::new();
        options
            .extensions
            .insert(crate::provider::WattdbOptions::default());
        s.apply(&mut options);
        let rewrite = options
            .extensions
            .get::<crate::provider::WattdbOptions>()
            .map(|o| o.rollup_rewrite);
        assert_eq!(rewrite, Some(false));
        assert_eq!(
            s.reset_all(),
            vec![("TimeZone".to_string(), "UTC".to_string())]
        );
        assert_eq!(s.time_zone(), "UTC");
    }
}
