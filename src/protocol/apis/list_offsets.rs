//! ListOffsets (key 6): find the earliest, the latest, or the first offset at or after a time.

use rkyv::{Archive, Deserialize, Serialize};

use crate::protocol::{ApiKey, ErrorCode, Request};

#[derive(Archive, Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[rkyv(derive(Debug), compare(PartialEq))]
pub struct ListOffsetsRequest {
    pub topics: Vec<ListOffsetsTopic>,
}

#[derive(Archive, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[rkyv(derive(Debug), compare(PartialEq))]
pub struct ListOffsetsTopic {
    pub name: String,
    pub partitions: Vec<ListOffsetsPartition>,
}

#[derive(Archive, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[rkyv(derive(Debug), compare(PartialEq))]
pub struct ListOffsetsPartition {
    pub partition: u32,
    pub spec: OffsetSpec,
}

/// Which offset to look up.
#[derive(Archive, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[rkyv(derive(Debug), compare(PartialEq))]
pub enum OffsetSpec {
    /// The log start offset.
    Earliest,
    /// The high watermark: the offset the next appended record will get.
    Latest,
    /// The first offset whose record timestamp is at or after this many ms since the epoch.
    Timestamp(i64),
}

#[derive(Archive, Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[rkyv(derive(Debug), compare(PartialEq))]
pub struct ListOffsetsResponse {
    pub topics: Vec<ListOffsetsTopicResponse>,
}

#[derive(Archive, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[rkyv(derive(Debug), compare(PartialEq))]
pub struct ListOffsetsTopicResponse {
    pub name: String,
    pub partitions: Vec<ListOffsetsPartitionResponse>,
}

#[derive(Archive, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[rkyv(derive(Debug), compare(PartialEq))]
pub struct ListOffsetsPartitionResponse {
    pub partition: u32,
    pub error_code: u16,
    /// `OFFSET_UNKNOWN` on error, or for a timestamp later than every record.
    pub offset: u64,
    /// The found record's timestamp for `Timestamp` lookups; -1 otherwise.
    pub timestamp_ms: i64,
}

impl ArchivedListOffsetsPartitionResponse {
    pub fn error_code(&self) -> ErrorCode {
        ErrorCode::from_u16(self.error_code.to_native())
    }
}

impl Request for ListOffsetsRequest {
    const API_KEY: ApiKey = ApiKey::ListOffsets;
    type Response = ListOffsetsResponse;
}

crate::protocol::codec::envelopes!(ListOffsetsRequest, ListOffsetsResponse);
