//! Which shard owns a partition: a stable function of (topic, partition, shard count).
//!
//! Plain Rust. The on-disk layout does not depend on it, so a restart with another `--cores`
//! only moves partitions between shards; nothing is lost.

use crate::model::PartitionId;

/// A shard's index, `0..shard_count`; one shard per core.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ShardId(pub usize);

impl std::fmt::Display for ShardId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

/// FNV-1a, 64 bits: stable across builds and platforms (unlike std's `DefaultHasher`).
pub fn stable_hash(bytes: &[u8]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for &byte in bytes {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    hash
}

/// The shard that owns `partition` of `topic`. Consecutive partitions of a topic go to
/// consecutive shards, starting from one picked by the topic name, so that a topic's
/// partitions spread evenly and different topics start on different shards.
pub fn owner_shard(topic: &str, partition: PartitionId, shard_count: usize) -> ShardId {
    let shard_count = shard_count.max(1) as u64;
    let first = stable_hash(topic.as_bytes()) % shard_count;
    ShardId(((first + u64::from(partition.0) % shard_count) % shard_count) as usize)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placement_is_stable_and_spreads_a_topic_over_every_shard() {
        // Pinned values: changing the function moves partitions between shards at upgrade.
        // The published FNV-1a 64 test vectors.
        assert_eq!(stable_hash(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(stable_hash(b"a"), 0xaf63_dc4c_8601_ec8c);
        let shards: Vec<usize> = (0..4)
            .map(|p| owner_shard("orders", PartitionId(p), 4).0)
            .collect();
        let mut sorted = shards.clone();
        sorted.sort();
        assert_eq!(
            sorted,
            vec![0, 1, 2, 3],
            "4 partitions over 4 shards: one each"
        );
        assert_eq!(owner_shard("orders", PartitionId(7), 1), ShardId(0));
        assert_eq!(
            owner_shard("orders", PartitionId(7), 0),
            ShardId(0),
            "no shards counts as one"
        );
    }
}
