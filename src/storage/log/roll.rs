//! Rolling the active segment, and sealing the closed one in the background.
//!
//! A roll issues the active segment's last write, opens the next segment at the log end and
//! returns: appends go on into the new segment at once. The closed segment is then *sealed*
//! by a task of its own: its last writes complete, the file is cut to its logical size (the
//! pre-allocated rest is released) and fdatasynced, and its index files are written on the
//! blocking thread. Sealed synchronously, a roll stopped its partition for 5–8 ms on the
//! development VM (the last writes, the cut, the sync, the index files' four syncs).
//!
//! Rules that keep this safe:
//! - One seal at a time: a roll waits for the previous seal, so only the segment just before
//!   the active one can be unsealed.
//! - `durable` moves past a closed segment only once its seal synced it: a sync of the new
//!   segment waits for the seal before it declares anything durable (`write.rs`).
//! - Retention, truncation and close wait for the seal and for index writes, so no file is
//!   cut, removed or closed under them.
//! - A failed cut or sync poisons the log, as a failed write does.
//! - Recovery: index files are written only after the seal, so a closed segment without them
//!   may be unsealed; if it is the one before the active segment and its data ends before the
//!   next segment's base, a crash interrupted its seal: open cuts the log there (`open.rs`).
//!   Nothing after it was acknowledged as durable, by the second rule. If it holds all its
//!   batches, open finishes the seal (cut, sync, index files).

use std::path::PathBuf;
use std::rc::Rc;

use glommio::io::DmaFile;

use super::{acquire, PartitionLog};
use crate::model::Offset;
use crate::storage::error::{StorageError, StorageResult};
use crate::storage::segment::Segment;
use crate::storage::write_buffer::WriteBuffer;

/// The closed segment a seal works on.
struct Sealing {
    base_offset: Offset,
    size_bytes: u64,
    /// The log end at the roll: everything below is in this segment or earlier ones.
    next_offset: Offset,
    file: Rc<DmaFile>,
    log_path: PathBuf,
}

impl PartitionLog {
    /// Closes the active segment and opens a new one at the log end, leaving the closed
    /// segment to a background seal. Called with the append lock held.
    pub(super) async fn roll(&self) -> StorageResult<()> {
        let started = std::time::Instant::now();
        self.finish_preallocation().await;
        self.wait_for_seal().await;
        self.finish_index_writes().await;
        self.check_writable()?;
        // Taken before anything changes: once `sealing` is set, only the seal task clears it.
        let Some(log) = self.me.upgrade() else {
            return Err(StorageError::Closed);
        };
        let sealing = {
            let _flushing = acquire(&self.flush_lock).await?;
            self.issue_write().await?;
            let sealing = {
                let state = self.state.borrow();
                let active = state.active();
                Sealing {
                    base_offset: active.base_offset,
                    size_bytes: active.size_bytes,
                    next_offset: state.next,
                    file: active.file.clone(),
                    log_path: active.log_path.clone(),
                }
            };
            let segment =
                Segment::create(&self.dir, sealing.next_offset, self.config.preallocation_target(0, 1)).await?;
            let mut state = self.state.borrow_mut();
            let fresh = state.fresh_buffer(&segment.file);
            state.write_buffer = WriteBuffer::new(fresh, 0, &[]);
            state.segments.insert(sealing.next_offset, segment);
            state.active_roll_deadline_ms = None;
            state.sealing = true;
            sealing
        };
        let new_base = sealing.next_offset;
        glommio::spawn_local(async move { log.seal(sealing).await }).detach();
        let roll_us = started.elapsed().as_micros() as u64;
        tracing::debug!(dir = %self.dir.display(), base_offset = %new_base, roll_us, "rolled to a new segment");
        Ok(())
    }

    /// Completes the closed segment's writes, cuts it to its size, syncs it and starts
    /// writing its indexes; then wakes whoever waits for the seal. Poisons the log on failure.
    async fn seal(&self, sealing: Sealing) {
        let result = self.cut_and_sync(&sealing).await;
        let waiters = {
            let mut state = self.state.borrow_mut();
            if result.is_ok() {
                state.stats.syncs += 1;
                state.durable = state.durable.max(sealing.next_offset);
                state.check_offsets();
                if let Some(segment) = state.segments.get_mut(&sealing.base_offset) {
                    segment.allocated_bytes = sealing.size_bytes;
                    let persisting = segment.persist_indexes();
                    state.index_writes.push(glommio::spawn_local(persisting).detach());
                }
            }
            state.sealing = false;
            std::mem::take(&mut state.seal_waiters)
        };
        if let Err(error) = result {
            self.poison(error);
        }
        for waiter in waiters {
            let _ = waiter.send(());
        }
    }

    async fn cut_and_sync(&self, sealing: &Sealing) -> StorageResult<()> {
        {
            let _flushing = acquire(&self.flush_lock).await?;
            // Bounded: each round completes one of the closed segment's writes (the oldest).
            loop {
                let closed_segment_write_left = {
                    let state = self.state.borrow();
                    state.in_flight.front().is_some_and(|write| write.segment_base == sealing.base_offset)
                };
                if !closed_segment_write_left {
                    break;
                }
                self.complete_oldest_write().await?;
            }
        }
        let path = &sealing.log_path;
        sealing
            .file
            .truncate(sealing.size_bytes)
            .await
            .map_err(|e| StorageError::io("truncating closed segment", path, e))?;
        sealing.file.fdatasync().await.map_err(|e| StorageError::io("syncing closed segment", path, e))
    }

    /// Waits until no closed segment is being sealed.
    pub(super) async fn wait_for_seal(&self) {
        // Bounded: a seal in progress ends (with the log poisoned if it failed), and only a
        // roll, under the append lock, starts another.
        self.wait_while(|state| state.sealing, |state| &mut state.seal_waiters).await
    }

    /// Waits for the index files of sealed segments still being written. Called with the
    /// append lock held, before anything that removes segment files or closes the log, so that
    /// no index file is written after its segment is gone. A failed write is only logged: the
    /// next open rebuilds the missing indexes.
    pub(super) async fn finish_index_writes(&self) {
        let writes = std::mem::take(&mut self.state.borrow_mut().index_writes);
        for write in writes {
            if let Some(Err(error)) = write.await {
                tracing::warn!(dir = %self.dir.display(), %error, "writing a closed segment's indexes failed; the next open rebuilds them");
            }
        }
    }

    /// Whether a closed segment is being sealed (tests).
    #[cfg(test)]
    pub(super) fn is_sealing(&self) -> bool {
        self.state.borrow().sealing
    }
}
