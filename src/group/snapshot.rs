//! Snapshots of the offsets topic: bounded disk use for a log that is only ever appended to.
//!
//! Every offsets-topic record is a "latest wins" upsert or a tombstone of its [`RecordKey`]
//! (see [`super::records`]), so a partition's whole log is worth exactly the live state it
//! replays to. When the log holds much more than that ([`snapshot_due`]), the coordinator
//! shard re-appends the partition's live records ([`partition_snapshot`]: the latest commit
//! per (group, topic, partition) and each group's metadata; deleted groups and offsets are
//! simply absent) as ordinary batches from offset S, makes them durable, and only then moves
//! the partition's log start to S, which deletes every segment below it. The shard side (locks,
//! appends, crash safety) is `crate::shard::offsets_snapshot`.
//!
//! **When.** A snapshot is due once the log holds at least [`snapshot_floor_bytes`] (the
//! partition's segment size, at most [`SNAPSHOT_FLOOR_BYTES_MAX`]) and at least
//! [`SNAPSHOT_LIVE_FACTOR`] times the live state (the size of the last snapshot). Right after a
//! snapshot the log holds only the live state, which is below both thresholds, so snapshots
//! never follow each other without new records in between; each one rewrites the live state
//! once per at least as many bytes of new records (write amplification at most 2). A partition's
//! log then stays below `max(floor, 2 × live) + one snapshot's batches + the records appended
//! while a snapshot is written`.
//!
//! [`RecordKey`]: super::records::RecordKey

use super::offsets::{coordinator_partition, OffsetStore};
use super::records::GroupRecord;

/// A snapshot is due when the log holds this many times the live state (Kafka's log cleaner
/// cleans at a dirty ratio of 0.5: the same factor).
pub const SNAPSHOT_LIVE_FACTOR: u64 = 2;
/// The most a partition's log grows before a snapshot when its live state is small: a quiet
/// coordinator with 16 offsets partitions keeps at most about 16 × 16 MiB of offsets records.
pub const SNAPSHOT_FLOOR_BYTES_MAX: u64 = 16 << 20;
/// Snapshot records are appended in batches of about this many bytes (at most half a segment,
/// and a batch may pass its target by one record: at most about 4.7 KB, well within a segment
/// of at least 64 KiB).
pub const SNAPSHOT_BATCH_BYTES_MAX: usize = 1 << 20;

/// The log size below which a partition is never snapshotted: its segment size, capped at
/// [`SNAPSHOT_FLOOR_BYTES_MAX`] (a test broker with tiny segments snapshots early).
pub fn snapshot_floor_bytes(segment_bytes: u64) -> u64 {
    segment_bytes.min(SNAPSHOT_FLOOR_BYTES_MAX)
}

/// Whether a partition whose log holds `log_bytes` (from its log start) should be rewritten,
/// given `live_bytes`, the size of its last snapshot (0 when none was taken since start-up).
pub fn snapshot_due(log_bytes: u64, live_bytes: u64, segment_bytes: u64) -> bool {
    log_bytes >= snapshot_floor_bytes(segment_bytes).max(live_bytes.saturating_mul(SNAPSHOT_LIVE_FACTOR))
}

/// The target size of one snapshot batch in a log of `segment_bytes` segments.
pub fn snapshot_batch_bytes(segment_bytes: u64) -> usize {
    usize::try_from(segment_bytes / 2).unwrap_or(usize::MAX).min(SNAPSHOT_BATCH_BYTES_MAX)
}

/// The live records of offsets-topic partition `partition` (of `partitions`): the metadata of
/// each of its groups, then the latest commit per (group, topic, partition). Replaying them
/// gives the store restricted to those groups; no tombstone is needed, since nothing older
/// survives below the snapshot.
pub fn partition_snapshot(store: &OffsetStore, partition: u32, partitions: u32) -> Vec<GroupRecord> {
    store.snapshot_where(|group| coordinator_partition(group, partitions) == partition)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::group::assignor::AssignorKind;
    use crate::group::offsets::replay;
    use crate::group::records::{GroupMetadataRecord, OffsetCommitRecord};

    fn commit(group: &str, topic: &str, partition: u32, offset: u64) -> GroupRecord {
        GroupRecord::OffsetCommit(OffsetCommitRecord {
            group: group.into(),
            topic: topic.into(),
            partition,
            offset,
            metadata: format!("m{offset}"),
            commit_timestamp_ms: offset as i64,
        })
    }

    fn metadata(group: &str, group_epoch: i32) -> GroupRecord {
        GroupRecord::GroupMetadata(GroupMetadataRecord {
            group: group.into(),
            group_epoch,
            assignor: AssignorKind::Uniform,
        })
    }

    /// Two groups per partition of 2, found by hashing.
    fn groups_of(partition: u32) -> Vec<String> {
        (0..100).map(|i| format!("g{i}")).filter(|g| coordinator_partition(g, 2) == partition).take(2).collect()
    }

    /// Guards the snapshot content: the latest commit per key and the latest metadata of the
    /// partition's own groups only; superseded commits, deleted offsets and deleted groups gone.
    #[test]
    fn a_partition_snapshot_holds_its_groups_latest_records_only() {
        let [a, b] = <[String; 2]>::try_from(groups_of(0)).unwrap();
        let [other, _] = <[String; 2]>::try_from(groups_of(1)).unwrap();
        let log = vec![
            metadata(&a, 1),
            commit(&a, "t", 0, 10),
            commit(&a, "t", 1, 5),
            commit(&other, "t", 0, 7),
            commit(&a, "t", 0, 20),
            metadata(&a, 2),
            GroupRecord::OffsetTombstone { group: a.clone(), topic: "t".into(), partition: 1 },
            metadata(&b, 1),
            commit(&b, "u", 3, 1),
            GroupRecord::GroupTombstone { group: b.clone() },
            commit(&b, "u", 4, 2),
        ];
        let store = replay(&log);
        let snapshot = partition_snapshot(&store, 0, 2);
        assert_eq!(snapshot, vec![metadata(&a, 2), commit(&a, "t", 0, 20), commit(&b, "u", 4, 2)]);
        assert_eq!(partition_snapshot(&store, 1, 2), vec![commit(&other, "t", 0, 7)]);
        assert!(partition_snapshot(&OffsetStore::new(), 0, 2).is_empty());
    }

    /// Guards the thresholds: nothing below the floor or below twice the live state, and a
    /// log holding just its snapshot is never due again.
    #[test]
    fn a_snapshot_is_due_past_the_floor_and_twice_the_live_state() {
        let segment = 64 << 10;
        assert!(!snapshot_due(segment - 1, 0, segment));
        assert!(snapshot_due(segment, 0, segment));
        assert!(!snapshot_due(segment, segment, segment), "the log must reach twice the live state");
        assert!(snapshot_due(2 * segment, segment, segment));
        assert_eq!(snapshot_floor_bytes(1 << 30), SNAPSHOT_FLOOR_BYTES_MAX);
        for live in [0, 1, segment - 1, segment, 5 * segment] {
            assert!(!snapshot_due(live, live, segment), "a fresh snapshot of {live} bytes is not due");
        }
        assert_eq!(snapshot_batch_bytes(64 << 10), 32 << 10);
        assert_eq!(snapshot_batch_bytes(1 << 30), SNAPSHOT_BATCH_BYTES_MAX);
    }

    fn record() -> impl Strategy<Value = GroupRecord> {
        let group = prop::sample::select(vec!["g0", "g1", "g2", "g3", "g4"]).prop_map(str::to_owned);
        prop_oneof![
            6 => (group.clone(), 0u32..3, 0u64..100).prop_map(|(g, p, o)| commit(&g, "t", p, o)),
            1 => (group.clone(), 0u32..3)
                .prop_map(|(group, partition)| GroupRecord::OffsetTombstone { group, topic: "t".into(), partition }),
            2 => (group.clone(), 0i32..50).prop_map(|(g, epoch)| metadata(&g, epoch)),
            1 => group.prop_map(|group| GroupRecord::GroupTombstone { group }),
        ]
    }

    proptest! {
        /// Guards crash safety and ordering: for every partition, replaying (a) the old log then
        /// any prefix of the snapshot (a crash before the log start moved), or (b) the snapshot
        /// alone (after it moved), then the records appended later, gives the full log's state.
        #[test]
        fn snapshots_replay_to_the_state_of_the_log(
            old in prop::collection::vec(record(), 0..60),
            later in prop::collection::vec(record(), 0..20),
            partitions in 1u32..4,
            cut in any::<usize>(),
        ) {
            let store = replay(&old);
            let expected = replay(old.iter().chain(&later));
            for partition in 0..partitions {
                let snapshot = partition_snapshot(&store, partition, partitions);
                let in_partition = |r: &&GroupRecord| coordinator_partition(r.group(), partitions) == partition;
                let own_old: Vec<&GroupRecord> = old.iter().filter(in_partition).collect();
                let own_later: Vec<&GroupRecord> = later.iter().filter(in_partition).collect();
                let own_expected = replay(own_old.iter().copied().chain(own_later.iter().copied()));
                let partial = &snapshot[..cut % (snapshot.len() + 1)];
                let crashed = replay(own_old.iter().copied().chain(partial).chain(own_later.iter().copied()));
                prop_assert_eq!(&crashed, &own_expected);
                let compacted = replay(snapshot.iter().chain(own_later.iter().copied()));
                prop_assert_eq!(&compacted, &own_expected);
            }
            let every_partition: Vec<GroupRecord> =
                (0..partitions).flat_map(|p| partition_snapshot(&store, p, partitions)).collect();
            prop_assert_eq!(replay(every_partition.iter().chain(&later)), expected);
        }
    }
}
