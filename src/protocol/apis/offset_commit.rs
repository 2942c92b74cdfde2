//! OffsetCommit (key 13): store a group's consumed positions.
//!
//! A member commits with its id and current member epoch; a commit from a fenced or unknown
//! member is refused (zombie fencing). An admin commit (`member_id` empty, `member_epoch` -1) is
//! accepted only while the group has no members, for resetting offsets. The offset committed is
//! the next offset to consume, as in Kafka.

use rkyv::{Archive, Deserialize, Serialize};

use crate::protocol::apis::group_limits::{validate_group_id, validate_member_id, validate_topic_lists};
use crate::protocol::{ApiKey, ErrorCode, Request};

/// `member_epoch` of an admin commit (with an empty `member_id`).
pub const ADMIN_COMMIT_EPOCH: i32 = -1;

#[derive(Archive, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[rkyv(derive(Debug), compare(PartialEq))]
pub struct OffsetCommitRequest {
    pub group_id: String,
    pub member_id: String,
    pub member_epoch: i32,
    pub topics: Vec<OffsetCommitTopic>,
}

#[derive(Archive, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[rkyv(derive(Debug), compare(PartialEq))]
pub struct OffsetCommitTopic {
    pub name: String,
    pub partitions: Vec<OffsetCommitPartition>,
}

#[derive(Archive, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[rkyv(derive(Debug), compare(PartialEq))]
pub struct OffsetCommitPartition {
    pub partition: u32,
    /// The next offset to consume; `0..=i64::MAX`.
    pub offset: u64,
    /// Free text kept with the offset, up to `OFFSET_METADATA_BYTES_MAX` bytes.
    pub metadata: String,
}

#[derive(Archive, Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[rkyv(derive(Debug), compare(PartialEq))]
pub struct OffsetCommitResponse {
    /// A request-level error (bad group id, a list over its bound, not the coordinator); then
    /// `topics` is empty. Member errors (`UnknownMemberId`, `FencedMemberEpoch`,
    /// `StaleMemberEpoch`) are reported on every partition instead, as in Kafka.
    pub error_code: u16,
    pub topics: Vec<OffsetCommitTopicResponse>,
}

#[derive(Archive, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[rkyv(derive(Debug), compare(PartialEq))]
pub struct OffsetCommitTopicResponse {
    pub name: String,
    pub partitions: Vec<OffsetCommitPartitionResponse>,
}

#[derive(Archive, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[rkyv(derive(Debug), compare(PartialEq))]
pub struct OffsetCommitPartitionResponse {
    pub partition: u32,
    pub error_code: u16,
}

impl ArchivedOffsetCommitRequest {
    /// Request-level checks; per-partition checks (offset range, metadata size) are the
    /// coordinator's (`crate::group::offsets`), answered per partition.
    pub fn validate(&self) -> Result<(), ErrorCode> {
        validate_group_id(self.group_id.as_str())?;
        validate_member_id(self.member_id.as_str())?;
        if self.member_id.is_empty() && self.member_epoch.to_native() != ADMIN_COMMIT_EPOCH {
            return Err(ErrorCode::InvalidMemberId);
        }
        validate_topic_lists(self.topics.iter().map(|t| (t.name.as_str(), t.partitions.len())))
    }
}

impl ArchivedOffsetCommitPartitionResponse {
    pub fn error_code(&self) -> ErrorCode {
        ErrorCode::from_u16(self.error_code.to_native())
    }
}

impl Request for OffsetCommitRequest {
    const API_KEY: ApiKey = ApiKey::OffsetCommit;
    type Response = OffsetCommitResponse;
}

crate::protocol::codec::envelopes!(OffsetCommitRequest, OffsetCommitResponse);
