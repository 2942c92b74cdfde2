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
        if doomed.is_empty() {
            return Ok(RetentionReport { log_start_offset: self.log_start_offset(), ..RetentionReport::default() });
        }
        let report = self.move_log_start(new_start, &doomed).await?;
        tracing::info!(dir = %self.dir.display(), deleted = report.deleted_segments, log_start_offset = %new_start, "retention deleted segments");
        Ok(report)
    }

    /// Moves the log start up to `offset` and deletes every closed segment wholly below it:
    /// what a snapshot of the log's live state (re-appended at `offset`) makes redundant.
    /// `offset` must be durable (`StorageError::OffsetOutOfRange` otherwise), so that a crash
    /// never leaves a log start past the recovered end; an offset at or below the log start
    /// changes nothing. Persisted before any file is removed, as for retention.
    pub async fn advance_log_start(&self, offset: Offset) -> StorageResult<RetentionReport> {
        let _order = acquire(&self.append_lock).await?;
        self.check_writable()?;
        let (doomed, log_start) = {
            let state = self.state.borrow();
            if offset > state.durable {
                return Err(StorageError::OffsetOutOfRange {
                    requested: offset,
                    log_start: state.log_start,
                    log_end: state.durable,
                });
            }
            let closed = state.segments.len() - 1;
            let doomed: Vec<(Offset, u64)> = state
                .segments
                .values()
                .take(closed)
                .take_while(|segment| segment.next_offset <= offset)
                .map(|segment| (segment.base_offset, segment.size_bytes))
                .collect();
            (doomed, state.log_start)
        };
        if offset <= log_start {
            return Ok(RetentionReport { log_start_offset: log_start, ..RetentionReport::default() });
        }
        self.move_log_start(offset, &doomed).await
    }

    /// Starts a new segment at the log end unless the active one is empty, so that whatever is
    /// appended next can outlive every segment before it (see [`Self::advance_log_start`]).
    /// Returns once the closed segment is sealed: everything before the new segment is durable.
    pub async fn roll_now(&self) -> StorageResult<()> {
        let _order = acquire(&self.append_lock).await?;
        self.check_writable()?;
        if self.state.borrow().active().is_empty() {
            return Ok(());
        }
        self.roll().await?;
        self.wait_for_seal().await;
        self.check_writable()
    }

    /// Persists `new_start` as the log start, then forgets and deletes the `doomed` segments
    /// (base offset, bytes). Called with the append lock held. The file work (two syncs for the
    /// log start, unlinks and a directory sync per segment) runs on the executor's blocking
    /// thread, so the shard's other partitions go on meanwhile.
    async fn move_log_start(&self, new_start: Offset, doomed: &[(Offset, u64)]) -> StorageResult<RetentionReport> {
        self.wait_for_seal().await;
        self.finish_index_writes().await;
        let dir = self.dir.clone();
        glommio::executor().spawn_blocking(move || meta_file::write_log_start(&dir, new_start)).await?;
        let files: Vec<_> = {
            let mut state = self.state.borrow_mut();
            state.log_start = new_start;
            state.cache.drop_below(new_start);
            doomed.iter().filter_map(|(base, _)| state.segments.remove(base)).map(|segment| segment.file).collect()
        };
        for file in files {
            let _ = file.close_rc().await; // readers may still hold it; they keep it open
        }
        let dir = self.dir.clone();
        let bases: Vec<Offset> = doomed.iter().map(|&(base, _)| base).collect();
        glommio::executor()
            .spawn_blocking(move || bases.into_iter().try_for_each(|base| remove_segment_files(&dir, base)))
            .await?;
        Ok(RetentionReport {
            log_start_offset: new_start,
            deleted_segments: doomed.len(),
            deleted_bytes: doomed.iter().map(|&(_, bytes)| bytes).sum(),
        })
    }

    /// Removes every batch at or after `offset` (a whole batch when `offset` falls inside it),
    /// so that the log end becomes the base of the first removed batch. Used by replication to
    /// cut a divergent tail. `offset` must not be below the log start.
    pub async fn truncate_to(&self, offset: Offset) -> StorageResult<Offset> {
        let _order = acquire(&self.append_lock).await?;
        self.check_writable()?;
        self.finish_preallocation().await;
        self.wait_for_seal().await;
        self.finish_index_writes().await;
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
        let file = state.active().file.clone();
        let fresh = state.fresh_buffer(&file);
        let segment = state.active_mut();
        segment.forget_after(cut_position, cut_offset);
        segment.allocated_bytes = cut_position;
        segment.remove_index_files()?;
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

#[cfg(test)]
mod tests {
    use crate::model::{LeaderEpoch, Offset, TimestampMs};
    use crate::storage::config::{Durability, LogConfig};
    use crate::storage::error::StorageError;
    use crate::storage::tail_cache::TailCacheBudget;
    use crate::storage::PartitionLog;
    use crate::testing::{batch_tag, make_batch, run_local};

    /// Guards snapshot compaction's log primitives: `roll_now` starts a segment at the log
    /// end, `advance_log_start` refuses a non-durable offset, deletes the segments wholly
    /// below the new start and keeps the rest readable, and the start survives a reopen.
    #[test]
    fn advance_log_start_deletes_whole_segments_below_it_and_persists() {
        run_local(|| async {
            let dir = tempfile::tempdir().unwrap();
            let config = LogConfig {
                segment_bytes: 64 << 10,
                write_buffer_bytes: 16 << 10,
                durability: Durability::Never,
                ..LogConfig::default()
            };
            let open = |config: LogConfig| {
                let dir = dir.path().to_path_buf();
                async move { PartitionLog::open(&dir, config, TailCacheBudget::new(1 << 20)).await.unwrap().0 }
            };
            let log = open(config.clone()).await;
            for tag in 0..100 {
                log.append(make_batch(tag, 2, 1000, TimestampMs(1)), LeaderEpoch(1)).await.unwrap();
            }
            let rolled_before = log.segment_count();
            assert!(rolled_before > 1, "64 KiB segments must have rolled");
            log.roll_now().await.unwrap();
            log.roll_now().await.unwrap();
            assert_eq!(log.segment_count(), rolled_before + 1, "an empty active segment does not roll again");
            let snapshot_at = log.log_end_offset();
            let info = log.append(make_batch(1000, 2, 100, TimestampMs(2)), LeaderEpoch(1)).await.unwrap();
            assert_eq!(info.base_offset, snapshot_at);
            // A roll syncs, so `snapshot_at` is durable already; the batch after it is not.
            let not_durable = log.advance_log_start(info.next_offset).await;
            assert!(matches!(not_durable, Err(StorageError::OffsetOutOfRange { .. })), "{not_durable:?}");
            log.flush(true).await.unwrap();
            let report = log.advance_log_start(snapshot_at).await.unwrap();
            assert_eq!(report.deleted_segments, rolled_before);
            assert_eq!((log.log_start_offset(), log.segment_count()), (snapshot_at, 1));
            assert_eq!(log.advance_log_start(Offset(0)).await.unwrap().deleted_segments, 0, "never backwards");
            let read = log.read(snapshot_at, 1 << 20).await.unwrap();
            assert_eq!(read.batches.iter().map(|b| batch_tag(b)).collect::<Vec<_>>(), vec![Some(1000)]);
            log.close().await.unwrap();

            let log = open(config).await;
            assert_eq!((log.log_start_offset(), log.log_end_offset()), (snapshot_at, info.next_offset));
            assert!(matches!(log.read(Offset(0), 100).await, Err(StorageError::OffsetOutOfRange { .. })));
            log.close().await.unwrap();
        });
    }
}
