//! OffsetFetch (key 14): read a group's committed offsets.

use rkyv::{Archive, Deserialize, Serialize};

use crate::protocol::apis::group_limits::{validate_group_id, validate_topic_lists};
use crate::protocol::{ApiKey, ErrorCode, Request};

#[derive(Archive, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[rkyv(derive(Debug), compare(PartialEq))]
pub struct OffsetFetchRequest {
    pub group_id: String,
    /// Empty = every topic the group has commits for.
    pub topics: Vec<OffsetFetchTopic>,
}

#[derive(Archive, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[rkyv(derive(Debug), compare(PartialEq))]
pub struct OffsetFetchTopic {
    pub name: String,
    /// Empty = every partition of the topic the group has commits for.
    pub partitions: Vec<u32>,
}

#[derive(Archive, Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[rkyv(derive(Debug), compare(PartialEq))]
pub struct OffsetFetchResponse {
    /// A request-level error; then `topics` is empty. An unknown group is not an error: its
    /// partitions read as `OFFSET_UNKNOWN`.
    pub error_code: u16,
    pub topics: Vec<OffsetFetchTopicResponse>,
}

#[derive(Archive, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[rkyv(derive(Debug), compare(PartialEq))]
pub struct OffsetFetchTopicResponse {
    pub name: String,
    pub partitions: Vec<OffsetFetchPartitionResponse>,
}

#[derive(Archive, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[rkyv(derive(Debug), compare(PartialEq))]
pub struct OffsetFetchPartitionResponse {
    pub partition: u32,
    pub error_code: u16,
    /// The committed offset, or `OFFSET_UNKNOWN` if nothing is committed.
    pub offset: u64,
    pub metadata: String,
}

impl ArchivedOffsetFetchRequest {
    pub fn validate(&self) -> Result<(), ErrorCode> {
        validate_group_id(self.group_id.as_str())?;
        validate_topic_lists(self.topics.iter().map(|t| (t.name.as_str(), t.partitions.len())))
    }
}

impl ArchivedOffsetFetchResponse {
    pub fn error_code(&self) -> ErrorCode {
        ErrorCode::from_u16(self.error_code.to_native())
    }
}

impl Request for OffsetFetchRequest {
    const API_KEY: ApiKey = ApiKey::OffsetFetch;
    type Response = OffsetFetchResponse;
}

crate::protocol::codec::envelopes!(OffsetFetchRequest, OffsetFetchResponse);
