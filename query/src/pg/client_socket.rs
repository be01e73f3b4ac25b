//! Noticing a client that went away while its statement runs. The connection's task is
//! busy with the statement and does not read the socket, so a client that disconnects
//! (or is killed) would leave its statement running until its timeout. Each connection's
//! socket is registered here by [`super::serve`] (a duplicate of its descriptor, dropped
//! when the connection ends); while a statement runs, its socket is checked every
//! [`CHECK_INTERVAL`] for a hang-up (`POLLRDHUP`: the peer closed its side; `POLLHUP`,
//! `POLLERR`) without reading anything, and the statement is stopped when there is one.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::os::fd::{AsFd, OwnedFd};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rustix::event::{PollFd, PollFlags, Timespec};

/// How often a running statement's socket is checked.
pub const CHECK_INTERVAL: Duration = Duration::from_millis(100);

/// The open connections' sockets, by the client's address.
#[derive(Debug, Default)]
pub struct ClientSockets {
    open: Mutex<HashMap<SocketAddr, Arc<OwnedFd>>>,
}

/// Keeps a connection's socket registered; dropping it (when the connection ends)
/// removes it.
#[derive(Debug)]
pub struct Registration {
    sockets: Arc<ClientSockets>,
    peer: SocketAddr,
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.sockets.lock().remove(&self.peer);
    }
}

impl ClientSockets {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<SocketAddr, Arc<OwnedFd>>> {
        self.open.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Register the socket of the connection from `peer`; `None` when its descriptor
    /// cannot be duplicated (out of descriptors): its statements then are not watched.
    pub fn register(
        self: &Arc<Self>,
        peer: SocketAddr,
        socket: &impl AsFd,
    ) -> Option<Registration> {
        let fd = match socket.as_fd().try_clone_to_owned() {
            Ok(fd) => fd,
            Err(e) => {
                tracing::debug!(%peer, error = %e, "not watching the connection for a hang-up");
                return None;
            }
        };
        self.lock().insert(peer, Arc::new(fd));
        Some(Registration {
            sockets: self.clone(),
            peer,
        })
    }

    /// Resolves when the client at `peer` has gone away (never, when its socket is not
    /// registered).
    pub fn gone(&self, peer: SocketAddr) -> impl std::future::Future<Output = ()> + Send + 'static {
        let fd = self.lock().get(&peer).cloned();
        async move {
            let Some(fd) = fd else {
                return std::future::pending().await;
            };
            loop {
                tokio::time::sleep(CHECK_INTERVAL).await;
                if hung_up(&fd) {
                    return;
                }
            }
        }
    }
}

/// Whether the peer of `fd` closed its side or the socket failed (does not block).
fn hung_up(fd: &OwnedFd) -> bool {
    let mut fds = [PollFd::new(fd, PollFlags::RDHUP)];
    let zero = Timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    match rustix::event::poll(&mut fds, Some(&zero)) {
        Ok(0) => false,
        Ok(_) => fds[0]
            .revents()
            .intersects(PollFlags::RDHUP | PollFlags::HUP | PollFlags::ERR),
        Err(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_closed_peer_is_noticed_and_an_open_one_is_not() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let client = tokio::net::TcpStream::connect(addr).await.unwrap();
        let (server_side, peer) = listener.accept().await.unwrap();
        let sockets = Arc::new(ClientSockets::default());
        let registration = sockets.register(peer, &server_side).unwrap();
        let gone = sockets.gone(peer);
        tokio::pin!(gone);
        // Open and idle (also with unread data waiting): not gone.
        assert!(
            tokio::time::timeout(CHECK_INTERVAL * 3, &mut gone)
                .await
                .is_err()
        );
        drop(client);
        tokio::time::timeout(Duration::from_secs(5), &mut gone)
            .await
            .expect("the hang-up is noticed");
        drop(registration);
        assert!(sockets.lock().is_empty());
    }
}
