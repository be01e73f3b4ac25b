//! TLS on the SQL endpoint (`--pg-tls-cert/--pg-tls-key`) and on the embedded MQTT
//! endpoint (`--mqtt-tls-listen`), with certificates made by `openssl` for this test:
//! psql and pgjdbc with `sslmode=verify-full` connect and query, a certificate from
//! another CA is refused by the client, mosquitto_pub publishes over TLS and the rows
//! arrive; a certificate without its key, or an unreadable one, stops the server with
//! an error naming the file.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::{Server, free_port};

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .current_dir(dir)
        .args(args)
        .output()
        .expect("run openssl (scripts/test.sh installs it)");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A CA named `name` (`<name>.pem`, `<name>.key`) in `dir`.
fn ca(dir: &Path, name: &str) {
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-days",
            "2",
            "-subj",
            &format!("/CN={name}"),
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
            "-keyout",
            &format!("{name}.key"),
            "-out",
            &format!("{name}.pem"),
        ],
    );
}

/// `ca.pem` and `server.pem`/`server.key` (for localhost and 127.0.0.1, signed by `ca`),
/// and `other-ca.pem`, a CA that signed nothing here.
fn certificates(dir: &Path) {
    ca(dir, "ca");
    ca(dir, "other-ca");
    openssl(
        dir,
        &[
            "req",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-subj",
            "/CN=localhost",
            "-keyout",
            "server.key",
            "-out",
            "server.csr",
        ],
    );
    std::fs::write(
        dir.join("server.ext"),
        "subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\n\
         keyUsage=digitalSignature\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            "server.ext",
            "-out",
            "server.pem",
        ],
    );
}

fn psql(conninfo: &str, sql: &str) -> std::process::Output {
    Command::new("psql")
        .arg(conninfo)
        .args(["-X", "-A", "-t", "-c", sql])
        .env("PGCONNECT_TIMEOUT", "10")
        .output()
        .expect("run psql")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn tls_server(dir: &Path) -> (Server, u16) {
    let mqtts_port = free_port();
    let mut server = Server::new();
    server.extra_args = vec![
        "--pg-tls-cert".into(),
        dir.join("server.pem").display().to_string(),
        "--pg-tls-key".into(),
        dir.join("server.key").display().to_string(),
        "--mqtt-tls-listen".into(),
        format!("127.0.0.1:{mqtts_port}"),
    ];
    (server.start(), mqtts_port)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn psql_and_jdbc_connect_with_verify_full_and_devices_publish_over_tls() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    certificates(dir);
    let (server, mqtts_port) = tls_server(dir);
    let ca = dir.join("ca.pem").display().to_string();

    // psql, verifying the certificate and the host name.
    let verified = format!(
        "host=localhost port={} user=wattdb dbname=wattdb sslmode=verify-full sslrootcert={ca}",
        server.pg_port
    );
    let out = psql(&verified, "SELECT 40 + 2");
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout).trim(), "42");
    let out = Command::new("psql")
        .arg(&verified)
        .args(["-X", "-c", "\\conninfo"])
        .output()
        .unwrap();
    assert!(
        text(&out.stdout).contains("SSL connection"),
        "{}{}",
        text(&out.stdout),
        text(&out.stderr)
    );

    // A client that trusts another CA refuses the server.
    let other = format!(
        "host=localhost port={} user=wattdb dbname=wattdb sslmode=verify-full sslrootcert={}",
        server.pg_port,
        dir.join("other-ca.pem").display()
    );
    let out = psql(&other, "SELECT 1");
    assert!(!out.status.success(), "connected with the wrong CA");
    assert!(
        text(&out.stderr).contains("certificate"),
        "{}",
        text(&out.stderr)
    );

    // Clients that do not ask for TLS are still served (no hostssl rules).
    let plain = format!(
        "host=127.0.0.1 port={} user=wattdb dbname=wattdb sslmode=disable",
        server.pg_port
    );
    assert!(psql(&plain, "SELECT 1").status.success());

    // Devices publish over TLS, checking the server's certificate.
    if which("mosquitto_pub") {
        for (i, v) in [1.5, 2.5, 4.0].iter().enumerate() {
            let payload = format!(
                r#"{{"ts": {}, "tags": {{"dev": "d1"}}, "fields": {{"v": {v}}}}}"#,
                1_772_323_200_000i64 + i as i64 * 1000
            );
            let out = Command::new("mosquitto_pub")
                .args(["-h", "localhost", "-p", &mqtts_port.to_string()])
                .args([
                    "--cafile",
                    &ca,
                    "-q",
                    "1",
                    "-t",
                    "wattdb/tls_readings",
                    "-m",
                ])
                .arg(&payload)
                .output()
                .unwrap();
            assert!(out.status.success(), "{}", text(&out.stderr));
        }
        let c = server.client().await;
        let row = c
            .query_one("SELECT count(*), sum(v) FROM tls_readings", &[])
            .await
            .unwrap();
        assert_eq!(row.get::<_, i64>(0), 3);
        assert_eq!(row.get::<_, f64>(1), 8.0);
    } else {
        assert!(
            std::env::var_os("WATTDB_REQUIRE_MOSQUITTO").is_none(),
            "WATTDB_REQUIRE_MOSQUITTO is set but mosquitto_pub is missing"
        );
        eprintln!("skipped the MQTT part: no mosquitto_pub");
    }

    // pgjdbc with sslmode=verify-full runs its whole client program over TLS.
    match std::env::var_os("WATTDB_TEST_JDBC_JAR") {
        Some(jar) => {
            let program = format!(
                "{}/tests/clients/JdbcClient.java",
                env!("CARGO_MANIFEST_DIR")
            );
            let out = Command::new("java")
                .arg("-cp")
                .arg(jar)
                .arg(program)
                .args(["--port", &server.pg_port.to_string(), "--sslrootcert", &ca])
                .output()
                .unwrap();
            let stdout = text(&out.stdout);
            assert!(out.status.success(), "{stdout}{}", text(&out.stderr));
            assert!(stdout.contains("ok jdbc: TLS connection"), "{stdout}");
        }
        None => assert!(
            std::env::var_os("WATTDB_REQUIRE_CLIENTS").is_none(),
            "WATTDB_REQUIRE_CLIENTS is set but WATTDB_TEST_JDBC_JAR is not"
        ),
    }
}

fn which(program: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {program}")])
        .output()
        .is_ok_and(|o| o.status.success())
}

/// Run `wattdb serve` with `args` expecting it to refuse to start; its stderr.
fn refused(args: &[String]) -> String {
    let tmp = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_wattdb"))
        .arg("serve")
        .arg("--data-dir")
        .arg(tmp.path().join("data"))
        .args(["--pg-listen", &format!("127.0.0.1:{}", free_port())])
        .args(["--http-listen", &format!("127.0.0.1:{}", free_port())])
        .args(["--mqtt-listen", &format!("127.0.0.1:{}", free_port())])
        .args(args)
        .output()
        .unwrap();
    assert!(!out.status.success(), "started with {args:?}");
    text(&out.stderr)
}

#[test]
fn bad_tls_settings_stop_the_server_with_the_file_named() {
    let tmp = tempfile::tempdir().unwrap();
    certificates(tmp.path());
    let path = |f: &str| -> String { tmp.path().join(f).display().to_string() };

    let e = refused(&["--pg-tls-cert".into(), path("server.pem")]);
    assert!(e.contains("--pg-tls-cert needs --pg-tls-key"), "{e}");

    let missing: PathBuf = tmp.path().join("missing.pem");
    let e = refused(&[
        "--pg-tls-cert".into(),
        missing.display().to_string(),
        "--pg-tls-key".into(),
        path("server.key"),
    ]);
    assert!(e.contains(&missing.display().to_string()), "{e}");

    // The key of another certificate.
    let e = refused(&[
        "--pg-tls-cert".into(),
        path("server.pem"),
        "--pg-tls-key".into(),
        path("ca.key"),
    ]);
    assert!(e.contains("does not fit"), "{e}");

    let e = refused(&["--mqtt-tls-listen".into(), "127.0.0.1:1".into()]);
    assert!(e.contains("--mqtt-tls-listen needs a certificate"), "{e}");
}
