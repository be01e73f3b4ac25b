//! The Python PostgreSQL clients our users have — psycopg 3, psycopg2, SQLAlchemy 2 with
//! pandas, asyncpg — against the real binary: `tests/clients/python_clients.py` writes
//! known rows with each client and checks what it reads back (text and binary results,
//! server-side cursors, SQLAlchemy's table and column reflection, `pandas.read_sql`)
//! against values computed from those rows.
//!
//! Needs a Python with those packages: `WATTDB_TEST_PYTHON` (scripts/test.sh installs
//! them into a private venv and sets it, with `WATTDB_REQUIRE_CLIENTS=1` so that a missing
//! Python fails instead of skipping).

mod common;

use common::Server;

#[test]
fn python_clients_read_back_what_they_wrote() {
    let Some(python) = std::env::var_os("WATTDB_TEST_PYTHON") else {
        assert!(
            std::env::var_os("WATTDB_REQUIRE_CLIENTS").is_none(),
            "WATTDB_REQUIRE_CLIENTS is set but WATTDB_TEST_PYTHON is not"
        );
        eprintln!("skipped: set WATTDB_TEST_PYTHON to a Python with the client packages");
        return;
    };
    let server = Server::new().start();
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/clients/python_clients.py"
    );
    let out = std::process::Command::new(python)
        .arg(script)
        .arg("--port")
        .arg(server.pg_port.to_string())
        .output()
        .expect("run the Python clients");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "{stdout}\n{stderr}\nserver log:\n{}",
        server.log()
    );
    // Every client ran its checks.
    for client in ["psycopg3", "psycopg2", "sqlalchemy", "pandas", "asyncpg"] {
        assert!(
            stdout
                .lines()
                .any(|l| l.starts_with("ok") && l.contains(client)),
            "{client} did not run:\n{stdout}"
        );
    }
}
