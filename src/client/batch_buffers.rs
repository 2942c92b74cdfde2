//! Buffers for the batches a producer builds, reused once their batch is settled, as Kafka's
//! producer does with its `BufferPool`. A batch built into a fresh 1 MiB allocation pays a
//! page fault and a zeroed page per 4 KiB written: 8 % of a producer thread's samples with
//! 1 MiB batches of 1 KiB records (PERF.md).
//!
//! A built batch is a `Bytes` whose owner hands its buffer back when the last reference goes
//! (the producer settles the batch, and the connection has written it). Only a few buffers
//! are kept, and a kept buffer is reused only for a batch of about its size, so that a small
//! batch never holds on to a large buffer while it is in flight (4,096 partitions of one-record
//! batches would otherwise pin a large buffer each).

use std::sync::{Arc, Mutex, Weak};

use bytes::Bytes;
use rkyv::util::AlignedVec;

/// A kept buffer is reused for a batch that needs at least this fraction of its capacity.
const REUSE_FILL_MIN_DIVISOR: usize = 2;

type Kept = Mutex<Vec<AlignedVec<16>>>;

/// One producer's spare batch buffers.
#[derive(Debug)]
pub struct BatchBuffers {
    kept: Arc<Kept>,
    kept_max: usize,
}

impl BatchBuffers {
    /// Keeps at most `kept_max` spare buffers (a producer needs about one per request in flight).
    pub fn new(kept_max: usize) -> BatchBuffers {
        BatchBuffers { kept: Arc::new(Mutex::new(Vec::new())), kept_max }
    }

    /// An empty buffer for a batch of about `bytes`: a kept one whose capacity is at least
    /// `bytes` and at most twice it, or a new one.
    pub fn take(&self, bytes: usize) -> AlignedVec<16> {
        let reused = self.kept.lock().ok().and_then(|mut kept| {
            let fits = |buffer: &AlignedVec<16>| {
                buffer.capacity() >= bytes && buffer.capacity() / REUSE_FILL_MIN_DIVISOR <= bytes
            };
            let index = kept.iter().position(fits)?;
            Some(kept.swap_remove(index))
        });
        reused.unwrap_or_else(|| AlignedVec::with_capacity(bytes))
    }

    /// The built batch in `buffer` as `Bytes`; the buffer comes back here when the last
    /// reference to it is dropped (unless the producer is gone or enough are kept).
    pub fn share(&self, buffer: AlignedVec<16>) -> Bytes {
        Bytes::from_owner(Returning { buffer, home: Arc::downgrade(&self.kept), kept_max: self.kept_max })
    }

    /// Spare buffers kept now.
    #[cfg(test)]
    pub fn kept(&self) -> usize {
        self.kept.lock().map_or(0, |kept| kept.len())
    }
}

/// The owner of a shared batch: gives its buffer back on drop.
struct Returning {
    buffer: AlignedVec<16>,
    home: Weak<Kept>,
    kept_max: usize,
}

impl AsRef<[u8]> for Returning {
    fn as_ref(&self) -> &[u8] {
        self.buffer.as_slice()
    }
}

impl Drop for Returning {
    fn drop(&mut self) {
        let Some(home) = self.home.upgrade() else { return };
        let Ok(mut kept) = home.lock() else { return };
        if kept.len() < self.kept_max {
            self.buffer.clear();
            kept.push(std::mem::take(&mut self.buffer));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Guards the reuse rules: a settled batch's buffer comes back and serves the next batch of
    /// its size without a new allocation; it is not lent to a batch under half its size nor
    /// kept past the bound; a buffer outliving its producer is simply freed.
    #[test]
    fn buffers_come_back_and_serve_batches_of_their_size() {
        let buffers = BatchBuffers::new(2);
        let mut buffer = buffers.take(1 << 20);
        buffer.extend_from_slice(&[1u8; 100]);
        let address = buffer.as_ptr();
        let batch = buffers.share(buffer);
        let in_flight = batch.clone();
        assert_eq!(&batch[..], &[1u8; 100][..]);
        drop(batch);
        assert_eq!(buffers.kept(), 0, "still referenced by the request in flight");
        drop(in_flight);
        assert_eq!(buffers.kept(), 1);

        let small = buffers.take(4096);
        assert_ne!(small.as_ptr(), address, "a 1 MiB buffer is not lent to a 4 KiB batch");
        let reused = buffers.take(700_000);
        assert_eq!(reused.as_ptr(), address, "the kept buffer serves a batch of about its size");
        assert!(reused.is_empty());
        assert_eq!(buffers.kept(), 0);

        let shared: Vec<Bytes> = (0..3).map(|_| buffers.share(buffers.take(64))).collect();
        drop(shared);
        assert_eq!(buffers.kept(), 2, "at most kept_max spares");

        let orphan = buffers.share(buffers.take(64));
        drop(buffers);
        drop(orphan);
    }
}
