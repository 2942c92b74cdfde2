//! The consumer-group scenarios at the state-machine level: members modelled as clients that
//! consume exactly what their last response told them, heartbeating with what they own.
//!
//! The safety property checked after every step: no partition is consumed by two clients at
//! once (the coordinator hands a partition over only after its previous holder stopped listing
//! it, or was removed).

use std::collections::{BTreeMap, BTreeSet};

use proptest::prelude::*;

use super::*;
use crate::protocol::{ErrorCode, ADMIN_COMMIT_EPOCH, LEAVE_EPOCH, OFFSET_UNKNOWN};

const SESSION_MS: u64 = SESSION_TIMEOUT_MS_DEFAULT;

/// A consumer as the coordinator's peer: its id, epoch, and what it consumes.
#[derive(Clone, Debug, Default)]
struct Client {
    member_id: String,
    epoch: i32,
    consuming: Assignment,
    /// How many responses changed this client's assignment.
    assignment_changes: usize,
}

fn topics(partitions: u32) -> TopicPartitionCounts {
    BTreeMap::from([("t".to_string(), partitions)])
}

fn join(group: &mut Group, metadata: &TopicPartitionCounts, now_ms: u64) -> Client {
    let request = HeartbeatRequest {
        member_epoch: 0,
        subscribed_topic_names: Some(BTreeSet::from(["t".to_string()])),
        owned_partitions: Some(Assignment::new()),
        ..HeartbeatRequest::default()
    };
    let response = group.heartbeat(&request, metadata, now_ms).unwrap();
    let mut client = Client { member_id: response.member_id, epoch: response.member_epoch, ..Client::default() };
    if let Some(assignment) = response.assignment {
        client.consuming = assignment;
        client.assignment_changes += 1;
    }
    client
}

/// One heartbeat from `client` reporting what it consumes; applies the response.
fn beat(group: &mut Group, client: &mut Client, metadata: &TopicPartitionCounts, now_ms: u64) -> Result<(), ErrorCode> {
    let request = HeartbeatRequest {
        member_id: client.member_id.clone(),
        member_epoch: client.epoch,
        owned_partitions: Some(client.consuming.clone()),
        ..HeartbeatRequest::default()
    };
    let response = group.heartbeat(&request, metadata, now_ms)?;
    client.epoch = response.member_epoch;
    if let Some(assignment) = response.assignment {
        client.consuming = assignment;
        client.assignment_changes += 1;
    }
    Ok(())
}

/// Fails if two clients consume the same partition.
fn assert_disjoint(clients: &[Client]) {
    let mut seen = BTreeMap::new();
    for client in clients {
        for (topic, parts) in &client.consuming {
            for &p in parts {
                if let Some(other) = seen.insert((topic.clone(), p), client.member_id.clone()) {
                    panic!("{topic}-{p} consumed by {other} and {}", client.member_id);
                }
            }
        }
    }
}

/// Heartbeats every client in turn until the group is stable (bounded), checking safety
/// after each heartbeat.
fn settle(group: &mut Group, clients: &mut [Client], metadata: &TopicPartitionCounts, now_ms: u64) {
    for _ in 0..10 {
        for i in 0..clients.len() {
            beat(group, &mut clients[i], metadata, now_ms).unwrap();
            group.check_invariants();
            assert_disjoint(clients);
        }
        if group.state() == GroupState::Stable {
            return;
        }
    }
    panic!("group did not settle: {:?}", group.state());
}

fn sizes(clients: &[Client]) -> Vec<usize> {
    clients.iter().map(|c| assignment_len(&c.consuming)).collect()
}

/// Guards the scenario end to end: 3 members and 6 partitions settle at 2 each; a 4th
/// member joining moves only the partitions it gets (revoked first, then assigned), the other
/// members' consumption never stops; a member that stops heartbeating is removed after the
/// session timeout and its partitions move; zombie commits are refused.
#[test]
fn three_members_then_a_fourth_then_a_failure() {
    let metadata = topics(6);
    let mut group = Group::new("g".into(), GroupConfig::default());
    assert_eq!(group.state(), GroupState::Empty);
    let mut clients: Vec<Client> = (0..3).map(|_| join(&mut group, &metadata, 0)).collect();
    settle(&mut group, &mut clients, &metadata, 0);
    assert_eq!(sizes(&clients), vec![2, 2, 2]);
    assert_eq!(group.group_epoch(), 3);
    assert!(clients.iter().all(|c| c.epoch == 3));

    // A fourth member joins: the group epoch moves, and the sticky target gives it one
    // partition taken from one of the others (6 over 4 is 2, 2, 1, 1; moving one partition is
    // enough). It gets nothing yet: the partition is still held.
    let before: Vec<Assignment> = clients.iter().map(|c| c.consuming.clone()).collect();
    let changes_before: Vec<usize> = clients.iter().map(|c| c.assignment_changes).collect();
    let mut fourth = join(&mut group, &metadata, 100);
    assert_eq!(group.group_epoch(), 4);
    assert!(fourth.consuming.is_empty(), "the new member waits for the partitions to be released");
    assert_eq!(group.state(), GroupState::Reconciling);
    let target_sizes: Vec<usize> = clients.iter().map(|c| assignment_len(&group.target_of(&c.member_id))).collect();
    assert_eq!(target_sizes.iter().sum::<usize>(), 5);
    assert_eq!(assignment_len(&group.target_of(&fourth.member_id)), 1);

    // Each old member heartbeats once: a loser is told to drop one partition and keeps its
    // epoch; a keeper moves to epoch 4 with its assignment unchanged (no Some in the response).
    for client in clients.iter_mut() {
        let changes = client.assignment_changes;
        beat(&mut group, client, &metadata, 200).unwrap();
        let target = group.target_of(&client.member_id);
        if assignment_len(&target) == 2 {
            assert_eq!(client.epoch, 4);
            assert_eq!(client.assignment_changes, changes, "a keeper sees no change");
        } else {
            assert_eq!(client.epoch, 3, "a member revoking keeps its epoch until it confirms");
            assert_eq!(assignment_len(&client.consuming), 1);
            assert_eq!(group.member(&client.member_id).unwrap().state, MemberState::UnrevokedPartitions);
        }
    }
    let mut all = clients.clone();
    all.push(fourth.clone());
    assert_disjoint(&all);
    // The fourth still has nothing: the revocations are not confirmed yet.
    beat(&mut group, &mut fourth, &metadata, 250).unwrap();
    assert!(fourth.consuming.is_empty());
    clients.push(fourth);
    settle(&mut group, &mut clients, &metadata, 300);
    assert_eq!(sizes(&clients).iter().sum::<usize>(), 6);
    assert!(sizes(&clients).iter().all(|&n| n == 1 || n == 2));
    assert_eq!(assignment_len(&clients[3].consuming), 1);
    // Only the moved partition changed hands; two members never saw a change.
    let moved: usize =
        before.iter().zip(&clients).map(|(was, now)| assignment_len(was) - assignment_len(&now.consuming)).sum();
    assert_eq!(moved, 1);
    let unchanged = changes_before.iter().zip(&clients).filter(|(n, c)| c.assignment_changes == **n).count();
    assert_eq!(unchanged, 2);

    // Client 1 stops heartbeating. Before the timeout nothing happens; after it, it is
    // removed and its partitions go to the others once they heartbeat.
    let dead = clients.remove(1);
    let t = 300 + SESSION_MS;
    for client in clients.iter_mut() {
        beat(&mut group, client, &metadata, t - 10).unwrap();
    }
    assert!(group.expire(t - 1).is_empty());
    let removed = group.expire(t + 1);
    assert_eq!(removed, vec![(dead.member_id.clone(), RemovalReason::SessionTimeout)]);
    settle(&mut group, &mut clients, &metadata, t + 2);
    assert_eq!(sizes(&clients).iter().sum::<usize>(), 6);
    assert!(sizes(&clients).iter().all(|&n| n == 2));

    // The dead member is a zombie now: its heartbeat and its commit are refused.
    let mut zombie = dead.clone();
    assert_eq!(beat(&mut group, &mut zombie, &metadata, t + 3), Err(ErrorCode::UnknownMemberId));
    let entry = OffsetCommitEntry { topic: "t".into(), partition: 0, offset: 10, metadata: String::new() };
    let commit = |member: &str, epoch: i32, group: &Group| {
        OffsetStore::prepare_commit("g", Some(group), member, epoch, std::slice::from_ref(&entry), 1).results[0].2
    };
    assert_eq!(commit(&dead.member_id, dead.epoch, &group), ErrorCode::UnknownMemberId);
    let live = &clients[0];
    assert_eq!(commit(&live.member_id, live.epoch, &group), ErrorCode::None);
    assert_eq!(commit(&live.member_id, live.epoch - 1, &group), ErrorCode::StaleMemberEpoch);
    assert_eq!(commit(&live.member_id, live.epoch + 1, &group), ErrorCode::FencedMemberEpoch);
    // An old epoch on a heartbeat is fenced (the previous epoch is allowed once, for a lost
    // response, only with owned partitions it was assigned).
    let mut old = clients[0].clone();
    old.epoch -= 2;
    assert_eq!(beat(&mut group, &mut old, &metadata, t + 4), Err(ErrorCode::FencedMemberEpoch));
    // Admin commits need an empty group.
    assert_eq!(commit("", ADMIN_COMMIT_EPOCH, &group), ErrorCode::NonEmptyGroup);
}

/// Guards leaving: a leave heartbeat (epoch -1) frees the member's partitions at once; the
/// group becomes Empty when the last one leaves, and then admin commits are accepted.
#[test]
fn leave_and_admin_commit() {
    let metadata = topics(4);
    let mut group = Group::new("g".into(), GroupConfig::default());
    let mut clients: Vec<Client> = (0..2).map(|_| join(&mut group, &metadata, 0)).collect();
    settle(&mut group, &mut clients, &metadata, 0);
    let leaver = clients.remove(0);
    let request =
        HeartbeatRequest { member_id: leaver.member_id.clone(), member_epoch: LEAVE_EPOCH, ..Default::default() };
    assert_eq!(group.heartbeat(&request, &metadata, 1).unwrap().member_epoch, LEAVE_EPOCH);
    settle(&mut group, &mut clients, &metadata, 2);
    assert_eq!(sizes(&clients), vec![4]);
    assert_eq!(group.leave(&leaver.member_id, LEAVE_EPOCH), Err(ErrorCode::UnknownMemberId));
    assert_eq!(group.leave(&clients[0].member_id, clients[0].epoch + 7), Err(ErrorCode::FencedMemberEpoch));
    group.leave(&clients[0].member_id, clients[0].epoch).unwrap();
    assert_eq!(group.state(), GroupState::Empty);
    assert_eq!(group.validate_commit("", ADMIN_COMMIT_EPOCH), Ok(()));
    group.delete().unwrap();
    assert_eq!(group.state(), GroupState::Dead);
}

/// Guards the bad-input paths: unknown member, wrong epochs, unsupported assignor, a full
/// group, offsets that are not offsets, oversized metadata.
#[test]
fn bad_input_gets_clear_codes() {
    let metadata = topics(2);
    let config = GroupConfig { members_max: 2, ..GroupConfig::default() };
    let mut group = Group::new("g".into(), config);
    let mut a = join(&mut group, &metadata, 0);
    let _b = join(&mut group, &metadata, 0);
    let full = HeartbeatRequest { subscribed_topic_names: Some(BTreeSet::new()), ..Default::default() };
    assert_eq!(group.heartbeat(&full, &metadata, 0), Err(ErrorCode::GroupMaxSizeReached));
    let stranger = HeartbeatRequest { member_id: "nobody".into(), member_epoch: 1, ..Default::default() };
    assert_eq!(group.heartbeat(&stranger, &metadata, 0), Err(ErrorCode::UnknownMemberId));
    let rejoin_unknown = HeartbeatRequest { member_id: "nobody".into(), member_epoch: 0, ..Default::default() };
    assert_eq!(group.heartbeat(&rejoin_unknown, &metadata, 0), Err(ErrorCode::UnknownMemberId));
    let assignor = HeartbeatRequest {
        member_id: a.member_id.clone(),
        member_epoch: a.epoch,
        server_assignor: Some("cooperative-sticky".into()),
        ..Default::default()
    };
    assert_eq!(group.heartbeat(&assignor, &metadata, 0), Err(ErrorCode::UnsupportedAssignor));
    let mut future = a.clone();
    future.epoch += 10;
    assert_eq!(beat(&mut group, &mut future, &metadata, 0), Err(ErrorCode::FencedMemberEpoch));
    beat(&mut group, &mut a, &metadata, 0).unwrap();

    let entries = [
        OffsetCommitEntry { topic: "t".into(), partition: 0, offset: OFFSET_UNKNOWN, metadata: String::new() },
        OffsetCommitEntry { topic: "t".into(), partition: 1, offset: COMMIT_OFFSET_MAX + 1, metadata: String::new() },
        OffsetCommitEntry { topic: "t".into(), partition: 0, offset: 5, metadata: "x".repeat(5000) },
        OffsetCommitEntry { topic: "no/such".into(), partition: 0, offset: 5, metadata: String::new() },
        OffsetCommitEntry { topic: "t".into(), partition: 1, offset: COMMIT_OFFSET_MAX, metadata: String::new() },
    ];
    let prepared = OffsetStore::prepare_commit("g", Some(&group), &a.member_id, a.epoch, &entries, 7);
    let codes: Vec<ErrorCode> = prepared.results.iter().map(|r| r.2).collect();
    assert_eq!(
        codes,
        vec![
            ErrorCode::InvalidCommitOffset,
            ErrorCode::InvalidCommitOffset,
            ErrorCode::OffsetMetadataTooLarge,
            ErrorCode::InvalidTopicName,
            ErrorCode::None
        ]
    );
    assert_eq!(prepared.records.len(), 1);
    // No such group: member commits are refused, admin commits accepted.
    let unknown = OffsetStore::prepare_commit("other", None, "m1-0", 1, &entries[4..], 7);
    assert_eq!(unknown.results[0].2, ErrorCode::UnknownMemberId);
    let admin = OffsetStore::prepare_commit("other", None, "", ADMIN_COMMIT_EPOCH, &entries[4..], 7);
    assert_eq!(admin.results[0].2, ErrorCode::None);
}

/// Guards restart: commits applied, encoded to bytes, decoded and replayed give the same
/// offsets; the group comes back Empty at its persisted epoch, old members are unknown, and
/// new member ids never repeat old ones.
#[test]
fn offsets_and_epochs_survive_a_restart() {
    let metadata = topics(3);
    let mut group = Group::new("g".into(), GroupConfig::default());
    let mut store = OffsetStore::new();
    let mut log: Vec<Vec<u8>> = Vec::new();
    let mut append = |records: Vec<GroupRecord>, store: &mut OffsetStore| {
        for record in records {
            log.push(record.encode().unwrap());
            store.apply(&record);
        }
    };
    let mut clients = vec![join(&mut group, &metadata, 0), join(&mut group, &metadata, 0)];
    settle(&mut group, &mut clients, &metadata, 0);
    append(group.take_metadata_record().into_iter().map(GroupRecord::GroupMetadata).collect(), &mut store);
    assert_eq!(group.take_metadata_record(), None, "nothing new to persist");
    for round in 1..=3u64 {
        for client in &clients {
            let entries: Vec<OffsetCommitEntry> = client.consuming["t"]
                .iter()
                .map(|&p| OffsetCommitEntry {
                    topic: "t".into(),
                    partition: p,
                    offset: 100 * round + u64::from(p),
                    metadata: format!("r{round}"),
                })
                .collect();
            let prepared =
                OffsetStore::prepare_commit("g", Some(&group), &client.member_id, client.epoch, &entries, round as i64);
            assert!(prepared.results.iter().all(|r| r.2.is_ok()));
            append(prepared.records, &mut store);
        }
    }

    // "Restart": decode the log and replay it.
    let records: Vec<GroupRecord> = log.iter().map(|bytes| GroupRecord::decode(bytes).unwrap()).collect();
    let replayed = replay(&records);
    assert_eq!(replayed, store);
    for p in 0..3 {
        let committed = replayed.get("g", "t", p).unwrap();
        assert_eq!((committed.offset, committed.metadata.as_str()), (300 + u64::from(p), "r3"));
    }
    assert_eq!(compact(&records).len(), 1 + 3, "one group record and one offset per partition");
    assert_eq!(replay(&compact(&records)), replayed);
    let fetched = replayed.fetch("g", &[("t".into(), vec![0, 9])]);
    assert_eq!(fetched["t"][&0].map(|c| c.offset), Some(300));
    assert_eq!(fetched["t"][&9], None);
    assert_eq!(replayed.fetch("g", &[]).len(), 1);

    let record = replayed.group_records().next().unwrap().clone();
    let mut restored = Group::restore(&record, GroupConfig::default());
    assert_eq!((restored.state(), restored.group_epoch()), (GroupState::Empty, group.group_epoch()));
    let mut old = clients[0].clone();
    assert_eq!(beat(&mut restored, &mut old, &metadata, 0), Err(ErrorCode::UnknownMemberId));
    let fresh = join(&mut restored, &metadata, 0);
    assert!(clients.iter().all(|c| c.member_id != fresh.member_id));
    assert!(fresh.epoch > old.epoch);
}

/// Guards topic metadata changes: partitions added to a subscribed topic bump the group epoch
/// and are assigned.
#[test]
fn new_partitions_are_assigned() {
    let mut group = Group::new("g".into(), GroupConfig::default());
    let mut clients = vec![join(&mut group, &topics(2), 0), join(&mut group, &topics(2), 0)];
    settle(&mut group, &mut clients, &topics(2), 0);
    let epoch = group.group_epoch();
    settle(&mut group, &mut clients, &topics(6), 1);
    assert_eq!(group.group_epoch(), epoch + 1);
    assert_eq!(sizes(&clients), vec![3, 3]);
}

/// Guards the revocation timeout: a member that never confirms giving up a partition is
/// removed after the rebalance timeout, so the partition cannot be held forever.
#[test]
fn unconfirmed_revocation_times_out() {
    let metadata = topics(2);
    let mut group = Group::new("g".into(), GroupConfig::default());
    let mut stubborn = join(&mut group, &metadata, 0);
    beat(&mut group, &mut stubborn, &metadata, 0).unwrap();
    assert_eq!(assignment_len(&stubborn.consuming), 2);
    let mut other = join(&mut group, &metadata, 1);
    // The stubborn member is told to drop one partition but keeps reporting both.
    let keep = stubborn.consuming.clone();
    beat(&mut group, &mut stubborn, &metadata, 2).unwrap();
    assert_eq!(assignment_len(&stubborn.consuming), 1);
    stubborn.consuming = keep;
    for now in (1_000..REBALANCE_TIMEOUT_MS_DEFAULT).step_by(10_000) {
        beat(&mut group, &mut stubborn, &metadata, now).unwrap();
        beat(&mut group, &mut other, &metadata, now).unwrap();
        assert!(other.consuming.is_empty());
        assert!(group.expire(now).is_empty());
    }
    let removed = group.expire(2 + REBALANCE_TIMEOUT_MS_DEFAULT);
    assert_eq!(removed, vec![(stubborn.member_id.clone(), RemovalReason::RevocationTimeout)]);
    beat(&mut group, &mut other, &metadata, 3 + REBALANCE_TIMEOUT_MS_DEFAULT).unwrap();
    assert_eq!(assignment_len(&other.consuming), 2);
}

#[derive(Clone, Debug)]
enum Op {
    Join,
    Beat(usize),
    Leave(usize),
    /// The client goes silent and the clock jumps past its session.
    Crash(usize),
    Partitions(u32),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        2 => Just(Op::Join),
        8 => (0usize..8).prop_map(Op::Beat),
        1 => (0usize..8).prop_map(Op::Leave),
        1 => (0usize..8).prop_map(Op::Crash),
        1 => (1u32..12).prop_map(Op::Partitions),
    ]
}

proptest! {
    /// Guards the safety and liveness of reconciliation under random joins, leaves, crashes and
    /// partition-count changes: no partition is ever consumed by two live clients, the
    /// coordinator's invariants hold, and once everyone heartbeats the group settles with every
    /// partition consumed and max - min <= 1.
    #[test]
    fn random_membership_changes_stay_safe(ops in prop::collection::vec(op(), 1..60)) {
        let mut group = Group::new("g".into(), GroupConfig::default());
        let mut metadata = topics(6);
        let mut clients: Vec<Client> = Vec::new();
        let mut now = 0u64;
        for op in ops {
            now += 10;
            match op {
                Op::Join if clients.len() < 8 => clients.push(join(&mut group, &metadata, now)),
                Op::Join => {}
                Op::Beat(i) if i < clients.len() => {
                    let fenced = beat(&mut group, &mut clients[i], &metadata, now).is_err();
                    if fenced {
                        clients.remove(i);
                    }
                }
                Op::Leave(i) if i < clients.len() => {
                    let client = clients.remove(i);
                    group.leave(&client.member_id, LEAVE_EPOCH).unwrap();
                }
                Op::Crash(i) if i < clients.len() => {
                    let client = clients.remove(i);
                    // Everyone else heartbeats just before the clock jump, so only it expires.
                    for other in clients.iter_mut() {
                        beat(&mut group, other, &metadata, now).unwrap();
                    }
                    now += SESSION_MS - 1;
                    let removed = group.expire(now);
                    prop_assert_eq!(removed.len(), 1);
                    prop_assert_eq!(&removed[0].0, &client.member_id);
                    for other in clients.iter_mut() {
                        beat(&mut group, other, &metadata, now).unwrap();
                    }
                }
                Op::Partitions(n) => metadata = topics(n),
                _ => {}
            }
            group.check_invariants();
            assert_disjoint(&clients);
        }
        if !clients.is_empty() {
            settle(&mut group, &mut clients, &metadata, now + 1);
            let total: usize = sizes(&clients).iter().sum();
            prop_assert_eq!(total, metadata["t"] as usize);
            let s = sizes(&clients);
            prop_assert!(s.iter().max().unwrap() - s.iter().min().unwrap() <= 1);
        }
    }
}
