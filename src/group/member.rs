//! A group member as the coordinator sees it: epoch, subscription, and the partitions it may
//! consume, may no longer consume, and says it consumes.
//!
//! Lives inside its [`Group`](super::Group), on the coordinator shard.

use std::collections::BTreeSet;

use super::Assignment;

/// Where a member is in its reconciliation towards the group's target assignment (Kafka's
/// names).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MemberState {
    /// Has exactly its target, at the assignment epoch.
    Stable,
    /// Was told to give up partitions and has not confirmed yet; keeps its old epoch.
    UnrevokedPartitions,
    /// At the assignment epoch, but waiting for partitions other members still hold.
    UnreleasedPartitions,
}

impl MemberState {
    pub const fn as_str(self) -> &'static str {
        match self {
            MemberState::Stable => "Stable",
            MemberState::UnrevokedPartitions => "UnrevokedPartitions",
            MemberState::UnreleasedPartitions => "UnreleasedPartitions",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Member {
    pub member_id: String,
    /// The epoch the member must send; advances to the assignment epoch once the member has no
    /// revocation outstanding.
    pub member_epoch: i32,
    /// The epoch before the last advance: a heartbeat with it is accepted once (the member may
    /// have missed the response that advanced it).
    pub previous_member_epoch: i32,
    pub state: MemberState,
    pub subscribed_topics: BTreeSet<String>,
    /// The assignor the member asked for, if any: the group uses the most requested one.
    pub preferred_assignor: Option<super::AssignorKind>,
    /// What the member may consume now. Every partition here is held by this member only.
    pub assigned: Assignment,
    /// Partitions the member was told to give up and has not confirmed yet. Still held: no other
    /// member gets them before the confirmation (or this member's removal).
    pub pending_revocation: Assignment,
    /// What the member last said it consumes.
    pub owned: Assignment,
    /// The assignment in the last response, to answer "unchanged" (`None`) when it is the same.
    pub last_sent: Option<Assignment>,
    /// The member is removed if it does not heartbeat before this time.
    pub session_deadline_ms: u64,
    /// The member is removed if it has not confirmed its revocation by this time.
    pub revocation_deadline_ms: Option<u64>,
}

impl Member {
    pub(super) fn new(member_id: String, subscribed_topics: BTreeSet<String>, now_ms: u64, session_ms: u64) -> Member {
        Member {
            member_id,
            member_epoch: 0,
            previous_member_epoch: 0,
            state: MemberState::Stable,
            subscribed_topics,
            preferred_assignor: None,
            assigned: Assignment::new(),
            pending_revocation: Assignment::new(),
            owned: Assignment::new(),
            last_sent: None,
            session_deadline_ms: now_ms.saturating_add(session_ms),
            revocation_deadline_ms: None,
        }
    }

    /// Every partition this member holds: assigned or pending revocation.
    pub fn held(&self) -> impl Iterator<Item = (&String, u32)> {
        self.assigned
            .iter()
            .chain(self.pending_revocation.iter())
            .flat_map(|(topic, partitions)| partitions.iter().map(move |&p| (topic, p)))
    }
}
