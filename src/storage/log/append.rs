//! The write path: append, flush (write and fdatasync), roll, close.

use bytes::{Bytes, BytesMut};

use super::{acquire, PartitionLog};
use crate::model::{LeaderEpoch, Offset, TimestampMs};
use crate::storage::batch::{stamp, BatchHeader};
use crate::storage::config::Durability;
use crate::storage::error::{StorageError, StorageResult};
use crate::storage::meta_file::{self, CleanShutdown, CLEAN_SHUTDOWN_FILE_NAME};
use crate::storage::scan::ScannedBatch;

/// Where an appended batch landed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AppendInfo {
    pub base_offset: Offset,
    /// Offset after the batch's last record.
    pub next_offset: Offset,
    pub log_start_offset: Offset,
}

impl PartitionLog {
    /// Appends one record batch, stamping its base offset and `leader_epoch`.
    ///
    /// The batch must already be validated by the caller (the broker checks CRC and archive on
    /// produce); the log re-checks its header and length. Its bytes go to disk exactly as given.
    ///
    /// **Durability contract.** When the returned future resolves with `Ok`:
    /// - `Durability::Always`: the batch, and every batch before it, survived an `fdatasync`
    ///   of the segment file. Concurrent appends share one `fdatasync` (group commit).
    /// - `Durability::IntervalMs` and `Durability::Never`: the batch is in memory and readable;
    ///   it reaches the disk later (see [`Durability`]) and a crash before then loses it.
    ///
    /// On `Err` the batch may or may not be in the log. After a failed write or fdatasync the
    /// log is poisoned and every later append fails until the log is reopened.
    pub async fn append(&self, batch: BytesMut, leader_epoch: LeaderEpoch) -> StorageResult<AppendInfo> {
        let appended = self.append_without_sync(batch, leader_epoch).await?;
        self.await_durability(appended.next_offset).await?;
        Ok(appended)
    }

    /// Whether [`Self::await_durability`] waits for an fdatasync (`Durability::Always`) rather
    /// than returning at once; callers with many appends to answer wait only when it does.
    pub fn acks_wait_for_sync(&self) -> bool {
        self.config.durability == Durability::Always
    }

    /// Resolves once everything below `next_offset` has the durability the log's policy
    /// promises: synced with `Durability::Always`, at once otherwise. [`Self::append`] is
    /// [`Self::append_without_sync`] followed by this.
    pub async fn await_durability(&self, next_offset: Offset) -> StorageResult<()> {
        if self.acks_wait_for_sync() {
            self.sync_to(next_offset).await?;
        }
        Ok(())
    }

    /// The first half of [`Self::append`]: assigns the offsets and copies the batch into the
    /// log (readable from then on), without waiting for the durability policy. Appends finish
    /// this half in the order they call it.
    ///
    /// Most appends take the in-place path: no roll, no pre-allocation and room in the write
    /// buffer, so the batch is stamped, copied and recorded under one borrow of the state, with
    /// no `.await` after the append lock (itself uncontended: glommio's semaphore then does not
    /// suspend). Otherwise the batch goes through `Self::prepare_with_io`.
    pub async fn append_without_sync(
        &self,
        mut batch: BytesMut,
        leader_epoch: LeaderEpoch,
    ) -> StorageResult<AppendInfo> {
        let header = BatchHeader::parse(&batch)?;
        let batch_bytes = batch.len();
        if header.batch_length as usize != batch_bytes {
            return Err(StorageError::InvalidBatch(crate::storage::batch::BatchError::TooShort {
                needed: header.batch_length as usize,
                got: batch_bytes,
            }));
        }
        if batch_bytes as u64 > self.config.segment_bytes {
            return Err(StorageError::BatchLargerThanSegment { batch_bytes, segment_bytes: self.config.segment_bytes });
        }
        let _order = acquire(&self.append_lock).await?;
        // One clock read per append, and none without a time limit on segments.
        let now_ms = self.config.segment_ms.map(|_| coarse_wall_clock_ms());
        let (base_offset, position, bytes) = if self.fits_in_place(batch_bytes as u64, now_ms)? {
            let mut state = self.state.borrow_mut();
            let (base_offset, position) = (state.next, state.active().size_bytes);
            stamp(&mut batch, base_offset, leader_epoch)?;
            let copied = state.write_buffer.push(&batch);
            debug_assert_eq!(copied, batch_bytes, "fits_in_place checked the room");
            (base_offset, position, batch.freeze())
        } else {
            self.prepare_with_io(batch, leader_epoch, now_ms).await?
        };

        let next_offset = base_offset.plus(u64::from(header.record_count));
        let scanned = ScannedBatch {
            base_offset,
            next_offset,
            position,
            length: header.batch_length,
            max_timestamp: header.max_timestamp,
        };
        let mut state = self.state.borrow_mut();
        let index_interval_bytes = self.config.index_interval_bytes;
        state.active_mut().record_batch(&scanned, index_interval_bytes);
        if let (None, Some(segment_ms), Some(now_ms)) = (state.active_roll_deadline_ms, self.config.segment_ms, now_ms)
        {
            state.active_roll_deadline_ms = Some(now_ms.saturating_add(i64::try_from(segment_ms).unwrap_or(i64::MAX)));
        }
        state.next = next_offset;
        state.stats.appends += 1;
        state.cache.push(base_offset, next_offset, bytes);
        let written = state.written;
        state.cache.evict(written);
        state.check_offsets();
        let info = AppendInfo { base_offset, next_offset, log_start_offset: state.log_start };
        drop(state);
        self.preallocate_ahead();
        Ok(info)
    }

    /// Whether a batch of `batch_bytes` can be appended without any I/O: the log is writable,
    /// the active segment needs no roll, its file is long enough and the write buffer has room.
    /// One borrow of the state. Errors when the log refuses appends.
    fn fits_in_place(&self, batch_bytes: u64, now_ms: Option<i64>) -> StorageResult<bool> {
        self.check_writable()?;
        let state = self.state.borrow();
        let active = state.active();
        Ok(!state.should_roll(batch_bytes, self.config.segment_bytes, now_ms)
            && active.size_bytes + batch_bytes <= active.allocated_bytes
            && batch_bytes <= state.write_buffer.room() as u64)
    }

    /// The append path that may wait for I/O: rolls the segment if it is full or old, grows
    /// the file, and copies the batch into the write buffer, writing full buffers out. Returns
    /// the batch's base offset, its position in the active segment and its stamped bytes.
    async fn prepare_with_io(
        &self,
        mut batch: BytesMut,
        leader_epoch: LeaderEpoch,
        now_ms: Option<i64>,
    ) -> StorageResult<(Offset, u64, Bytes)> {
        let batch_bytes = batch.len() as u64;
        let roll = {
            let state = self.state.borrow();
            state.should_roll(batch_bytes, self.config.segment_bytes, now_ms)
        };
        if roll {
            self.roll().await?;
        }
        let (base_offset, position) = {
            let state = self.state.borrow();
            (state.next, state.active().size_bytes)
        };
        stamp(&mut batch, base_offset, leader_epoch)?;
        let bytes = batch.freeze();
        self.ensure_allocated(position + batch_bytes).await?;
        self.copy_into_write_buffer(&bytes).await?;
        Ok((base_offset, position, bytes))
    }

    /// Copies `bytes` into the write buffer, writing the buffer out whenever it fills.
    async fn copy_into_write_buffer(&self, mut bytes: &[u8]) -> StorageResult<()> {
        while !bytes.is_empty() {
            let copied = self.state.borrow_mut().write_buffer.push(bytes);
            bytes = &bytes[copied..];
            if !bytes.is_empty() {
                self.write_behind().await?;
            }
        }
        Ok(())
    }

    async fn ensure_allocated(&self, needed_bytes: u64) -> StorageResult<()> {
        if self.state.borrow().active().allocated_bytes < needed_bytes {
            // Usually complete already: it was started half a step ago.
            self.finish_preallocation().await;
        }
        let allocated = self.state.borrow().active().allocated_bytes;
        if needed_bytes <= allocated {
            return Ok(());
        }
        // Take the segment's file out for the await; the append lock keeps the active segment.
        let file = self.state.borrow().active().file.clone();
        let target = self.config.preallocation_target(allocated, needed_bytes);
        let result = file.pre_allocate(target, false).await;
        let mut state = self.state.borrow_mut();
        state.stats.allocations_waited += 1;
        let active = state.active_mut();
        match result {
            Ok(()) => {
                active.allocated_bytes = target;
                Ok(())
            }
            Err(e) => Err(StorageError::io("pre-allocating segment", &active.log_path, e)),
        }
    }

    /// Flushes and syncs everything, persists the active segment's indexes and writes the
    /// clean-shutdown marker, so that the next open skips the recovery scan. Later calls to
    /// any method fail with `StorageError::Closed`.
    pub async fn close(&self) -> StorageResult<()> {
        let _order = acquire(&self.append_lock).await?;
        if self.state.borrow().closed {
            return Ok(());
        }
        self.finish_preallocation().await;
        self.wait_for_seal().await;
        self.finish_index_writes().await;
        let poisoned = self.is_poisoned();
        if !poisoned {
            self.flush(true).await?;
            let persisting = self.state.borrow().active().persist_indexes();
            persisting.await?;
            let state = self.state.borrow();
            let active = state.active();
            let marker = CleanShutdown {
                active_base_offset: active.base_offset,
                active_size_bytes: active.size_bytes,
                next_offset: state.next,
            };
            meta_file::write_atomically(&self.dir, CLEAN_SHUTDOWN_FILE_NAME, &marker.encode())?;
        }
        let files: Vec<_> = {
            let mut state = self.state.borrow_mut();
            state.closed = true;
            state.segments.values().map(|segment| segment.file.clone()).collect()
        };
        self.append_lock.close();
        self.flush_lock.close();
        for file in files {
            // Closing is best effort: the data is already synced.
            let _ = file.close_rc().await;
        }
        Ok(())
    }
}

/// The wall clock in milliseconds, read from `CLOCK_REALTIME_COARSE`: the time of the last
/// kernel tick (a few milliseconds old at most), several times cheaper than a precise read,
/// which appends paid twice per batch. Precise enough for `segment_ms`, a limit of hours or days.
fn coarse_wall_clock_ms() -> i64 {
    let mut now = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: `now` is a valid, writable `timespec` for the duration of the call, which writes
    // nothing else.
    let result = unsafe { libc::clock_gettime(libc::CLOCK_REALTIME_COARSE, &mut now) };
    if result != 0 {
        return TimestampMs::now().0;
    }
    let seconds: i64 = now.tv_sec;
    let nanos: i64 = now.tv_nsec;
    seconds.saturating_mul(1000).saturating_add(nanos / 1_000_000)
}
