//! The PostgreSQL clients our users have, against the real binary: psycopg 3, psycopg2,
//! SQLAlchemy 2 with pandas, asyncpg (`tests/clients/python_clients.py`), node-postgres
//! (`node_clients.js`) and pgjdbc (`JdbcClient.java`). Each writes known rows with its
//! client and checks what it reads back (text and binary results, server-side cursors,
//! prepared statements and batches, SQLAlchemy's reflection, `pandas.read_sql`, JDBC's
//! `DatabaseMetaData`) against values computed from those rows. And each driver calls
//! every wattdb function (`tests/clients/wattdb_calls.tsv`) with bound parameters, as
//! applications do, against the same call with literals on a second server.
//!
//! The clients come from the environment: `WATTDB_TEST_PYTHON` (a Python with the
//! packages), `WATTDB_TEST_NODE_PATH` (a `node_modules` with `pg`), `WATTDB_TEST_JDBC_JAR`
//! (pgjdbc). scripts/test.sh installs them and sets these, with `WATTDB_REQUIRE_CLIENTS=1`
//! so that a missing client fails instead of skipping.

mod common;

use common::Server;

/// The value of `var`, or `None` when the client is not installed here — which fails
/// under `WATTDB_REQUIRE_CLIENTS` (scripts/test.sh installs every client).
fn client_env(var: &str) -> Option<std::ffi::OsString> {
    let value = std::env::var_os(var);
    if value.is_none() {
        assert!(
            std::env::var_os("WATTDB_REQUIRE_CLIENTS").is_none(),
            "WATTDB_REQUIRE_CLIENTS is set but {var} is not"
        );
        eprintln!("skipped: set {var} (see scripts/test.sh)");
    }
    value
}

/// Run `command` against the server at `port` and check that it succeeded; its stdout.
fn run_against(mut command: std::process::Command, port: u16, server: &Server) -> String {
    let out = command
        .arg("--port")
        .arg(port.to_string())
        .output()
        .unwrap_or_else(|e| panic!("run {command:?}: {e}"));
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "{stdout}\n{stderr}\nserver log:\n{}",
        server.log()
    );
    stdout
}

/// Run a client program against `server` and check that it succeeded and that each of
/// `clients` reported its checks (`ok <client>…` lines).
fn run_client(command: std::process::Command, server: &Server, clients: &[&str]) {
    let stdout = run_against(command, server.pg_port, server);
    for client in clients {
        assert!(
            stdout
                .lines()
                .any(|l| l.starts_with("ok") && l.contains(client)),
            "{client} did not run:\n{stdout}"
        );
    }
}

/// Run a client program in its `--calls` mode: every wattdb function of
/// `tests/clients/wattdb_calls.tsv` with literals on one server and bound as
/// parameters on another; each call must answer as with literals (the program checks,
/// and reports an `ok <client> <function>…` line per call).
fn run_calls(mut command: std::process::Command, clients: &[&str]) {
    let calls = common::wattdb_calls::load();
    let literal = Server::new().start();
    let bound = Server::new().start();
    command
        .arg("--calls")
        .arg(common::wattdb_calls::path())
        .arg("--literal-port")
        .arg(literal.pg_port.to_string());
    let stdout = run_against(command, bound.pg_port, &bound);
    for client in clients {
        for (function, _) in &calls.calls {
            assert!(
                stdout.lines().any(|l| l.starts_with("ok")
                    && l.contains(client)
                    && (l.contains(&format!("{function}("))
                        || l.contains(&format!("{function}[")))),
                "{client} did not call {function}:\n{stdout}"
            );
        }
    }
}

fn script(name: &str) -> String {
    format!("{}/tests/clients/{name}", env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn python_clients_read_back_what_they_wrote() {
    let Some(python) = client_env("WATTDB_TEST_PYTHON") else {
        return;
    };
    let server = Server::new().start();
    let mut command = std::process::Command::new(python);
    command.arg(script("python_clients.py"));
    run_client(
        command,
        &server,
        &["psycopg3", "psycopg2", "sqlalchemy", "pandas", "asyncpg"],
    );
}

/// `WATTDB_TEST_NODE_PATH`: a `node_modules` folder with `pg` (node-postgres).
#[test]
fn node_postgres_reads_back_what_it_wrote() {
    let Some(node_path) = client_env("WATTDB_TEST_NODE_PATH") else {
        return;
    };
    let server = Server::new().start();
    let mut command = std::process::Command::new("node");
    command
        .env("NODE_PATH", node_path)
        .arg(script("node_clients.js"));
    run_client(command, &server, &["node-postgres"]);
}

/// `WATTDB_TEST_JDBC_JAR`: pgjdbc's jar (Debian: /usr/share/java/postgresql.jar); the
/// program runs as a single source file (`java File.java`, JDK 11+).
#[test]
fn pgjdbc_reads_back_what_it_wrote_and_browses_the_catalog() {
    let Some(jar) = client_env("WATTDB_TEST_JDBC_JAR") else {
        return;
    };
    let server = Server::new().start();
    let mut command = std::process::Command::new("java");
    command.arg("-cp").arg(jar).arg(script("JdbcClient.java"));
    run_client(command, &server, &["jdbc"]);
}

/// Every wattdb function through psycopg 3 (server-side binding) and asyncpg.
#[test]
fn python_drivers_call_every_wattdb_function_with_bound_parameters() {
    let Some(python) = client_env("WATTDB_TEST_PYTHON") else {
        return;
    };
    for driver in ["psycopg3", "asyncpg"] {
        let mut command = std::process::Command::new(&python);
        command
            .arg(script("python_clients.py"))
            .arg("--only")
            .arg(driver);
        run_calls(command, &[driver]);
    }
}

/// Every wattdb function through node-postgres with values.
#[test]
fn node_postgres_calls_every_wattdb_function_with_bound_parameters() {
    let Some(node_path) = client_env("WATTDB_TEST_NODE_PATH") else {
        return;
    };
    let mut command = std::process::Command::new("node");
    command
        .env("NODE_PATH", node_path)
        .arg(script("node_clients.js"));
    run_calls(command, &["node-postgres"]);
}

/// Every wattdb function as a pgjdbc `PreparedStatement`.
#[test]
fn pgjdbc_calls_every_wattdb_function_as_prepared_statements() {
    let Some(jar) = client_env("WATTDB_TEST_JDBC_JAR") else {
        return;
    };
    let mut command = std::process::Command::new("java");
    command.arg("-cp").arg(jar).arg(script("JdbcClient.java"));
    run_calls(command, &["jdbc"]);
}
