//! `pg_stat_activity`: one row per open session, with PostgreSQL 15's columns. A
//! statement waiting for an execution slot is `active` with `wait_event_type`
//! `Admission` and `wait_event` `StatementQueue`; one that runs has no wait event.
//!
//! As in PostgreSQL, a user who is not an admin sees the query text, client address and
//! port of its own sessions only (others show `<insufficient privilege>`): a statement's
//! text can hold a password or a channel's key.

use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::array::{
    ArrayRef, Int32Array, Int64Array, StringArray, TimestampMicrosecondArray,
};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::catalog::{Session as DfSession, TableProvider};
use datafusion::datasource::{MemTable, TableType};
use datafusion::error::Result as DfResult;
use datafusion::logical_expr::Expr;
use datafusion::physical_plan::ExecutionPlan;

use super::{SessionView, Sessions};
use crate::users::Users;

/// The relation's name in `pg_catalog`.
pub const NAME: &str = "pg_stat_activity";

/// What `pg_stat_activity` shows a reader of other sessions' private columns.
const HIDDEN: &str = "<insufficient privilege>";

/// The user a connection's statements run as, kept in its DataFusion session config
/// (what a catalog relation needs to know about its reader).
#[derive(Debug, Clone)]
pub struct CurrentUser {
    pub name: String,
    pub admin: bool,
}

fn schema() -> SchemaRef {
    let ts = || DataType::Timestamp(TimeUnit::Microsecond, Some(Arc::from("UTC")));
    let text = |name: &str| Field::new(name, DataType::Utf8, true);
    Arc::new(Schema::new(vec![
        Field::new("datid", DataType::Int32, true),
        text("datname"),
        Field::new("pid", DataType::Int32, true),
        Field::new("leader_pid", DataType::Int32, true),
        Field::new("usesysid", DataType::Int32, true),
        text("usename"),
        text("application_name"),
        text("client_addr"),
        text("client_hostname"),
        Field::new("client_port", DataType::Int32, true),
        Field::new("backend_start", ts(), true),
        Field::new("xact_start", ts(), true),
        Field::new("query_start", ts(), true),
        Field::new("state_change", ts(), true),
        text("wait_event_type"),
        text("wait_event"),
        text("state"),
        text("backend_xid"),
        text("backend_xmin"),
        Field::new("query_id", DataType::Int64, true),
        text("query"),
        text("backend_type"),
    ]))
}

/// The relation over `sessions`; `users` give the sessions' user oids.
#[derive(Debug)]
pub struct ActivityTable {
    sessions: Arc<Sessions>,
    users: Arc<Users>,
    schema: SchemaRef,
}

impl ActivityTable {
    pub fn new(sessions: Arc<Sessions>, users: Arc<Users>) -> Self {
        ActivityTable {
            sessions,
            users,
            schema: schema(),
        }
    }

    fn batch(&self, reader: Option<&CurrentUser>) -> DfResult<RecordBatch> {
        let users = self.users.clone();
        activity_batch(
            &self.schema,
            &self.sessions.snapshot(),
            reader,
            &move |name| crate::catalog_roles::role_oid(&users, name),
        )
    }
}

/// The rows of `sessions` as `reader` may see them; `oid` gives a user's oid.
fn activity_batch(
    schema: &SchemaRef,
    rows: &[SessionView],
    reader: Option<&CurrentUser>,
    oid: &dyn Fn(&str) -> Option<i64>,
) -> DfResult<RecordBatch> {
    let sees = |s: &SessionView| reader.is_some_and(|r| r.admin || r.name == s.user);
    let texts = |f: &dyn Fn(&SessionView) -> Option<String>| -> ArrayRef {
        Arc::new(rows.iter().map(f).collect::<StringArray>())
    };
    let ints = |f: &dyn Fn(&SessionView) -> Option<i32>| -> ArrayRef {
        Arc::new(rows.iter().map(f).collect::<Int32Array>())
    };
    let times = |f: &dyn Fn(&SessionView) -> Option<i64>| -> ArrayRef {
        Arc::new(
            rows.iter()
                .map(f)
                .collect::<TimestampMicrosecondArray>()
                .with_timezone("UTC"),
        )
    };
    let none_text = || texts(&|_| None);
    let columns: Vec<ArrayRef> = vec![
        ints(&|_| None),
        texts(&|_| Some(crate::pg::auth::DATABASE.to_string())),
        ints(&|s| Some(s.pid)),
        ints(&|_| None),
        ints(&|s| oid(&s.user).map(|oid| oid as i32)),
        texts(&|s| Some(s.user.clone())),
        texts(&|s| Some(s.application_name.clone())),
        texts(&|s| sees(s).then(|| s.client.ip().to_string())),
        none_text(),
        ints(&|s| sees(s).then(|| i32::from(s.client.port()))),
        times(&|s| Some(s.backend_start_micros)),
        times(&|_| None),
        times(&|s| if sees(s) { s.query_start_micros } else { None }),
        times(&|s| sees(s).then_some(s.state_change_micros)),
        texts(&|s| (s.queued && sees(s)).then(|| "Admission".to_string())),
        texts(&|s| (s.queued && sees(s)).then(|| "StatementQueue".to_string())),
        texts(&|s| sees(s).then(|| s.state.name().to_string())),
        none_text(),
        none_text(),
        Arc::new(Int64Array::from(vec![None::<i64>; rows.len()])),
        texts(&|s| {
            Some(if sees(s) {
                s.query.clone()
            } else {
                HIDDEN.to_string()
            })
        }),
        texts(&|_| Some("client backend".to_string())),
    ];
    Ok(RecordBatch::try_new(schema.clone(), columns)?)
}

#[async_trait]
impl TableProvider for ActivityTable {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn table_type(&self) -> TableType {
        TableType::View
    }

    async fn scan(
        &self,
        state: &dyn DfSession,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        let reader = state.config().get_extension::<CurrentUser>();
        let batch = self.batch(reader.as_deref())?;
        MemTable::try_new(self.schema.clone(), vec![vec![batch]])?
            .scan(state, projection, filters, limit)
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sessions::{Opening, SessionLimits};
    use datafusion::arrow::array::Array;

    #[test]
    fn readers_see_their_own_queries_only() {
        let sessions = Sessions::new(SessionLimits::default());
        let open = |user: &str| {
            sessions
                .open(Opening {
                    user,
                    admin: false,
                    connection_limit: None,
                    application_name: "app",
                    client: "127.0.0.1:4000".parse().unwrap(),
                })
                .unwrap()
        };
        let mine = open("meter");
        let theirs = open("ops");
        let _a = mine.session().begin("SELECT 1");
        let b = theirs
            .session()
            .begin("SELECT create_channel('x', 'webhook', 'key=secret')");
        b.set_queued(true);
        let batch = |reader: &CurrentUser| {
            activity_batch(&schema(), &sessions.snapshot(), Some(reader), &|_| None).unwrap()
        };
        let queries = |b: &RecordBatch| -> Vec<String> {
            let q = b
                .column_by_name("query")
                .unwrap()
                .as_any()
                .downcast_ref::<StringArray>()
                .unwrap();
            (0..q.len()).map(|i| q.value(i).to_string()).collect()
        };
        let reader = CurrentUser {
            name: "meter".into(),
            admin: false,
        };
        let as_reader = batch(&reader);
        assert_eq!(
            queries(&as_reader),
            vec!["SELECT 1".to_string(), HIDDEN.to_string()]
        );
        let wait = as_reader.column_by_name("wait_event").unwrap();
        assert!(wait.is_null(1), "another user's wait is not shown");
        let admin = CurrentUser {
            name: "wattdb".into(),
            admin: true,
        };
        let as_admin = batch(&admin);
        assert!(queries(&as_admin)[1].contains("create_channel"));
        let wait = as_admin
            .column_by_name("wait_event")
            .unwrap()
            .as_any()
            .downcast_ref::<StringArray>()
            .unwrap()
            .clone();
        assert_eq!(wait.value(1), "StatementQueue");
        assert!(wait.is_null(0));
    }
}
