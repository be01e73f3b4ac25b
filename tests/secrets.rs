//! No secret reaches a reader: with users' passwords set and a channel of every kind
//! holding its keys, tokens and passwords (and failing to deliver, so that its errors
//! are recorded and logged), a reader reads every relation the catalog lists, `EXPLAIN`s
//! each, reads every setting, calls wattdb's functions and the HTTP endpoints — and no
//! answer, error message, plan or log line holds any of the secrets or a SCRAM verifier.

mod common;

use std::time::{Duration, Instant};

use common::{Server, connect_as, free_port};

const ADMIN_PW: &str = "admin-pw-Sekret0";

/// Every secret the setup gives the server.
const SECRETS: &[&str] = &[
    ADMIN_PW,
    "viewer-pw-Sekret1",
    "ops-pw-Sekret2",
    "wecom-key-Sekret3",
    "ding-token-Sekret4",
    "ding-sign-Sekret5",
    "hook-pass-Sekret6",
    "bearer-Sekret7",
    "mqtt-pass-Sekret8",
    "typo-key-Sekret9",
    "SCRAM-SHA-256$",
];

fn leaked(text: &str) -> Option<&'static str> {
    SECRETS.iter().copied().find(|s| text.contains(s))
}

/// Every text a statement gives back: its rows' values, or its error's message.
async fn answer_text(c: &tokio_postgres::Client, sql: &str) -> String {
    match c.simple_query(sql).await {
        Ok(messages) => messages
            .iter()
            .filter_map(|m| match m {
                tokio_postgres::SimpleQueryMessage::Row(r) => Some(
                    (0..r.len())
                        .filter_map(|i| r.get(i))
                        .collect::<Vec<_>>()
                        .join("|"),
                ),
                _ => None,
            })
            .collect::<Vec<_>>()
            .join("\n"),
        Err(e) => common::db_message(&e),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_reader_reads_a_secret_anywhere() {
    let mut server = Server::new();
    server.password = Some(ADMIN_PW.into());
    let server = server.start();
    let admin = server.client().await;
    let dead = free_port();
    admin
        .batch_execute(
            "CREATE TABLE m (ts TIMESTAMPTZ NOT NULL, pid TEXT NOT NULL, v DOUBLE PRECISION, \
             PRIMARY KEY (pid, ts)); \
             CREATE USER viewer PASSWORD 'viewer-pw-Sekret1'; \
             CREATE USER ops PASSWORD 'ops-pw-Sekret2'",
        )
        .await
        .unwrap();
    for (name, kind, options) in [
        (
            "wc",
            "wecom",
            format!(
                r#"{{"url": "http://127.0.0.1:{dead}/cgi-bin/webhook/send?key=wecom-key-Sekret3"}}"#
            ),
        ),
        (
            "dt",
            "dingtalk",
            format!(
                r#"{{"url": "http://127.0.0.1:{dead}/robot/send?access_token=ding-token-Sekret4", "secret": "ding-sign-Sekret5"}}"#
            ),
        ),
        (
            "wh",
            "webhook",
            format!(
                r#"{{"url": "http://hook:hook-pass-Sekret6@127.0.0.1:{dead}/hook", "headers": {{"Authorization": "Bearer bearer-Sekret7"}}}}"#
            ),
        ),
        (
            "mq",
            "mqtt",
            format!(
                r#"{{"url": "mqtt://alarm:mqtt-pass-Sekret8@127.0.0.1:{dead}", "topic": "alarms/{{alarm}}"}}"#
            ),
        ),
    ] {
        let sql = format!("SELECT create_channel('{name}', '{kind}', '{options}')");
        admin
            .simple_query(&sql)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e:?}"));
    }
    // An admin's failing call that names a secret: the error goes to the admin only.
    let typo = admin
        .simple_query(
            r#"SELECT create_channel('bad', 'webhook', '{"url": "http://x/?key=typo-key-Sekret9", "nope": 1}')"#,
        )
        .await
        .expect_err("unknown option");
    assert_eq!(common::sqlstate(&typo), "22023", "{typo:?}");
    admin
        .simple_query(
            "SELECT create_alarm('hot', 'm', 'v > 10', '{\"channels\": [\"wc\", \"dt\", \"wh\", \"mq\"]}')",
        )
        .await
        .unwrap();
    admin
        .batch_execute("INSERT INTO m VALUES ('2026-11-24T00:00:00Z', 'meter-1', 11.0)")
        .await
        .unwrap();
    // Wait until every channel has failed once (its error recorded).
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let failed = admin
            .query(
                "SELECT count(DISTINCT channel) FROM system.notifications WHERE last_error IS NOT NULL",
                &[],
            )
            .await
            .unwrap()[0]
            .get::<_, i64>(0);
        if failed >= 4 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{failed} channel(s) failed\n{}",
            server.log()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }

    let viewer = connect_as(&server, "viewer", "viewer-pw-Sekret1")
        .await
        .unwrap();
    // Every relation the catalog lists, read and explained as the reader.
    let relations = viewer
        .query(
            "SELECT table_schema, table_name FROM information_schema.tables \
             UNION SELECT n.nspname, c.relname FROM pg_catalog.pg_class c \
             JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace WHERE c.relkind IN ('r', 'v')",
            &[],
        )
        .await
        .unwrap();
    assert!(relations.len() > 50, "{} relations", relations.len());
    let mut statements: Vec<String> = relations
        .iter()
        .flat_map(|r| {
            let (schema, table): (String, String) = (r.get(0), r.get(1));
            let name = format!("\"{schema}\".\"{table}\"");
            [
                format!("SELECT * FROM {name}"),
                format!("EXPLAIN SELECT * FROM {name}"),
                format!("EXPLAIN ANALYZE SELECT * FROM {name}"),
            ]
        })
        .collect();
    // Every setting, and the functions a reader may call or is refused.
    statements.push("SHOW ALL".into());
    for r in viewer
        .query("SELECT name FROM pg_catalog.pg_settings", &[])
        .await
        .unwrap()
    {
        statements.push(format!(
            "SELECT current_setting('{}')",
            r.get::<_, String>(0)
        ));
    }
    for f in common::wattdb_calls::load().calls {
        statements.push(format!(
            "SELECT {}({})",
            f.0,
            f.1.iter()
                .map(|a| format!("'{}'", a.replace('\'', "''")))
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    statements.extend(
        [
            "SELECT * FROM system.channels",
            "SELECT * FROM system.notifications",
            "SELECT * FROM system.alarms",
            "SELECT * FROM last_values('m')",
            "SELECT drop_channel('wc')",
            "COPY (SELECT * FROM system.channels) TO STDOUT",
        ]
        .map(String::from),
    );
    let mut read = 0;
    for sql in &statements {
        let text = answer_text(&viewer, sql).await;
        read += text.len();
        if let Some(secret) = leaked(&text) {
            panic!("{sql} shows {secret}:\n{text}");
        }
    }
    assert!(read > 10_000, "the reader read only {read} bytes");
    // The HTTP endpoints anyone on the network reaches.
    for path in ["/metrics", "/health"] {
        let (_, body) = common::http_get(server.http_port, path);
        if let Some(secret) = leaked(&body) {
            panic!("{path} shows {secret}");
        }
    }
    // The channels are still there for the admin, who sees them redacted too.
    let channels = answer_text(&admin, "SELECT * FROM system.channels").await;
    assert_eq!(channels.lines().count(), 4, "{channels}");
    assert_eq!(leaked(&channels), None, "{channels}");
    // And no log line holds one.
    let log = server.log();
    if let Some(secret) = leaked(&log) {
        let line = log.lines().find(|l| l.contains(secret)).unwrap_or_default();
        panic!("the log shows {secret}: {line}");
    }
}
