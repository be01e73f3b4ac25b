//! Users and roles over the wire, with passwords required (SCRAM-SHA-256): a user made by
//! `CREATE USER` reads and nothing more until granted `writer` (INSERT, COPY FROM) or
//! `admin` (DDL, admin functions, users); grants and revokes apply to open sessions at
//! once; passwords change and wrong ones are refused; users survive a restart; the
//! config file's `[[users]]` log in with their role; `42501` names what was refused.
//! With `--mqtt-auth`, devices log in to the embedded MQTT endpoint as users that may
//! write, and refused ones store nothing.

mod common;

use common::{Server, connect_as, db_message, sqlstate};
use futures::SinkExt;
use tokio_postgres::Client;

const ADMIN_PW: &str = "admin-pw";

/// `sql` fails with `42501`.
async fn denied(c: &Client, sql: &str) {
    let e = c.batch_execute(sql).await.expect_err(sql);
    assert_eq!(sqlstate(&e), "42501", "{sql}: {e:?}");
    assert!(
        db_message(&e).contains("permission denied"),
        "{}",
        db_message(&e)
    );
}

async fn count(c: &Client) -> i64 {
    c.query_one("SELECT count(*) FROM t", &[])
        .await
        .unwrap()
        .get(0)
}

async fn copy_row(c: &Client, line: &str) -> Result<u64, tokio_postgres::Error> {
    let sink = c.copy_in("COPY t (ts, pid, p) FROM STDIN").await?;
    let mut sink = std::pin::pin!(sink);
    sink.send(bytes::Bytes::from(format!("{line}\n"))).await?;
    sink.finish().await
}

fn server_with_password() -> Server {
    let mut server = Server::new();
    server.password = Some(ADMIN_PW.into());
    server.start()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_user_reads_until_granted_more() {
    let server = server_with_password();
    let admin = server.client().await;
    admin
        .batch_execute(
            "CREATE TABLE t (ts TIMESTAMPTZ NOT NULL, pid TEXT NOT NULL, p DOUBLE PRECISION, \
             PRIMARY KEY (pid, ts)); \
             INSERT INTO t VALUES ('2026-03-01T00:00:00Z', 'm1', 1.5); \
             CREATE USER alice PASSWORD 'alice-pw'",
        )
        .await
        .unwrap();

    // A reader: queries, nothing else.
    let alice = connect_as(&server, "alice", "alice-pw").await.unwrap();
    assert_eq!(count(&alice).await, 1);
    denied(
        &alice,
        "INSERT INTO t VALUES ('2026-03-01T00:01:00Z', 'm1', 2.5)",
    )
    .await;
    let e = alice
        .execute(
            "INSERT INTO t (ts, pid, p) VALUES ($1, $2, $3)",
            &[&std::time::SystemTime::now(), &"m2", &1.0f64],
        )
        .await
        .unwrap_err();
    assert_eq!(sqlstate(&e), "42501", "{e:?}");
    let e = copy_row(&alice, "2026-03-01 00:02:00+00\tm1\t3")
        .await
        .unwrap_err();
    assert_eq!(sqlstate(&e), "42501", "{e:?}");
    denied(&alice, "CREATE TABLE x (ts TIMESTAMPTZ NOT NULL)").await;
    denied(&alice, "DROP TABLE t").await;
    denied(&alice, "SELECT flush()").await;
    denied(&alice, "CREATE USER mallory PASSWORD 'm'").await;
    denied(&alice, "GRANT admin TO alice").await;
    let e = alice
        .batch_execute("INSERT INTO t VALUES ('2026-03-01T00:01:00Z', 'm1', 2.5)")
        .await
        .unwrap_err();
    let m = db_message(&e);
    assert!(
        m.contains("writer") && m.contains("alice") && m.contains("reader"),
        "{m}"
    );
    assert_eq!(count(&alice).await, 1, "nothing refused was written");

    // Granted writer: the open session may write at once, still no DDL.
    admin.batch_execute("GRANT writer TO alice").await.unwrap();
    alice
        .batch_execute("INSERT INTO t VALUES ('2026-03-01T00:01:00Z', 'm1', 2.5)")
        .await
        .unwrap();
    assert_eq!(
        copy_row(&alice, "2026-03-01 00:02:00+00\tm1\t3")
            .await
            .unwrap(),
        1
    );
    assert_eq!(count(&alice).await, 3);
    denied(&alice, "CREATE TABLE x (ts TIMESTAMPTZ NOT NULL)").await;

    // Admin: DDL and admin functions; revoking it leaves writer.
    admin.batch_execute("GRANT admin TO alice").await.unwrap();
    alice
        .batch_execute("CREATE TABLE x (ts TIMESTAMPTZ NOT NULL); SELECT flush()")
        .await
        .unwrap();
    admin
        .batch_execute("REVOKE admin FROM alice")
        .await
        .unwrap();
    denied(&alice, "DROP TABLE x").await;
    alice
        .batch_execute("INSERT INTO t VALUES ('2026-03-01T00:03:00Z', 'm1', 4)")
        .await
        .unwrap();
    admin
        .batch_execute("REVOKE writer FROM alice")
        .await
        .unwrap();
    denied(
        &alice,
        "INSERT INTO t VALUES ('2026-03-01T00:04:00Z', 'm1', 5)",
    )
    .await;
    assert_eq!(count(&alice).await, 4);

    // psql's \du lists the users.
    let out = std::process::Command::new("psql")
        .args(["-X", "-h", "127.0.0.1", "-p", &server.pg_port.to_string()])
        .args(["-U", "wattdb", "wattdb", "-c", "\\du"])
        .env("PGPASSWORD", ADMIN_PW)
        .output()
        .unwrap();
    let du = String::from_utf8_lossy(&out.stdout);
    assert!(du.contains("alice") && du.contains("wattdb"), "{du}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn passwords_change_users_drop_and_survive_a_restart() {
    let mut server = server_with_password();
    let admin = server.client().await;
    admin
        .batch_execute(
            "CREATE TABLE t (ts TIMESTAMPTZ NOT NULL, pid TEXT NOT NULL, p DOUBLE PRECISION, \
             PRIMARY KEY (pid, ts)); \
             CREATE USER bob WITH PASSWORD 'first'; GRANT writer TO bob; \
             CREATE USER carol PASSWORD 'c'",
        )
        .await
        .unwrap();
    assert!(connect_as(&server, "bob", "first").await.is_ok());
    let e = connect_as(&server, "bob", "wrong").await.err().unwrap();
    assert_eq!(sqlstate(&e), "28P01", "{e:?}");
    let e = connect_as(&server, "nobody", "x").await.err().unwrap();
    assert_eq!(sqlstate(&e), "28000", "{e:?}");

    admin
        .batch_execute("ALTER USER bob PASSWORD 'second'")
        .await
        .unwrap();
    let e = connect_as(&server, "bob", "first").await.err().unwrap();
    assert_eq!(sqlstate(&e), "28P01", "{e:?}");
    let bob = connect_as(&server, "bob", "second").await.unwrap();
    bob.batch_execute("INSERT INTO t VALUES ('2026-03-01T00:00:00Z', 'b', 1)")
        .await
        .unwrap();

    // The built-in admin and duplicates.
    let e = admin.batch_execute("CREATE USER bob").await.unwrap_err();
    assert_eq!(sqlstate(&e), "42710", "{e:?}");
    let e = admin.batch_execute("CREATE USER wattdb").await.unwrap_err();
    assert_eq!(sqlstate(&e), "42710", "{e:?}");
    let e = admin
        .batch_execute("ALTER USER wattdb PASSWORD 'x'")
        .await
        .unwrap_err();
    assert_eq!(sqlstate(&e), "42501", "{e:?}");
    let e = admin.batch_execute("DROP USER nobody").await.unwrap_err();
    assert_eq!(sqlstate(&e), "42704", "{e:?}");
    admin
        .batch_execute("DROP USER IF EXISTS nobody")
        .await
        .unwrap();

    // Dropped: no new sessions; an open one may no longer write.
    admin.batch_execute("DROP USER carol").await.unwrap();
    let e = connect_as(&server, "carol", "c").await.err().unwrap();
    assert_eq!(sqlstate(&e), "28000", "{e:?}");

    // Restart: bob, his password and his role are still there.
    drop(bob);
    server.stop();
    server.spawn();
    let bob = connect_as(&server, "bob", "second").await.unwrap();
    bob.batch_execute("INSERT INTO t VALUES ('2026-03-01T00:01:00Z', 'b', 2)")
        .await
        .unwrap();
    denied(&bob, "DROP TABLE t").await;
    let e = connect_as(&server, "carol", "c").await.err().unwrap();
    assert_eq!(sqlstate(&e), "28000", "{e:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn users_from_the_config_file_log_in_with_their_role() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("wattdb.toml");
    std::fs::write(
        &config,
        "[[users]]\nname = \"grafana\"\npassword = \"dash\"\nrole = \"reader\"\n\n\
         [[users]]\nname = \"loader\"\npassword = \"load\"\nrole = \"writer\"\n",
    )
    .unwrap();
    let mut server = Server::new();
    server.password = Some(ADMIN_PW.into());
    server.extra_args = vec!["--config".into(), config.display().to_string()];
    let server = server.start();
    server
        .client()
        .await
        .batch_execute(
            "CREATE TABLE t (ts TIMESTAMPTZ NOT NULL, pid TEXT NOT NULL, p DOUBLE PRECISION, \
             PRIMARY KEY (pid, ts))",
        )
        .await
        .unwrap();
    let loader = connect_as(&server, "loader", "load").await.unwrap();
    loader
        .batch_execute("INSERT INTO t VALUES ('2026-03-01T00:00:00Z', 'a', 7)")
        .await
        .unwrap();
    let grafana = connect_as(&server, "grafana", "dash").await.unwrap();
    assert_eq!(count(&grafana).await, 1);
    denied(
        &grafana,
        "INSERT INTO t VALUES ('2026-03-01T00:01:00Z', 'a', 8)",
    )
    .await;
    assert!(connect_as(&server, "grafana", "wrong").await.is_err());
}

/// Connect to the embedded MQTT endpoint as `login` and publish one reading at QoS 1:
/// `Ok` once acknowledged, else the refusal.
async fn publish_as(port: u16, login: Option<(&str, &str)>, value: f64) -> Result<(), String> {
    use rumqttc::{AsyncClient, ConnectionError, Event, MqttOptions, Packet, QoS};
    let mut opts = MqttOptions::new(format!("dev-{value}"), "127.0.0.1", port);
    if let Some((user, password)) = login {
        opts.set_credentials(user, password);
    }
    let (client, mut events) = AsyncClient::new(opts, 10);
    let payload = format!(
        r#"{{"ts": {}, "tags": {{"dev": "d1"}}, "fields": {{"v": {value}}}}}"#,
        1_772_323_200_000i64 + (value * 1000.0) as i64
    );
    client
        .publish("wattdb/device_readings", QoS::AtLeastOnce, false, payload)
        .await
        .map_err(|e| e.to_string())?;
    loop {
        match tokio::time::timeout(std::time::Duration::from_secs(10), events.poll()).await {
            Ok(Ok(Event::Incoming(Packet::PubAck(_)))) => return Ok(()),
            Ok(Ok(_)) => {}
            Ok(Err(ConnectionError::ConnectionRefused(code))) => return Err(format!("{code:?}")),
            Ok(Err(e)) => return Err(e.to_string()),
            Err(_) => return Err("timed out".into()),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn devices_log_in_as_users_that_may_write() {
    let mut server = Server::new();
    server.password = Some(ADMIN_PW.into());
    server.extra_args = vec!["--mqtt-auth".into(), "true".into()];
    let server = server.start();
    let admin = server.client().await;
    admin
        .batch_execute(
            "CREATE USER meter PASSWORD 'm-pw'; GRANT writer TO meter; \
             CREATE USER viewer PASSWORD 'v-pw'",
        )
        .await
        .unwrap();
    let port = server.mqtt_port;
    assert_eq!(publish_as(port, Some(("meter", "m-pw")), 1.0).await, Ok(()));
    assert_eq!(
        publish_as(port, Some(("wattdb", ADMIN_PW)), 2.0).await,
        Ok(())
    );
    assert_eq!(
        publish_as(port, Some(("meter", "wrong")), 3.0).await,
        Err("BadUserNamePassword".into())
    );
    assert_eq!(
        publish_as(port, None, 4.0).await,
        Err("BadUserNamePassword".into())
    );
    assert_eq!(
        publish_as(port, Some(("nobody", "x")), 5.0).await,
        Err("BadUserNamePassword".into())
    );
    assert_eq!(
        publish_as(port, Some(("viewer", "v-pw")), 6.0).await,
        Err("NotAuthorized".into())
    );
    // Only the accepted readings were stored.
    let row = admin
        .query_one("SELECT count(*), sum(v) FROM device_readings", &[])
        .await
        .unwrap();
    assert_eq!(row.get::<_, i64>(0), 2);
    assert_eq!(row.get::<_, f64>(1), 3.0);
}

/// No reader sees a password verifier: `pg_authid` and `pg_shadow` need the admin role
/// (however they are named: qualified, in a subquery, under EXPLAIN, in COPY), and even
/// admins see no verifier; `pg_roles` and `pg_user` show `********`. Role attributes
/// parse: a non-admin changing them gets `42501`, an admin's SUPERUSER makes an admin,
/// unsupported ones are `0A000`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_reader_sees_a_secret_and_role_attributes_need_an_admin() {
    let server = server_with_password();
    let admin = server.client().await;
    admin
        .batch_execute("CREATE USER viewer PASSWORD 'viewer-pw'; CREATE USER ops PASSWORD 'ops-pw'")
        .await
        .unwrap();
    let viewer = connect_as(&server, "viewer", "viewer-pw").await.unwrap();
    for sql in [
        "SELECT * FROM pg_authid",
        "SELECT * FROM pg_catalog.pg_authid",
        "SELECT rolpassword FROM pg_catalog.PG_AUTHID WHERE rolname = 'viewer'",
        "SELECT * FROM pg_shadow",
        "SELECT 1 WHERE EXISTS (SELECT 1 FROM pg_catalog.pg_shadow)",
        "WITH s AS (SELECT * FROM pg_authid) SELECT count(*) FROM s",
        "EXPLAIN SELECT rolpassword FROM pg_authid",
    ] {
        denied(&viewer, sql).await;
        // Over the extended protocol too.
        let e = viewer.query(sql, &[]).await.expect_err(sql);
        assert_eq!(sqlstate(&e), "42501", "{sql} (extended): {e:?}");
    }
    let e = viewer
        .copy_out("COPY (SELECT * FROM pg_authid) TO STDOUT")
        .await
        .err()
        .expect("COPY of pg_authid refused");
    assert_eq!(sqlstate(&e), "42501", "{e:?}");
    // What everyone may read shows no verifier.
    for (sql, expected) in [
        (
            "SELECT rolname, rolpassword FROM pg_roles ORDER BY rolname",
            vec!["ops ********", "viewer ********", "wattdb ********"],
        ),
        (
            "SELECT usename, passwd FROM pg_user ORDER BY usename",
            vec!["ops ********", "viewer ********", "wattdb ********"],
        ),
    ] {
        let rows = viewer.query(sql, &[]).await.unwrap();
        let got: Vec<String> = rows
            .iter()
            .map(|r| format!("{} {}", r.get::<_, String>(0), r.get::<_, String>(1)))
            .collect();
        assert_eq!(got, expected, "{sql}");
    }
    // Admins read pg_authid, with no verifier in it.
    let rows = admin
        .query(
            "SELECT rolname, rolsuper, rolpassword IS NULL FROM pg_authid ORDER BY rolname",
            &[],
        )
        .await
        .unwrap();
    let got: Vec<(String, bool, bool)> = rows
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
    assert_eq!(
        got,
        vec![
            ("ops".into(), false, true),
            ("viewer".into(), false, true),
            ("wattdb".into(), true, true)
        ]
    );
    // No text of any catalog relation holds the verifier material (salt or salted
    // password as stored, base64) — checked by reading every row of them as an admin.
    for relation in ["pg_authid", "pg_shadow", "pg_roles", "pg_user"] {
        let sql = format!("SELECT * FROM pg_catalog.{relation}");
        for v in common::all_values(&admin, &sql).await {
            assert!(
                !v.contains("SCRAM") && v.len() < 40,
                "{relation} shows {v:?}"
            );
        }
    }

    // Role attributes: a reader gets 42501 whatever the attribute.
    for sql in [
        "ALTER USER viewer SUPERUSER",
        "ALTER ROLE viewer WITH CREATEROLE",
        "ALTER USER viewer CONNECTION LIMIT 2",
        "ALTER USER viewer VALID UNTIL '2030-01-01'",
        "ALTER USER ops PASSWORD NULL",
        "CREATE USER mallory SUPERUSER LOGIN",
    ] {
        denied(&viewer, sql).await;
    }
    // An admin: SUPERUSER grants admin, NOSUPERUSER takes it back.
    admin
        .batch_execute("ALTER USER ops SUPERUSER")
        .await
        .unwrap();
    let ops = connect_as(&server, "ops", "ops-pw").await.unwrap();
    ops.batch_execute("CREATE TABLE made_by_ops (ts TIMESTAMPTZ NOT NULL)")
        .await
        .unwrap();
    let rows = ops
        .query("SELECT rolsuper FROM pg_roles WHERE rolname = 'ops'", &[])
        .await
        .unwrap();
    assert!(rows[0].get::<_, bool>(0));
    admin
        .batch_execute("ALTER USER ops NOSUPERUSER")
        .await
        .unwrap();
    denied(&ops, "DROP TABLE made_by_ops").await;
    // Attributes wattdb has nothing for are refused, and change nothing (CONNECTION
    // LIMIT, NOLOGIN and VALID UNTIL hold: see tests/admission.rs).
    for sql in [
        "ALTER USER ops CREATEDB",
        "ALTER USER ops REPLICATION",
        "CREATE USER bob CREATEROLE PASSWORD 'b'",
    ] {
        let e = admin.batch_execute(sql).await.expect_err(sql);
        assert_eq!(sqlstate(&e), "0A000", "{sql}: {e:?}");
    }
    let rows = admin
        .query("SELECT count(*) FROM pg_roles WHERE rolname = 'bob'", &[])
        .await
        .unwrap();
    assert_eq!(rows[0].get::<_, i64>(0), 0);
}
