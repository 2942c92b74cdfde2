//! Retention (deleting whole old segments) and truncation of the tail (for replication).

use super::open::remove_segment_files;
use super::{acquire, PartitionLog};
use crate::model::{Offset, TimestampMs};
use crate::storage::error::{StorageError, StorageResult};
use crate::storage::meta_file;
use crate::storage::segment::{align_down, PAGE_BYTES};
use crate::storage::write_buffer::WriteBuffer;

/// What one retention pass deleted.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RetentionReport {
    pub deleted_segments: usize,
    pub deleted_bytes: u64,
    pub log_start_offset: Offset,
}

impl PartitionLog {
    /// Deletes the oldest closed segments that `retention_ms` or `retention_bytes` no longer
    /// keep, as of `now`. The active segment is never deleted. The new log start offset is
    /// persisted before any file is removed, so a crash in between only leaves files that the
    /// next open deletes.
    pub async fn apply_retention(&self, now: TimestampMs) -> StorageResult<RetentionReport> {
        let _order = acquire(&self.append_lock).await?;
        self.check_writable()?;
        let (doomed, new_start) = {
            let state = self.state.borrow();
            let mut total_bytes: u64 = state.segments.values().map(|segment| segment.size_bytes).sum();
            let closed = state.segments.len() - 1;
            let mut doomed = Vec::new();
            let mut new_start = state.log_start;
            for segment in state.segments.values().take(closed) {
                let too_old = match (self.config.retention_ms, segment.max_timestamp) {
                    (Some(retention_ms), Some(newest)) => {
                        now.0.saturating_sub(newest.0) > i64::try_from(retention_ms).unwrap_or(i64::MAX)
                    }
                    _ => false,
                };
                // Kafka's rule: delete while the log would still hold at least the limit.
                let too_big = self
                    .config
                    .retention_bytes
                    .is_some_and(|limit| total_bytes.saturating_sub(segment.size_bytes) >= limit);
                if !(too_old || too_big) {
                    break;
                }
                total_bytes -= segment.size_bytes;
                doomed.push((segment.base_offset, segment.size_bytes));
                new_start = new_start.max(segment.next_offset);
            }
            (doomed, new_start)
        };
        let mut report = RetentionReport { log_start_offset: new_start, ..RetentionReport::default() };
        if doomed.is_empty() {
            report.log_start_offset = self.log_start_offset();
            return Ok(report);
        }
        meta_file::write_log_start(&self.dir, new_start)?;
        let files: Vec<_> = {
            let mut state = self.state.borrow_mut();
            state.log_start = new_start;
            state.cache.drop_below(new_start);
            doomed.iter().filter_map(|(base, _)| state.segments.remove(base)).map(|segment| segment.file).collect()
        };
        for file in files {
            let _ = file.close_rc().await; // readers may still hold it; they keep it open
        }
        for &(base, bytes) in &doomed {
            remove_segment_files(&self.dir, base)?;
            report.deleted_segments += 1;
            report.deleted_bytes += bytes;
        }
        tracing::info!(dir = %self.dir.display(), deleted = report.deleted_segments, log_start_offset = %new_start, "retention deleted segments");
        Ok(report)
    }

    /// Removes every batch at or after `offset` (a whole batch when `offset` falls inside it),
    /// so that the log end becomes the base of the first removed batch. Used by replication to
    /// cut a divergent tail. `offset` must not be below the log start.
    pub async fn truncate_to(&self, offset: Offset) -> StorageResult<Offset> {
        let _order = acquire(&self.append_lock).await?;
        self.check_writable()?;
        self.flush(true).await?;
        self.wait_for_sync_idle().await;
        let _flushing = acquire(&self.flush_lock).await?;
        let (log_start, next) = {
            let state = self.state.borrow();
            (state.log_start, state.next)
        };
        if offset >= next {
            return Ok(next);
        }
        if offset < log_start {
            return Err(StorageError::OffsetOutOfRange { requested: offset, log_start, log_end: next });
        }
        // Drop whole segments that start at or after the cut, but keep the one holding it.
        let later: Vec<Offset> = {
            let state = self.state.borrow();
            let holder = state.segments.range(..=offset).next_back().map(|(base, _)| *base);
            state.segments.keys().copied().filter(|base| Some(*base) != holder && *base > offset).collect()
        };
        for base in later {
            let segment = self.state.borrow_mut().segments.remove(&base);
            if let Some(segment) = segment {
                let _ = segment.file.close_rc().await;
                remove_segment_files(&self.dir, base)?;
            }
        }
        // Find the cut position in the segment that holds `offset`.
        let (reader, start_offset, start_position, end_position) = {
            let state = self.state.borrow();
            let segment = state.active();
            let (start_offset, start_position) = match segment.index.floor(offset) {
                Some(entry) => (entry.offset, u64::from(entry.position)),
                None => (segment.base_offset, 0),
            };
            (segment.reader(), start_offset, start_position, segment.size_bytes)
        };
        let mut cut = (start_position, start_offset);
        reader
            .walk(start_position, start_offset, end_position, |batch, _| {
                if batch.next_offset <= offset {
                    cut = (batch.position + u64::from(batch.length), batch.next_offset);
                    true
                } else {
                    false
                }
            })
            .await?;
        let (cut_position, cut_offset) = cut;
        let file = self.state.borrow().active().file.clone();
        let path = self.state.borrow().active().log_path.clone();
        if let Err(e) = file.truncate(cut_position).await {
            return Err(self.poison(StorageError::io("truncating segment", &path, e)));
        }
        if let Err(e) = file.fdatasync().await {
            return Err(self.poison(StorageError::io("syncing segment", &path, e)));
        }
        let page_start = align_down(cut_position);
        let partial = if cut_position > page_start {
            let page = reader.read_range(page_start, PAGE_BYTES).await?;
            page.get(..(cut_position - page_start) as usize).map(<[u8]>::to_vec).unwrap_or_default()
        } else {
            Vec::new()
        };
        let mut state = self.state.borrow_mut();
        let segment = state.active_mut();
        segment.forget_after(cut_position, cut_offset);
        segment.allocated_bytes = cut_position;
        segment.remove_index_files()?;
        let fresh = segment.alloc_buffer(self.config.write_buffer_bytes);
        state.write_buffer = WriteBuffer::new(fresh, cut_position, &partial);
        state.next = cut_offset;
        state.written = state.written.min(cut_offset);
        state.durable = state.durable.min(cut_offset);
        state.cache.truncate_from(cut_offset);
        state.check_offsets();
        tracing::info!(dir = %self.dir.display(), log_end_offset = %cut_offset, "truncated the log");
        Ok(cut_offset)
    }
}
