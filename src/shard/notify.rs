//! A single-shard "something changed" signal: long-polling fetches wait on it, appends fire it.

use std::cell::RefCell;

use futures::channel::oneshot;

/// Lives on one shard. Waiters register and get a receiver that completes at the next
/// [`LocalNotify::notify_all`] (or errors if the notify is dropped).
#[derive(Debug, Default)]
pub struct LocalNotify {
    waiters: RefCell<Vec<oneshot::Sender<()>>>,
}

impl LocalNotify {
    pub fn notified(&self) -> oneshot::Receiver<()> {
        let (sender, receiver) = oneshot::channel();
        let mut waiters = self.waiters.borrow_mut();
        // Drop the senders of waiters that gave up, so the list stays bounded by live waiters.
        waiters.retain(|waiter| !waiter.is_canceled());
        waiters.push(sender);
        receiver
    }

    pub fn notify_all(&self) {
        let waiters = std::mem::take(&mut *self.waiters.borrow_mut());
        for waiter in waiters {
            let _ = waiter.send(());
        }
    }
}
