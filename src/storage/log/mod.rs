//! [`PartitionLog`]: one partition's append-only log of record batches, split into segments.
//!
//! Owned by the shard that owns the partition: it is `!Send`, uses `Rc` and `RefCell`, and its
//! futures run on that shard's glommio executor. Appends, reads, retention and truncation may
//! run concurrently as tasks; no `RefCell` borrow is held across an `.await`.
//!
//! Offsets, with the invariant `log_start ≤ durable ≤ written ≤ next` (asserted where they move):
//! - `log_start`: the first offset served; moved up by retention, persisted.
//! - `durable`: everything below survived an `fdatasync`.
//! - `written`: everything below is in the segment file (readable by O_DIRECT).
//! - `next`: the log end offset, the offset the next append gets.
//!
//! Every batch in `[written, next)` is also in the tail cache, so a read never misses data.

mod append;
#[cfg(test)]
mod append_tests;
mod open;
mod preallocate;
mod producers;
mod read;
mod retention;
mod roll;
#[cfg(test)]
mod roll_tests;
#[cfg(test)]
mod tests;
mod write;

pub use retention::RetentionReport;

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use glommio::sync::Semaphore;

use super::config::LogConfig;
use super::error::{StorageError, StorageResult};
use super::segment::Segment;
use super::tail_cache::TailCache;
use super::write_buffer::WriteBuffer;
use crate::model::Offset;

pub use append::AppendInfo;
// LogStats is defined below.
pub use open::{RecoveryReport, Truncation};
pub use read::ReadBatches;

/// What a log did since it was opened.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LogStats {
    pub appends: u64,
    pub writes: u64,
    pub syncs: u64,
    /// Appends that found the file too short and waited for a fallocate of their own (the
    /// pre-allocation ahead had not started, failed or could not cover the batch).
    pub allocations_waited: u64,
}

pub struct PartitionLog {
    /// This log, for the tasks it spawns (a segment's seal).
    me: std::rc::Weak<PartitionLog>,
    dir: PathBuf,
    config: LogConfig,
    state: RefCell<LogState>,
    /// Held while an append assigns offsets and copies its batch, while a segment rolls, and by
    /// retention and truncation: it keeps batches in offset order in the file.
    append_lock: Semaphore,
    /// Held to issue writes and to wait for them (see `write.rs` for the ordering rule).
    flush_lock: Semaphore,
}

struct LogState {
    /// Every segment by base offset; the last one is the active segment.
    segments: BTreeMap<Offset, Segment>,
    /// Mirrors the active segment's file from its last page boundary to its logical end.
    write_buffer: WriteBuffer,
    log_start: Offset,
    durable: Offset,
    written: Offset,
    next: Offset,
    cache: TailCache,
    /// Whether an fdatasync is in flight, and who waits for it to end (group commit).
    sync_in_flight: bool,
    sync_waiters: Vec<futures::channel::oneshot::Sender<()>>,
    /// I/O counts since open, for tests and benches.
    stats: LogStats,
    /// Tests only: the next write fails as if the disk had refused it.
    #[cfg(test)]
    inject_write_failure: bool,
    /// Full-capacity write buffers whose writes completed, ready for reuse.
    spare_buffers: Vec<glommio::io::DmaBuffer>,
    /// The size of the next write buffer, from the recent write rate.
    buffer_sizing: crate::storage::buffer_sizing::BufferSizing,
    /// Writes sent to the disk and not yet complete, oldest first.
    in_flight: std::collections::VecDeque<write::InFlightWrite>,
    /// Why the log refuses appends, after a failed write or fdatasync.
    poisoned: Option<String>,
    closed: bool,
    /// Wall-clock time at which the active segment is due to roll (its first append plus
    /// `segment_ms`); `None` while it is empty or without a time limit.
    active_roll_deadline_ms: Option<i64>,
    /// Whether the segment before the active one is being sealed, and who waits for it to be
    /// (see `roll.rs`).
    sealing: bool,
    seal_waiters: Vec<futures::channel::oneshot::Sender<()>>,
    /// Index files of sealed segments being written on the blocking thread (see `roll.rs`).
    index_writes: Vec<glommio::task::JoinHandle<StorageResult<()>>>,
    /// The fallocate running ahead of the appends, if any (see `preallocate.rs`).
    preallocation: Option<preallocate::Preallocation>,
    /// The active segment (base offset) and allocated length at which a pre-allocation ahead
    /// failed: none is tried again until the file has grown or the segment rolled.
    preallocation_refused_at: Option<(Offset, u64)>,
}

impl LogState {
    fn active(&self) -> &Segment {
        self.segments.values().next_back().expect("a log always has an active segment")
    }

    fn active_mut(&mut self) -> &mut Segment {
        self.segments.values_mut().next_back().expect("a log always has an active segment")
    }

    /// Whether the active segment must roll before a batch of `batch_bytes` is
    /// appended: it would pass `segment_bytes`, or it is past its roll deadline at `now_ms`. An
    /// empty segment never rolls. Two comparisons, no clock read.
    fn should_roll(&self, batch_bytes: u64, segment_bytes: u64, now_ms: Option<i64>) -> bool {
        let active = self.active();
        if active.is_empty() {
            return false;
        }
        let full = active.size_bytes + batch_bytes > segment_bytes;
        let old = matches!((self.active_roll_deadline_ms, now_ms), (Some(deadline), Some(now)) if now >= deadline);
        full || old
    }

    /// A write buffer of the size `buffer_sizing` asks for: a spare of that size if one is
    /// left (its pages are already touched), else a new one aligned for `file`.
    fn fresh_buffer(&mut self, file: &glommio::io::DmaFile) -> glommio::io::DmaBuffer {
        let capacity = self.buffer_sizing.buffer_bytes();
        match self.spare_buffers.pop() {
            Some(spare) if spare.len() == capacity => spare,
            _ => file.alloc_dma_buffer(capacity),
        }
    }

    fn check_offsets(&self) {
        debug_assert!(
            self.log_start <= self.durable.max(self.log_start)
                && self.durable <= self.written
                && self.written <= self.next,
            "offset invariant broken: start {} durable {} written {} next {}",
            self.log_start,
            self.durable,
            self.written,
            self.next
        );
    }
}

impl PartitionLog {
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn config(&self) -> &LogConfig {
        &self.config
    }

    /// The first offset the log serves.
    pub fn log_start_offset(&self) -> Offset {
        self.state.borrow().log_start
    }

    /// The offset the next append gets (Kafka's log end offset).
    pub fn log_end_offset(&self) -> Offset {
        self.state.borrow().next
    }

    /// Everything below this offset has survived an fdatasync.
    pub fn durable_offset(&self) -> Offset {
        self.state.borrow().durable
    }

    pub fn segment_count(&self) -> usize {
        self.state.borrow().segments.len()
    }

    /// Bytes of batches in all segments.
    pub fn size_bytes(&self) -> u64 {
        self.state.borrow().segments.values().map(|segment| segment.size_bytes).sum()
    }

    pub fn stats(&self) -> LogStats {
        self.state.borrow().stats
    }

    pub fn is_poisoned(&self) -> bool {
        self.state.borrow().poisoned.is_some()
    }

    fn check_writable(&self) -> StorageResult<()> {
        let state = self.state.borrow();
        if state.closed {
            return Err(StorageError::Closed);
        }
        if let Some(cause) = &state.poisoned {
            return Err(StorageError::Poisoned { path: self.dir.clone(), cause: cause.clone() });
        }
        Ok(())
    }

    /// Marks the log poisoned by `error` and returns it.
    fn poison(&self, error: StorageError) -> StorageError {
        let mut state = self.state.borrow_mut();
        if state.poisoned.is_none() {
            tracing::error!(dir = %self.dir.display(), %error, "partition log poisoned: refusing appends until reopened");
            state.poisoned = Some(error.to_string());
        }
        error
    }
}

async fn acquire(lock: &Semaphore) -> StorageResult<glommio::sync::Permit<'_>> {
    lock.acquire_permit(1).await.map_err(|_| StorageError::Closed)
}
