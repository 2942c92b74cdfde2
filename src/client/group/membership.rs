//! A member's side of the KIP-848 heartbeat protocol, without I/O: which heartbeat to send,
//! and what a response changes (the member epoch, the partitions gained and revoked, fencing).

use std::collections::BTreeSet;

use crate::model::PartitionId;
use crate::protocol::{
    ConsumerGroupHeartbeatRequest, ConsumerGroupHeartbeatResponse, ErrorCode, TopicPartitions, JOIN_EPOCH,
};

/// One partition of one topic.
pub type TopicPartition = (String, PartitionId);

/// What a heartbeat response changed in the member's assignment.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AssignmentChange {
    /// Newly assigned: position them (committed offset, else the start policy) and fetch.
    pub added: Vec<TopicPartition>,
    /// Taken away: commit what was processed, stop fetching, confirm in the next heartbeat.
    pub revoked: Vec<TopicPartition>,
}

/// What to do after a heartbeat that failed with a broker code.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HeartbeatFailure {
    /// The member was fenced or forgotten: drop the assignment and uncommitted positions,
    /// rejoin at epoch 0.
    Fenced,
    /// Transient (coordinator loading or moving, broker busy): heartbeat again soon.
    Retry,
    /// Anything else: the caller's problem (bad group id, unsupported assignor, group full).
    Fatal,
}

/// The member's identity, epoch and owned partitions.
#[derive(Clone, Debug)]
pub struct Membership {
    group_id: String,
    topics: Vec<String>,
    server_assignor: Option<String>,
    /// Empty until the coordinator hands one out (and again after `UnknownMemberId`).
    member_id: String,
    /// [`JOIN_EPOCH`] while not a member.
    member_epoch: i32,
    owned: BTreeSet<TopicPartition>,
    heartbeat_interval_ms: u32,
}

impl Membership {
    pub fn new(group_id: String, topics: Vec<String>, server_assignor: Option<String>) -> Membership {
        Membership {
            group_id,
            topics,
            server_assignor,
            member_id: String::new(),
            member_epoch: JOIN_EPOCH,
            owned: BTreeSet::new(),
            heartbeat_interval_ms: 0,
        }
    }

    pub fn group_id(&self) -> &str {
        &self.group_id
    }

    pub fn member_id(&self) -> &str {
        &self.member_id
    }

    pub fn member_epoch(&self) -> i32 {
        self.member_epoch
    }

    /// Whether the coordinator accepted the member (a join was answered).
    pub fn is_member(&self) -> bool {
        self.member_epoch > JOIN_EPOCH
    }

    pub fn owned(&self) -> &BTreeSet<TopicPartition> {
        &self.owned
    }

    /// The interval the coordinator asked for (0 before the first answer).
    pub fn heartbeat_interval_ms(&self) -> u32 {
        self.heartbeat_interval_ms
    }

    /// The next heartbeat: a join (subscription, nothing owned) while not a member, otherwise
    /// the current epoch with the owned partitions, which confirms any revocation.
    pub fn heartbeat_request(&self) -> ConsumerGroupHeartbeatRequest {
        let joining = !self.is_member();
        ConsumerGroupHeartbeatRequest {
            group_id: self.group_id.clone(),
            member_id: self.member_id.clone(),
            member_epoch: self.member_epoch,
            subscribed_topic_names: joining.then(|| self.topics.clone()),
            server_assignor: if joining { self.server_assignor.clone() } else { None },
            owned_partitions: Some(if joining { Vec::new() } else { to_wire(&self.owned) }),
        }
    }

    /// Takes a heartbeat response: on success the new epoch and the assignment change (the
    /// owned set becomes the assignment at once; the caller commits the revoked partitions
    /// before the next heartbeat confirms them). On failure, what to do; a fencing code has
    /// already reset the member to rejoin.
    pub fn absorb(&mut self, response: &ConsumerGroupHeartbeatResponse) -> Result<AssignmentChange, HeartbeatFailure> {
        let code = ErrorCode::from_u16(response.error_code);
        if !code.is_ok() {
            let failure = classify(code);
            if failure == HeartbeatFailure::Fenced {
                self.fence(code);
            }
            return Err(failure);
        }
        self.member_id.clone_from(&response.member_id);
        self.member_epoch = response.member_epoch;
        if response.heartbeat_interval_ms > 0 {
            self.heartbeat_interval_ms = response.heartbeat_interval_ms;
        }
        let Some(assignment) = &response.assignment else { return Ok(AssignmentChange::default()) };
        let next: BTreeSet<TopicPartition> = assignment
            .iter()
            .flat_map(|tp| tp.partitions.iter().map(move |&p| (tp.topic.clone(), PartitionId(p))))
            .collect();
        let change = AssignmentChange {
            added: next.difference(&self.owned).cloned().collect(),
            revoked: self.owned.difference(&next).cloned().collect(),
        };
        self.owned = next;
        Ok(change)
    }

    /// Forgets the assignment and rejoins at epoch 0: with the same member id after
    /// `FencedMemberEpoch` (the coordinator replaces the old incarnation at once), with a new
    /// one when the coordinator no longer knows the id.
    pub fn fence(&mut self, code: ErrorCode) {
        if code != ErrorCode::FencedMemberEpoch {
            self.member_id.clear();
        }
        self.member_epoch = JOIN_EPOCH;
        self.owned.clear();
    }

    /// After leaving: not a member any more, nothing owned.
    pub fn left(&mut self) {
        self.member_id.clear();
        self.member_epoch = JOIN_EPOCH;
        self.owned.clear();
    }
}

/// What a failed heartbeat or commit code means for the member.
pub fn classify(code: ErrorCode) -> HeartbeatFailure {
    match code {
        ErrorCode::FencedMemberEpoch | ErrorCode::UnknownMemberId | ErrorCode::GroupIdNotFound => {
            HeartbeatFailure::Fenced
        }
        code if code.is_retriable() || code == ErrorCode::StorageError => HeartbeatFailure::Retry,
        _ => HeartbeatFailure::Fatal,
    }
}

fn to_wire(owned: &BTreeSet<TopicPartition>) -> Vec<TopicPartitions> {
    let mut out: Vec<TopicPartitions> = Vec::new();
    for (topic, partition) in owned {
        match out.last_mut() {
            Some(last) if last.topic == *topic => last.partitions.push(partition.0),
            _ => out.push(TopicPartitions { topic: topic.clone(), partitions: vec![partition.0] }),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(epoch: i32, assignment: Option<&[(&str, u32)]>) -> ConsumerGroupHeartbeatResponse {
        ConsumerGroupHeartbeatResponse {
            error_code: 0,
            error_message: String::new(),
            member_id: "m1".into(),
            member_epoch: epoch,
            heartbeat_interval_ms: 100,
            assignment: assignment.map(|parts| {
                let owned: BTreeSet<TopicPartition> =
                    parts.iter().map(|&(t, p)| (t.to_owned(), PartitionId(p))).collect();
                to_wire(&owned)
            }),
        }
    }

    fn tp(topic: &str, partition: u32) -> TopicPartition {
        (topic.to_owned(), PartitionId(partition))
    }

    /// Guards the member's reconciliation: join request shape, gains and revocations as
    /// differences, "unchanged" assignments, the owned list confirming a revocation, and
    /// fencing back to a join (keeping the id only for `FencedMemberEpoch`).
    #[test]
    fn heartbeats_track_the_assignment_and_fencing() {
        let mut member = Membership::new("g".into(), vec!["a".into(), "b".into()], Some("range".into()));
        let join = member.heartbeat_request();
        assert_eq!((join.member_id.as_str(), join.member_epoch), ("", JOIN_EPOCH));
        assert_eq!(join.subscribed_topic_names, Some(vec!["a".to_owned(), "b".to_owned()]));
        assert_eq!(join.server_assignor.as_deref(), Some("range"));
        assert_eq!(join.owned_partitions, Some(Vec::new()));

        let change = member.absorb(&answer(1, Some(&[("a", 0), ("a", 1), ("b", 0)]))).unwrap();
        assert_eq!(change.added, vec![tp("a", 0), tp("a", 1), tp("b", 0)]);
        assert!(change.revoked.is_empty());
        assert!(member.is_member());
        assert_eq!(member.heartbeat_interval_ms(), 100);
        let next = member.heartbeat_request();
        assert_eq!((next.member_id.as_str(), next.member_epoch), ("m1", 1));
        assert_eq!(next.subscribed_topic_names, None);
        assert_eq!(
            next.owned_partitions,
            Some(vec![
                TopicPartitions { topic: "a".into(), partitions: vec![0, 1] },
                TopicPartitions { topic: "b".into(), partitions: vec![0] },
            ])
        );

        assert_eq!(member.absorb(&answer(1, None)).unwrap(), AssignmentChange::default());
        let change = member.absorb(&answer(1, Some(&[("a", 1), ("b", 0)]))).unwrap();
        assert_eq!(change, AssignmentChange { added: vec![], revoked: vec![tp("a", 0)] });
        let confirm = member.heartbeat_request();
        assert_eq!(confirm.owned_partitions.unwrap()[0].partitions, vec![1]);
        let change = member.absorb(&answer(2, Some(&[("a", 1), ("b", 0), ("b", 1)]))).unwrap();
        assert_eq!(change, AssignmentChange { added: vec![tp("b", 1)], revoked: vec![] });

        let fenced =
            ConsumerGroupHeartbeatResponse { error_code: ErrorCode::FencedMemberEpoch.as_u16(), ..answer(2, None) };
        assert_eq!(member.absorb(&fenced), Err(HeartbeatFailure::Fenced));
        assert!(member.owned().is_empty());
        let rejoin = member.heartbeat_request();
        assert_eq!((rejoin.member_id.as_str(), rejoin.member_epoch), ("m1", JOIN_EPOCH));
        assert!(rejoin.subscribed_topic_names.is_some());
        member.absorb(&answer(3, Some(&[("a", 0)]))).unwrap();
        let unknown =
            ConsumerGroupHeartbeatResponse { error_code: ErrorCode::UnknownMemberId.as_u16(), ..answer(3, None) };
        assert_eq!(member.absorb(&unknown), Err(HeartbeatFailure::Fenced));
        assert_eq!(member.heartbeat_request().member_id, "");
        let busy = ConsumerGroupHeartbeatResponse {
            error_code: ErrorCode::CoordinatorLoadInProgress.as_u16(),
            ..answer(3, None)
        };
        assert_eq!(member.absorb(&busy), Err(HeartbeatFailure::Retry));
        let bad =
            ConsumerGroupHeartbeatResponse { error_code: ErrorCode::UnsupportedAssignor.as_u16(), ..answer(3, None) };
        assert_eq!(member.absorb(&bad), Err(HeartbeatFailure::Fatal));
    }
}
