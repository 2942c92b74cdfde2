//! One consumer group's state machine (Kafka's KIP-848 protocol), on its coordinator shard.
//!
//! - The **group epoch** is bumped by every change that calls for a new assignment: a member
//!   joins, leaves, is removed, changes its subscription, or a subscribed topic's partition
//!   count changes.
//! - The **target assignment** is recomputed by the assignor for the new group epoch; the
//!   *assignment epoch* is the group epoch it was computed for.
//! - Each member **reconciles** towards its target one heartbeat at a time: first it gives up
//!   (and confirms giving up) the partitions it loses, keeping its old epoch; then it moves to
//!   the assignment epoch and gets the partitions it gains, each one only once its previous
//!   holder has released it. A member whose target equals what it has just moves to the new
//!   epoch: it never stops consuming.
//! - **Fencing**: every request carries the member epoch; an old one is a zombie
//!   (`FencedMemberEpoch`), an unknown member id `UnknownMemberId`. A member that misses its
//!   session timeout, or does not confirm a revocation within the rebalance timeout, is removed
//!   and its partitions become free.
//!
//! Time is passed in (`now_ms`, any monotonic millisecond clock): the state machine does no I/O
//! and reads no clock, so tests drive it deterministically.

use std::collections::{BTreeMap, BTreeSet};

use crate::protocol::apis::group_limits::GROUP_MEMBERS_MAX;
use crate::protocol::{ErrorCode, ADMIN_COMMIT_EPOCH, JOIN_EPOCH, LEAVE_EPOCH};

use super::assignor::{assign, AssignmentMember, AssignorKind};
use super::member::{Member, MemberState};
use super::records::GroupMetadataRecord;
use super::{Assignment, TopicPartitionCounts};

/// Kafka's default: a member silent this long is removed.
pub const SESSION_TIMEOUT_MS_DEFAULT: u64 = 45_000;
/// How often members are told to heartbeat.
pub const HEARTBEAT_INTERVAL_MS_DEFAULT: u32 = 5_000;
/// How long a member may take to confirm a revocation (commit and stop fetching).
pub const REBALANCE_TIMEOUT_MS_DEFAULT: u64 = 300_000;

// A member must get several heartbeats into one session, or one lost packet removes it.
const _: () = assert!(HEARTBEAT_INTERVAL_MS_DEFAULT as u64 * 3 <= SESSION_TIMEOUT_MS_DEFAULT);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GroupConfig {
    pub session_timeout_ms: u64,
    pub heartbeat_interval_ms: u32,
    pub rebalance_timeout_ms: u64,
    pub members_max: usize,
    /// The assignor when no member asks for one.
    pub default_assignor: AssignorKind,
}

impl Default for GroupConfig {
    fn default() -> GroupConfig {
        GroupConfig {
            session_timeout_ms: SESSION_TIMEOUT_MS_DEFAULT,
            heartbeat_interval_ms: HEARTBEAT_INTERVAL_MS_DEFAULT,
            rebalance_timeout_ms: REBALANCE_TIMEOUT_MS_DEFAULT,
            members_max: GROUP_MEMBERS_MAX,
            default_assignor: AssignorKind::Uniform,
        }
    }
}

/// The group's state, with Kafka's names.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum GroupState {
    /// No members (offsets may still be committed: admin commits are accepted only here).
    Empty,
    /// The group epoch moved and the target assignment is not computed yet.
    Assigning,
    /// Some members have not reached the target assignment.
    Reconciling,
    /// Every member has its target at the assignment epoch.
    Stable,
    /// Deleted: kept only until the coordinator drops it.
    Dead,
}

impl GroupState {
    pub const ALL: [GroupState; 5] =
        [GroupState::Empty, GroupState::Assigning, GroupState::Reconciling, GroupState::Stable, GroupState::Dead];

    pub const fn as_str(self) -> &'static str {
        match self {
            GroupState::Empty => "Empty",
            GroupState::Assigning => "Assigning",
            GroupState::Reconciling => "Reconciling",
            GroupState::Stable => "Stable",
            GroupState::Dead => "Dead",
        }
    }

    pub fn from_name(name: &str) -> Option<GroupState> {
        GroupState::ALL.into_iter().find(|state| state.as_str() == name)
    }
}

/// A heartbeat as the state machine takes it (converted from the wire by the coordinator).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HeartbeatRequest {
    pub member_id: String,
    pub member_epoch: i32,
    /// `None` = unchanged.
    pub subscribed_topic_names: Option<BTreeSet<String>>,
    pub server_assignor: Option<String>,
    /// `None` = unchanged.
    pub owned_partitions: Option<Assignment>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HeartbeatResponse {
    pub member_id: String,
    pub member_epoch: i32,
    pub heartbeat_interval_ms: u32,
    /// `None` = unchanged since the last response.
    pub assignment: Option<Assignment>,
}

/// Why a member left the group.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RemovalReason {
    Left,
    SessionTimeout,
    RevocationTimeout,
    Rejoined,
}

#[derive(Clone, Debug)]
pub struct Group {
    group_id: String,
    config: GroupConfig,
    dead: bool,
    group_epoch: i32,
    assignment_epoch: i32,
    assignor: AssignorKind,
    members: BTreeMap<String, Member>,
    /// The target assignment, for `assignment_epoch`.
    target: BTreeMap<String, Assignment>,
    /// Which member holds each partition (assigned or pending revocation). A partition is
    /// handed to a member only when it is absent here or already that member's.
    holders: BTreeMap<(String, u32), String>,
    /// Partition counts of the subscribed topics, as of the last heartbeat that reported them.
    topic_partitions: TopicPartitionCounts,
    member_id_seq: u64,
    /// The (epoch, assignor) last handed out by `take_metadata_record`.
    persisted: Option<(i32, AssignorKind)>,
}

impl Group {
    pub fn new(group_id: String, config: GroupConfig) -> Group {
        Group {
            group_id,
            config,
            dead: false,
            group_epoch: 0,
            assignment_epoch: 0,
            assignor: config.default_assignor,
            members: BTreeMap::new(),
            target: BTreeMap::new(),
            holders: BTreeMap::new(),
            topic_partitions: TopicPartitionCounts::new(),
            member_id_seq: 0,
            persisted: None,
        }
    }

    /// A group rebuilt from its metadata record after a coordinator start-up: empty, with its
    /// epoch, so that every epoch handed out before the restart stays fenced.
    pub fn restore(record: &GroupMetadataRecord, config: GroupConfig) -> Group {
        let mut group = Group::new(record.group.clone(), config);
        group.group_epoch = record.group_epoch;
        group.assignment_epoch = record.group_epoch;
        group.assignor = record.assignor;
        group.persisted = Some((record.group_epoch, record.assignor));
        group
    }

    pub fn group_id(&self) -> &str {
        &self.group_id
    }

    pub fn group_epoch(&self) -> i32 {
        self.group_epoch
    }

    pub fn assignment_epoch(&self) -> i32 {
        self.assignment_epoch
    }

    pub fn assignor(&self) -> AssignorKind {
        self.assignor
    }

    pub fn members(&self) -> &BTreeMap<String, Member> {
        &self.members
    }

    pub fn member(&self, member_id: &str) -> Option<&Member> {
        self.members.get(member_id)
    }

    /// A member's share of the target assignment.
    pub fn target_of(&self, member_id: &str) -> Assignment {
        self.target.get(member_id).cloned().unwrap_or_default()
    }

    pub fn state(&self) -> GroupState {
        if self.dead {
            GroupState::Dead
        } else if self.members.is_empty() {
            GroupState::Empty
        } else if self.group_epoch != self.assignment_epoch {
            GroupState::Assigning
        } else if self
            .members
            .values()
            .any(|m| m.state != MemberState::Stable || m.member_epoch != self.assignment_epoch)
        {
            GroupState::Reconciling
        } else {
            GroupState::Stable
        }
    }

    /// Marks an empty group deleted. The caller appends a group tombstone record.
    pub fn delete(&mut self) -> Result<(), ErrorCode> {
        if !self.members.is_empty() {
            return Err(ErrorCode::NonEmptyGroup);
        }
        self.dead = true;
        Ok(())
    }

    /// Runs one heartbeat: join, leave, or stay; returns what the member may consume.
    ///
    /// `topics` gives the partition count of every existing topic the group may subscribe to
    /// (a topic missing from it is not assigned).
    pub fn heartbeat(
        &mut self,
        request: &HeartbeatRequest,
        topics: &TopicPartitionCounts,
        now_ms: u64,
    ) -> Result<HeartbeatResponse, ErrorCode> {
        if self.dead {
            return Err(ErrorCode::GroupIdNotFound);
        }
        let preferred = match request.server_assignor.as_deref() {
            Some(name) => Some(AssignorKind::from_name(name).ok_or(ErrorCode::UnsupportedAssignor)?),
            None => None,
        };
        let epoch_before = self.group_epoch;
        let member_id = match request.member_epoch {
            LEAVE_EPOCH => {
                self.leave(&request.member_id, LEAVE_EPOCH)?;
                return Ok(HeartbeatResponse {
                    member_id: request.member_id.clone(),
                    member_epoch: LEAVE_EPOCH,
                    heartbeat_interval_ms: 0,
                    assignment: None,
                });
            }
            JOIN_EPOCH => self.join(request, now_ms)?,
            epoch if epoch > 0 => {
                let member = self.members.get(&request.member_id).ok_or(ErrorCode::UnknownMemberId)?;
                let lost_response = epoch == member.previous_member_epoch
                    && request.owned_partitions.as_ref().is_none_or(|owned| is_subset(owned, &member.assigned));
                if epoch != member.member_epoch && !lost_response {
                    return Err(ErrorCode::FencedMemberEpoch);
                }
                request.member_id.clone()
            }
            _ => return Err(ErrorCode::FencedMemberEpoch),
        };

        let session_deadline_ms = now_ms.saturating_add(self.config.session_timeout_ms);
        let member = self.members.get_mut(&member_id).expect("member joined or validated above");
        member.session_deadline_ms = session_deadline_ms;
        let mut changed = false;
        if let Some(topics) = &request.subscribed_topic_names {
            if *topics != member.subscribed_topics {
                member.subscribed_topics = topics.clone();
                changed = true;
            }
        }
        if preferred.is_some() && preferred != member.preferred_assignor {
            member.preferred_assignor = preferred;
        }
        let confirmed_owned = request.owned_partitions.is_some() && request.member_epoch != JOIN_EPOCH;
        if let (true, Some(owned)) = (confirmed_owned, &request.owned_partitions) {
            member.owned = owned.clone();
        }
        let assignor = self.preferred_assignor();
        if assignor != self.assignor {
            self.assignor = assignor;
            changed = true;
        }
        if self.refresh_topic_partitions(topics) {
            changed = true;
        }
        // One bump per heartbeat, however many things changed (a join already bumped).
        if changed && self.group_epoch == epoch_before {
            self.group_epoch += 1;
        }
        self.compute_target_if_needed();
        self.reconcile(&member_id, confirmed_owned, now_ms);

        let interval = self.config.heartbeat_interval_ms;
        let member = self.members.get_mut(&member_id).expect("member still present");
        let assignment = (member.last_sent.as_ref() != Some(&member.assigned)).then(|| member.assigned.clone());
        member.last_sent = Some(member.assigned.clone());
        Ok(HeartbeatResponse {
            member_id,
            member_epoch: member.member_epoch,
            heartbeat_interval_ms: interval,
            assignment,
        })
    }

    /// Removes a member. `member_epoch` must be the member's epoch, or [`LEAVE_EPOCH`] to skip
    /// the check (a leave heartbeat, or an admin LeaveGroup).
    pub fn leave(&mut self, member_id: &str, member_epoch: i32) -> Result<(), ErrorCode> {
        let member = self.members.get(member_id).ok_or(ErrorCode::UnknownMemberId)?;
        if member_epoch != LEAVE_EPOCH && member_epoch != member.member_epoch {
            return Err(ErrorCode::FencedMemberEpoch);
        }
        self.remove_member(member_id);
        Ok(())
    }

    /// Removes every member whose session or revocation deadline has passed; their partitions
    /// become free for the others. Call it on a timer (every few hundred ms) and before
    /// answering DescribeGroup.
    pub fn expire(&mut self, now_ms: u64) -> Vec<(String, RemovalReason)> {
        let expired: Vec<(String, RemovalReason)> = self
            .members
            .values()
            .filter_map(|m| {
                if m.session_deadline_ms <= now_ms {
                    Some((m.member_id.clone(), RemovalReason::SessionTimeout))
                } else if m.revocation_deadline_ms.is_some_and(|deadline| deadline <= now_ms) {
                    Some((m.member_id.clone(), RemovalReason::RevocationTimeout))
                } else {
                    None
                }
            })
            .collect();
        for (member_id, _) in &expired {
            self.remove_member(member_id);
        }
        expired
    }

    /// Checks that `member_id` at `member_epoch` may commit offsets for this group.
    ///
    /// - An admin commit (empty member id, epoch -1) only while the group has no members.
    /// - Otherwise the member must exist (`UnknownMemberId`) and send its current epoch: an
    ///   older one is `StaleMemberEpoch` (heartbeat, then retry), a newer one
    ///   `FencedMemberEpoch`.
    pub fn validate_commit(&self, member_id: &str, member_epoch: i32) -> Result<(), ErrorCode> {
        if member_id.is_empty() {
            if member_epoch != ADMIN_COMMIT_EPOCH {
                return Err(ErrorCode::InvalidMemberId);
            }
            return if self.members.is_empty() { Ok(()) } else { Err(ErrorCode::NonEmptyGroup) };
        }
        let member = self.members.get(member_id).ok_or(ErrorCode::UnknownMemberId)?;
        match member_epoch.cmp(&member.member_epoch) {
            std::cmp::Ordering::Equal => Ok(()),
            std::cmp::Ordering::Less => Err(ErrorCode::StaleMemberEpoch),
            std::cmp::Ordering::Greater => Err(ErrorCode::FencedMemberEpoch),
        }
    }

    /// The group metadata record to append to the offsets topic if the epoch or assignor
    /// changed since the last call. The broker must have it durable **before** it answers the
    /// request that changed the epoch: after a restart the group resumes from the persisted
    /// epoch, and an epoch (or a member id, which embeds it) must never be handed out twice.
    pub fn take_metadata_record(&mut self) -> Option<GroupMetadataRecord> {
        let current = (self.group_epoch, self.assignor);
        if self.persisted == Some(current) {
            return None;
        }
        self.persisted = Some(current);
        Some(GroupMetadataRecord {
            group: self.group_id.clone(),
            group_epoch: self.group_epoch,
            assignor: self.assignor,
        })
    }

    fn join(&mut self, request: &HeartbeatRequest, now_ms: u64) -> Result<String, ErrorCode> {
        let member_id = if request.member_id.is_empty() {
            if self.members.len() >= self.config.members_max {
                return Err(ErrorCode::GroupMaxSizeReached);
            }
            // The id embeds the epoch the join creates; epochs are persisted before the
            // answer, so an id is never handed out twice, not even across restarts.
            let id = format!("m{}-{}", self.group_epoch + 1, self.member_id_seq);
            self.member_id_seq += 1;
            id
        } else if self.members.contains_key(&request.member_id) {
            // The member restarted: its previous incarnation's partitions are released.
            self.remove_member(&request.member_id);
            request.member_id.clone()
        } else {
            return Err(ErrorCode::UnknownMemberId);
        };
        let subscribed = request.subscribed_topic_names.clone().unwrap_or_default();
        let member = Member::new(member_id.clone(), subscribed, now_ms, self.config.session_timeout_ms);
        self.members.insert(member_id.clone(), member);
        self.group_epoch += 1;
        Ok(member_id)
    }

    fn remove_member(&mut self, member_id: &str) {
        let Some(member) = self.members.remove(member_id) else { return };
        for (topic, partition) in member.held() {
            let key = (topic.clone(), partition);
            if self.holders.get(&key).map(String::as_str) == Some(member_id) {
                self.holders.remove(&key);
            }
        }
        self.target.remove(member_id);
        self.group_epoch += 1;
        self.compute_target_if_needed();
    }

    /// The assignor most members ask for; the group's default on a tie or when none asks.
    fn preferred_assignor(&self) -> AssignorKind {
        let mut votes: BTreeMap<AssignorKind, usize> = BTreeMap::new();
        for kind in self.members.values().filter_map(|m| m.preferred_assignor) {
            *votes.entry(kind).or_default() += 1;
        }
        let default_votes = votes.get(&self.config.default_assignor).copied().unwrap_or(0);
        votes
            .into_iter()
            .filter(|&(_, n)| n > default_votes)
            .max_by_key(|&(kind, n)| (n, std::cmp::Reverse(kind)))
            .map_or(self.config.default_assignor, |(kind, _)| kind)
    }

    /// Takes the partition counts of the subscribed topics from `topics`; true if they changed.
    fn refresh_topic_partitions(&mut self, topics: &TopicPartitionCounts) -> bool {
        let subscribed: BTreeSet<&String> = self.members.values().flat_map(|m| m.subscribed_topics.iter()).collect();
        let fresh: TopicPartitionCounts =
            subscribed.into_iter().filter_map(|topic| topics.get(topic).map(|&count| (topic.clone(), count))).collect();
        if fresh == self.topic_partitions {
            return false;
        }
        self.topic_partitions = fresh;
        true
    }

    fn compute_target_if_needed(&mut self) {
        if self.group_epoch == self.assignment_epoch {
            return;
        }
        let members: BTreeMap<String, AssignmentMember> = self
            .members
            .iter()
            .map(|(id, m)| {
                let current_target = self.target.get(id).cloned().unwrap_or_default();
                (id.clone(), AssignmentMember { subscribed_topics: m.subscribed_topics.clone(), current_target })
            })
            .collect();
        self.target = assign(self.assignor, &members, &self.topic_partitions);
        self.assignment_epoch = self.group_epoch;
    }

    /// Moves one member a step towards its target. `confirmed_owned` says whether this
    /// heartbeat carried the member's owned partitions: only such a heartbeat can confirm a
    /// revocation (an "unchanged" owned list may predate the revocation).
    fn reconcile(&mut self, member_id: &str, confirmed_owned: bool, now_ms: u64) {
        let target = self.target.get(member_id).cloned().unwrap_or_default();
        let assignment_epoch = self.assignment_epoch;
        let rebalance_timeout_ms = self.config.rebalance_timeout_ms;
        let holders = &mut self.holders;
        let member = self.members.get_mut(member_id).expect("reconcile of a present member");

        // 1. Revocations the member confirmed by no longer listing the partitions.
        if confirmed_owned && !member.pending_revocation.is_empty() {
            let released: Vec<(String, u32)> = member
                .pending_revocation
                .iter()
                .flat_map(|(topic, parts)| parts.iter().map(move |&p| (topic.clone(), p)))
                .filter(|(topic, p)| !member.owned.get(topic).is_some_and(|owned| owned.contains(p)))
                .collect();
            for (topic, p) in released {
                remove_partition(&mut member.pending_revocation, &topic, p);
                holders.remove(&(topic, p));
            }
        }
        if !member.pending_revocation.is_empty() {
            member.state = MemberState::UnrevokedPartitions;
            return;
        }
        member.revocation_deadline_ms = None;

        // 2. Partitions the member loses: take them out of its assignment, keep them held
        //    until it confirms. Its epoch stays until then.
        let revoke = difference(&member.assigned, &target);
        if !revoke.is_empty() {
            member.assigned = intersection(&member.assigned, &target);
            member.pending_revocation = revoke;
            member.state = MemberState::UnrevokedPartitions;
            member.revocation_deadline_ms = Some(now_ms.saturating_add(rebalance_timeout_ms));
            return;
        }

        // 3. Nothing to give up: move to the assignment epoch and take every target partition
        //    that is free.
        if member.member_epoch != assignment_epoch {
            member.previous_member_epoch = member.member_epoch;
            member.member_epoch = assignment_epoch;
        }
        for (topic, partitions) in &target {
            for &p in partitions {
                let key = (topic.clone(), p);
                match holders.get(&key) {
                    Some(holder) if holder != member_id => continue,
                    Some(_) => {}
                    None => {
                        holders.insert(key, member_id.to_owned());
                    }
                }
                member.assigned.entry(topic.clone()).or_default().insert(p);
            }
        }
        member.state = if member.assigned == target { MemberState::Stable } else { MemberState::UnreleasedPartitions };
    }

    /// Checks the invariants between members, holders and the target (tests and debug builds).
    pub fn check_invariants(&self) {
        let mut seen = BTreeMap::new();
        for member in self.members.values() {
            for (topic, p) in member.held() {
                let previous = seen.insert((topic.clone(), p), member.member_id.clone());
                assert!(previous.is_none(), "{topic}-{p} held by {previous:?} and {}", member.member_id);
            }
            assert!(member.member_epoch <= self.group_epoch);
        }
        assert_eq!(seen, self.holders, "holders map out of sync with the members");
        assert!(self.assignment_epoch <= self.group_epoch);
    }
}

fn is_subset(small: &Assignment, big: &Assignment) -> bool {
    small.iter().all(|(topic, parts)| parts.is_empty() || big.get(topic).is_some_and(|b| parts.is_subset(b)))
}

fn difference(a: &Assignment, b: &Assignment) -> Assignment {
    a.iter()
        .filter_map(|(topic, parts)| {
            let rest: BTreeSet<u32> = match b.get(topic) {
                Some(other) => parts.difference(other).copied().collect(),
                None => parts.clone(),
            };
            (!rest.is_empty()).then(|| (topic.clone(), rest))
        })
        .collect()
}

fn intersection(a: &Assignment, b: &Assignment) -> Assignment {
    a.iter()
        .filter_map(|(topic, parts)| {
            let common: BTreeSet<u32> = parts.intersection(b.get(topic)?).copied().collect();
            (!common.is_empty()).then(|| (topic.clone(), common))
        })
        .collect()
}

fn remove_partition(assignment: &mut Assignment, topic: &str, partition: u32) {
    if let Some(parts) = assignment.get_mut(topic) {
        parts.remove(&partition);
        if parts.is_empty() {
            assignment.remove(topic);
        }
    }
}
