//! Retention end to end: `set_retention` + `run_retention` drop whole expired months
//! (catalog, files, buffered rows — also after a kill -9 that would replay them from the
//! WAL), keep every month with an unexpired instant, refuse writes to expired months
//! (SQL error; MQTT items to `rejected`), and leave rollups of the dropped months alone.

mod common;

use common::Server;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_months_are_dropped_whole_and_stay_dropped() {
    common::retention_scenario::retention_drops_whole_expired_months(Server::new()).await;
}
