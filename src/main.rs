//! The `wattdb` binary: command line, configuration, and wiring of storage, the SQL
//! endpoint and the HTTP endpoints. All behaviour lives in the library crates.

mod compaction_admin;
mod config;
mod device_auth;
mod http;
mod tls;
mod wal_admin;

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use tracing_subscriber::EnvFilter;
use wattdb_compaction::retention::retention_setting;
use wattdb_storage::{ObjectStoreLocation, Storage, StorageConfig};

use config::{ServeArgs, Settings};

/// mimalloc instead of glibc malloc: the ingest path allocates per message (JSON values,
/// rows, WAL records) from many threads, and glibc's arena locks and consolidation were
/// about a fifth of the server's CPU under MQTT load (see BENCHMARKS.md). Built with
/// `no_thp`: with transparent huge pages mimalloc's freed-and-reused memory was re-faulted
/// 2 MiB at a time, and zeroing those pages cost ~10% of the CPU (and ~120 MiB of RSS).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Debug, Parser)]
#[command(
    name = "wattdb",
    version,
    about = "Time-series database for power-IoT data"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the server.
    Serve(Box<ServeArgs>),
    /// Rebuild the local catalog of DATA_DIR from the manifest in the object store.
    Recover {
        /// Object store holding the data: file:///path or s3://bucket/prefix.
        #[arg(long, env = "WATTDB_OBJECT_STORE")]
        object_store: String,
        /// Data directory to create the catalog in (must not have one yet).
        #[arg(long, env = "WATTDB_DATA_DIR")]
        data_dir: PathBuf,
    },
    /// Look at or rescue the write-ahead log of a stopped server.
    Wal {
        #[command(subcommand)]
        command: WalCommand,
    },
}

#[derive(Debug, Subcommand)]
enum WalCommand {
    /// List each WAL segment: intact records, damage and where it is. Changes nothing;
    /// exits with 1 if the server would not start on the WAL.
    Inspect {
        #[arg(long, env = "WATTDB_DATA_DIR")]
        data_dir: PathBuf,
    },
    /// Copy every intact record of the WAL — those after damage too — into new segments
    /// in a new folder, to replace the damaged WAL with.
    Salvage {
        #[arg(long, env = "WATTDB_DATA_DIR")]
        data_dir: PathBuf,
        /// A folder that does not exist yet (or is empty).
        #[arg(long)]
        to: PathBuf,
    },
}

/// Query planning recurses deeply on some catalog queries real clients send; give every
/// runtime thread a large stack so no statement can overflow one and abort the process.
const THREAD_STACK_BYTES: usize = 64 * 1024 * 1024;

fn main() -> Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_env("WATTDB_LOG").unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_target(false)
        // Colour escapes only for a terminal: a log file or a journal gets plain text.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stdout()))
        .init();
    // Test builds only (feature wattdb-storage/failpoints): failpoints from FAILPOINTS.
    wattdb_storage::failpoints::configure_from_env();
    let cli = Cli::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("wattdb")
        .thread_stack_size(THREAD_STACK_BYTES)
        .build()
        .context("starting the async runtime")?;
    match cli.command {
        Command::Wal { command } => match command {
            WalCommand::Inspect { data_dir } => {
                if !wal_admin::inspect(&data_dir)? {
                    std::process::exit(1);
                }
                Ok(())
            }
            WalCommand::Salvage { data_dir, to } => wal_admin::salvage(&data_dir, &to),
        },
        Command::Serve(args) => {
            let settings = Settings::resolve(*args)?;
            runtime.block_on(serve(settings))
        }
        Command::Recover {
            object_store,
            data_dir,
        } => runtime.block_on(async {
            let location = ObjectStoreLocation::parse(&object_store)?;
            let m = wattdb_storage::recover_catalog(&data_dir, &location).await?;
            println!(
                "recovered catalog into {}: {} table(s), {} file(s)",
                data_dir.display(),
                m.tables.len(),
                m.files.len()
            );
            Ok(())
        }),
    }
}

async fn serve(settings: Settings) -> Result<()> {
    let mut storage_config = StorageConfig::new(&settings.data_dir);
    if let Some(url) = &settings.object_store {
        storage_config.object_store = ObjectStoreLocation::parse(url)?;
    }
    if let Some(url) = &settings.archive_store {
        storage_config.archive =
            Some(ObjectStoreLocation::parse(url).context("--archive-store / archive_store")?);
    }
    storage_config.object_store_timeouts = settings.object_store_timeouts;
    storage_config.buffer_budget_bytes = settings.buffer_budget_bytes;
    storage_config.query_memory_bytes = settings.query_memory_bytes;
    storage_config.rollup_rewrite = settings.rollup_rewrite;
    storage_config.persist_max_age = settings.persist_max_age;
    storage_config.persist_partition_bytes = settings.persist_partition_bytes;
    storage_config.rollup_settings = settings.rollups.clone();
    // alarm_events and appliance_events hold events, not measurements: no rollup tables
    // unless configured.
    for table in [
        wattdb_ingest::rules::EVENTS_TABLE,
        wattdb_ingest::rules::appliance_rule::APPLIANCE_EVENTS_TABLE,
    ] {
        storage_config
            .rollup_settings
            .entry(table.to_string())
            .or_insert_with(|| wattdb_storage::RollupSettings {
                intervals: Some(Vec::new()),
                ..Default::default()
            });
    }
    let now = chrono::Utc::now();
    storage_config.retention_settings = settings
        .retention
        .iter()
        .filter_map(|(table, ttl)| Some((table.clone(), retention_setting(ttl, now).ok()?.0?)))
        .collect();
    // Alarm states from the last run, before WAL replay evaluates the newer records.
    let alarms = wattdb_ingest::rules::AlarmRuntime::open(&settings.data_dir)
        .context("opening the alarm state")?;
    let alarms2 = alarms.clone();
    let (storage, rollups) =
        wattdb_compaction::rollup::open_storage_with(storage_config, settings.tz, move |catalog| {
            alarms2.attach(catalog);
            wattdb_storage::StorageHooks {
                observers: vec![alarms2.clone()],
                release_guards: vec![alarms2],
                ..Default::default()
            }
        })
        .await
        .with_context(|| format!("opening storage in {}", settings.data_dir.display()))?;
    apply_configured_rollups(&storage, &rollups, &settings).await?;
    wattdb_ingest::rules::admin::apply_config(&storage, &alarms, &settings.rules)
        .await
        .context("applying [[channels]] / [[alarms]] from the config file")?;
    apply_configured_retention(&storage, &settings).await?;

    let users = wattdb_query::users::Users::load(storage.clone(), settings.password.as_deref());
    if !settings.statement_timeout.is_zero() {
        wattdb_query::pg::settings::set_server_statement_timeout(settings.statement_timeout);
    }
    let executor = wattdb_query::execution::QueryExecutor::with_admission(
        settings.query_threads,
        settings.admission,
    )
    .context("starting the query threads")?;
    let sessions = wattdb_query::sessions::Sessions::new(settings.session_limits);
    let ctx = wattdb_query::build_session_with(&storage, users.clone(), sessions.clone())
        .context("building the SQL session")?;
    let sql_metrics = http::SqlMetrics {
        sessions: sessions.clone(),
        admission: executor.admission().clone(),
    };
    let handlers = Arc::new(wattdb_query::pg::PgHandlers::new(
        ctx,
        storage.clone(),
        users.clone(),
        sessions,
        settings.password.is_some(),
        Some(Arc::new(compaction_admin::CompactionAdmin {
            storage: storage.clone(),
            rollups: rollups.clone(),
            compaction: settings.compaction,
            alarms: alarms.clone(),
        })),
        settings.statement_limits,
        executor,
    ));
    users
        .configure(&settings.users)
        .await
        .map_err(|e| anyhow::anyhow!("config: users: {}", e.message))?;
    let pg_tls = match &settings.pg_tls {
        Some(files) => Some(tls::acceptor(files, &[b"postgresql"])?),
        None => None,
    };
    let pg_listener = tokio::net::TcpListener::bind(settings.pg_listen)
        .await
        .with_context(|| format!("binding the SQL endpoint to {}", settings.pg_listen))?;
    let http_listener = tokio::net::TcpListener::bind(settings.http_listen)
        .await
        .with_context(|| format!("binding the HTTP endpoint to {}", settings.http_listen))?;
    let (shutdown_tx, shutdown_rx) = tokio::sync::watch::channel(false);
    let rollup_task = rollups.spawn(ROLLUP_DELAY, shutdown_rx.clone());
    wattdb_ingest::rules::views::register(&storage, &alarms);
    let alarm_writer = alarms.spawn_writer(storage.clone(), shutdown_rx.clone());
    let delivery = wattdb_ingest::rules::delivery::Delivery::new(alarms.clone(), storage.clone())
        .map_err(|e| anyhow::anyhow!(e))?
        .spawn(shutdown_rx.clone());
    let compactor = wattdb_compaction::compact::spawn_compactor(
        storage.clone(),
        settings.compaction,
        shutdown_rx.clone(),
    );
    let janitor = wattdb_compaction::retention::spawn_janitor(
        storage.clone(),
        settings.retention_check_interval,
        shutdown_rx.clone(),
    );
    let ingestor = Arc::new(
        wattdb_ingest::pipeline::Ingestor::new(storage.clone(), settings.ingest.clone())
            .await
            .context("preparing MQTT ingest")?,
    );
    let device_auth: Option<Arc<dyn wattdb_ingest::mqtt_endpoint::DeviceAuth>> = settings
        .mqtt_auth
        .then(|| Arc::new(device_auth::UsersLogin(users.clone())) as _);
    let mut mqtt = Vec::new();
    for broker in &settings.brokers {
        tracing::info!(
            broker = %wattdb_ingest::broker_client::redact(&broker.url),
            client_id = %broker.client_id,
            topics = ?broker.filters(),
            "subscribing to external MQTT broker"
        );
        let task = wattdb_ingest::broker_client::run(
            broker.clone(),
            ingestor.clone(),
            shutdown_rx.clone(),
        );
        mqtt.push(tokio::spawn(async move {
            if let Err(e) = task.await {
                tracing::error!(error = %e, "MQTT broker client stopped");
            }
        }));
    }
    if let Some(addr) = settings.mqtt_listen {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("binding the MQTT endpoint to {addr}"))?;
        tracing::info!(mqtt = %addr, routes = settings.ingest.routes.len(), "embedded MQTT endpoint listening");
        mqtt.push(tokio::spawn(wattdb_ingest::mqtt_endpoint::serve(
            listener,
            ingestor.clone(),
            device_auth.clone(),
            shutdown_rx.clone(),
        )));
    }
    if let Some((addr, files)) = &settings.mqtt_tls {
        let tls = tls::acceptor(files, &[])?;
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("binding the MQTT TLS endpoint to {addr}"))?;
        tracing::info!(mqtts = %addr, cert = %files.cert.display(), "embedded MQTT endpoint listening with TLS");
        mqtt.push(tokio::spawn(wattdb_ingest::mqtt_endpoint::serve_tls(
            listener,
            ingestor.clone(),
            tls,
            device_auth.clone(),
            shutdown_rx.clone(),
        )));
    }
    let pg = tokio::spawn(wattdb_query::pg::serve(
        pg_listener,
        handlers,
        pg_tls,
        shutdown_rx.clone(),
    ));
    let http = tokio::spawn(http::serve(
        http_listener,
        storage.clone(),
        ingestor.metrics().clone(),
        rollups.clone(),
        sql_metrics,
        shutdown_rx,
    ));
    tracing::info!(
        pg = %settings.pg_listen,
        http = %settings.http_listen,
        data_dir = %settings.data_dir.display(),
        timezone = %settings.timezone,
        auth = if settings.password.is_some() { "scram-sha-256" } else { "trust (loopback)" },
        tls = settings.pg_tls.is_some(),
        "wattdb is serving"
    );

    wait_for_signal().await;
    tracing::info!("shutting down: persisting buffered data and closing the WAL");
    let _ = shutdown_tx.send(true);
    let _ = pg.await;
    let _ = http.await;
    for m in mqtt {
        let _ = m.await;
    }
    // Marks not worked off are made durable by the shutdown flush (WAL release).
    let _ = rollup_task.await;
    let _ = alarm_writer.await;
    let _ = delivery.await;
    let _ = janitor.await;
    let _ = compactor.await;
    storage.shutdown().await.context("flushing on shutdown")?;
    tracing::info!("shutdown complete");
    Ok(())
}

/// How long the rollup worker lets marks gather after a write before recomputing.
const ROLLUP_DELAY: std::time::Duration = std::time::Duration::from_millis(200);

/// `[rollups.<table>]` of the config file applies to existing tables too: where the
/// stored settings differ, store the configured ones and rebuild that table's rollups
/// in the background (the log reports progress).
async fn apply_configured_rollups(
    storage: &Storage,
    rollups: &Arc<wattdb_compaction::rollup::RollupMaintainer>,
    settings: &Settings,
) -> Result<()> {
    let mut changes: Vec<(String, wattdb_storage::RollupSettings)> = Vec::new();
    for (table, wanted) in &settings.rollups {
        let Some(def) = storage.table(table) else {
            continue; // applied when the table is created
        };
        if def.rollups == *wanted {
            continue;
        }
        wattdb_compaction::rollup::check_settings(&def, wanted, settings.tz)
            .map_err(|e| anyhow::anyhow!("config: [rollups.{table}]: {e}"))?;
        tracing::info!(table = %table, "rollup settings changed by the config file; rebuilding");
        changes.push((table.clone(), wanted.clone()));
    }
    // A rebuild the last run did not finish is resumed.
    for def in storage.tables() {
        if def.rollups.rebuilding && !changes.iter().any(|(t, _)| *t == def.name) {
            tracing::info!(table = %def.name, "resuming an unfinished rollup rebuild");
            let mut resumed = def.rollups.clone();
            resumed.rebuilding = false;
            changes.push((def.name.clone(), resumed));
        }
    }
    for (table, wanted) in changes {
        // Stored now (flagged as rebuilding), recomputed in the background.
        let mut flagged = wanted.clone();
        flagged.rebuilding = true;
        storage
            .set_rollup_settings(&table, flagged)
            .await
            .with_context(|| format!("applying [rollups.{table}]"))?;
        let rollups = rollups.clone();
        tokio::spawn(async move {
            if let Err(e) = rollups.apply_settings(&table, wanted).await {
                tracing::error!(table = %table, error = %e, "rebuilding rollups failed");
            }
        });
    }
    Ok(())
}

/// `[retention]` of the config file applies to existing tables too (the config wins over
/// a value set by SQL). Expired months are dropped by the janitor's next run.
async fn apply_configured_retention(storage: &Storage, settings: &Settings) -> Result<()> {
    for (table, ttl) in &settings.retention {
        let Some(def) = storage.table(table) else {
            continue; // applied when the table is created
        };
        let (wanted, keeps_from) = retention_setting(ttl, chrono::Utc::now())
            .map_err(anyhow::Error::msg)
            .with_context(|| format!("[retention] {table}"))?;
        if def.retention != wanted {
            storage
                .set_retention(table, wanted, keeps_from)
                .await
                .with_context(|| format!("applying [retention] {table}"))?;
        }
    }
    Ok(())
}

async fn wait_for_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(error = %e, "cannot listen for SIGTERM; use Ctrl-C");
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}
