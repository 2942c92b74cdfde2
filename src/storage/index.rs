//! Sparse per-segment indexes: offset → file position and timestamp → offset.
//!
//! Plain Rust, no I/O: the segment owns one of each in memory, adds an entry every
//! `index_interval_bytes` of batches, and writes them to `.index` / `.timeindex` files when the
//! segment closes. A lookup gives a place to *start scanning* from; the reader walks batches
//! forward from there, so an index that is short (fewer entries than it could have) is still
//! correct, only slower. An index file that fails [`OffsetIndex::decode`] is rebuilt from the log.
//!
//! File formats (little-endian, entries back to back, no header):
//! - `.index`: `relative_offset u32, position u32` — 8 bytes an entry, both strictly increasing.
//! - `.timeindex`: `max_timestamp_ms i64, relative_offset u32` — 12 bytes an entry, both
//!   non-decreasing / strictly increasing.

use crate::model::{Offset, TimestampMs};

pub const OFFSET_ENTRY_BYTES: usize = 8;
pub const TIME_ENTRY_BYTES: usize = 12;

/// Why an index file could not be used. The caller rebuilds the index from the log.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IndexError {
    #[error("index file length {length} is not a multiple of {entry_bytes}")]
    RaggedLength { length: usize, entry_bytes: usize },
    #[error("index entry {entry} is not after the entry before it")]
    NotIncreasing { entry: usize },
}

/// A batch's place in a segment: the offset of its first record and its byte position.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IndexEntry {
    pub offset: Offset,
    pub position: u32,
}

/// Sparse offset index of one segment. Owned by the partition's shard.
#[derive(Clone, Debug)]
pub struct OffsetIndex {
    base_offset: Offset,
    /// (offset relative to `base_offset`, position); both strictly increasing.
    entries: Vec<(u32, u32)>,
}

impl OffsetIndex {
    pub fn new(base_offset: Offset) -> Self {
        OffsetIndex { base_offset, entries: Vec::new() }
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Records that the batch starting at `offset` sits at `position`. Entries that would not
    /// keep both columns strictly increasing are ignored (the index stays sparse and valid).
    pub fn push(&mut self, offset: Offset, position: u32) {
        let Some(relative) = relative_offset(self.base_offset, offset) else {
            return;
        };
        if let Some(&(last_relative, last_position)) = self.entries.last() {
            if relative <= last_relative || position <= last_position {
                return;
            }
        }
        self.entries.push((relative, position));
    }

    /// The last entry at or before `offset`: where to start scanning for it. `None` when the
    /// offset is before the first entry (scan from position 0).
    pub fn floor(&self, offset: Offset) -> Option<IndexEntry> {
        let relative = relative_offset(self.base_offset, offset)?;
        let after = self.entries.partition_point(|&(entry, _)| entry <= relative);
        let (entry, position) = *self.entries.get(after.checked_sub(1)?)?;
        Some(IndexEntry { offset: self.base_offset.plus(u64::from(entry)), position })
    }

    pub fn last(&self) -> Option<IndexEntry> {
        self.entries
            .last()
            .map(|&(entry, position)| IndexEntry { offset: self.base_offset.plus(u64::from(entry)), position })
    }

    /// Drops every entry at or after `position` (the log was cut there).
    pub fn truncate_to_position(&mut self, position: u32) {
        let keep = self.entries.partition_point(|&(_, entry_position)| entry_position < position);
        self.entries.truncate(keep);
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut bytes = Vec::with_capacity(self.entries.len() * OFFSET_ENTRY_BYTES);
        for &(relative, position) in &self.entries {
            bytes.extend_from_slice(&relative.to_le_bytes());
            bytes.extend_from_slice(&position.to_le_bytes());
        }
        bytes
    }

    pub fn decode(base_offset: Offset, bytes: &[u8]) -> Result<Self, IndexError> {
        if bytes.len() % OFFSET_ENTRY_BYTES != 0 {
            return Err(IndexError::RaggedLength { length: bytes.len(), entry_bytes: OFFSET_ENTRY_BYTES });
        }
        let mut entries: Vec<(u32, u32)> = Vec::with_capacity(bytes.len() / OFFSET_ENTRY_BYTES);
        for (entry, chunk) in bytes.chunks_exact(OFFSET_ENTRY_BYTES).enumerate() {
            let relative = read_u32(chunk, 0);
            let position = read_u32(chunk, 4);
            if let Some(&(last_relative, last_position)) = entries.last() {
                if relative <= last_relative || position <= last_position {
                    return Err(IndexError::NotIncreasing { entry });
                }
            }
            entries.push((relative, position));
        }
        Ok(OffsetIndex { base_offset, entries })
    }
}

/// Sparse timestamp index of one segment: the largest timestamp seen so far and the offset of
/// the batch that raised it. Owned by the partition's shard.
#[derive(Clone, Debug)]
pub struct TimeIndex {
    base_offset: Offset,
    /// (max timestamp so far, relative offset); timestamps non-decreasing, offsets increasing.
    entries: Vec<(i64, u32)>,
}

impl TimeIndex {
    pub fn new(base_offset: Offset) -> Self {
        TimeIndex { base_offset, entries: Vec::new() }
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Records that the batch starting at `offset` raised the segment's max timestamp to
    /// `max_timestamp`. Ignored unless it raises the timestamp and moves the offset forward.
    pub fn push(&mut self, max_timestamp: TimestampMs, offset: Offset) {
        let Some(relative) = relative_offset(self.base_offset, offset) else {
            return;
        };
        if let Some(&(last_timestamp, last_relative)) = self.entries.last() {
            if max_timestamp.0 <= last_timestamp || relative <= last_relative {
                return;
            }
        }
        self.entries.push((max_timestamp.0, relative));
    }

    /// Where to start scanning for the first record with a timestamp ≥ `target`: the offset of
    /// the last entry whose max timestamp is still below `target` (every batch before it is
    /// older), or `None` to scan from the segment's start.
    pub fn scan_start(&self, target: TimestampMs) -> Option<Offset> {
        let below = self.entries.partition_point(|&(timestamp, _)| timestamp < target.0);
        let (_, relative) = *self.entries.get(below.checked_sub(1)?)?;
        Some(self.base_offset.plus(u64::from(relative)))
    }

    pub fn max_timestamp(&self) -> Option<TimestampMs> {
        self.entries.last().map(|&(timestamp, _)| TimestampMs(timestamp))
    }

    /// Drops every entry at or after `offset` (the log was cut there).
    pub fn truncate_to_offset(&mut self, offset: Offset) {
        let Some(relative) = relative_offset(self.base_offset, offset) else {
            self.entries.clear();
            return;
        };
        let keep = self.entries.partition_point(|&(_, entry)| entry < relative);
        self.entries.truncate(keep);
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut bytes = Vec::with_capacity(self.entries.len() * TIME_ENTRY_BYTES);
        for &(timestamp, relative) in &self.entries {
            bytes.extend_from_slice(&timestamp.to_le_bytes());
            bytes.extend_from_slice(&relative.to_le_bytes());
        }
        bytes
    }

    pub fn decode(base_offset: Offset, bytes: &[u8]) -> Result<Self, IndexError> {
        if bytes.len() % TIME_ENTRY_BYTES != 0 {
            return Err(IndexError::RaggedLength { length: bytes.len(), entry_bytes: TIME_ENTRY_BYTES });
        }
        let mut entries: Vec<(i64, u32)> = Vec::with_capacity(bytes.len() / TIME_ENTRY_BYTES);
        for (entry, chunk) in bytes.chunks_exact(TIME_ENTRY_BYTES).enumerate() {
            let mut timestamp = [0u8; 8];
            timestamp.copy_from_slice(&chunk[..8]);
            let timestamp = i64::from_le_bytes(timestamp);
            let relative = read_u32(chunk, 8);
            if let Some(&(last_timestamp, last_relative)) = entries.last() {
                if timestamp < last_timestamp || relative <= last_relative {
                    return Err(IndexError::NotIncreasing { entry });
                }
            }
            entries.push((timestamp, relative));
        }
        Ok(TimeIndex { base_offset, entries })
    }
}

/// `offset - base` as a `u32`, or `None` when it is below the base or too far from it.
fn relative_offset(base: Offset, offset: Offset) -> Option<u32> {
    u32::try_from(offset.0.checked_sub(base.0)?).ok()
}

/// Reads a little-endian u32 at `at`; the callers pass chunks of a fixed size that hold it.
fn read_u32(chunk: &[u8], at: usize) -> u32 {
    let mut word = [0u8; 4];
    word.copy_from_slice(&chunk[at..at + 4]);
    u32::from_le_bytes(word)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn sample_index() -> OffsetIndex {
        let mut index = OffsetIndex::new(Offset(100));
        index.push(Offset(100), 0);
        index.push(Offset(110), 4096);
        index.push(Offset(125), 9000);
        index
    }

    #[test]
    fn floor_finds_the_entry_to_scan_from() {
        let index = sample_index();
        assert_eq!(index.floor(Offset(99)), None);
        assert_eq!(index.floor(Offset(100)), Some(IndexEntry { offset: Offset(100), position: 0 }));
        assert_eq!(index.floor(Offset(109)).map(|e| e.position), Some(0));
        assert_eq!(index.floor(Offset(110)).map(|e| e.position), Some(4096));
        assert_eq!(index.floor(Offset(1_000_000)).map(|e| e.position), Some(9000));
    }

    #[test]
    fn push_keeps_entries_strictly_increasing() {
        let mut index = sample_index();
        index.push(Offset(120), 10_000); // offset goes back
        index.push(Offset(130), 9000); // position does not move
        index.push(Offset(50), 20_000); // below the base
        assert_eq!(index.len(), 3);
    }

    #[test]
    fn offset_index_round_trips_and_truncates() {
        let index = sample_index();
        let decoded = OffsetIndex::decode(Offset(100), &index.encode()).unwrap();
        assert_eq!(decoded.entries, index.entries);
        let mut cut = decoded;
        cut.truncate_to_position(4096);
        assert_eq!(cut.last(), Some(IndexEntry { offset: Offset(100), position: 0 }));
    }

    #[test]
    fn offset_index_decode_rejects_ragged_and_unordered_files() {
        let bytes = sample_index().encode();
        assert!(matches!(
            OffsetIndex::decode(Offset(0), &bytes[..bytes.len() - 1]),
            Err(IndexError::RaggedLength { .. })
        ));
        let mut swapped = bytes[8..16].to_vec();
        swapped.extend_from_slice(&bytes[0..8]);
        assert!(matches!(OffsetIndex::decode(Offset(0), &swapped), Err(IndexError::NotIncreasing { .. })));
    }

    #[test]
    fn time_index_gives_the_last_older_entry_to_scan_from() {
        let mut index = TimeIndex::new(Offset(0));
        index.push(TimestampMs(1000), Offset(0));
        index.push(TimestampMs(2000), Offset(10));
        index.push(TimestampMs(2000), Offset(20)); // does not raise the timestamp: ignored
        index.push(TimestampMs(3000), Offset(30));
        assert_eq!(index.len(), 3);
        assert_eq!(index.scan_start(TimestampMs(500)), None);
        assert_eq!(index.scan_start(TimestampMs(1000)), None);
        assert_eq!(index.scan_start(TimestampMs(1500)), Some(Offset(0)));
        assert_eq!(index.scan_start(TimestampMs(2500)), Some(Offset(10)));
        assert_eq!(index.scan_start(TimestampMs(9999)), Some(Offset(30)));
        assert_eq!(index.max_timestamp(), Some(TimestampMs(3000)));
        let decoded = TimeIndex::decode(Offset(0), &index.encode()).unwrap();
        assert_eq!(decoded.entries, index.entries);
        let mut cut = decoded;
        cut.truncate_to_offset(Offset(10));
        assert_eq!(cut.max_timestamp(), Some(TimestampMs(1000)));
    }

    proptest! {
        /// Index files come from disk: any bytes decode to an error or to a valid index, never
        /// a panic, and a decoded index's lookups never panic either.
        #[test]
        fn decoding_arbitrary_bytes_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..256), probe in any::<u64>()) {
            if let Ok(index) = OffsetIndex::decode(Offset(7), &bytes) {
                let _ = index.floor(Offset(probe));
            }
            if let Ok(index) = TimeIndex::decode(Offset(7), &bytes) {
                let _ = index.scan_start(TimestampMs(probe as i64));
            }
        }
    }
}
