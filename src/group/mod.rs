//! Consumer groups: the coordinator's plain-Rust core (no runtime, no I/O).
//!
//! A group's **coordinator** is the shard that owns the group's partition of the internal
//! offsets topic ([`coordinator_partition`]); every group request is routed there. On that
//! shard:
//!
//! - [`Group`] is the KIP-848 state machine: members heartbeat
//!   ([`Group::heartbeat`]), the coordinator computes a target assignment with a sticky
//!   [`assignor`], and each member reconciles towards it incrementally: a partition goes to its
//!   new owner only after the previous owner stopped listing it (or was removed). Members that
//!   keep their partitions keep consuming through a rebalance. Epochs fence zombies.
//! - [`OffsetStore`] keeps the latest committed offset per (group, topic, partition); commits
//!   are validated against the group, appended to the offsets topic as [`GroupRecord`]s, and
//!   applied once durable. [`replay`] rebuilds the store at start-up; [`snapshot`] decides
//!   when a partition of the offsets topic is rewritten as its live records (bounded disk use).
//! - [`GroupCoordinator`] is one shard's set of groups and offsets behind the wire API: it turns
//!   requests (keys 11..=16) into responses plus the [`GroupRecord`]s the broker must append
//!   (and says in which order: durable before answering).
//! - [`PartitionProducerState`] (on each partition's shard, not the coordinator's) drops
//!   duplicate idempotent batches and refuses gaps; [`ProducerIdManager`] hands out ids.
//!
//! Time is an argument (`now_ms`) everywhere, so every path is testable without a clock.

pub mod assignor;
pub mod consumer_group;
pub mod coordinator;
pub mod member;
pub mod offsets;
pub mod producer_state;
pub mod records;
pub mod snapshot;

#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet};

use crate::protocol::TopicPartitions;

pub use assignor::{assign, AssignmentMember, AssignorKind};
pub use consumer_group::{
    Group, GroupConfig, GroupState, HeartbeatRequest, HeartbeatResponse, RemovalReason, HEARTBEAT_INTERVAL_MS_DEFAULT,
    REBALANCE_TIMEOUT_MS_DEFAULT, SESSION_TIMEOUT_MS_DEFAULT,
};
pub use coordinator::{CoordinatorOutput, GroupCoordinator};
pub use member::{Member, MemberState};
pub use offsets::{
    compact, coordinator_partition, coordinator_shard, replay, CommittedOffset, OffsetCommitEntry, OffsetStore,
    PreparedCommit, COMMIT_OFFSET_MAX, OFFSETS_TOPIC, OFFSETS_TOPIC_PARTITIONS_DEFAULT,
};
pub use producer_state::{
    PartitionProducerState, ProducerBatch, ProducerIdManager, SequenceCheck, PRODUCER_BATCHES_REMEMBERED,
};
pub use records::{GroupMetadataRecord, GroupRecord, OffsetCommitRecord, RecordDecodeError, RecordKey};

/// Partitions per topic: what a member may consume, or should.
pub type Assignment = BTreeMap<String, BTreeSet<u32>>;

/// Partition count per topic name: the topic metadata an assignor works from.
pub type TopicPartitionCounts = BTreeMap<String, u32>;

/// Number of partitions in an assignment.
pub fn assignment_len(assignment: &Assignment) -> usize {
    assignment.values().map(BTreeSet::len).sum()
}

/// An assignment in wire form (topics and partitions ascending).
pub fn assignment_to_wire(assignment: &Assignment) -> Vec<TopicPartitions> {
    assignment
        .iter()
        .filter(|(_, partitions)| !partitions.is_empty())
        .map(|(topic, partitions)| TopicPartitions {
            topic: topic.clone(),
            partitions: partitions.iter().copied().collect(),
        })
        .collect()
}

/// An assignment from wire form; duplicates collapse, empty topics are dropped.
pub fn assignment_from_wire(topics: &[TopicPartitions]) -> Assignment {
    let mut assignment = Assignment::new();
    for tp in topics.iter().filter(|tp| !tp.partitions.is_empty()) {
        assignment.entry(tp.topic.clone()).or_default().extend(tp.partitions.iter().copied());
    }
    assignment
}
