//! The storage scenarios against a real S3 server (SeaweedFS in CI; MinIO in production).
//! Needs WATTDB_TEST_S3_ENDPOINT (and a bucket); `.ci/run` starts the server and sets it.

mod common;

use common::{S3, Server, scenarios, unique_prefix};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_kill_9_right_after_acknowledged_inserts_loses_nothing() {
    let Some(s3) = S3::from_env() else { return };
    scenarios::kill_9_after_acknowledged_inserts(
        Server::new().with_s3(&s3, &unique_prefix("kill9")),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_graceful_restart_and_recover_from_bucket() {
    let Some(s3) = S3::from_env() else { return };
    scenarios::graceful_restart_then_recover_from_bucket(
        Server::new().with_s3(&s3, &unique_prefix("recover")),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_overwrites_are_deduplicated_across_flushes() {
    let Some(s3) = S3::from_env() else { return };
    scenarios::dedup_across_flushes(Server::new().with_s3(&s3, &unique_prefix("dedup"))).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_retention_drops_whole_expired_months() {
    let Some(s3) = S3::from_env() else { return };
    common::retention_scenario::retention_drops_whole_expired_months(
        Server::new().with_s3(&s3, &unique_prefix("retention")),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_compact_merges_a_months_files() {
    let Some(s3) = S3::from_env() else { return };
    common::compaction_scenario::compact_merges_a_months_files(
        Server::new().with_s3(&s3, &unique_prefix("compact")),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_archive_then_restore_round_trip() {
    let Some(s3) = S3::from_env() else { return };
    let prefix = unique_prefix("archive");
    let archive = format!("s3://{}/{prefix}-cold", s3.bucket);
    common::archive_scenario::archive_then_restore_round_trip(
        Server::new().with_s3(&s3, &prefix).with_archive(&archive),
    )
    .await;
}
