//! Which partition a produced record goes to.
//!
//! - **Keyed records**: `fnv1a_32(key) % partition_count`, where `fnv1a_32` is the 32-bit
//!   FNV-1a hash (offset basis `0x811c9dc5`, prime `0x01000193`, one byte at a time). This is a
//!   wire-visible contract, not an implementation detail: records with the same key must land
//!   on the same partition across client versions and languages, so **the function, its
//!   constants and the modulo must never change**. The test `keyed_partitions_are_stable` pins
//!   known keys to known partitions. (Kafka's Java client uses murmur2; ringmq is not
//!   key-compatible with it and does not try to be.)
//! - **Null keys**: sticky. Every null-key record of a topic goes to one partition until a
//!   batch for it is closed (full, or sent), then the topic moves to the next partition
//!   (round-robin). Sticky batches fill up instead of sending many tiny batches. The record
//!   that finds the sticky partition's batch full moves the partitioner on *before* it is
//!   appended (Kafka's KIP-480, [`super::accumulator::Accumulator::close_if_full`]), so it
//!   opens the next partition's batch instead of leaving a one-record batch behind.

use rustc_hash::FxHashMap;

use super::error::{ClientError, ClientResult};
use crate::model::PartitionId;

/// FNV-1a 32-bit offset basis. Never change (see the module doc).
pub const FNV1A_32_OFFSET_BASIS: u32 = 0x811c_9dc5;
/// FNV-1a 32-bit prime. Never change (see the module doc).
pub const FNV1A_32_PRIME: u32 = 0x0100_0193;

/// The 32-bit FNV-1a hash of `bytes`.
pub const fn fnv1a_32(bytes: &[u8]) -> u32 {
    let mut hash = FNV1A_32_OFFSET_BASIS;
    let mut i = 0;
    while i < bytes.len() {
        hash ^= bytes[i] as u32;
        hash = hash.wrapping_mul(FNV1A_32_PRIME);
        i += 1;
    }
    hash
}

/// The partition of a keyed record: `fnv1a_32(key) % partition_count`.
///
/// `partition_count` must be at least 1 (a topic always has a partition); 0 maps to partition 0
/// rather than dividing by zero.
pub fn partition_for_key(key: &[u8], partition_count: u32) -> PartitionId {
    PartitionId(fnv1a_32(key).checked_rem(partition_count).unwrap_or(0))
}

/// The partition of a record of `topic` (which has `partition_count` partitions): `given` if it
/// exists, else the key's ([`partition_for_key`]), else `sticky()` for a null key. The flag
/// tells whether the sticky choice was taken.
pub fn choose_partition(
    topic: &str,
    given: Option<PartitionId>,
    key: Option<&[u8]>,
    partition_count: u32,
    sticky: impl FnOnce() -> PartitionId,
) -> ClientResult<(PartitionId, bool)> {
    match (given, key) {
        (Some(partition), _) if partition.0 < partition_count => Ok((partition, false)),
        (Some(partition), _) => Err(ClientError::InvalidArgument(format!(
            "partition {partition} does not exist: topic '{topic}' has {partition_count} partitions"
        ))),
        (None, Some(key)) => Ok((partition_for_key(key, partition_count), false)),
        (None, None) => Ok((sticky(), true)),
    }
}

/// The sticky choice for null-key records, per topic. Owned by one producer.
#[derive(Debug, Default)]
pub struct StickyPartitioner {
    current: FxHashMap<String, u32>,
}

impl StickyPartitioner {
    pub fn new() -> StickyPartitioner {
        StickyPartitioner::default()
    }

    /// The partition for the next null-key record of `topic`. A topic starts at
    /// `fnv1a_32(topic) % partition_count`, so that producers of several topics do not all
    /// start on partition 0.
    pub fn partition(&mut self, topic: &str, partition_count: u32) -> PartitionId {
        let count = partition_count.max(1);
        // Looked up by `&str` first: a topic name is allocated once per topic, not per record.
        if !self.current.contains_key(topic) {
            self.current.insert(topic.to_owned(), fnv1a_32(topic.as_bytes()) % count);
        }
        let Some(current) = self.current.get_mut(topic) else { return PartitionId(0) };
        if *current >= count {
            // The topic has fewer partitions than when we chose (recreated): start over.
            *current %= count;
        }
        PartitionId(*current)
    }

    /// A batch of `topic`/`partition` was closed: if it was the sticky partition, move on.
    pub fn batch_closed(&mut self, topic: &str, partition: PartitionId, partition_count: u32) {
        if let Some(current) = self.current.get_mut(topic) {
            if *current == partition.0 {
                *current = (*current + 1) % partition_count.max(1);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Guards the cross-version contract: the FNV-1a reference vectors, and fixed keys to fixed
    /// partitions. If this fails, keyed records would move partitions after an upgrade.
    #[test]
    fn keyed_partitions_are_stable() {
        assert_eq!(fnv1a_32(b""), 0x811c_9dc5);
        assert_eq!(fnv1a_32(b"a"), 0xe40c_292c);
        assert_eq!(fnv1a_32(b"foobar"), 0xbf9c_f968);
        let cases: [(&[u8], u32, u32); 8] = [
            (b"", 12, 1),
            (b"a", 12, 4),
            (b"user-1", 7, 3),
            (b"user-2", 7, 4),
            (b"order:42", 12, 5),
            (b"order:42", 7, 6),
            (b"foobar", 7, 0),
            (b"\x00\xff", 3, 1),
        ];
        for (key, count, expected) in cases {
            assert_eq!(partition_for_key(key, count), PartitionId(expected), "{key:?} over {count}");
        }
        assert_eq!(partition_for_key(b"x", 1), PartitionId(0));
        assert_eq!(partition_for_key(b"x", 0), PartitionId(0));
    }

    /// Guards stickiness: one partition until its batch closes, then the next, round-robin;
    /// closing another partition's batch does not move it.
    #[test]
    fn null_keys_stick_until_the_batch_closes() {
        let mut sticky = StickyPartitioner::new();
        let first = sticky.partition("t", 3);
        assert_eq!(first, PartitionId(fnv1a_32(b"t") % 3));
        for _ in 0..10 {
            assert_eq!(sticky.partition("t", 3), first);
        }
        let other = PartitionId((first.0 + 1) % 3);
        sticky.batch_closed("t", other, 3);
        assert_eq!(sticky.partition("t", 3), first);
        let mut seen = vec![first];
        for _ in 0..3 {
            let current = sticky.partition("t", 3);
            sticky.batch_closed("t", current, 3);
            seen.push(sticky.partition("t", 3));
        }
        assert_eq!(seen[1], PartitionId((first.0 + 1) % 3));
        assert_eq!(seen[3], first, "round-robin comes back after 3 batches");
        // Another topic has its own sticky partition.
        let current = sticky.partition("t", 3);
        sticky.batch_closed("t", current, 3);
        assert_eq!(sticky.partition("u", 5), PartitionId(fnv1a_32(b"u") % 5));
        // A topic that shrank is handled without a partition out of range.
        assert!(sticky.partition("t", 1).0 < 1);
    }
}
