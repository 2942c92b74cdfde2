//! Metadata (key 1): topics, their partitions, which shard owns each, each shard's own port,
//! and topic settings.
//!
//! Versions: v1 (this build writes it) adds [`MetadataResponse::shard_ports`]; the broker still
//! answers v0 requests with [`MetadataResponseV0`], the same response without it.

use rkyv::{Archive, Deserialize, Serialize};

use crate::protocol::{ApiKey, Request};

#[derive(Archive, Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[rkyv(derive(Debug), compare(PartialEq))]
pub struct MetadataRequest {
    /// Topics to describe; empty means every topic.
    pub topics: Vec<String>,
}

#[derive(Archive, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[rkyv(derive(Debug), compare(PartialEq))]
pub struct MetadataResponse {
    /// Number of shards (cores) of the broker: `MetadataPartition::shard` is below it.
    pub shard_count: u32,
    pub topics: Vec<MetadataTopic>,
    /// The port each shard listens on alone, at index = shard id, on the host the client
    /// connected to (v1). A connection there is served by that shard: requests for its own
    /// partitions skip the cross-core hop (any request works). Empty: the broker has no shard
    /// ports; use the bootstrap address for everything.
    pub shard_ports: Vec<u16>,
}

/// The v0 response: [`MetadataResponse`] without `shard_ports`.
#[derive(Archive, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[rkyv(derive(Debug), compare(PartialEq))]
pub struct MetadataResponseV0 {
    pub shard_count: u32,
    pub topics: Vec<MetadataTopic>,
}

impl From<MetadataResponse> for MetadataResponseV0 {
    fn from(response: MetadataResponse) -> MetadataResponseV0 {
        MetadataResponseV0 { shard_count: response.shard_count, topics: response.topics }
    }
}

#[derive(Archive, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[rkyv(derive(Debug), compare(PartialEq))]
pub struct MetadataTopic {
    pub name: String,
    /// `UnknownTopicOrPartition` for a requested topic that does not exist (then the other
    /// fields are empty / zero).
    pub error_code: u16,
    pub partitions: Vec<MetadataPartition>,
    /// -1 = keep forever.
    pub retention_ms: i64,
    /// -1 = no size limit.
    pub retention_bytes: i64,
    pub segment_bytes: u64,
}

#[derive(Archive, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[rkyv(derive(Debug), compare(PartialEq))]
pub struct MetadataPartition {
    pub partition: u32,
    /// The shard (core) that owns the partition's log.
    pub shard: u32,
    pub log_start_offset: u64,
    pub high_watermark: u64,
}

impl Request for MetadataRequest {
    const API_KEY: ApiKey = ApiKey::Metadata;
    const API_VERSION: u16 = 1;
    type Response = MetadataResponse;
}

crate::protocol::codec::envelopes!(MetadataRequest, MetadataResponse, MetadataResponseV0);
