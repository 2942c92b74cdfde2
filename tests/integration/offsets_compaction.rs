//! Snapshot compaction of the offsets topic on a real broker. `--segment-bytes 65536` gives the
//! offsets topic (created at first start) 64 KiB segments, hence a 64 KiB snapshot floor: a
//! few hundred commits with 1 KB metadata append megabytes to its partitions, of which only
//! the live state may stay on disk. Every group's last acknowledged offsets must survive
//! kill -9 and a clean restart.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use ringmq::group::{coordinator_partition, OFFSETS_TOPIC, OFFSETS_TOPIC_PARTITIONS_DEFAULT};
use ringmq::protocol::{
    DescribeGroupRequest, ErrorCode, OffsetCommitPartition, OffsetCommitRequest, OffsetCommitTopic, ADMIN_COMMIT_EPOCH,
};

use super::broker_support::{Broker, RawClient};
use super::groups::fetch_committed;

const TOPIC: &str = "orders";
const PARTITIONS: u32 = 4;
const SEGMENT_BYTES: u64 = 64 << 10;
/// Commits per group: with 4 × 1 KB of metadata each, ~1.7 MB per group (5 MB for the
/// partition), over 75 times the snapshot floor.
const ROUNDS: u64 = 400;
const METADATA_BYTES: usize = 1000;
/// The most an offsets partition directory may hold: a closed segment, the active one, the
/// snapshot's new segment (each at most 64 KiB, pre-allocation included) and small files.
const PARTITION_DIR_BYTES_MAX: u64 = 8 * SEGMENT_BYTES;
const FLAGS: &[&str] = &["--cores", "2", "--segment-bytes", "65536", "--group-session-timeout-ms", "600000"];
const TEST_TIMEOUT: Duration = Duration::from_secs(240);

/// A group committing as a joined member (its metadata records are compacted too), or as an
/// admin (no member).
#[derive(Clone, Debug)]
struct Committer {
    group: String,
    member_id: String,
    member_epoch: i32,
}

fn join(client: &mut RawClient, group: &str) -> Committer {
    let response = client.call(&crate::groups::join_request(group, TOPIC), Vec::new()).body;
    assert_eq!(ErrorCode::from_u16(response.error_code), ErrorCode::None, "{}", response.error_message);
    Committer { group: group.into(), member_id: response.member_id, member_epoch: response.member_epoch }
}

fn admin(group: &str) -> Committer {
    Committer { group: group.into(), member_id: String::new(), member_epoch: ADMIN_COMMIT_EPOCH }
}

/// Commits `offsets[p]` for every partition p; panics unless every partition is acknowledged.
fn commit(client: &mut RawClient, committer: &Committer, offsets: &[u64]) {
    let request = OffsetCommitRequest {
        group_id: committer.group.clone(),
        member_id: committer.member_id.clone(),
        member_epoch: committer.member_epoch,
        topics: vec![OffsetCommitTopic {
            name: TOPIC.into(),
            partitions: (0..PARTITIONS)
                .zip(offsets)
                .map(|(partition, &offset)| OffsetCommitPartition {
                    partition,
                    offset,
                    metadata: format!("{offset:0>width$}", width = METADATA_BYTES),
                })
                .collect(),
        }],
    };
    let response = client.call(&request, Vec::new()).body;
    assert_eq!(ErrorCode::from_u16(response.error_code), ErrorCode::None);
    for partition in response.topics.iter().flat_map(|t| t.partitions.iter()) {
        assert_eq!(ErrorCode::from_u16(partition.error_code), ErrorCode::None, "{}", committer.group);
    }
}

/// The committed offsets, each checked against its metadata.
fn fetch(client: &mut RawClient, group: &str) -> Vec<u64> {
    fetch_committed(client, group, TOPIC, PARTITIONS)
        .into_iter()
        .map(|(offset, metadata)| {
            assert_eq!(metadata, format!("{offset:0>width$}", width = METADATA_BYTES));
            offset
        })
        .collect()
}

fn group_epoch(client: &mut RawClient, group: &str) -> i32 {
    let response = client.call(&DescribeGroupRequest { group_id: group.into() }, Vec::new()).body;
    assert_eq!(ErrorCode::from_u16(response.error_code), ErrorCode::None);
    response.group_epoch
}

/// `count` group ids of one offsets partition: their commits race each other's snapshots.
fn groups_of_one_partition(count: usize) -> Vec<String> {
    let partition_of = |group: &String| coordinator_partition(group, OFFSETS_TOPIC_PARTITIONS_DEFAULT);
    let first = partition_of(&"compaction-0".to_string());
    (0..10_000).map(|i| format!("compaction-{i}")).filter(|g| partition_of(g) == first).take(count).collect()
}

fn offsets_partition_dir(data_dir: &Path, group: &str) -> PathBuf {
    let partition = coordinator_partition(group, OFFSETS_TOPIC_PARTITIONS_DEFAULT);
    data_dir.join("topics").join(OFFSETS_TOPIC).join(partition.to_string())
}

/// Bytes of the files in `dir` (their lengths: pre-allocated space included).
fn dir_bytes(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .map(|entries| entries.filter_map(Result::ok).filter_map(|e| e.metadata().ok()).map(|m| m.len()).sum())
        .unwrap_or(0)
}

/// Every group commits `ROUNDS` times from its own connection, concurrently, while the main
/// thread samples the disk use of their offsets partitions; returns each group's last
/// acknowledged offsets and the largest directory seen.
fn commit_concurrently(broker: &Broker, committers: &[Committer], data_dir: &Path) -> (Vec<Vec<u64>>, u64) {
    let deadline = Instant::now() + TEST_TIMEOUT;
    let dirs: Vec<PathBuf> = committers.iter().map(|c| offsets_partition_dir(data_dir, &c.group)).collect();
    let threads: Vec<_> = committers
        .iter()
        .enumerate()
        .map(|(index, committer)| {
            let mut client = broker.client();
            let committer = committer.clone();
            std::thread::spawn(move || {
                let mut last = Vec::new();
                for round in 0..ROUNDS {
                    assert!(Instant::now() < deadline, "committing took longer than {TEST_TIMEOUT:?}");
                    let offsets: Vec<u64> =
                        (0..u64::from(PARTITIONS)).map(|p| 1_000_000 * index as u64 + round * 10 + p).collect();
                    commit(&mut client, &committer, &offsets);
                    last = offsets;
                }
                last
            })
        })
        .collect();
    let mut largest = 0;
    while threads.iter().any(|t| !t.is_finished()) && Instant::now() < deadline {
        largest = dirs.iter().map(|d| dir_bytes(d)).fold(largest, u64::max);
        std::thread::sleep(Duration::from_millis(10));
    }
    let last = threads.into_iter().map(|t| t.join().expect("a committer failed")).collect();
    (last, largest)
}

/// Commits megabytes to one offsets partition from three connections at once: it stays within a
/// few segments (old records are compacted into snapshots, while other commits are in flight),
/// and every group's last acknowledged offsets and the joined group's epoch survive kill -9, a
/// clean restart, and compaction after the restart.
#[test]
fn offsets_partitions_stay_bounded_and_the_latest_commits_survive_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start(dir.path(), FLAGS);
    let mut client = broker.client();
    assert_eq!(client.create_topic(TOPIC, PARTITIONS), ErrorCode::None);
    let groups = groups_of_one_partition(3);
    let member = join(&mut client, &groups[0]);
    let epoch = group_epoch(&mut client, &member.group);
    let committers = vec![member, admin(&groups[1]), admin(&groups[2])];

    let (last, largest) = commit_concurrently(&broker, &committers, dir.path());
    let appended = ROUNDS * u64::from(PARTITIONS) * METADATA_BYTES as u64;
    assert!(largest <= PARTITION_DIR_BYTES_MAX, "an offsets partition held {largest} bytes after {appended} per group");
    let log = broker.log();
    assert!(log.iter().any(|line| line.contains("offsets partition compacted to a snapshot")), "no snapshot logged");
    let log_start = std::fs::read_to_string(offsets_partition_dir(dir.path(), &groups[0]).join("log_start_offset"));
    let log_start: u64 = log_start.expect("snapshots persist a log start").trim().parse().unwrap();
    assert!(log_start > 0, "the restart must load from a snapshot, not from offset 0");
    for (committer, offsets) in committers.iter().zip(&last) {
        assert_eq!(&fetch(&mut client, &committer.group), offsets);
    }

    // kill -9: whatever was acknowledged is in the log from its (moved) start.
    drop(client);
    broker.kill();
    let broker = Broker::start(dir.path(), FLAGS);
    let mut client = broker.client();
    for (committer, offsets) in committers.iter().zip(&last) {
        assert_eq!(&fetch(&mut client, &committer.group), offsets, "{} after kill -9", committer.group);
    }
    assert_eq!(group_epoch(&mut client, &committers[0].group), epoch, "the group epoch survives compaction");

    // More commits after the restart (the member is gone: commit as admin), then a clean stop.
    let admins: Vec<Committer> = committers.iter().map(|c| admin(&c.group)).collect();
    let (last, largest) = commit_concurrently(&broker, &admins, dir.path());
    assert!(largest <= PARTITION_DIR_BYTES_MAX, "an offsets partition held {largest} bytes after the restart");
    drop(client);
    assert_eq!(broker.stop(), Some(0));
    let broker = Broker::start(dir.path(), FLAGS);
    let mut client = broker.client();
    for (committer, offsets) in committers.iter().zip(&last) {
        assert_eq!(&fetch(&mut client, &committer.group), offsets, "{} after a clean restart", committer.group);
    }
    drop(client);
    assert_eq!(broker.stop(), Some(0));
}
