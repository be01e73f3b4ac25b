//! Background passes that run every interval until shutdown (retention janitor,
//! compactor).

use std::future::Future;
use std::time::Duration;

/// Run `pass` every `interval` (first run one interval after the start) until
/// `shutdown` turns true. A pass in progress finishes before the task ends.
pub fn spawn_periodic<F, Fut>(
    interval: Duration,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
    mut pass: F,
) -> tokio::task::JoinHandle<()>
where
    F: FnMut() -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    tokio::spawn(async move {
        loop {
            if *shutdown.borrow_and_update() {
                return;
            }
            tokio::select! {
                _ = tokio::time::sleep(interval) => {}
                _ = shutdown.changed() => return,
            }
            pass().await;
        }
    })
}
