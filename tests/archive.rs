//! The cold archive end to end on the local folder: expired months are copied to
//! `--archive-store` before retention drops them, listed in `system.archive`, and
//! `restore_partition` brings one back with identical query results. The same scenario
//! runs on S3 in `tests/s3.rs`.

mod common;

use common::{Server, archive_scenario};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn archive_then_restore_round_trip() {
    let server = Server::new();
    let url = server.local_url("archive");
    archive_scenario::archive_then_restore_round_trip(server.with_archive(&url)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restore_without_archive_is_refused() {
    archive_scenario::restore_without_archive_is_refused(Server::new()).await;
}

#[test]
fn an_archive_inside_the_object_store_is_refused() {
    let server = Server::new();
    let inside = format!(
        "file://{}",
        server.data_path().join("objects/cold").display()
    );
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_wattdb"))
        .args(["serve", "--data-dir"])
        .arg(server.data_path())
        .args(["--archive-store", &inside])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("archive must be apart"), "{stderr}");
}
