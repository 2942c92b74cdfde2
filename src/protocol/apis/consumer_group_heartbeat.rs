//! ConsumerGroupHeartbeat (key 11): join, stay in, and leave a group; receive the assignment.
//!
//! One API for the whole membership protocol, as in Kafka's KIP-848: the coordinator computes
//! the assignment and hands it out incrementally, a partition going to its new owner only after
//! the old owner has stopped listing it as owned.
//!
//! - Join: `member_id` empty, `member_epoch` [`JOIN_EPOCH`], `subscribed_topic_names` set.
//! - Heartbeat: the member id and epoch from the last response; the subscription and the owned
//!   partitions only when they changed (`None` = unchanged).
//! - Leave: `member_epoch` [`LEAVE_EPOCH`].

use rkyv::{Archive, Deserialize, Serialize};

use crate::protocol::apis::create_topic::validate_topic_name;
use crate::protocol::apis::group_limits::{
    validate_group_id, validate_member_id, validate_topic_lists, ASSIGNOR_NAME_BYTES_MAX, GROUP_TOPICS_MAX,
};
use crate::protocol::{ApiKey, ErrorCode, Request};

/// `member_epoch` of a join request.
pub const JOIN_EPOCH: i32 = 0;
/// `member_epoch` of a leave request.
pub const LEAVE_EPOCH: i32 = -1;

#[derive(Archive, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[rkyv(derive(Debug), compare(PartialEq))]
pub struct ConsumerGroupHeartbeatRequest {
    pub group_id: String,
    /// Empty to join; the coordinator answers with the id to use from then on.
    pub member_id: String,
    /// [`JOIN_EPOCH`] to join, [`LEAVE_EPOCH`] to leave, else the epoch of the last response.
    pub member_epoch: i32,
    /// The topics the member subscribes to; `None` = unchanged since the last heartbeat.
    /// Required on a join.
    pub subscribed_topic_names: Option<Vec<String>>,
    /// A server-side assignor by name (`"uniform"`, `"range"`); `None` = the group's current one.
    pub server_assignor: Option<String>,
    /// The partitions the member owns (consumes) now; `None` = unchanged since the last
    /// heartbeat. A member confirms a revocation by no longer listing the partitions.
    pub owned_partitions: Option<Vec<TopicPartitions>>,
}

/// Some partitions of one topic.
#[derive(Archive, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[rkyv(derive(Debug), compare(PartialEq))]
pub struct TopicPartitions {
    pub topic: String,
    pub partitions: Vec<u32>,
}

#[derive(Archive, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[rkyv(derive(Debug), compare(PartialEq))]
pub struct ConsumerGroupHeartbeatResponse {
    pub error_code: u16,
    pub error_message: String,
    /// The member's id (generated on join).
    pub member_id: String,
    /// The epoch to send in the next heartbeat and with every commit.
    pub member_epoch: i32,
    /// How long the member should wait before the next heartbeat.
    pub heartbeat_interval_ms: u32,
    /// The partitions the member may consume from now on, replacing the previous assignment;
    /// `None` = unchanged since the last response.
    pub assignment: Option<Vec<TopicPartitions>>,
}

impl ArchivedConsumerGroupHeartbeatRequest {
    /// Checks every field against the protocol's rules (not against the group's state).
    pub fn validate(&self) -> Result<(), ErrorCode> {
        validate_group_id(self.group_id.as_str())?;
        validate_member_id(self.member_id.as_str())?;
        let epoch = self.member_epoch.to_native();
        if epoch < LEAVE_EPOCH {
            return Err(ErrorCode::FencedMemberEpoch);
        }
        if self.member_id.is_empty() && epoch != JOIN_EPOCH {
            return Err(ErrorCode::InvalidMemberId);
        }
        if epoch == JOIN_EPOCH && self.subscribed_topic_names.is_none() {
            return Err(ErrorCode::InvalidRequest);
        }
        if let Some(topics) = self.subscribed_topic_names.as_ref() {
            if topics.len() > GROUP_TOPICS_MAX {
                return Err(ErrorCode::GroupListTooLong);
            }
            for topic in topics.iter() {
                validate_topic_name(topic.as_str())?;
            }
        }
        if let Some(assignor) = self.server_assignor.as_ref() {
            if assignor.len() > ASSIGNOR_NAME_BYTES_MAX {
                return Err(ErrorCode::UnsupportedAssignor);
            }
        }
        if let Some(owned) = self.owned_partitions.as_ref() {
            validate_topic_lists(owned.iter().map(|t| (t.topic.as_str(), t.partitions.len())))?;
        }
        Ok(())
    }
}

impl ArchivedConsumerGroupHeartbeatResponse {
    pub fn error_code(&self) -> ErrorCode {
        ErrorCode::from_u16(self.error_code.to_native())
    }
}

impl Request for ConsumerGroupHeartbeatRequest {
    const API_KEY: ApiKey = ApiKey::ConsumerGroupHeartbeat;
    type Response = ConsumerGroupHeartbeatResponse;
}

crate::protocol::codec::envelopes!(ConsumerGroupHeartbeatRequest, ConsumerGroupHeartbeatResponse);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::apis::group_limits::GROUP_PARTITIONS_PER_TOPIC_MAX;

    fn check(request: &ConsumerGroupHeartbeatRequest) -> Result<(), ErrorCode> {
        let bytes = rkyv::to_bytes::<rkyv::rancor::Error>(request).unwrap();
        crate::protocol::decode_envelope::<ConsumerGroupHeartbeatRequest>(&bytes).unwrap().validate()
    }

    /// Guards the per-field rules: join needs a subscription, an empty id needs epoch 0, every
    /// list is bounded.
    #[test]
    fn heartbeat_validation() {
        let join = ConsumerGroupHeartbeatRequest {
            group_id: "g".into(),
            member_id: String::new(),
            member_epoch: JOIN_EPOCH,
            subscribed_topic_names: Some(vec!["orders".into()]),
            server_assignor: None,
            owned_partitions: Some(vec![]),
        };
        assert_eq!(check(&join), Ok(()));
        let cases = [
            (ConsumerGroupHeartbeatRequest { group_id: String::new(), ..join.clone() }, ErrorCode::InvalidGroupId),
            (ConsumerGroupHeartbeatRequest { subscribed_topic_names: None, ..join.clone() }, ErrorCode::InvalidRequest),
            (ConsumerGroupHeartbeatRequest { member_epoch: 3, ..join.clone() }, ErrorCode::InvalidMemberId),
            (
                ConsumerGroupHeartbeatRequest { member_id: "m".into(), member_epoch: -2, ..join.clone() },
                ErrorCode::FencedMemberEpoch,
            ),
            (
                ConsumerGroupHeartbeatRequest {
                    subscribed_topic_names: Some(vec!["t".into(); GROUP_TOPICS_MAX + 1]),
                    ..join.clone()
                },
                ErrorCode::GroupListTooLong,
            ),
            (
                ConsumerGroupHeartbeatRequest { subscribed_topic_names: Some(vec!["a b".into()]), ..join.clone() },
                ErrorCode::InvalidTopicName,
            ),
            (
                ConsumerGroupHeartbeatRequest {
                    owned_partitions: Some(vec![TopicPartitions {
                        topic: "t".into(),
                        partitions: vec![0; GROUP_PARTITIONS_PER_TOPIC_MAX + 1],
                    }]),
                    ..join.clone()
                },
                ErrorCode::GroupListTooLong,
            ),
            (
                ConsumerGroupHeartbeatRequest { server_assignor: Some("x".repeat(100)), ..join.clone() },
                ErrorCode::UnsupportedAssignor,
            ),
        ];
        for (request, code) in cases {
            assert_eq!(check(&request), Err(code), "{request:?}");
        }
    }
}
