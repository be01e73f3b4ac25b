//! Bytes of WAL records waiting for group commit, counted against the buffer's budget:
//! a record queued for the WAL thread holds memory until it is written and handed to the
//! buffer (or refused), so the queue is bounded by the same budget as the buffer.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

/// The count of queued bytes, shared with every [`QueueCharge`].
#[derive(Default)]
pub(crate) struct QueuedBytes {
    bytes: AtomicUsize,
    /// Woken when charges are given back (the buffer's "room" notification).
    room: Arc<tokio::sync::Notify>,
}

impl QueuedBytes {
    pub fn new(room: Arc<tokio::sync::Notify>) -> Arc<Self> {
        Arc::new(QueuedBytes {
            bytes: AtomicUsize::new(0),
            room,
        })
    }

    pub fn get(&self) -> usize {
        self.bytes.load(Ordering::Acquire)
    }

    pub fn charge(self: &Arc<Self>, bytes: usize) -> QueueCharge {
        self.bytes.fetch_add(bytes, Ordering::AcqRel);
        QueueCharge {
            bytes,
            account: self.clone(),
        }
    }
}

/// Bytes one queued record holds; given back when dropped (by the WAL thread, once the
/// record is in the buffer or refused).
pub struct QueueCharge {
    bytes: usize,
    account: Arc<QueuedBytes>,
}

impl Drop for QueueCharge {
    fn drop(&mut self) {
        self.account.bytes.fetch_sub(self.bytes, Ordering::AcqRel);
        self.account.room.notify_waiters();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn charges_are_given_back_on_drop() {
        let account = QueuedBytes::new(Default::default());
        let a = account.charge(100);
        let b = account.charge(50);
        assert_eq!(account.get(), 150);
        drop(a);
        assert_eq!(account.get(), 50);
        drop(b);
        assert_eq!(account.get(), 0);
    }
}
