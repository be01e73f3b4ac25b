//! Configuration: defaults, overridden by a TOML file (`--config`), overridden by
//! command-line flags and `WATTDB_*` environment variables.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::Args;
use serde::Deserialize;

/// Flags of `wattdb serve`. Every flag can also be set by the environment variable named
/// next to it, and (except `--config`) by the key of the same name in the config file
/// (`data_dir`, `pg_listen`, ...).
#[derive(Debug, Args, Default)]
pub struct ServeArgs {
    /// TOML configuration file.
    #[arg(long, env = "WATTDB_CONFIG")]
    pub config: Option<PathBuf>,
    /// Directory for the catalog, the WAL and (by default) the data files. Default ./wattdb-data
    #[arg(long, env = "WATTDB_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// PostgreSQL wire protocol address. Default 127.0.0.1:5433
    #[arg(long, env = "WATTDB_PG_LISTEN")]
    pub pg_listen: Option<String>,
    /// PEM certificate chain for TLS on the SQL endpoint (with --pg-tls-key); clients
    /// then connect with sslmode=require or verify-full. Default: no TLS
    #[arg(long, env = "WATTDB_PG_TLS_CERT")]
    pub pg_tls_cert: Option<PathBuf>,
    /// PEM private key of --pg-tls-cert
    #[arg(long, env = "WATTDB_PG_TLS_KEY")]
    pub pg_tls_key: Option<PathBuf>,
    /// Embedded MQTT endpoint address. Default 127.0.0.1:1883
    #[arg(long, env = "WATTDB_MQTT_LISTEN")]
    pub mqtt_listen: Option<String>,
    /// Devices must log in to the embedded MQTT endpoint as a user with the writer or
    /// admin role (the SQL users; use TLS, the password travels in the CONNECT). Default false
    #[arg(long, env = "WATTDB_MQTT_AUTH")]
    pub mqtt_auth: Option<bool>,
    /// Address of the embedded MQTT endpoint over TLS (mqtts://), beside the plain one.
    /// Needs a certificate: --mqtt-tls-cert/--mqtt-tls-key, else the SQL endpoint's.
    /// Default: none
    #[arg(long, env = "WATTDB_MQTT_TLS_LISTEN")]
    pub mqtt_tls_listen: Option<String>,
    /// PEM certificate chain for --mqtt-tls-listen. Default: --pg-tls-cert
    #[arg(long, env = "WATTDB_MQTT_TLS_CERT")]
    pub mqtt_tls_cert: Option<PathBuf>,
    /// PEM private key of --mqtt-tls-cert. Default: --pg-tls-key
    #[arg(long, env = "WATTDB_MQTT_TLS_KEY")]
    pub mqtt_tls_key: Option<PathBuf>,
    /// External MQTT broker to subscribe to instead of the embedded endpoint (repeatable).
    #[arg(long, env = "WATTDB_MQTT_URL")]
    pub mqtt_url: Vec<String>,
    /// Client id at the external broker; must stay the same across restarts (the broker
    /// keeps the persistent session under it). Default wattdb-<hostname>
    #[arg(long, env = "WATTDB_MQTT_CLIENT_ID")]
    pub mqtt_client_id: Option<String>,
    /// Topic filter to subscribe to at the external broker (repeatable). Default wattdb/#
    /// plus the filter of every route
    #[arg(long, env = "WATTDB_MQTT_TOPIC")]
    pub mqtt_topic: Vec<String>,
    /// Shared subscription group: nodes in one group split the messages ($share/<group>/...)
    #[arg(long, env = "WATTDB_MQTT_SHARE_GROUP")]
    pub mqtt_share_group: Option<String>,
    /// User name at the external broker (or put it in the URL)
    #[arg(long, env = "WATTDB_MQTT_USERNAME")]
    pub mqtt_username: Option<String>,
    /// Password at the external broker
    #[arg(long, env = "WATTDB_MQTT_PASSWORD", hide_env_values = true)]
    pub mqtt_password: Option<String>,
    /// PEM CA certificate for mqtts:// brokers. Default: the system roots
    #[arg(long, env = "WATTDB_MQTT_CA_FILE")]
    pub mqtt_ca_file: Option<PathBuf>,
    /// HTTP address for /health and /metrics. Default 127.0.0.1:8080
    #[arg(long, env = "WATTDB_HTTP_LISTEN")]
    pub http_listen: Option<String>,
    /// Object store: file:///path or s3://bucket/prefix. Default file://<data-dir>/objects
    #[arg(long, env = "WATTDB_OBJECT_STORE")]
    pub object_store: Option<String>,
    /// Archive for expired months (copied there before retention drops them; brought
    /// back by restore_partition): file:///path or s3://bucket/prefix. Default none
    #[arg(long, env = "WATTDB_ARCHIVE_STORE")]
    pub archive_store: Option<String>,
    /// Time zone for day boundaries (rollups), e.g. Asia/Shanghai. Default UTC
    #[arg(long, env = "WATTDB_TIMEZONE")]
    pub timezone: Option<String>,
    /// Password of user `wattdb` (SCRAM-SHA-256). Required on non-loopback addresses.
    #[arg(long, env = "WATTDB_PASSWORD", hide_env_values = true)]
    pub password: Option<String>,
    /// Bytes of not-yet-persisted data held in memory before writers wait. Default 512 MiB
    #[arg(long, env = "WATTDB_BUFFER_BUDGET_BYTES")]
    pub buffer_budget_bytes: Option<usize>,
    /// Persist a partition once its oldest buffered write is this many seconds old. Default 600
    #[arg(long, env = "WATTDB_PERSIST_MAX_AGE_SECS")]
    pub persist_max_age_secs: Option<u64>,
    /// Persist a partition once it buffers this many bytes. Default 64 MiB
    #[arg(long, env = "WATTDB_PERSIST_PARTITION_BYTES")]
    pub persist_partition_bytes: Option<usize>,
    /// Memory all queries share (e.g. 1GiB, 512MiB, or bytes); sorts, aggregations and
    /// joins spill to <data-dir>/spill beyond it, and a query that still does not fit
    /// fails with SQLSTATE 53200. Default 1GiB
    #[arg(long, env = "WATTDB_QUERY_MEMORY")]
    pub query_memory: Option<String>,
    /// Answer queries that group by a time bucket made of rollup buckets from the rollup
    /// tables where they are settled (real-time rollups; same answers). Sessions can
    /// change it with `SET wattdb.rollup_rewrite = false`. Default true
    #[arg(long, env = "WATTDB_ROLLUP_REWRITE")]
    pub rollup_rewrite: Option<bool>,
    /// Longest SQL statement accepted, in bytes (e.g. 64MiB); longer ones get SQLSTATE
    /// 54001. Default 64MiB
    #[arg(long, env = "WATTDB_MAX_STATEMENT_BYTES")]
    pub max_statement_bytes: Option<String>,
    /// Deepest nesting of expressions and subqueries in a statement (`1+1+…` nests one
    /// level per operator); deeper ones get SQLSTATE 54001 before they are planned.
    /// Default 500
    #[arg(long, env = "WATTDB_MAX_EXPRESSION_DEPTH")]
    pub max_expression_depth: Option<usize>,
    /// Most expressions and subqueries in one statement; more get SQLSTATE 54001 before
    /// they are planned. Default 200000
    #[arg(long, env = "WATTDB_MAX_STATEMENT_NODES")]
    pub max_statement_nodes: Option<usize>,
    /// Default `statement_timeout` of every session (e.g. 30s, 500ms, 5min; 0: none): a
    /// statement still planning or running after it is stopped with SQLSTATE 57014.
    /// Sessions change it with `SET statement_timeout`. Default 0
    #[arg(long, env = "WATTDB_STATEMENT_TIMEOUT")]
    pub statement_timeout: Option<String>,
    /// Threads that plan and execute statements, apart from the ones that serve
    /// connections and ingest. More threads than cores, so that a short statement gets a
    /// thread (and the operating system a share of the cores for it) while long ones
    /// run; a statement finding every thread busy waits for one. Default 64
    #[arg(long, env = "WATTDB_QUERY_THREADS")]
    pub query_threads: Option<usize>,
    /// SQL sessions open at once; beyond it a new connection gets SQLSTATE 53300.
    /// Default 100
    #[arg(long, env = "WATTDB_MAX_CONNECTIONS")]
    pub max_connections: Option<usize>,
    /// Of --max-connections, how many only admins may take, so that an admin can always
    /// connect to look. Default 3
    #[arg(long, env = "WATTDB_RESERVED_CONNECTIONS")]
    pub reserved_connections: Option<usize>,
    /// Statements reading data that plan and execute at once; the others wait in
    /// arrival order. Statements that read no table (SELECT 1, SHOW, catalog queries)
    /// do not wait. Default: the number of cores
    #[arg(long, env = "WATTDB_MAX_ACTIVE_STATEMENTS")]
    pub max_active_statements: Option<usize>,
    /// Longest wait for an execution slot (e.g. 30s; 0: no limit but the statement's
    /// own statement_timeout); then SQLSTATE 53000. Default 60s
    #[arg(long, env = "WATTDB_STATEMENT_QUEUE_TIMEOUT")]
    pub statement_queue_timeout: Option<String>,
}

/// The config file: the same settings as the flags.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    pub data_dir: Option<PathBuf>,
    pub pg_listen: Option<String>,
    pub pg_tls_cert: Option<PathBuf>,
    pub pg_tls_key: Option<PathBuf>,
    pub mqtt_listen: Option<String>,
    pub mqtt_tls_listen: Option<String>,
    pub mqtt_auth: Option<bool>,
    pub mqtt_tls_cert: Option<PathBuf>,
    pub mqtt_tls_key: Option<PathBuf>,
    #[serde(default)]
    pub mqtt_url: Vec<String>,
    pub mqtt_client_id: Option<String>,
    #[serde(default)]
    pub mqtt_topic: Vec<String>,
    pub mqtt_share_group: Option<String>,
    pub mqtt_username: Option<String>,
    pub mqtt_password: Option<String>,
    pub mqtt_ca_file: Option<PathBuf>,
    pub http_listen: Option<String>,
    pub object_store: Option<String>,
    pub archive_store: Option<String>,
    pub timezone: Option<String>,
    pub password: Option<String>,
    pub buffer_budget_bytes: Option<usize>,
    pub persist_max_age_secs: Option<u64>,
    pub persist_partition_bytes: Option<usize>,
    pub query_memory: Option<String>,
    pub rollup_rewrite: Option<bool>,
    pub max_statement_bytes: Option<String>,
    pub max_expression_depth: Option<usize>,
    pub max_statement_nodes: Option<usize>,
    pub statement_timeout: Option<String>,
    pub query_threads: Option<usize>,
    pub max_connections: Option<usize>,
    pub reserved_connections: Option<usize>,
    pub max_active_statements: Option<usize>,
    pub statement_queue_timeout: Option<String>,
    /// Topic routes (`[[routes]]`), see the README.
    #[serde(default)]
    pub routes: Vec<wattdb_ingest::route::RouteConfig>,
    /// SQL users (`[[users]]`: name, password, role), see the README.
    #[serde(default)]
    pub users: Vec<wattdb_query::users::ConfiguredUser>,
    /// MQTT payloads over this size go to `rejected`. Default 1 MiB
    pub mqtt_max_payload_bytes: Option<usize>,
    /// Timestamp precision of `wattdb/line` (ns, us, ms, s). Default ns
    pub line_precision: Option<String>,
    /// Rollup settings per table (`[rollups.<table>]`), see the README.
    #[serde(default)]
    pub rollups: BTreeMap<String, RollupTableConfig>,
    /// Retention per table (`[retention]`, `table = "4 months"`), see the README.
    #[serde(default)]
    pub retention: BTreeMap<String, String>,
    /// How often expired months are dropped. Default 3600
    pub retention_check_interval_secs: Option<u64>,
    /// How often month partitions with many files are compacted. Default 600
    pub compaction_interval_secs: Option<u64>,
    /// The background compaction merges this many consecutive files of similar size.
    /// Default 8
    pub compaction_min_files: Option<usize>,
    /// A month that has ended is merged into one file once no file was added to it for
    /// this long. Default 3600
    pub compaction_cold_secs: Option<u64>,
    /// Compacted files are deleted this long after the swap. Default 600
    pub compaction_grace_secs: Option<u64>,
    /// S3: longest a single request may take, in seconds. Default 30
    pub object_store_request_timeout_secs: Option<u64>,
    /// S3: longest all retries of one request may take; after that a persist fails and
    /// the persister tries again later. Default 180
    pub object_store_retry_timeout_secs: Option<u64>,
    /// Notification channels (`[[channels]]`), see the README.
    #[serde(default)]
    pub channels: Vec<ChannelConfig>,
    /// Alarms (`[[alarms]]`), see the README.
    #[serde(default)]
    pub alarms: Vec<AlarmConfig>,
}

/// `[[channels]]`: what `create_channel(name, kind, options)` takes.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChannelConfig {
    pub name: String,
    pub kind: String,
    #[serde(default)]
    pub options: toml::Table,
}

/// `[[alarms]]`: a threshold alarm (`condition`) or a data-gap alarm (`silent_for`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlarmConfig {
    pub name: String,
    pub table: String,
    pub condition: Option<String>,
    pub silent_for: Option<String>,
    #[serde(default)]
    pub options: toml::Table,
}

/// `[rollups.<table>]`: bucket intervals and counter fields of one table's rollups.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RollupTableConfig {
    /// e.g. `["15m", "1d"]` (the default when absent).
    pub intervals: Option<Vec<String>>,
    /// Cumulative counter fields, e.g. `["ep"]`: their rollups get `<field>_delta`.
    #[serde(default)]
    pub counters: Vec<String>,
}

/// A PEM certificate chain and its private key.
#[derive(Debug, Clone, PartialEq)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// Both files or neither; one alone is a mistake worth stopping for.
fn tls_files(
    what: &str,
    cert: Option<PathBuf>,
    key: Option<PathBuf>,
) -> anyhow::Result<Option<TlsFiles>> {
    match (cert, key) {
        (Some(cert), Some(key)) => Ok(Some(TlsFiles { cert, key })),
        (None, None) => Ok(None),
        (Some(_), None) => bail!("--{what}-tls-cert needs --{what}-tls-key"),
        (None, Some(_)) => bail!("--{what}-tls-key needs --{what}-tls-cert"),
    }
}

/// The resolved settings the server runs with.
#[derive(Debug, Clone)]
pub struct Settings {
    pub data_dir: PathBuf,
    pub pg_listen: SocketAddr,
    /// TLS on the SQL endpoint.
    pub pg_tls: Option<TlsFiles>,
    pub mqtt_listen: Option<SocketAddr>,
    /// Devices log in to the embedded endpoint.
    pub mqtt_auth: bool,
    /// The embedded MQTT endpoint over TLS: its address and certificate.
    pub mqtt_tls: Option<(SocketAddr, TlsFiles)>,
    /// External brokers to subscribe to (empty: embedded endpoint).
    pub brokers: Vec<wattdb_ingest::broker_client::BrokerConfig>,
    pub http_listen: SocketAddr,
    pub object_store: Option<String>,
    pub archive_store: Option<String>,
    pub timezone: String,
    pub tz: chrono_tz::Tz,
    pub password: Option<String>,
    pub buffer_budget_bytes: usize,
    pub persist_max_age: Duration,
    pub persist_partition_bytes: usize,
    pub query_memory_bytes: usize,
    pub rollup_rewrite: bool,
    /// What a SQL statement may be before it is planned.
    pub statement_limits: wattdb_query::pg::limits::StatementLimits,
    /// Every session's default `statement_timeout` (zero: none).
    pub statement_timeout: Duration,
    pub query_threads: usize,
    /// How many SQL sessions may be open.
    pub session_limits: wattdb_query::sessions::SessionLimits,
    /// How many statements reading data run at once, and how long others wait.
    pub admission: wattdb_query::execution::AdmissionSettings,
    pub ingest: wattdb_ingest::pipeline::IngestConfig,
    /// Rollup settings from the config file, by table name.
    pub rollups: BTreeMap<String, wattdb_storage::RollupSettings>,
    /// Retention from the config file, by table name (`"none"` included).
    pub retention: BTreeMap<String, String>,
    pub retention_check_interval: Duration,
    pub compaction: wattdb_compaction::compact::CompactionPolicy,
    pub object_store_timeouts: wattdb_storage::ObjectStoreTimeouts,
    /// Users from the config file, stored (created or replaced) at startup.
    pub users: Vec<wattdb_query::users::ConfiguredUser>,
    /// Rules from the config file, stored (created or replaced) at startup.
    pub rules: wattdb_ingest::rules::admin::ConfiguredRules,
}

/// `wattdb-<hostname>`: stable across restarts of one machine, distinct between nodes.
fn default_client_id() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .unwrap_or_default();
    let host: String = host
        .trim()
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_')
        .collect();
    if host.is_empty() {
        "wattdb".into()
    } else {
        format!("wattdb-{host}")
    }
}

/// A byte size: a number with an optional unit (B, KB, MB, GB, KiB, MiB, GiB; case and
/// spaces ignored), e.g. "1GiB", "512 MiB", "2000000".
pub fn parse_size(what: &str, s: &str) -> Result<usize> {
    let t: String = s.chars().filter(|c| !c.is_whitespace()).collect();
    let split = t
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let factor: f64 = match unit.to_ascii_lowercase().as_str() {
        "" | "b" => 1.0,
        "kb" | "k" => 1e3,
        "mb" | "m" => 1e6,
        "gb" | "g" => 1e9,
        "kib" => 1024.0,
        "mib" => 1024.0 * 1024.0,
        "gib" => 1024.0 * 1024.0 * 1024.0,
        _ => bail!("{what}: \"{s}\" has an unknown unit \"{unit}\" (use B, MB, GB, MiB, GiB)"),
    };
    let n: f64 = num
        .parse()
        .with_context(|| format!("{what}: \"{s}\" is not a size like 1GiB or 512MiB"))?;
    let bytes = (n * factor).round();
    if !(1.0..=usize::MAX as f64).contains(&bytes) {
        bail!("{what}: \"{s}\" must be at least one byte");
    }
    Ok(bytes as usize)
}

/// Query threads unless configured: enough for dozens of statements to run at once,
/// each on its own threads, with the cores shared among them by the operating system.
pub const DEFAULT_QUERY_THREADS: usize = 64;

/// `--max-connections` and `--reserved-connections`: at least one slot for anyone.
fn session_limits(
    max: Option<usize>,
    reserved: Option<usize>,
) -> anyhow::Result<wattdb_query::sessions::SessionLimits> {
    use wattdb_query::sessions::{DEFAULT_MAX_CONNECTIONS, DEFAULT_RESERVED_FOR_ADMINS};
    let max_connections = max.unwrap_or(DEFAULT_MAX_CONNECTIONS);
    let reserved_for_admins =
        reserved.unwrap_or(DEFAULT_RESERVED_FOR_ADMINS.min(max_connections.saturating_sub(1)));
    if max_connections == 0 {
        anyhow::bail!("--max-connections must be at least 1");
    }
    if reserved_for_admins >= max_connections {
        anyhow::bail!(
            "--reserved-connections ({reserved_for_admins}) must be less than --max-connections ({max_connections})"
        );
    }
    Ok(wattdb_query::sessions::SessionLimits {
        max_connections,
        reserved_for_admins,
    })
}

/// `--max-active-statements` (0 or unset: the cores) and `--statement-queue-timeout`.
fn admission(
    max_active: Option<usize>,
    queue_timeout: Option<String>,
) -> anyhow::Result<wattdb_query::execution::AdmissionSettings> {
    let defaults = wattdb_query::execution::AdmissionSettings::default();
    let queue_timeout = match queue_timeout {
        Some(s) => {
            let ms = wattdb_query::pg::settings::parse_duration_ms("--statement-queue-timeout", &s)
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            (ms > 0).then(|| Duration::from_millis(ms))
        }
        None => defaults.queue_timeout,
    };
    Ok(wattdb_query::execution::AdmissionSettings {
        max_active: max_active.filter(|n| *n > 0).unwrap_or(defaults.max_active),
        queue_timeout,
    })
}

/// The statement limits from their settings (unset: the defaults).
fn statement_limits(
    bytes: Option<String>,
    depth: Option<usize>,
    nodes: Option<usize>,
) -> Result<wattdb_query::pg::limits::StatementLimits> {
    use wattdb_query::pg::limits::StatementLimits;
    let limits = StatementLimits {
        max_bytes: match bytes {
            Some(s) => parse_size("--max-statement-bytes", &s)?,
            None => StatementLimits::DEFAULT_MAX_BYTES,
        },
        max_depth: depth.unwrap_or(StatementLimits::DEFAULT_MAX_DEPTH),
        max_nodes: nodes.unwrap_or(StatementLimits::DEFAULT_MAX_NODES),
    };
    if limits.max_depth < 10 || limits.max_nodes < 10 {
        bail!(
            "--max-expression-depth and --max-statement-nodes must be at least 10 (got {} and {})",
            limits.max_depth,
            limits.max_nodes
        );
    }
    Ok(limits)
}

fn addr(what: &str, s: &str) -> Result<SocketAddr> {
    s.parse()
        .with_context(|| format!("{what}: \"{s}\" is not an address like 127.0.0.1:5433"))
}

impl Settings {
    pub fn resolve(args: ServeArgs) -> Result<Settings> {
        let file = match &args.config {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .with_context(|| format!("reading config file {}", path.display()))?;
                toml::from_str::<FileConfig>(&text)
                    .with_context(|| format!("parsing config file {}", path.display()))?
            }
            None => FileConfig::default(),
        };
        let mqtt_urls = if args.mqtt_url.is_empty() {
            file.mqtt_url
        } else {
            args.mqtt_url
        };
        let mqtt_listen = if mqtt_urls.is_empty() {
            let s = args
                .mqtt_listen
                .or(file.mqtt_listen)
                .unwrap_or_else(|| "127.0.0.1:1883".into());
            Some(addr("--mqtt-listen", &s)?)
        } else {
            None
        };
        let pg_tls = tls_files(
            "pg",
            args.pg_tls_cert.or(file.pg_tls_cert),
            args.pg_tls_key.or(file.pg_tls_key),
        )?;
        let mqtt_tls = match args.mqtt_tls_listen.or(file.mqtt_tls_listen) {
            None => None,
            Some(_) if !mqtt_urls.is_empty() => bail!(
                "--mqtt-tls-listen is the embedded MQTT endpoint, which does not run when \
                 wattdb subscribes to a broker (--mqtt-url)"
            ),
            Some(a) => {
                let files = tls_files(
                    "mqtt",
                    args.mqtt_tls_cert.or(file.mqtt_tls_cert),
                    args.mqtt_tls_key.or(file.mqtt_tls_key),
                )?
                .or_else(|| pg_tls.clone())
                .ok_or_else(|| {
                    anyhow::anyhow!(
                        "--mqtt-tls-listen needs a certificate: --mqtt-tls-cert and \
                         --mqtt-tls-key (or the SQL endpoint's --pg-tls-cert/--pg-tls-key)"
                    )
                })?;
                Some((addr("--mqtt-tls-listen", &a)?, files))
            }
        };
        let mut ingest = wattdb_ingest::pipeline::IngestConfig::default();
        for (i, r) in file.routes.into_iter().enumerate() {
            let route = wattdb_ingest::route::Route::from_config(r)
                .map_err(|e| anyhow::anyhow!("config: route #{}: {e}", i + 1))?;
            ingest.routes.push(route);
        }
        if let Some(n) = file.mqtt_max_payload_bytes {
            ingest.max_payload_bytes = n;
        }
        if let Some(p) = &file.line_precision {
            ingest.line_precision = wattdb_ingest::decode::line_protocol::Precision::parse(p)
                .ok_or_else(|| {
                    anyhow::anyhow!("config: line_precision \"{p}\" is not one of ns, us, ms, s")
                })?;
        }
        let topics = if !args.mqtt_topic.is_empty() {
            args.mqtt_topic
        } else if !file.mqtt_topic.is_empty() {
            file.mqtt_topic
        } else {
            let mut t = vec!["wattdb/#".to_string()];
            t.extend(ingest.routes.iter().map(|r| r.topic.clone()));
            t
        };
        let client_id = args
            .mqtt_client_id
            .or(file.mqtt_client_id)
            .unwrap_or_else(default_client_id);
        let share_group = args.mqtt_share_group.or(file.mqtt_share_group);
        let username = args.mqtt_username.or(file.mqtt_username);
        let password = args.mqtt_password.or(file.mqtt_password);
        let ca_file = args.mqtt_ca_file.or(file.mqtt_ca_file);
        let brokers = mqtt_urls
            .into_iter()
            .map(|url| {
                let b = wattdb_ingest::broker_client::BrokerConfig {
                    url,
                    client_id: client_id.clone(),
                    topics: topics.clone(),
                    share_group: share_group.clone(),
                    username: username.clone(),
                    password: password.clone(),
                    ca_file: ca_file.clone(),
                    keep_alive: Duration::from_secs(30),
                };
                b.mqtt_options()
                    .map_err(|e| anyhow::anyhow!("--mqtt-url: {e}"))?;
                Ok(b)
            })
            .collect::<Result<Vec<_>>>()?;
        let timezone = args
            .timezone
            .or(file.timezone)
            .unwrap_or_else(|| "UTC".into());
        let tz = wattdb_compaction::rollup::parse_timezone(&timezone)
            .map_err(|e| anyhow::anyhow!("--timezone: {e}"))?;
        let mut rollups = BTreeMap::new();
        for (table, r) in file.rollups {
            let s = wattdb_storage::RollupSettings {
                intervals: r.intervals,
                counters: r.counters,
                rebuilding: false,
            };
            wattdb_compaction::rollup::spec::levels(&table, &s, tz)
                .map_err(|e| anyhow::anyhow!("config: [rollups.{table}]: {e}"))?;
            rollups.insert(table, s);
        }
        for (table, ttl) in &file.retention {
            wattdb_compaction::retention::parse_ttl(ttl)
                .map_err(|e| anyhow::anyhow!("config: [retention] {table}: {e}"))?;
        }
        let json = |t: &toml::Table| serde_json::to_string(t).unwrap_or_else(|_| "{}".into());
        let mut rules = wattdb_ingest::rules::admin::ConfiguredRules::default();
        for c in &file.channels {
            rules
                .channels
                .push((c.name.clone(), c.kind.clone(), json(&c.options)));
        }
        for a in &file.alarms {
            let what = match (&a.condition, &a.silent_for) {
                (Some(c), None) => {
                    wattdb_ingest::rules::admin::ConfiguredAlarm::Threshold(c.clone())
                }
                (None, Some(s)) => wattdb_ingest::rules::admin::ConfiguredAlarm::Gap(s.clone()),
                _ => anyhow::bail!(
                    "config: [[alarms]] {}: give either condition or silent_for",
                    a.name
                ),
            };
            rules
                .alarms
                .push((a.name.clone(), a.table.clone(), what, json(&a.options)));
        }
        let settings = Settings {
            data_dir: args
                .data_dir
                .or(file.data_dir)
                .unwrap_or_else(|| PathBuf::from("wattdb-data")),
            pg_listen: addr(
                "--pg-listen",
                &args
                    .pg_listen
                    .or(file.pg_listen)
                    .unwrap_or_else(|| "127.0.0.1:5433".into()),
            )?,
            pg_tls,
            mqtt_listen,
            mqtt_auth: args.mqtt_auth.or(file.mqtt_auth).unwrap_or(false),
            mqtt_tls,
            brokers,
            http_listen: addr(
                "--http-listen",
                &args
                    .http_listen
                    .or(file.http_listen)
                    .unwrap_or_else(|| "127.0.0.1:8080".into()),
            )?,
            object_store: args.object_store.or(file.object_store),
            archive_store: args.archive_store.or(file.archive_store),
            timezone,
            tz,
            password: args.password.or(file.password).filter(|p| !p.is_empty()),
            buffer_budget_bytes: args
                .buffer_budget_bytes
                .or(file.buffer_budget_bytes)
                .unwrap_or(512 * 1024 * 1024),
            persist_max_age: Duration::from_secs(
                args.persist_max_age_secs
                    .or(file.persist_max_age_secs)
                    .unwrap_or(600),
            ),
            persist_partition_bytes: args
                .persist_partition_bytes
                .or(file.persist_partition_bytes)
                .unwrap_or(64 * 1024 * 1024),
            query_memory_bytes: match args.query_memory.or(file.query_memory) {
                Some(s) => parse_size("--query-memory", &s)?,
                None => wattdb_storage::read::DEFAULT_QUERY_MEMORY,
            },
            rollup_rewrite: args.rollup_rewrite.or(file.rollup_rewrite).unwrap_or(true),
            statement_limits: statement_limits(
                args.max_statement_bytes.or(file.max_statement_bytes),
                args.max_expression_depth.or(file.max_expression_depth),
                args.max_statement_nodes.or(file.max_statement_nodes),
            )?,
            statement_timeout: match args.statement_timeout.or(file.statement_timeout) {
                Some(s) => Duration::from_millis(
                    wattdb_query::pg::settings::parse_duration_ms("--statement-timeout", &s)
                        .map_err(|e| anyhow::anyhow!("{e}"))?,
                ),
                None => Duration::ZERO,
            },
            query_threads: args
                .query_threads
                .or(file.query_threads)
                .unwrap_or(DEFAULT_QUERY_THREADS)
                .max(1),
            session_limits: session_limits(
                args.max_connections.or(file.max_connections),
                args.reserved_connections.or(file.reserved_connections),
            )?,
            admission: admission(
                args.max_active_statements.or(file.max_active_statements),
                args.statement_queue_timeout
                    .or(file.statement_queue_timeout),
            )?,
            ingest,
            rollups,
            retention: file.retention,
            retention_check_interval: Duration::from_secs(
                file.retention_check_interval_secs.unwrap_or(3600).max(1),
            ),
            compaction: wattdb_compaction::compact::CompactionPolicy {
                interval: Duration::from_secs(file.compaction_interval_secs.unwrap_or(600).max(1)),
                min_files: file.compaction_min_files.unwrap_or(8).max(2),
                grace: Duration::from_secs(file.compaction_grace_secs.unwrap_or(600)),
                cold_after: Duration::from_secs(file.compaction_cold_secs.unwrap_or(3600)),
            },
            object_store_timeouts: wattdb_storage::ObjectStoreTimeouts {
                request: file
                    .object_store_request_timeout_secs
                    .map(|s| Duration::from_secs(s.max(1))),
                retry: file
                    .object_store_retry_timeout_secs
                    .map(Duration::from_secs),
            },
            rules,
            users: file.users,
        };
        if settings.password.is_none() && !settings.pg_listen.ip().is_loopback() {
            bail!(
                "refusing to serve SQL on non-loopback address {} without a password: set WATTDB_PASSWORD (or `password` in the config file)",
                settings.pg_listen
            );
        }
        Ok(settings)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_file_and_flag_precedence() {
        let s = Settings::resolve(ServeArgs::default()).unwrap();
        assert_eq!(s.pg_listen.to_string(), "127.0.0.1:5433");
        assert_eq!(s.http_listen.to_string(), "127.0.0.1:8080");
        assert_eq!(s.mqtt_listen.unwrap().to_string(), "127.0.0.1:1883");
        assert_eq!(s.data_dir, PathBuf::from("wattdb-data"));

        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("wattdb.toml");
        std::fs::write(
            &path,
            "pg_listen = \"127.0.0.1:6000\"\ndata_dir = \"/tmp/x\"\n",
        )
        .unwrap();
        let s = Settings::resolve(ServeArgs {
            config: Some(path.clone()),
            data_dir: Some("/tmp/y".into()),
            ..Default::default()
        })
        .unwrap();
        assert_eq!(s.pg_listen.port(), 6000);
        assert_eq!(s.data_dir, PathBuf::from("/tmp/y"), "flag beats file");

        std::fs::write(&path, "bogus_key = 1\n").unwrap();
        let err = Settings::resolve(ServeArgs {
            config: Some(path),
            ..Default::default()
        })
        .unwrap_err();
        assert!(format!("{err:#}").contains("bogus_key"), "{err:#}");
    }

    #[test]
    fn channels_and_alarms_from_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("wattdb.toml");
        let resolve = |text: &str| {
            std::fs::write(&path, text).unwrap();
            Settings::resolve(ServeArgs {
                config: Some(path.clone()),
                ..Default::default()
            })
        };
        let s = resolve(
            "[[channels]]\nname = \"ops\"\nkind = \"wecom\"\noptions = { url = \"http://x/?key=k\" }\n\
             [[alarms]]\nname = \"hot\"\ntable = \"m\"\ncondition = \"v > 1\"\noptions = { channels = [\"ops\"], for = \"30 seconds\" }\n\
             [[alarms]]\nname = \"quiet\"\ntable = \"m\"\nsilent_for = \"15 minutes\"\n",
        )
        .unwrap();
        assert_eq!(s.rules.channels.len(), 1);
        assert_eq!(s.rules.channels[0].2, r#"{"url":"http://x/?key=k"}"#);
        assert_eq!(s.rules.alarms.len(), 2);
        let err = resolve("[[alarms]]\nname = \"x\"\ntable = \"m\"\n").unwrap_err();
        assert!(
            format!("{err:#}").contains("condition or silent_for"),
            "{err:#}"
        );
        let err = resolve("[[alarms]]\nname = \"x\"\ntable = \"m\"\nwhen = \"v\"\n").unwrap_err();
        assert!(format!("{err:#}").contains("when"), "{err:#}");
    }

    #[test]
    fn sizes_parse_with_units() {
        assert_eq!(parse_size("x", "1GiB").unwrap(), 1 << 30);
        assert_eq!(parse_size("x", "512 MiB").unwrap(), 512 << 20);
        assert_eq!(parse_size("x", "2MB").unwrap(), 2_000_000);
        assert_eq!(parse_size("x", "12345").unwrap(), 12345);
        assert_eq!(parse_size("x", "1.5gib").unwrap(), 3 << 29);
        assert!(
            format!(
                "{:#}",
                parse_size("--query-memory", "10 parsecs").unwrap_err()
            )
            .contains("unknown unit")
        );
        assert!(parse_size("x", "GiB").is_err());
        assert!(parse_size("x", "0").is_err());
        let s = Settings::resolve(ServeArgs {
            query_memory: Some("256MiB".into()),
            ..Default::default()
        })
        .unwrap();
        assert_eq!(s.query_memory_bytes, 256 << 20);
        let s = Settings::resolve(ServeArgs::default()).unwrap();
        assert_eq!(s.query_memory_bytes, 1 << 30);
        assert!(s.rollup_rewrite);
        let s = Settings::resolve(ServeArgs {
            rollup_rewrite: Some(false),
            ..Default::default()
        })
        .unwrap();
        assert!(!s.rollup_rewrite);
    }

    /// The shipped example must always load.
    #[test]
    fn example_config_loads() {
        let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("wattdb.example.toml");
        let s = Settings::resolve(ServeArgs {
            config: Some(path),
            ..Default::default()
        })
        .unwrap();
        assert_eq!(s.ingest.routes.len(), 5);
        assert_eq!(s.ingest.routes[1].table, "shelly_3em");
        assert_eq!(s.mqtt_listen.unwrap().port(), 1883);
        assert_eq!(s.rollups["electric"].counters, vec!["ep".to_string()]);
        assert_eq!(s.retention["electric"], "4 months");
        assert_eq!(s.retention_check_interval, Duration::from_secs(3600));
    }

    #[test]
    fn rollup_settings_and_time_zone_are_checked() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("wattdb.toml");
        let resolve = |toml: &str, tz: Option<&str>| {
            std::fs::write(&path, toml).unwrap();
            Settings::resolve(ServeArgs {
                config: Some(path.clone()),
                timezone: tz.map(String::from),
                ..Default::default()
            })
        };
        let s = resolve("timezone = \"Asia/Shanghai\"\n", None).unwrap();
        assert_eq!(s.tz, chrono_tz::Asia::Shanghai);
        let err = resolve("", Some("Mars/Olympus")).unwrap_err();
        assert!(format!("{err:#}").contains("Mars/Olympus"), "{err:#}");
        let err = resolve("[rollups.e]\nintervals = [\"7m\"]\n", None).unwrap_err();
        assert!(format!("{err:#}").contains("[rollups.e]"), "{err:#}");
        let err = resolve("[retention]\ne = \"4 fortnights\"\n", None).unwrap_err();
        assert!(format!("{err:#}").contains("[retention] e"), "{err:#}");
    }

    #[test]
    fn broker_settings() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("wattdb.toml");
        std::fs::write(
            &path,
            "mqtt_url = [\"mqtt://a:1883\", \"mqtt://b:1883\"]\nmqtt_share_group = \"g\"\n\
             [[routes]]\npreset = \"tasmota\"\n",
        )
        .unwrap();
        let s = Settings::resolve(ServeArgs {
            config: Some(path.clone()),
            mqtt_client_id: Some("node-1".into()),
            ..Default::default()
        })
        .unwrap();
        assert!(
            s.mqtt_listen.is_none(),
            "a broker replaces the embedded endpoint"
        );
        assert_eq!(s.brokers.len(), 2);
        assert_eq!(s.brokers[0].client_id, "node-1");
        assert_eq!(
            s.brokers[1].filters(),
            vec!["$share/g/wattdb/#", "$share/g/tele/+/SENSOR"]
        );
        let err = Settings::resolve(ServeArgs {
            mqtt_url: vec!["http://x".into()],
            ..Default::default()
        })
        .unwrap_err();
        assert!(format!("{err:#}").contains("not mqtt://"), "{err:#}");
    }

    /// The settings of the example config with the commented-out keys `keep` accepts
    /// uncommented.
    fn with_example_keys(keep: impl Fn(&str) -> bool) -> Settings {
        let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("wattdb.example.toml");
        let text: String = std::fs::read_to_string(path)
            .unwrap()
            .lines()
            .map(|l| l.strip_prefix("# ").filter(|r| keep(r)).unwrap_or(l))
            .collect::<Vec<_>>()
            .join("\n");
        let dir = tempfile::tempdir().unwrap();
        let uncommented = dir.path().join("wattdb.toml");
        std::fs::write(&uncommented, text).unwrap();
        Settings::resolve(ServeArgs {
            config: Some(uncommented),
            ..Default::default()
        })
        .unwrap()
    }

    /// The commented-out TLS keys of the example are valid once uncommented.
    #[test]
    fn example_tls_keys_load() {
        let s = with_example_keys(|r| r.starts_with("pg_tls") || r.starts_with("mqtt_tls"));
        assert!(s.pg_tls.is_some());
        let (addr, files) = s.mqtt_tls.unwrap();
        assert_eq!(addr.port(), 8883);
        assert_ne!(Some(files), s.pg_tls);
    }

    /// The commented-out broker keys of the example are valid once uncommented.
    #[test]
    fn example_broker_keys_load() {
        let s = with_example_keys(|r| r.starts_with("mqtt_") && !r.starts_with("mqtt_tls"));
        assert_eq!(s.brokers.len(), 1);
        assert_eq!(s.brokers[0].client_id, "wattdb-node1");
        assert_eq!(s.brokers[0].filters()[0], "$share/ingest/wattdb/#");
        assert!(s.mqtt_listen.is_none());
    }

    #[test]
    fn non_loopback_needs_password() {
        let err = Settings::resolve(ServeArgs {
            pg_listen: Some("0.0.0.0:5433".into()),
            ..Default::default()
        })
        .unwrap_err();
        assert!(err.to_string().contains("without a password"));
        assert!(
            Settings::resolve(ServeArgs {
                pg_listen: Some("0.0.0.0:5433".into()),
                password: Some("s3cret".into()),
                ..Default::default()
            })
            .is_ok()
        );
    }

    #[test]
    fn mqtt_tls_uses_its_own_certificate_or_the_sql_endpoints() {
        let files = |c: &str, k: &str| TlsFiles {
            cert: c.into(),
            key: k.into(),
        };
        let s = Settings::resolve(ServeArgs {
            pg_tls_cert: Some("pg.pem".into()),
            pg_tls_key: Some("pg.key".into()),
            mqtt_tls_listen: Some("127.0.0.1:8883".into()),
            ..Default::default()
        })
        .unwrap();
        assert_eq!(s.pg_tls, Some(files("pg.pem", "pg.key")));
        let (addr, mqtt) = s.mqtt_tls.unwrap();
        assert_eq!(addr.port(), 8883);
        assert_eq!(mqtt, files("pg.pem", "pg.key"));

        let s = Settings::resolve(ServeArgs {
            pg_tls_cert: Some("pg.pem".into()),
            pg_tls_key: Some("pg.key".into()),
            mqtt_tls_listen: Some("127.0.0.1:8883".into()),
            mqtt_tls_cert: Some("m.pem".into()),
            mqtt_tls_key: Some("m.key".into()),
            ..Default::default()
        })
        .unwrap();
        assert_eq!(s.mqtt_tls.unwrap().1, files("m.pem", "m.key"));

        let e = Settings::resolve(ServeArgs {
            mqtt_tls_listen: Some("127.0.0.1:8883".into()),
            mqtt_url: vec!["mqtt://broker".into()],
            ..Default::default()
        })
        .unwrap_err();
        assert!(e.to_string().contains("does not run"), "{e}");
    }
}
