//! Consumer groups end to end: a real broker and real [`GroupConsumer`] members, driven round
//! robin on one executor (the client is driven, so one task can run several members), with a
//! producer producing between rounds. Covers the even split, an incremental rebalance that
//! never pauses the partitions a member keeps, a member killed without leaving, both delivery
//! modes' guarantees, zombie fencing and durability across kill -9.
//!
//! The broker runs with a 3 s session timeout (members heartbeat every second).

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use glommio::net::TcpStream;
use ringmq::client::producer::ProducerRecord;
use ringmq::client::{
    Connection, ConnectionConfig, ConsumerConfig, DeliveryMode, GroupConsumer, GroupConsumerConfig, Producer,
    ProducerConfig, SeekTo,
};
use ringmq::model::{Offset, PartitionId};
use ringmq::protocol::ErrorCode;
use ringmq::runtime::{open_connection, run_local};

use super::broker_support::Broker;

const TOPIC: &str = "jobs";
const PARTITIONS: u32 = 6;
const SESSION_TIMEOUT_MS: u64 = 3_000;
/// Bound on every "until" loop below.
const SETTLE_TIMEOUT: Duration = Duration::from_secs(60);

fn start_broker(dir: &std::path::Path) -> Broker {
    let session = SESSION_TIMEOUT_MS.to_string();
    Broker::start(dir, &["--cores", "2", "--group-session-timeout-ms", &session])
}

/// Starts a broker, runs `body` with a scenario for `group` on a fresh executor, stops the
/// broker.
fn run_scenario<F, Fut>(group: &str, delivery: DeliveryMode, body: F)
where
    F: FnOnce(Scenario) -> Fut,
    Fut: Future<Output = ()>,
{
    let dir = tempfile::tempdir().expect("temp dir");
    let broker = start_broker(dir.path());
    let address = broker.address;
    run_local(move || async move { body(Scenario::new(address, group, delivery).await).await }).expect("executor");
    broker.stop();
}

async fn connect(address: SocketAddr) -> Connection<TcpStream> {
    open_connection(address, ConnectionConfig::default()).await.expect("connecting to the broker")
}

fn member_config(group: &str, delivery: DeliveryMode) -> GroupConsumerConfig {
    GroupConsumerConfig {
        delivery,
        auto_commit_interval_ms: 500,
        // Short long-polls: one task drives every member in turn.
        fetch: ConsumerConfig { max_wait_ms: 20, ..ConsumerConfig::default() },
        ..GroupConsumerConfig::new(group, vec![TOPIC.to_owned()])
    }
}

/// One processed record: who, which partition and offset, when.
#[derive(Clone, Copy, Debug)]
struct Processed {
    member: usize,
    partition: u32,
    offset: u64,
    at: Instant,
}

/// The members of one group, a producer and what every member processed.
struct Scenario {
    address: SocketAddr,
    group: String,
    delivery: DeliveryMode,
    members: Vec<Option<GroupConsumer<TcpStream>>>,
    /// Per member, its assignment after each of its polls, with the time.
    assignments: Vec<Vec<(Instant, BTreeSet<u32>)>>,
    processed: Vec<Processed>,
    producer: Producer<TcpStream>,
    admin: Connection<TcpStream>,
    produced: u64,
}

impl Scenario {
    async fn new(address: SocketAddr, group: &str, delivery: DeliveryMode) -> Scenario {
        let mut admin = connect(address).await;
        let config = ringmq::client::TopicConfig { partitions: PARTITIONS, ..Default::default() };
        match admin.create_topic(TOPIC, &config).await {
            Ok(()) => {}
            Err(error) if error.error_code() == Some(ErrorCode::TopicAlreadyExists) => {}
            Err(error) => panic!("creating the topic: {error}"),
        }
        let producer = Producer::new(connect(address).await, ProducerConfig::default());
        Scenario {
            address,
            group: group.to_owned(),
            delivery,
            members: Vec::new(),
            assignments: Vec::new(),
            processed: Vec::new(),
            producer,
            admin,
            produced: 0,
        }
    }

    async fn add_member(&mut self) -> usize {
        self.add_member_with(member_config(&self.group, self.delivery)).await
    }

    async fn add_member_with(&mut self, config: GroupConsumerConfig) -> usize {
        let consumer = GroupConsumer::new(connect(self.address).await, config);
        self.members.push(Some(consumer));
        self.assignments.push(Vec::new());
        self.members.len() - 1
    }

    /// One record to every partition, acknowledged.
    async fn produce_round(&mut self) {
        for partition in 0..PARTITIONS {
            let value = Bytes::from(format!("{partition}-{}", self.produced));
            let record = ProducerRecord {
                topic: TOPIC.to_owned(),
                partition: Some(PartitionId(partition)),
                key: None,
                value,
                headers: Vec::new(),
                timestamp: None,
            };
            let _delivery = self.producer.send_record(record).await.expect("producing");
        }
        self.producer.flush().await.expect("flushing the producer");
        self.produced += 1;
    }

    /// `count` rounds of producing then consuming.
    async fn rounds(&mut self, count: usize) {
        for _ in 0..count {
            self.produce_round().await;
            self.consume_round().await;
        }
    }

    /// One poll of every live member; records what each processed and its assignment.
    async fn consume_round(&mut self) {
        for (index, slot) in self.members.iter_mut().enumerate() {
            let Some(member) = slot.as_mut() else { continue };
            let records = member.poll().await.expect("polling a group member");
            let now = Instant::now();
            for record in records {
                assert_eq!(&*record.topic, TOPIC);
                self.processed.push(Processed {
                    member: index,
                    partition: record.partition.0,
                    offset: record.offset.0,
                    at: now,
                });
            }
            let assigned: BTreeSet<u32> = member.assignment().into_iter().map(|(_, p)| p.0).collect();
            self.assignments[index].push((now, assigned));
        }
    }

    fn assignment_of(&self, member: usize) -> BTreeSet<u32> {
        self.members[member]
            .as_ref()
            .map(|m| m.assignment().into_iter().map(|(_, p)| p.0).collect())
            .unwrap_or_default()
    }

    /// Rounds (producing when `produce`) until every live member owns its share and the
    /// coordinator says Stable; bounded.
    async fn until_settled(&mut self, produce: bool) {
        let deadline = Instant::now() + SETTLE_TIMEOUT;
        while Instant::now() < deadline {
            if produce {
                self.produce_round().await;
            }
            self.consume_round().await;
            let live: Vec<usize> = (0..self.members.len()).filter(|&i| self.members[i].is_some()).collect();
            let owned: Vec<BTreeSet<u32>> = live.iter().map(|&i| self.assignment_of(i)).collect();
            let total: usize = owned.iter().map(BTreeSet::len).sum();
            let union: BTreeSet<u32> = owned.iter().flatten().copied().collect();
            let fair = PARTITIONS as usize / live.len().max(1);
            let even = owned.iter().all(|o| o.len() >= fair && o.len() <= fair + 1);
            if total == PARTITIONS as usize && union.len() == total && even {
                let described = self.admin.describe_group(&self.group).await.expect("describing the group");
                if described.state == "Stable" && described.members.len() == live.len() {
                    return;
                }
            }
        }
        panic!("the group did not settle: {:?}", self.admin.describe_group(&self.group).await);
    }

    /// Rounds without producing until every produced record was processed by someone.
    async fn drain(&mut self) {
        let deadline = Instant::now() + SETTLE_TIMEOUT;
        while Instant::now() < deadline {
            self.consume_round().await;
            let seen: BTreeSet<(u32, u64)> = self.processed.iter().map(|p| (p.partition, p.offset)).collect();
            if seen.len() as u64 == self.produced * u64::from(PARTITIONS) {
                return;
            }
        }
        panic!("not every record was processed within {SETTLE_TIMEOUT:?}");
    }

    /// Drops a member without leaving or committing (a crash).
    fn kill(&mut self, member: usize) {
        self.members[member] = None;
    }

    async fn close_all(&mut self) {
        for slot in &mut self.members {
            if let Some(member) = slot.take() {
                member.close().await.expect("closing a member");
            }
        }
    }

    /// The group's committed offset of each partition.
    async fn committed(&mut self) -> BTreeMap<u32, Option<u64>> {
        let partitions: Vec<PartitionId> = (0..PARTITIONS).map(PartitionId).collect();
        let found = self.admin.offset_fetch(&self.group, &[(TOPIC, &partitions)]).await.expect("offset fetch");
        found.iter().map(|f| (f.partition.0, f.offset.map(|o| o.0))).collect()
    }

    /// How many times each (partition, offset) was processed; every produced one must be.
    fn processed_counts(&self) -> BTreeMap<(u32, u64), usize> {
        let mut counts = BTreeMap::new();
        for p in &self.processed {
            *counts.entry((p.partition, p.offset)).or_insert(0) += 1;
        }
        for partition in 0..PARTITIONS {
            for offset in 0..self.produced {
                assert!(counts.contains_key(&(partition, offset)), "{partition}/{offset} was never processed");
            }
        }
        assert_eq!(counts.len() as u64, self.produced * u64::from(PARTITIONS), "records beyond those produced");
        counts
    }
}

/// Three members split six partitions two each; a fourth joins and only the partitions it
/// takes change owner, while the others keep fetching theirs throughout; graceful rebalances
/// and closes process every record exactly once (at-least-once, nothing uncommitted lost).
#[test]
fn members_share_partitions_and_a_join_moves_only_what_it_takes() {
    run_scenario("g-join", DeliveryMode::AtLeastOnce, |mut scenario| async move {
        for _ in 0..3 {
            scenario.add_member().await;
        }
        scenario.until_settled(true).await;
        let before: Vec<BTreeSet<u32>> = (0..3).map(|i| scenario.assignment_of(i)).collect();
        for owned in &before {
            assert_eq!(owned.len(), 2, "{before:?}");
        }

        let joined_at = Instant::now();
        let newcomer = scenario.add_member().await;
        scenario.until_settled(true).await;
        let settled_at = Instant::now();
        let after: Vec<BTreeSet<u32>> = (0..4).map(|i| scenario.assignment_of(i)).collect();
        let mut moved = BTreeSet::new();
        for member in 0..3 {
            assert!(
                after[member].is_subset(&before[member]),
                "member {member} gained partitions: {before:?} -> {after:?}"
            );
            moved.extend(before[member].difference(&after[member]).copied());
            // Kept partitions never left the member's assignment, and kept flowing.
            for &kept in &after[member] {
                for (at, owned) in &scenario.assignments[member] {
                    if *at >= joined_at {
                        assert!(owned.contains(&kept), "member {member} paused partition {kept} during the rebalance");
                    }
                }
                let during = scenario
                    .processed
                    .iter()
                    .any(|p| p.member == member && p.partition == kept && p.at > joined_at && p.at <= settled_at);
                assert!(during, "member {member} got no record of its kept partition {kept} during the rebalance");
            }
        }
        assert_eq!(moved, after[newcomer], "the newcomer got exactly the moved partitions");
        assert!(!moved.is_empty());

        scenario.rounds(10).await;
        scenario.drain().await;
        scenario.close_all().await;
        let counts = scenario.processed_counts();
        let twice: Vec<_> = counts.iter().filter(|(_, &n)| n > 1).collect();
        assert!(twice.is_empty(), "graceful rebalances duplicated records: {twice:?}");
        let committed = scenario.committed().await;
        assert!(committed.values().all(|&c| c == Some(scenario.produced)), "{committed:?}");
    });
}

/// At-least-once with a member killed (no leave, no commit): its partitions move only after
/// the session timeout, every record is processed, and the only duplicates are exactly the
/// records the dead member processed after its last commit.
#[test]
fn a_killed_member_loses_nothing_and_duplicates_only_its_uncommitted_work() {
    run_scenario("g-kill", DeliveryMode::AtLeastOnce, |mut scenario| async move {
        scenario.add_member().await;
        // The victim commits only when told, so that it dies with a known amount of
        // uncommitted work.
        let config = GroupConsumerConfig { auto_commit: false, ..member_config("g-kill", DeliveryMode::AtLeastOnce) };
        let victim = scenario.add_member_with(config).await;
        scenario.add_member().await;
        scenario.until_settled(true).await;
        scenario.rounds(20).await;
        scenario.members[victim].as_mut().unwrap().commit().await.expect("the victim commits");
        scenario.rounds(5).await;
        let victim_partitions = scenario.assignment_of(victim);
        scenario.kill(victim);
        let killed_at = Instant::now();
        let committed = scenario.committed().await;
        let mut uncommitted_work: BTreeSet<(u32, u64)> = BTreeSet::new();
        for p in scenario.processed.iter().filter(|p| p.member == victim) {
            if committed[&p.partition].is_none_or(|c| p.offset >= c) {
                uncommitted_work.insert((p.partition, p.offset));
            }
        }

        assert!(victim_partitions.iter().all(|p| committed[p].is_some()), "{committed:?}");
        assert!(!uncommitted_work.is_empty(), "the victim died with uncommitted work");
        scenario.until_settled(true).await;
        scenario.drain().await;
        scenario.close_all().await;
        let moved = scenario.processed.iter().filter(|p| p.member != victim && p.at > killed_at);
        for p in moved.filter(|p| victim_partitions.contains(&p.partition)) {
            assert!(
                p.at >= killed_at + Duration::from_millis(SESSION_TIMEOUT_MS / 3),
                "partition {} moved before the session timeout",
                p.partition
            );
        }
        let counts = scenario.processed_counts();
        let duplicated: BTreeSet<(u32, u64)> = counts.iter().filter(|(_, &n)| n > 1).map(|(&k, _)| k).collect();
        assert!(counts.values().all(|&n| n <= 2));
        assert_eq!(duplicated, uncommitted_work, "duplicates must be exactly the dead member's uncommitted work");
    });
}

/// At-most-once: no record is processed twice, across a member killed without leaving and a
/// member joining; since every member finishes what it is handed, nothing is lost either.
#[test]
fn at_most_once_never_processes_a_record_twice() {
    run_scenario("g-amo", DeliveryMode::AtMostOnce, |mut scenario| async move {
        for _ in 0..3 {
            scenario.add_member().await;
        }
        scenario.until_settled(true).await;
        scenario.rounds(20).await;
        scenario.kill(0);
        scenario.until_settled(true).await;
        scenario.add_member().await;
        scenario.until_settled(true).await;
        scenario.drain().await;
        scenario.close_all().await;
        let counts = scenario.processed_counts();
        let twice: Vec<_> = counts.iter().filter(|(_, &n)| n > 1).collect();
        assert!(twice.is_empty(), "at-most-once processed records twice: {twice:?}");
    });
}

/// A member silent past its session timeout is a zombie: its commit is refused and leaves the
/// group's offsets alone; its next poll rejoins as a new member.
#[test]
fn a_zombie_members_commit_is_rejected() {
    run_scenario("g-zombie", DeliveryMode::AtLeastOnce, |mut scenario| async move {
        // No auto-commit: what it processed stays uncommitted, for the commit below.
        let config = GroupConsumerConfig { auto_commit: false, ..member_config("g-zombie", DeliveryMode::AtLeastOnce) };
        let zombie = scenario.add_member_with(config).await;
        for _ in 0..3 {
            scenario.produce_round().await;
        }
        scenario.until_settled(false).await;
        scenario.drain().await;
        let old_id = scenario.members[zombie].as_ref().unwrap().member_id().to_owned();
        // The zombie stops polling (no heartbeats) while another member takes over.
        let mut zombie_consumer = scenario.members[zombie].take().expect("the zombie");
        let survivor = scenario.add_member().await;
        scenario.until_settled(false).await;
        assert_eq!(scenario.assignment_of(survivor).len(), PARTITIONS as usize);
        let before = scenario.committed().await;

        let refused = zombie_consumer.commit().await;
        let code = refused.expect_err("a zombie's commit must be refused").error_code();
        assert!(matches!(code, Some(ErrorCode::UnknownMemberId | ErrorCode::FencedMemberEpoch)), "{code:?}");
        assert_eq!(scenario.committed().await, before, "the refused commit changed nothing");
        assert!(zombie_consumer.assignment().is_empty(), "a fenced member drops its partitions");

        // Its next polls rejoin under a new identity and share the partitions again.
        scenario.members[zombie] = Some(zombie_consumer);
        scenario.until_settled(false).await;
        let rejoined = scenario.members[zombie].as_ref().unwrap().member_id().to_owned();
        assert_ne!(rejoined, old_id);
        scenario.close_all().await;
    });
}

/// Committed offsets and the group survive kill -9: after a restart the group is Empty at its
/// epoch and a new member resumes exactly at the committed offsets (commit_async included).
#[test]
fn offsets_and_the_group_survive_a_broker_kill_and_restart() {
    let dir = tempfile::tempdir().expect("temp dir");
    let broker = start_broker(dir.path());
    let address = broker.address;
    let (committed, epoch) = run_local(move || async move {
        let mut scenario = Scenario::new(address, "g-restart", DeliveryMode::AtLeastOnce).await;
        let member = scenario.add_member().await;
        for _ in 0..5 {
            scenario.produce_round().await;
        }
        scenario.until_settled(false).await;
        scenario.drain().await;
        let consumer = scenario.members[member].as_mut().unwrap();
        consumer.commit_async().await.expect("sending an async commit");
        let _ = consumer.poll().await.expect("a poll collects the commit");
        assert!(consumer.take_commit_error().is_none());
        let committed = scenario.committed().await;
        assert!(committed.values().all(|&c| c == Some(5)), "{committed:?}");
        // More records, never consumed: a member starting from latest would skip them.
        for _ in 0..2 {
            scenario.produce_round().await;
        }
        let epoch = scenario.admin.describe_group("g-restart").await.unwrap().group_epoch;
        (committed, epoch)
    })
    .expect("executor");
    broker.kill();

    let broker = start_broker(dir.path());
    let address = broker.address;
    run_local(move || async move {
        let mut admin = connect(address).await;
        let described = admin.describe_group("g-restart").await.expect("the group is remembered");
        assert_eq!(described.state, "Empty");
        assert!(described.group_epoch >= epoch);
        let partitions: Vec<PartitionId> = (0..PARTITIONS).map(PartitionId).collect();
        let found = admin.offset_fetch("g-restart", &[(TOPIC, &partitions)]).await.unwrap();
        let after: BTreeMap<u32, Option<u64>> = found.iter().map(|f| (f.partition.0, f.offset.map(|o| o.0))).collect();
        assert_eq!(after, committed);

        let config =
            GroupConsumerConfig { start_from: SeekTo::Latest, ..member_config("g-restart", DeliveryMode::AtLeastOnce) };
        let mut member = GroupConsumer::new(connect(address).await, config);
        let mut first: BTreeMap<u32, Offset> = BTreeMap::new();
        let deadline = Instant::now() + SETTLE_TIMEOUT;
        while first.len() < PARTITIONS as usize && Instant::now() < deadline {
            for record in member.poll().await.expect("polling after the restart") {
                first.entry(record.partition.0).or_insert(record.offset);
            }
        }
        assert_eq!(first.len(), PARTITIONS as usize, "every partition resumed");
        assert!(first.values().all(|&o| o == Offset(5)), "resumed at the committed offset, not latest: {first:?}");
        member.close().await.expect("closing");
    })
    .expect("executor");
    broker.stop();
}
