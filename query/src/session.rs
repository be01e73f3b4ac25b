//! Building the DataFusion session that serves SQL: catalog `wattdb` with schemas `public`
//! (user tables) and `system` (storage views), the object store registered for Parquet
//! scans, wattdb's functions, and the pg_catalog emulation clients need.

use std::sync::Arc;

use datafusion::catalog::{CatalogProvider, MemoryCatalogProvider};
use datafusion::error::Result as DfResult;
use datafusion::prelude::{SessionConfig, SessionContext};
use datafusion_postgres::datafusion_pg_catalog::pg_catalog::context::{
    PgCatalogContextProvider, Role,
};
use datafusion_postgres::datafusion_pg_catalog::pg_catalog::setup_pg_catalog;
use wattdb_storage::Storage;

use crate::pg::auth::DATABASE;
use crate::schema_provider::{SystemTables, UserTables};
use crate::sessions::Sessions;
use crate::users::{self, Users};

/// The users as `pg_roles`/`pg_user` list them (psql `\du`): `wattdb` and the stored
/// users, admins as superusers.
#[derive(Clone)]
struct Roles(Arc<Users>);

impl std::fmt::Debug for Roles {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Roles")
    }
}

#[async_trait::async_trait]
impl PgCatalogContextProvider for Roles {
    async fn roles(&self) -> Vec<String> {
        self.0.list().into_iter().map(|(name, _)| name).collect()
    }

    async fn role(&self, name: &str) -> Option<Role> {
        let admin = self.0.role(name)? == users::Role::Admin;
        Some(Role {
            name: name.to_string(),
            is_superuser: admin,
            can_login: true,
            can_create_db: false,
            can_create_role: admin,
            can_create_user: admin,
            can_replication: false,
            grants: vec![],
            inherited_roles: vec![],
        })
    }
}

/// The session for `storage`'s tables; `users` are what the catalog lists as roles (no
/// SQL sessions are listed in `pg_stat_activity`: see [`build_session_with`]).
pub fn build_session(storage: &Storage, users: Arc<Users>) -> DfResult<Arc<SessionContext>> {
    build_session_with(storage, users, Sessions::new(Default::default()))
}

/// The session for `storage`'s tables; `users` are what the catalog lists as roles and
/// `sessions` what `pg_stat_activity` lists.
pub fn build_session_with(
    storage: &Storage,
    users: Arc<Users>,
    sessions: Arc<Sessions>,
) -> DfResult<Arc<SessionContext>> {
    let mut config = SessionConfig::new()
        .with_default_catalog_and_schema(DATABASE, "public")
        .with_create_default_catalog_and_schema(false)
        .with_information_schema(true);
    // now() and friends return timestamptz in UTC, as the `ts` column does.
    config.options_mut().execution.time_zone = Some("UTC".into());
    // A sort that spills keeps this much back for merging its spill files; DataFusion's
    // 10 MiB default would not leave a small budget room for both partitions' merges.
    let budget = storage.config().query_memory_bytes;
    let config = config.with_option_extension(crate::provider::WattdbOptions {
        rollup_rewrite: storage.config().rollup_rewrite,
    });
    let mut config = config;
    config.options_mut().execution.sort_spill_reservation_bytes =
        (budget / 16).min(10 * 1024 * 1024);
    // Queries share the storage's runtime: its object store registration and memory pool.
    let ctx = SessionContext::new_with_config_rt(config, storage.runtime_env());
    let catalog = MemoryCatalogProvider::new();
    catalog.register_schema("public", Arc::new(UserTables::new(storage.clone())))?;
    catalog.register_schema("system", Arc::new(SystemTables::new(storage.clone())))?;
    ctx.register_catalog(DATABASE, Arc::new(catalog));
    crate::functions::register(&ctx, storage.clone());
    ctx.add_analyzer_rule(Arc::new(crate::provider::DistinctOnLastValues::new(
        storage.clone(),
    )));
    ctx.add_optimizer_rule(Arc::new(crate::provider::RollupRewrite::new(
        storage.clone(),
    )));
    ctx.register_udtf(
        "last_values",
        Arc::new(crate::provider::LastValuesFunction::new(storage.clone())),
    );
    setup_pg_catalog(&ctx, DATABASE, Roles(users.clone())).map_err(|e| *e)?;
    {
        // In place of the emulation's type planner: the same, and `oid[]` marked.
        let state = ctx.state_ref();
        let with_oid_arrays =
            datafusion::execution::session_state::SessionStateBuilder::new_from_existing(
                state.read().clone(),
            )
            .with_type_planner(Arc::new(crate::oid_types::OidTypePlanner))
            .build();
        // And the statement's interrupt checked between the planner's rules (all
        // added by now).
        *state.write() = crate::execution::planning_checks::install(with_oid_arrays);
    }
    // Primary keys as indexes and constraints in the catalog emulation.
    let keys = Arc::new(crate::catalog_keys::KeyDefinitions::default());
    if let Some(catalog) = ctx.catalog(DATABASE)
        && let Some(inner) = catalog.schema("pg_catalog")
    {
        catalog.register_schema(
            "pg_catalog",
            Arc::new(crate::catalog_keys::KeyedPgCatalog::new(
                inner,
                storage.clone(),
                keys.clone(),
                users.clone(),
                sessions,
            )),
        )?;
    }
    for f in crate::catalog_keys::key_def_functions(&keys) {
        ctx.register_udf(f);
    }
    Ok(Arc::new(ctx))
}
