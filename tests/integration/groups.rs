//! Consumer groups served by a real broker, over the raw protocol: membership and assignment,
//! commits with zombie fencing, durability across kill -9, session expiry and bad input.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use ringmq::protocol::{
    ApiVersionsRequest, ConsumerGroupHeartbeatRequest, ConsumerGroupHeartbeatResponse, DescribeGroupRequest,
    DescribeGroupResponse, ErrorCode, FindCoordinatorRequest, ListGroupsRequest, MetadataRequest,
    OffsetCommitPartition, OffsetCommitRequest, OffsetCommitTopic, OffsetFetchRequest, OffsetFetchTopic,
    TopicPartitions, JOIN_EPOCH, OFFSET_UNKNOWN,
};

use super::broker_support::{Broker, RawClient};

const TOPIC: &str = "events";
const PARTITIONS: u32 = 6;

/// A member as the test drives it: its id, epoch and the partitions it was last assigned.
#[derive(Clone, Debug, Default)]
struct Member {
    id: String,
    epoch: i32,
    assigned: BTreeSet<u32>,
}

fn owned(member: &Member) -> Vec<TopicPartitions> {
    if member.assigned.is_empty() {
        return Vec::new();
    }
    vec![TopicPartitions { topic: TOPIC.into(), partitions: member.assigned.iter().copied().collect() }]
}

fn heartbeat(client: &mut RawClient, request: ConsumerGroupHeartbeatRequest) -> ConsumerGroupHeartbeatResponse {
    client.call(&request, Vec::new()).body
}

/// The heartbeat of a new member of `group` subscribing to `topic`.
pub fn join_request(group: &str, topic: &str) -> ConsumerGroupHeartbeatRequest {
    ConsumerGroupHeartbeatRequest {
        group_id: group.into(),
        member_id: String::new(),
        member_epoch: JOIN_EPOCH,
        subscribed_topic_names: Some(vec![topic.into()]),
        server_assignor: None,
        owned_partitions: Some(Vec::new()),
    }
}

fn join(client: &mut RawClient, group: &str) -> Member {
    let response = heartbeat(client, join_request(group, TOPIC));
    assert_eq!(ErrorCode::from_u16(response.error_code), ErrorCode::None, "{}", response.error_message);
    let mut member = Member { id: response.member_id.clone(), epoch: response.member_epoch, ..Member::default() };
    absorb(&mut member, &response);
    member
}

/// Takes a heartbeat response's epoch and assignment into the member.
fn absorb(member: &mut Member, response: &ConsumerGroupHeartbeatResponse) {
    member.epoch = response.member_epoch;
    if let Some(assignment) = &response.assignment {
        member.assigned =
            assignment.iter().filter(|tp| tp.topic == TOPIC).flat_map(|tp| tp.partitions.iter().copied()).collect();
    }
}

/// One heartbeat of `member`, listing what it owns; returns the error code.
fn beat(client: &mut RawClient, group: &str, member: &mut Member) -> ErrorCode {
    let response = heartbeat(
        client,
        ConsumerGroupHeartbeatRequest {
            group_id: group.into(),
            member_id: member.id.clone(),
            member_epoch: member.epoch,
            subscribed_topic_names: None,
            server_assignor: None,
            owned_partitions: Some(owned(member)),
        },
    );
    let code = ErrorCode::from_u16(response.error_code);
    if code == ErrorCode::None {
        absorb(member, &response);
    }
    code
}

fn describe(client: &mut RawClient, group: &str) -> DescribeGroupResponse {
    client.call(&DescribeGroupRequest { group_id: group.into() }, Vec::new()).body
}

/// Heartbeats every member until the group is Stable and every member has its target; bounded.
fn until_stable(client: &mut RawClient, group: &str, members: &mut [Member]) {
    for _ in 0..100 {
        for member in members.iter_mut() {
            assert_eq!(beat(client, group, member), ErrorCode::None);
        }
        let described = describe(client, group);
        let settled = described.state == "Stable"
            && described.members.iter().all(|m| m.assignment == m.target_assignment)
            && members.iter().all(|m| {
                described.members.iter().any(|d| {
                    d.member_id == m.id
                        && d.assignment.iter().flat_map(|tp| tp.partitions.iter().copied()).collect::<BTreeSet<_>>()
                            == m.assigned
                })
            });
        if settled {
            return;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    panic!("the group did not settle: {:?}", describe(client, group));
}

fn commit(client: &mut RawClient, group: &str, member: &Member, epoch: i32, offsets: &[(u32, u64)]) -> Vec<ErrorCode> {
    let request = OffsetCommitRequest {
        group_id: group.into(),
        member_id: member.id.clone(),
        member_epoch: epoch,
        topics: vec![OffsetCommitTopic {
            name: TOPIC.into(),
            partitions: offsets
                .iter()
                .map(|&(partition, offset)| OffsetCommitPartition { partition, offset, metadata: "m".into() })
                .collect(),
        }],
    };
    let response = client.call(&request, Vec::new()).body;
    assert_eq!(ErrorCode::from_u16(response.error_code), ErrorCode::None);
    response.topics.iter().flat_map(|t| t.partitions.iter().map(|p| ErrorCode::from_u16(p.error_code))).collect()
}

/// The committed offset of every partition of the topic (`OFFSET_UNKNOWN`: none).
fn fetch_offsets(client: &mut RawClient, group: &str) -> Vec<u64> {
    fetch_committed(client, group, TOPIC, PARTITIONS).into_iter().map(|(offset, _)| offset).collect()
}

/// The committed offset and metadata of partitions `0..partitions` of `topic`
/// (`OFFSET_UNKNOWN` and empty: none).
pub(super) fn fetch_committed(client: &mut RawClient, group: &str, topic: &str, partitions: u32) -> Vec<(u64, String)> {
    let request = OffsetFetchRequest {
        group_id: group.into(),
        topics: vec![OffsetFetchTopic { name: topic.into(), partitions: (0..partitions).collect() }],
    };
    let response = client.call(&request, Vec::new()).body;
    assert_eq!(ErrorCode::from_u16(response.error_code), ErrorCode::None);
    let mut committed = vec![(OFFSET_UNKNOWN, String::new()); partitions as usize];
    for partition in response.topics.into_iter().filter(|t| t.name == topic).flat_map(|t| t.partitions) {
        assert_eq!(ErrorCode::from_u16(partition.error_code), ErrorCode::None);
        if let Some(slot) = committed.get_mut(partition.partition as usize) {
            *slot = (partition.offset, partition.metadata);
        }
    }
    committed
}

/// Three members share six partitions two each; commits are fenced by epoch; committed offsets
/// survive kill -9.
#[test]
fn members_share_partitions_and_commits_survive_a_crash() {
    let dir = tempfile::tempdir().expect("temp dir");
    let broker = Broker::start(dir.path(), &["--cores", "2"]);
    let mut client = broker.client();
    assert_eq!(client.create_topic(TOPIC, PARTITIONS), ErrorCode::None);
    let group = "g-share";

    let found = client.call(&FindCoordinatorRequest { group_id: group.into() }, Vec::new()).body;
    assert_eq!(ErrorCode::from_u16(found.error_code), ErrorCode::None);
    assert!(found.shard < 2);

    // (a) Three members: two partitions each, disjoint, covering all six.
    let mut members: Vec<Member> = (0..3).map(|_| join(&mut client, group)).collect();
    until_stable(&mut client, group, &mut members);
    let mut all = BTreeSet::new();
    for member in &members {
        assert_eq!(member.assigned.len(), 2, "{members:?}");
        for partition in &member.assigned {
            assert!(all.insert(*partition), "partition {partition} assigned twice: {members:?}");
        }
    }
    assert_eq!(all, (0..PARTITIONS).collect::<BTreeSet<_>>());
    let listed = client.call(&ListGroupsRequest { states_filter: vec![] }, Vec::new()).body;
    assert_eq!(ErrorCode::from_u16(listed.error_code), ErrorCode::None);
    assert!(listed.groups.iter().any(|g| g.group_id == group && g.state == "Stable"), "{listed:?}");

    // (b) Commits with the current epoch succeed; an old epoch (a zombie) is refused.
    let mut expected = vec![OFFSET_UNKNOWN; PARTITIONS as usize];
    for (index, member) in members.iter().enumerate() {
        let offsets: Vec<(u32, u64)> =
            member.assigned.iter().map(|&p| (p, 100 * (index as u64 + 1) + u64::from(p))).collect();
        assert!(commit(&mut client, group, member, member.epoch, &offsets).iter().all(|c| *c == ErrorCode::None));
        for (partition, offset) in offsets {
            expected[partition as usize] = offset;
        }
    }
    let zombie = &members[0];
    let first = *zombie.assigned.iter().next().unwrap();
    let codes = commit(&mut client, group, zombie, zombie.epoch - 1, &[(first, 999_999)]);
    assert_eq!(codes, vec![ErrorCode::StaleMemberEpoch]);
    let codes = commit(&mut client, group, zombie, zombie.epoch + 1, &[(first, 999_999)]);
    assert_eq!(codes, vec![ErrorCode::FencedMemberEpoch]);
    assert_eq!(fetch_offsets(&mut client, group), expected);

    // (c) kill -9 and restart: the commits were durable before they were acknowledged.
    drop(client);
    broker.kill();
    let broker = Broker::start(dir.path(), &["--cores", "2"]);
    let mut client = broker.client();
    assert_eq!(fetch_offsets(&mut client, group), expected);
    // The members are gone (they rejoin), the group is remembered, Empty.
    let described = describe(&mut client, group);
    assert_eq!(ErrorCode::from_u16(described.error_code), ErrorCode::None);
    assert_eq!((described.state.as_str(), described.members.len()), ("Empty", 0), "{described:?}");
    let mut old = members[0].clone();
    assert_eq!(beat(&mut client, group, &mut old), ErrorCode::UnknownMemberId);
    // The offsets topic is internal: not listed with the others, not deletable.
    let metadata = client.call(&MetadataRequest { topics: vec![] }, Vec::new()).body;
    assert_eq!(metadata.topics.iter().map(|t| t.name.as_str()).collect::<Vec<_>>(), [TOPIC]);
    let deleted = client
        .call(&ringmq::protocol::DeleteTopicRequest { name: ringmq::group::OFFSETS_TOPIC.into() }, Vec::new())
        .body;
    assert_ne!(ErrorCode::from_u16(deleted.error_code), ErrorCode::None);
    assert_eq!(broker.stop(), Some(0));
}

/// A member that stops heartbeating is removed after the session timeout; the survivor gets
/// every partition.
#[test]
fn a_silent_member_is_removed_after_its_session_timeout() {
    let dir = tempfile::tempdir().expect("temp dir");
    let broker = Broker::start(dir.path(), &["--cores", "2", "--group-session-timeout-ms", "1500"]);
    let mut client = broker.client();
    assert_eq!(client.create_topic(TOPIC, PARTITIONS), ErrorCode::None);
    let group = "g-expire";
    let mut members = vec![join(&mut client, group), join(&mut client, group)];
    until_stable(&mut client, group, &mut members);
    assert!(members.iter().all(|m| m.assigned.len() == 3), "{members:?}");
    let silent = members.pop().unwrap();
    let mut survivor = members.pop().unwrap();

    let started = Instant::now();
    let deadline = started + Duration::from_secs(15);
    loop {
        assert!(Instant::now() < deadline, "the silent member was not removed: {:?}", describe(&mut client, group));
        assert_eq!(beat(&mut client, group, &mut survivor), ErrorCode::None);
        let described = describe(&mut client, group);
        if described.members.len() == 1 && survivor.assigned.len() == PARTITIONS as usize {
            assert_eq!(described.members[0].member_id, survivor.id);
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(started.elapsed() >= Duration::from_millis(1000), "removed before its session timed out");
    let mut silent = silent;
    assert_eq!(beat(&mut client, group, &mut silent), ErrorCode::UnknownMemberId);
}

/// Unknown groups, wrong epochs, bad offsets and bad ids get the documented codes.
#[test]
fn bad_group_requests_get_their_error_codes() {
    let dir = tempfile::tempdir().expect("temp dir");
    let broker = Broker::start(dir.path(), &["--cores", "2"]);
    let mut client = broker.client();
    assert_eq!(client.create_topic(TOPIC, PARTITIONS), ErrorCode::None);

    // Unknown group: OffsetFetch is not an error (nothing committed), Describe is.
    assert_eq!(fetch_offsets(&mut client, "nobody"), vec![OFFSET_UNKNOWN; PARTITIONS as usize]);
    let described = describe(&mut client, "nobody");
    assert_eq!(ErrorCode::from_u16(described.error_code), ErrorCode::GroupIdNotFound);
    let left = client
        .call(
            &ringmq::protocol::LeaveGroupRequest { group_id: "nobody".into(), member_ids: vec!["x".into()] },
            Vec::new(),
        )
        .body;
    assert_eq!(ErrorCode::from_u16(left.error_code), ErrorCode::GroupIdNotFound);

    let group = "g-bad";
    let mut member = join(&mut client, group);
    // A heartbeat from the future, or from an unknown member.
    let mut ahead = Member { epoch: member.epoch + 5, ..member.clone() };
    assert_eq!(beat(&mut client, group, &mut ahead), ErrorCode::FencedMemberEpoch);
    let mut stranger = Member { id: "not-a-member".into(), ..member.clone() };
    assert_eq!(beat(&mut client, group, &mut stranger), ErrorCode::UnknownMemberId);
    assert_eq!(beat(&mut client, group, &mut member), ErrorCode::None);

    // Negative offsets (as the u64 of a negative i64) and the no-offset marker are invalid;
    // an unknown partition is refused; the valid entry of the same request is committed.
    let codes = commit(
        &mut client,
        group,
        &member,
        member.epoch,
        &[(0, -1i64 as u64), (1, OFFSET_UNKNOWN), (2, 7), (PARTITIONS + 3, 5)],
    );
    assert_eq!(
        codes,
        vec![
            ErrorCode::InvalidCommitOffset,
            ErrorCode::InvalidCommitOffset,
            ErrorCode::None,
            ErrorCode::UnknownTopicOrPartition
        ]
    );
    let offsets = fetch_offsets(&mut client, group);
    assert_eq!((offsets[0], offsets[1], offsets[2]), (OFFSET_UNKNOWN, OFFSET_UNKNOWN, 7));
    // A commit from a member id the group does not know.
    let stranger = Member { id: "not-a-member".into(), ..member.clone() };
    assert_eq!(commit(&mut client, group, &stranger, 1, &[(2, 8)]), vec![ErrorCode::UnknownMemberId]);

    // An empty group id is refused by every group API.
    let found = client.call(&FindCoordinatorRequest { group_id: String::new() }, Vec::new()).body;
    assert_eq!(ErrorCode::from_u16(found.error_code), ErrorCode::InvalidGroupId);
    let described = describe(&mut client, "");
    assert_eq!(ErrorCode::from_u16(described.error_code), ErrorCode::InvalidGroupId);

    // ApiVersions advertises the group APIs 10..=16 and InitProducerId (17).
    let versions = client.call(&ApiVersionsRequest::default(), Vec::new()).body;
    let keys: BTreeSet<u16> = versions.api_keys.iter().map(|k| k.api_key).collect();
    assert!((10..=17).all(|key| keys.contains(&key)), "{keys:?}");
}

/// A record in the offsets topic that is not a group record (here: produced by a client) is
/// skipped at load; the records around it still count.
#[test]
fn a_bad_record_in_the_offsets_topic_is_skipped_at_load() {
    let dir = tempfile::tempdir().expect("temp dir");
    let broker = Broker::start(dir.path(), &["--cores", "2"]);
    let mut client = broker.client();
    assert_eq!(client.create_topic(TOPIC, PARTITIONS), ErrorCode::None);
    let group = "g-garbage";
    let mut members = vec![join(&mut client, group)];
    until_stable(&mut client, group, &mut members);
    let member = members.pop().unwrap();
    assert_eq!(commit(&mut client, group, &member, member.epoch, &[(0, 5)]), vec![ErrorCode::None]);
    drop(client);
    broker.kill();

    // Clients may not produce to the offsets topic, so the junk goes in through the log itself,
    // with the broker down: a valid batch whose record is not a group record.
    let partition = ringmq::group::coordinator_partition(group, ringmq::group::OFFSETS_TOPIC_PARTITIONS_DEFAULT);
    let partition_dir =
        ringmq::storage::partition_dir(dir.path(), ringmq::group::OFFSETS_TOPIC, ringmq::model::PartitionId(partition));
    ringmq::testing::run_local(move || async move {
        let budget = ringmq::storage::TailCacheBudget::new(1 << 20);
        let (log, _) =
            ringmq::storage::PartitionLog::open(&partition_dir, ringmq::storage::LogConfig::default(), budget)
                .await
                .expect("opening the offsets partition");
        let junk = ringmq::testing::make_batch(1, 3, 10, ringmq::model::TimestampMs::now());
        log.append(junk, ringmq::model::LeaderEpoch(0)).await.expect("appending junk");
        log.close().await.expect("closing");
    });

    let broker = Broker::start(dir.path(), &["--cores", "2"]);
    let mut client = broker.client();
    let mut members = vec![join(&mut client, group)];
    until_stable(&mut client, group, &mut members);
    let member = members.pop().unwrap();
    assert_eq!(commit(&mut client, group, &member, member.epoch, &[(1, 6)]), vec![ErrorCode::None]);
    drop(client);
    broker.kill();

    let broker = Broker::start(dir.path(), &["--cores", "2"]);
    let mut client = broker.client();
    let offsets = fetch_offsets(&mut client, group);
    assert_eq!((offsets[0], offsets[1]), (5, 6), "the commits before and after the junk are kept");
    assert_eq!(broker.stop(), Some(0));
}
