//! The write pipeline: full write buffers go to the disk without the appender waiting
//! (write-behind, a few writes in flight), and syncs are shared (group commit).
//!
//! Ordering rule: two writes may be in flight at once only if they touch different pages. A
//! write that ends on a page boundary (a full buffer) never shares a page with the next one;
//! a write that ends inside a page (a flush for a sync) does, because the next buffer starts
//! with a copy of that partial page — so the next write waits for it to complete. The first
//! write of a new segment shares no page with the closed segment's last one.
//!
//! `flush_lock` is held only to issue writes and to wait for them; one fdatasync is in flight at
//! a time (`sync_in_flight`), and appends keep going while it is.

use std::rc::Rc;

use glommio::io::DmaBuffer;
use glommio::task::JoinHandle;

use super::{acquire, LogState, PartitionLog};
use crate::model::Offset;
use crate::storage::error::{StorageError, StorageResult};
use crate::storage::segment::PAGE_BYTES;

/// Write-behind writes in flight per log, at most.
pub const WRITES_IN_FLIGHT_MAX: usize = 4;

/// A write sent to the disk and not yet known to be complete.
pub(super) struct InFlightWrite {
    task: JoinHandle<glommio::Result<usize, ()>>,
    /// The buffer of a full-capacity write, taken back for reuse once the write completes:
    /// a fresh 1 MiB buffer per write costs page faults (and, without registered buffers,
    /// an mmap and munmap).
    reusable: Option<Rc<DmaBuffer>>,
    /// Everything below this offset is in the file once the write completes.
    next_offset: Offset,
    /// The segment written to: after a roll, the closed segment's last writes may still be in
    /// flight while the next segment's start.
    pub(super) segment_base: Offset,
    /// File position after the last data byte of the write.
    end_position: u64,
}

impl InFlightWrite {
    fn ends_mid_page(&self) -> bool {
        self.end_position % PAGE_BYTES as u64 != 0
    }
}

impl PartitionLog {
    /// Resolves once everything below `offset` has survived an fdatasync.
    ///
    /// Group commit: one fdatasync is in flight at a time; callers that arrive meanwhile wait
    /// for it, and when it ends the first of them to run syncs everything appended so far, on
    /// behalf of all (the others find their offsets covered and return without I/O).
    pub async fn sync_to(&self, offset: Offset) -> StorageResult<()> {
        // Bounded: every round either returns or waits for a sync that moves `durable` on.
        loop {
            self.check_writable()?;
            let waiting = {
                let mut state = self.state.borrow_mut();
                if state.durable >= offset {
                    return Ok(());
                }
                if state.sync_in_flight {
                    let (sender, receiver) = futures::channel::oneshot::channel();
                    state.sync_waiters.push(sender);
                    Some(receiver)
                } else {
                    state.sync_in_flight = true;
                    None
                }
            };
            match waiting {
                Some(receiver) => {
                    let _ = receiver.await;
                }
                None => {
                    let result = self.sync_everything_appended().await;
                    let waiters = {
                        let mut state = self.state.borrow_mut();
                        state.sync_in_flight = false;
                        std::mem::take(&mut state.sync_waiters)
                    };
                    for waiter in waiters {
                        let _ = waiter.send(());
                    }
                    result?;
                }
            }
        }
    }

    /// Writes out and fdatasyncs everything appended so far; the caller is the one syncer.
    async fn sync_everything_appended(&self) -> StorageResult<()> {
        let (target, file, path) = {
            let _flushing = acquire(&self.flush_lock).await?;
            self.check_writable()?;
            let target = self.state.borrow().next;
            self.issue_write().await?;
            self.complete_writes(0).await?;
            let state = self.state.borrow();
            (target, state.active().file.clone(), state.active().log_path.clone())
        };
        // The flush lock is free again: appends and their writes go on during the fdatasync,
        // which covers at least every write completed above to the active segment (a closed
        // segment's writes are covered by its seal's sync, waited for below).
        if let Err(e) = file.fdatasync().await {
            return Err(self.poison(StorageError::io("syncing segment", &path, e)));
        }
        // Data below `target` in a closed segment is durable only once its seal synced it.
        self.wait_for_seal().await;
        self.check_writable()?;
        let mut state = self.state.borrow_mut();
        state.stats.syncs += 1;
        state.durable = state.durable.max(target);
        state.check_offsets();
        Ok(())
    }

    /// Writes everything appended so far to the segment file and waits for it; with `sync`,
    /// also fdatasyncs it.
    pub async fn flush(&self, sync: bool) -> StorageResult<()> {
        if sync {
            let next = self.state.borrow().next;
            return self.sync_to(next).await;
        }
        let _flushing = acquire(&self.flush_lock).await?;
        self.check_writable()?;
        self.issue_write().await?;
        self.complete_writes(0).await
    }

    /// Waits until no fdatasync is in flight (for truncation, which holds the append lock, so
    /// no new sync starts with anything to do).
    pub(super) async fn wait_for_sync_idle(&self) {
        // Bounded: syncs end, and with the append lock held no new data calls for another.
        self.wait_while(|state| state.sync_in_flight, |state| &mut state.sync_waiters).await
    }

    /// Waits while `busy` holds, parking on the `waiters` list that whoever ends the busy
    /// state drains. Callers say why it is bounded.
    pub(super) async fn wait_while(
        &self,
        busy: fn(&LogState) -> bool,
        waiters: fn(&mut LogState) -> &mut Vec<futures::channel::oneshot::Sender<()>>,
    ) {
        loop {
            let receiver = {
                let mut state = self.state.borrow_mut();
                if !busy(&state) {
                    return;
                }
                let (sender, receiver) = futures::channel::oneshot::channel();
                waiters(&mut state).push(sender);
                receiver
            };
            let _ = receiver.await;
        }
    }

    /// The write buffer is full: send it to the disk and carry on.
    pub(super) async fn write_behind(&self) -> StorageResult<()> {
        let _flushing = acquire(&self.flush_lock).await?;
        self.check_writable()?;
        self.issue_write().await
    }

    /// Sends the write buffer's pages to the disk if it holds unwritten bytes, without waiting
    /// for the write — only for room in the pipeline and for a write sharing its first page.
    /// Called with the flush lock held.
    pub(super) async fn issue_write(&self) -> StorageResult<()> {
        // Bounded: each round completes one in-flight write.
        loop {
            let wait = {
                let state = self.state.borrow();
                let active_base = state.active().base_offset;
                state.in_flight.len() >= WRITES_IN_FLIGHT_MAX
                    || state
                        .in_flight
                        .back()
                        .is_some_and(|write| write.ends_mid_page() && write.segment_base == active_base)
            };
            if !wait {
                break;
            }
            self.complete_oldest_write().await?;
        }
        let mut state = self.state.borrow_mut();
        if !state.write_buffer.is_dirty() {
            return Ok(());
        }
        let file = state.active().file.clone();
        let segment_base = state.active().base_offset;
        let end_position = state.write_buffer.end_position();
        state.buffer_sizing.wrote(end_position, std::time::Instant::now());
        let fresh = state.fresh_buffer(&file);
        let pending = state.write_buffer.take(fresh);
        let next_offset = state.next;
        let position = pending.file_position;
        #[cfg(test)]
        if std::mem::take(&mut state.inject_write_failure) {
            let task = glommio::spawn_local(async {
                Err(glommio::GlommioError::IoError(std::io::Error::other("injected write failure")))
            })
            .detach();
            state.in_flight.push_back(InFlightWrite {
                task,
                reusable: None,
                next_offset,
                segment_base,
                end_position: 0,
            });
            return Ok(());
        }
        let (task, reusable) = if pending.reusable {
            let buffer = Rc::new(pending.buffer);
            let written = buffer.clone();
            (glommio::spawn_local(async move { file.write_rc_at(written, position).await }).detach(), Some(buffer))
        } else {
            (glommio::spawn_local(async move { file.write_at(pending.buffer, position).await }).detach(), None)
        };
        state.stats.writes += 1;
        state.in_flight.push_back(InFlightWrite {
            task,
            reusable,
            next_offset,
            segment_base,
            end_position: pending.end_position,
        });
        Ok(())
    }

    /// Waits for in-flight writes, oldest first, until at most `keep` remain. Called with the
    /// flush lock held.
    pub(super) async fn complete_writes(&self, keep: usize) -> StorageResult<()> {
        while self.state.borrow().in_flight.len() > keep {
            self.complete_oldest_write().await?;
        }
        Ok(())
    }

    pub(super) async fn complete_oldest_write(&self) -> StorageResult<()> {
        let (write, path) = {
            let mut state = self.state.borrow_mut();
            let Some(write) = state.in_flight.pop_front() else {
                return Ok(());
            };
            // The file written to: after a roll, the closed segment's, not the active one's.
            let segment = state.segments.get(&write.segment_base).unwrap_or_else(|| state.active());
            let path = segment.log_path.clone();
            (write, path)
        };
        match write.task.await {
            Some(Ok(_)) => {}
            Some(Err(e)) => return Err(self.poison(StorageError::io("writing segment", &path, e))),
            None => return Err(self.poison(StorageError::Closed)),
        }
        let mut state = self.state.borrow_mut();
        if let Some(buffer) = write.reusable.and_then(|rc| Rc::try_unwrap(rc).ok()) {
            if state.spare_buffers.len() < WRITES_IN_FLIGHT_MAX && buffer.len() == state.buffer_sizing.buffer_bytes() {
                state.spare_buffers.push(buffer);
            }
        }
        if let Some(segment) = state.segments.get_mut(&write.segment_base) {
            segment.written_bytes = segment.written_bytes.max(write.end_position);
        }
        state.written = state.written.max(write.next_offset);
        let written = state.written;
        state.cache.evict(written);
        state.check_offsets();
        Ok(())
    }
}
