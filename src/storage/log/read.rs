//! The read path: whole batches from an offset, from the tail cache or from disk; lookup by
//! timestamp.

use bytes::Bytes;

use super::PartitionLog;
use crate::model::{Offset, TimestampMs};
use crate::storage::batch::for_each_record;
use crate::storage::error::{StorageError, StorageResult};

/// Whole batches read from a log, with the log's bounds at the time of the read.
#[derive(Clone, Debug, Default)]
pub struct ReadBatches {
    /// Batches in offset order, each exactly as appended (stamped).
    pub batches: Vec<Bytes>,
    pub log_start_offset: Offset,
    pub log_end_offset: Offset,
}

impl ReadBatches {
    pub fn total_bytes(&self) -> usize {
        self.batches.iter().map(Bytes::len).sum()
    }
}

impl PartitionLog {
    /// Whole batches starting with the one that holds `offset`, up to `max_bytes` in total —
    /// but always at least one batch when there is one, so that a consumer makes progress past
    /// a batch bigger than its limit. Recent batches come from the tail cache; older ones by
    /// aligned DMA reads, each batch's CRC checked again after the read.
    ///
    /// `offset == log end` gives no batches; outside `[log start, log end]` gives
    /// `OffsetOutOfRange` with both bounds.
    pub async fn read(&self, offset: Offset, max_bytes: usize) -> StorageResult<ReadBatches> {
        let (segment_base, start_position, start_offset, end_position, segment_next) = {
            let state = self.state.borrow();
            if state.closed {
                return Err(StorageError::Closed);
            }
            let mut result =
                ReadBatches { batches: Vec::new(), log_start_offset: state.log_start, log_end_offset: state.next };
            if offset < state.log_start || offset > state.next {
                return Err(StorageError::OffsetOutOfRange {
                    requested: offset,
                    log_start: state.log_start,
                    log_end: state.next,
                });
            }
            if offset == state.next {
                return Ok(result);
            }
            if let Some(batches) = state.cache.read(offset, max_bytes) {
                result.batches = batches;
                return Ok(result);
            }
            // The segment holding `offset`: the last one based at or below it.
            let Some(segment) = state.segments.range(..=offset).next_back().map(|(_, s)| s) else {
                return Ok(result);
            };
            let (start_offset, start_position) = match segment.index.floor(offset) {
                Some(entry) => (entry.offset, u64::from(entry.position)),
                None => (segment.base_offset, 0),
            };
            (segment.base_offset, start_position, start_offset, segment.written_bytes, segment.next_offset)
        };
        if offset >= segment_next {
            // Between segments (cannot happen with contiguous segments) or not yet written.
            return Ok(self.bounds_only());
        }
        let reader = match self.state.borrow().segments.get(&segment_base) {
            Some(segment) => segment.reader(),
            None => return Ok(self.bounds_only()), // removed by retention meanwhile
        };
        let mut batches = Vec::new();
        let mut taken_bytes = 0usize;
        let (_, stop) = reader
            .walk(start_position, start_offset, end_position, |batch, bytes| {
                if batch.next_offset <= offset {
                    return true;
                }
                if !batches.is_empty() && taken_bytes + bytes.len() > max_bytes {
                    return false;
                }
                taken_bytes += bytes.len();
                batches.push(Bytes::copy_from_slice(bytes));
                taken_bytes < max_bytes
            })
            .await?;
        if let Some(stop) = stop {
            if batches.is_empty() {
                return Err(StorageError::Corrupt {
                    path: self.dir.clone(),
                    position: start_position,
                    reason: format!("reading offset {offset}: {stop}"),
                });
            }
        }
        let mut result = self.bounds_only();
        result.batches = batches;
        Ok(result)
    }

    fn bounds_only(&self) -> ReadBatches {
        let state = self.state.borrow();
        ReadBatches { batches: Vec::new(), log_start_offset: state.log_start, log_end_offset: state.next }
    }

    /// The offset of the first record whose timestamp is at or after `target`, or `None` when
    /// every record is older.
    pub async fn offset_for_timestamp(&self, target: TimestampMs) -> StorageResult<Option<Offset>> {
        // The first segment whose newest record reaches `target`, and where to scan from in it.
        let mut from = {
            let state = self.state.borrow();
            let segment =
                state.segments.values().find(|segment| segment.max_timestamp.is_some_and(|max| max >= target));
            match segment {
                Some(segment) => segment.time_index.scan_start(target).unwrap_or(segment.base_offset),
                None => return Ok(None),
            }
            .max(state.log_start)
        };
        // Bounded: each round moves `from` past at least one batch.
        loop {
            let read = self.read(from, 1 << 20).await?;
            if read.batches.is_empty() {
                return Ok(None);
            }
            for batch in &read.batches {
                let mut found = None;
                let mut last_offset = from;
                for_each_record(batch, |record| {
                    last_offset = record.offset;
                    if found.is_none() && record.offset >= from && record.timestamp >= target {
                        found = Some(record.offset);
                    }
                })?;
                if found.is_some() {
                    return Ok(found);
                }
                from = last_offset.plus(1);
            }
        }
    }
}
