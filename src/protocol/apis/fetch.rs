//! Fetch (key 5): read batches from partitions, with a long poll.
//!
//! The response's batches go in the payload section exactly as read from the log, so the broker
//! can send envelope + batches with one vectored write and never copy batch bytes.

use rkyv::{Archive, Deserialize, Serialize};

use crate::protocol::{ApiKey, ErrorCode, Request};

#[derive(Archive, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[rkyv(derive(Debug), compare(PartialEq))]
pub struct FetchRequest {
    /// Longest the broker waits for `min_bytes` to become available.
    pub max_wait_ms: u32,
    /// Answer as soon as this many bytes are available (0: answer at once).
    pub min_bytes: u32,
    /// Bound on the payload section of the response. At least one whole batch is returned
    /// (the first one of the first non-empty partition) even if it is larger, so that a
    /// consumer cannot get stuck.
    pub max_bytes: u32,
    pub topics: Vec<FetchTopic>,
}

#[derive(Archive, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[rkyv(derive(Debug), compare(PartialEq))]
pub struct FetchTopic {
    pub name: String,
    pub partitions: Vec<FetchPartition>,
}

#[derive(Archive, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[rkyv(derive(Debug), compare(PartialEq))]
pub struct FetchPartition {
    pub partition: u32,
    /// First offset wanted. The first batch returned may start before it (a batch is never
    /// split); the consumer skips records below it.
    pub fetch_offset: u64,
    /// Bound on this partition's share of the payload section.
    pub partition_max_bytes: u32,
}

#[derive(Archive, Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[rkyv(derive(Debug), compare(PartialEq))]
pub struct FetchResponse {
    pub topics: Vec<FetchTopicResponse>,
}

#[derive(Archive, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[rkyv(derive(Debug), compare(PartialEq))]
pub struct FetchTopicResponse {
    pub name: String,
    pub partitions: Vec<FetchPartitionResponse>,
}

#[derive(Archive, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[rkyv(derive(Debug), compare(PartialEq))]
pub struct FetchPartitionResponse {
    pub partition: u32,
    pub error_code: u16,
    pub high_watermark: u64,
    pub log_start_offset: u64,
    /// This partition's batches: `payload_length` bytes (0 if none) at `payload_offset` of the
    /// payload section, whole batches back to back.
    pub payload_offset: u32,
    pub payload_length: u32,
}

impl ArchivedFetchPartitionResponse {
    pub fn error_code(&self) -> ErrorCode {
        ErrorCode::from_u16(self.error_code.to_native())
    }
}

impl Request for FetchRequest {
    const API_KEY: ApiKey = ApiKey::Fetch;
    type Response = FetchResponse;
}

crate::protocol::codec::envelopes!(FetchRequest, FetchResponse);
