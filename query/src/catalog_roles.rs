//! The role relations of the catalog emulation, built from wattdb's users: `pg_roles`
//! and `pg_user` for everyone (passwords shown as `********`, as PostgreSQL does), and
//! `pg_authid` and `pg_shadow`, which PostgreSQL shows to superusers only — here the
//! statement that names them needs the admin role ([`crate::pg::permissions`]) and even
//! then no password verifier is shown (`rolpassword`/`passwd` are NULL): a verifier is
//! what an offline password attack needs, and nothing wattdb's clients do reads it.
//!
//! The columns are those of the emulation's own tables (its schema is kept, so the
//! catalog queries of psql, pgjdbc and the others keep working); each is filled by name.

use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, new_null_array};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::catalog::TableProvider;
use datafusion::datasource::MemTable;
use datafusion::error::Result as DfResult;
use datafusion::scalar::ScalarValue;

use crate::users::{self, Role, Users};

/// The relations built here.
pub const ROLE_RELATIONS: &[&str] = &["pg_roles", "pg_user", "pg_authid", "pg_shadow"];

/// The relations only admins may read.
pub const PRIVATE_RELATIONS: &[&str] = &["pg_authid", "pg_shadow"];

/// What a password is shown as where everyone may look.
const MASKED: &str = "********";

/// PostgreSQL's oid of the bootstrap superuser; other users follow from 16384.
const BUILT_IN_OID: i64 = 10;
const FIRST_USER_OID: i64 = 16384;

/// The columns of `pg_user` and `pg_shadow` (PostgreSQL 15's), which the emulation
/// has no table for.
pub fn user_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("usename", DataType::Utf8, true),
        Field::new("usesysid", DataType::Int32, true),
        Field::new("usecreatedb", DataType::Boolean, true),
        Field::new("usesuper", DataType::Boolean, true),
        Field::new("userepl", DataType::Boolean, true),
        Field::new("usebypassrls", DataType::Boolean, true),
        Field::new("passwd", DataType::Utf8, true),
        Field::new(
            "valuntil",
            DataType::Timestamp(TimeUnit::Microsecond, Some(Arc::from("UTC"))),
            true,
        ),
        Field::new(
            "useconfig",
            DataType::List(Arc::new(Field::new("item", DataType::Utf8, true))),
            true,
        ),
    ]))
}

/// `relation` (one of [`ROLE_RELATIONS`]) over `users`, with the columns of `schema`.
pub fn role_table(
    relation: &str,
    schema: SchemaRef,
    users: &Users,
) -> DfResult<Arc<dyn TableProvider>> {
    let listed = users.list();
    let rows: Vec<RoleRow> = listed
        .iter()
        .enumerate()
        .map(|(i, (name, role))| RoleRow {
            oid: if name == users::BUILT_IN {
                BUILT_IN_OID
            } else {
                FIRST_USER_OID + i as i64
            },
            name: name.clone(),
            admin: *role == Role::Admin,
            has_password: users.secret(name).is_some(),
            login: users.login(name).unwrap_or_default(),
        })
        .collect();
    let shows_mask = matches!(relation, "pg_roles" | "pg_user");
    let mut columns: Vec<ArrayRef> = Vec::with_capacity(schema.fields().len());
    for field in schema.fields() {
        let values: Vec<ScalarValue> = rows
            .iter()
            .map(|r| r.value(field.name(), shows_mask))
            .collect();
        let column = match values.iter().find(|v| !v.is_null()) {
            None => new_null_array(field.data_type(), rows.len()),
            Some(given) => {
                // NULLs of the given values' type, so that they make one array.
                let null = ScalarValue::try_from(given.data_type())?;
                let values = values
                    .iter()
                    .map(|v| if v.is_null() { null.clone() } else { v.clone() });
                cast(&ScalarValue::iter_to_array(values)?, field.data_type())?
            }
        };
        columns.push(column);
    }
    let batch = RecordBatch::try_new(schema.clone(), columns)?;
    Ok(Arc::new(MemTable::try_new(schema, vec![vec![batch]])?))
}

/// The oid `name` has in the role relations (`None`: no such user).
pub fn role_oid(users: &Users, name: &str) -> Option<i64> {
    if name == users::BUILT_IN {
        return Some(BUILT_IN_OID);
    }
    let i = users.list().iter().position(|(n, _)| n == name)?;
    Some(FIRST_USER_OID + i as i64)
}

struct RoleRow {
    oid: i64,
    name: String,
    admin: bool,
    has_password: bool,
    login: users::Login,
}

impl RoleRow {
    /// The value of `column` (PostgreSQL's names in the four relations); NULL for
    /// columns wattdb has nothing for.
    fn value(&self, column: &str, shows_mask: bool) -> ScalarValue {
        let yes = |b: bool| ScalarValue::Boolean(Some(b));
        match column {
            "oid" | "usesysid" => ScalarValue::Int64(Some(self.oid)),
            "rolname" | "usename" => ScalarValue::Utf8(Some(self.name.clone())),
            "rolsuper" | "usesuper" | "rolcreaterole" => yes(self.admin),
            "rolinherit" => yes(true),
            "rolcanlogin" => yes(self.login.can_login),
            "rolcreatedb" | "usecreatedb" | "rolreplication" | "userepl" | "rolbypassrls"
            | "usebypassrls" => yes(false),
            "rolconnlimit" => {
                ScalarValue::Int64(Some(self.login.connection_limit.map_or(-1, i64::from)))
            }
            "rolvaliduntil" | "valuntil" => match self.login.valid_until_micros {
                Some(micros) => ScalarValue::TimestampMicrosecond(Some(micros), Some("UTC".into())),
                None => ScalarValue::Null,
            },
            "rolconfig" | "useconfig" if !self.login.settings.is_empty() => {
                let items: Vec<ScalarValue> = self
                    .login
                    .settings
                    .iter()
                    .map(|(k, v)| ScalarValue::Utf8(Some(format!("{k}={v}"))))
                    .collect();
                ScalarValue::List(ScalarValue::new_list_nullable(&items, &DataType::Utf8))
            }
            "rolpassword" | "passwd" if shows_mask && self.has_password => {
                ScalarValue::Utf8(Some(MASKED.to_string()))
            }
            _ => ScalarValue::Null,
        }
    }
}
