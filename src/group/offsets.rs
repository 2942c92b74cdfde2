//! Committed offsets: the in-memory store, commit validation, replay and compaction of the
//! offsets topic, and which partition of it (hence which shard) coordinates a group.
//!
//! **Durability contract**: [`OffsetStore::prepare_commit`] validates and returns the records
//! to append; nothing is visible to OffsetFetch until the broker has appended them durably to
//! the group's offsets-topic partition and called [`OffsetStore::apply`] for each. The commit
//! is acknowledged to the client only then. So a fetch never returns an offset that a crash
//! could take back.

use std::collections::BTreeMap;

use crate::model::PartitionId;
use crate::protocol::apis::group_limits::OFFSET_METADATA_BYTES_MAX;
use crate::protocol::{validate_topic_name, ErrorCode};
use crate::shard::placement::{owner_shard, stable_hash, ShardId};

use super::consumer_group::Group;
use super::records::{GroupMetadataRecord, GroupRecord, OffsetCommitRecord};

/// The internal topic holding committed offsets and group metadata.
pub const OFFSETS_TOPIC: &str = "__consumer_offsets";
/// Its partition count. It fixes which shard coordinates a group, so changing it moves groups
/// (and needs their records moved): pick it once per cluster. Kafka's default is 50; 16 spreads
/// groups over up to 16 cores.
pub const OFFSETS_TOPIC_PARTITIONS_DEFAULT: u32 = 16;
/// Largest valid committed offset (Kafka offsets are signed 64-bit).
pub const COMMIT_OFFSET_MAX: u64 = i64::MAX as u64;

const _: () = assert!(OFFSETS_TOPIC_PARTITIONS_DEFAULT > 0);

/// The partition of the offsets topic that holds `group_id`'s records: FNV-1a 64 of the id
/// modulo the partition count. Its owning shard is the group's coordinator
/// (`shard::placement::owner_shard(OFFSETS_TOPIC, partition, shards)`).
pub fn coordinator_partition(group_id: &str, partitions: u32) -> u32 {
    (stable_hash(group_id.as_bytes()) % u64::from(partitions.max(1))) as u32
}

/// The shard that coordinates `group_id`: the owner of its offsets-topic partition. What
/// FindCoordinator answers, and where the broker routes the group's requests.
pub fn coordinator_shard(group_id: &str, offsets_partitions: u32, shard_count: usize) -> ShardId {
    owner_shard(OFFSETS_TOPIC, PartitionId(coordinator_partition(group_id, offsets_partitions)), shard_count)
}

/// One offset to commit, as the client sent it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OffsetCommitEntry {
    pub topic: String,
    pub partition: u32,
    pub offset: u64,
    pub metadata: String,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CommittedOffset {
    pub offset: u64,
    pub metadata: String,
    pub commit_timestamp_ms: i64,
}

/// What a commit request turned into: a code per entry (in request order), and the records to
/// append for the accepted ones.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PreparedCommit {
    pub results: Vec<(String, u32, ErrorCode)>,
    pub records: Vec<GroupRecord>,
}

/// The latest committed offset per (group, topic, partition), and each group's metadata record.
/// One per coordinator shard, for the groups of the offsets-topic partitions it owns.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct OffsetStore {
    offsets: BTreeMap<String, BTreeMap<(String, u32), CommittedOffset>>,
    groups: BTreeMap<String, GroupMetadataRecord>,
}

impl OffsetStore {
    pub fn new() -> OffsetStore {
        OffsetStore::default()
    }

    /// Validates a commit against the group and the offset rules and returns the records to
    /// append. Does not change the store (see the module's durability contract).
    ///
    /// `group` is `None` when the coordinator has no such group: only an admin commit (empty
    /// member id, epoch -1) is accepted then. Member errors (unknown, fenced, stale) fail every
    /// entry; entry errors (`InvalidCommitOffset`, `OffsetMetadataTooLarge`, `InvalidTopicName`)
    /// fail that entry only. Whether the topic and partition exist is the broker's check.
    pub fn prepare_commit(
        group_id: &str,
        group: Option<&Group>,
        member_id: &str,
        member_epoch: i32,
        entries: &[OffsetCommitEntry],
        now_ms: i64,
    ) -> PreparedCommit {
        let member_check = match group {
            Some(group) => group.validate_commit(member_id, member_epoch),
            None if member_id.is_empty() => Ok(()),
            None => Err(ErrorCode::UnknownMemberId),
        };
        let mut prepared = PreparedCommit::default();
        for entry in entries {
            let check = member_check.and_then(|()| {
                validate_topic_name(&entry.topic)?;
                if entry.offset > COMMIT_OFFSET_MAX {
                    return Err(ErrorCode::InvalidCommitOffset);
                }
                if entry.metadata.len() > OFFSET_METADATA_BYTES_MAX {
                    return Err(ErrorCode::OffsetMetadataTooLarge);
                }
                Ok(())
            });
            let code = check.err().unwrap_or(ErrorCode::None);
            prepared.results.push((entry.topic.clone(), entry.partition, code));
            if code.is_ok() {
                prepared.records.push(GroupRecord::OffsetCommit(OffsetCommitRecord {
                    group: group_id.to_owned(),
                    topic: entry.topic.clone(),
                    partition: entry.partition,
                    offset: entry.offset,
                    metadata: entry.metadata.clone(),
                    commit_timestamp_ms: now_ms,
                }));
            }
        }
        prepared
    }

    /// Applies one durable record (after its append, or while replaying the log).
    pub fn apply(&mut self, record: &GroupRecord) {
        match record {
            GroupRecord::OffsetCommit(r) => {
                let committed = CommittedOffset {
                    offset: r.offset,
                    metadata: r.metadata.clone(),
                    commit_timestamp_ms: r.commit_timestamp_ms,
                };
                self.offsets.entry(r.group.clone()).or_default().insert((r.topic.clone(), r.partition), committed);
            }
            GroupRecord::OffsetTombstone { group, topic, partition } => {
                if let Some(offsets) = self.offsets.get_mut(group) {
                    offsets.remove(&(topic.clone(), *partition));
                    if offsets.is_empty() {
                        self.offsets.remove(group);
                    }
                }
            }
            GroupRecord::GroupMetadata(r) => {
                self.groups.insert(r.group.clone(), r.clone());
            }
            GroupRecord::GroupTombstone { group } => {
                self.groups.remove(group);
                self.offsets.remove(group);
            }
        }
    }

    /// The committed offset of one partition.
    pub fn get(&self, group_id: &str, topic: &str, partition: u32) -> Option<&CommittedOffset> {
        self.offsets.get(group_id)?.get(&(topic.to_owned(), partition))
    }

    /// OffsetFetch: for each requested `(topic, partitions)` the committed offset of each
    /// partition (`None`: nothing committed). An empty `topics` means every topic with commits,
    /// an empty partition list every committed partition of that topic.
    pub fn fetch(
        &self,
        group_id: &str,
        topics: &[(String, Vec<u32>)],
    ) -> BTreeMap<String, BTreeMap<u32, Option<&CommittedOffset>>> {
        static NONE_COMMITTED: BTreeMap<(String, u32), CommittedOffset> = BTreeMap::new();
        let committed = self.offsets.get(group_id).unwrap_or(&NONE_COMMITTED);
        let committed_of = |topic: &str| {
            committed
                .range((topic.to_owned(), 0)..=(topic.to_owned(), u32::MAX))
                .map(|((_, p), offset)| (*p, Some(offset)))
                .collect::<BTreeMap<u32, Option<&CommittedOffset>>>()
        };
        if topics.is_empty() {
            let mut out: BTreeMap<String, BTreeMap<u32, Option<&CommittedOffset>>> = BTreeMap::new();
            for ((topic, p), offset) in committed {
                out.entry(topic.clone()).or_default().insert(*p, Some(offset));
            }
            return out;
        }
        topics
            .iter()
            .map(|(topic, partitions)| {
                let found = if partitions.is_empty() {
                    committed_of(topic)
                } else {
                    partitions.iter().map(|&p| (p, committed.get(&(topic.clone(), p)))).collect()
                };
                (topic.clone(), found)
            })
            .collect()
    }

    /// The groups with a metadata record (to restore with [`Group::restore`]).
    pub fn group_records(&self) -> impl Iterator<Item = &GroupMetadataRecord> {
        self.groups.values()
    }

    /// Every group with a metadata record or a committed offset (ListGroups of empty groups).
    pub fn group_ids(&self) -> impl Iterator<Item = &String> {
        let mut ids: Vec<&String> = self.groups.keys().chain(self.offsets.keys()).collect();
        ids.sort();
        ids.dedup();
        ids.into_iter()
    }

    /// The store as records: one per live key, groups first. Replaying them gives this store.
    pub fn snapshot(&self) -> Vec<GroupRecord> {
        self.snapshot_where(|_| true)
    }

    /// [`OffsetStore::snapshot`] of the groups for which `keep(group_id)` holds (e.g. those of
    /// one offsets-topic partition).
    pub fn snapshot_where(&self, keep: impl Fn(&str) -> bool) -> Vec<GroupRecord> {
        let groups = self.groups.values().filter(|record| keep(&record.group)).cloned().map(GroupRecord::GroupMetadata);
        let offsets = self.offsets.iter().filter(|(group, _)| keep(group)).flat_map(|(group, offsets)| {
            offsets.iter().map(move |((topic, partition), c)| {
                GroupRecord::OffsetCommit(OffsetCommitRecord {
                    group: group.clone(),
                    topic: topic.clone(),
                    partition: *partition,
                    offset: c.offset,
                    metadata: c.metadata.clone(),
                    commit_timestamp_ms: c.commit_timestamp_ms,
                })
            })
        });
        groups.chain(offsets).collect()
    }
}

/// Rebuilds the store from the offsets-topic records, oldest first: the latest record per key
/// wins; a group tombstone drops the group and its offsets.
pub fn replay<'a>(records: impl IntoIterator<Item = &'a GroupRecord>) -> OffsetStore {
    let mut store = OffsetStore::new();
    for record in records {
        store.apply(record);
    }
    store
}

/// Compacts a run of records into the fewest that replay to the same state: the latest record
/// per key, tombstoned keys dropped. The result replaces the *whole* run (a snapshot, as a
/// checkpoint for bounded disk use); it is not safe to splice into the middle of a log, where a
/// tombstone must survive to shadow older records.
pub fn compact(records: &[GroupRecord]) -> Vec<GroupRecord> {
    replay(records).snapshot()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Pins group placement: changing it moves every group to another coordinator at upgrade.
    #[test]
    fn coordinator_placement_is_stable() {
        assert_eq!(coordinator_partition("", 16), (0xcbf2_9ce4_8422_2325u64 % 16) as u32);
        assert_eq!(coordinator_partition("a", 16), (0xaf63_dc4c_8601_ec8cu64 % 16) as u32);
        assert_eq!(coordinator_partition("a", 0), 0, "no partitions counts as one");
        let shards: std::collections::BTreeSet<usize> =
            (0..64).map(|i| coordinator_shard(&format!("group-{i}"), 16, 4).0).collect();
        assert_eq!(shards.len(), 4, "groups spread over every shard");
    }
}
