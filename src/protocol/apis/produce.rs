//! Produce (key 4): append record batches to partitions.
//!
//! The batches travel in the frame's payload section, untouched; the envelope says where each
//! partition's batches are. The broker validates each batch (storage's validator), stamps its
//! own header fields and appends the same bytes: it never re-encodes a batch.

use rkyv::{Archive, Deserialize, Serialize};

use crate::protocol::{ApiKey, ErrorCode, Request};

/// `acks` values.
pub const ACKS_NONE: i16 = 0;
pub const ACKS_LEADER: i16 = 1;
pub const ACKS_ALL: i16 = -1;

#[derive(Archive, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[rkyv(derive(Debug), compare(PartialEq))]
pub struct ProduceRequest {
    /// 0: answer once the request is accepted, before the append (offsets unknown);
    /// 1: answer after the leader appended; -1: after every in-sync replica has.
    pub acks: i16,
    pub timeout_ms: u32,
    pub topics: Vec<ProduceTopic>,
}

#[derive(Archive, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[rkyv(derive(Debug), compare(PartialEq))]
pub struct ProduceTopic {
    pub name: String,
    pub partitions: Vec<ProducePartition>,
}

/// One partition's batches: `payload_length` bytes at `payload_offset` of the payload section,
/// one or more whole batches back to back.
#[derive(Archive, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[rkyv(derive(Debug), compare(PartialEq))]
pub struct ProducePartition {
    pub partition: u32,
    pub payload_offset: u32,
    pub payload_length: u32,
}

#[derive(Archive, Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[rkyv(derive(Debug), compare(PartialEq))]
pub struct ProduceResponse {
    pub topics: Vec<ProduceTopicResponse>,
}

#[derive(Archive, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[rkyv(derive(Debug), compare(PartialEq))]
pub struct ProduceTopicResponse {
    pub name: String,
    pub partitions: Vec<ProducePartitionResponse>,
}

#[derive(Archive, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[rkyv(derive(Debug), compare(PartialEq))]
pub struct ProducePartitionResponse {
    pub partition: u32,
    pub error_code: u16,
    /// Offset of the first record appended; `OFFSET_UNKNOWN` on error or with acks=0.
    pub base_offset: u64,
    /// `OFFSET_UNKNOWN` when not known.
    pub log_start_offset: u64,
    /// For humans; may be empty.
    pub error_message: String,
}

impl ArchivedProduceRequest {
    /// `InvalidRequiredAcks` unless acks is 0, 1 or -1.
    pub fn validate_acks(&self) -> Result<(), ErrorCode> {
        match self.acks.to_native() {
            ACKS_NONE | ACKS_LEADER | ACKS_ALL => Ok(()),
            _ => Err(ErrorCode::InvalidRequiredAcks),
        }
    }
}

impl ArchivedProducePartitionResponse {
    pub fn error_code(&self) -> ErrorCode {
        ErrorCode::from_u16(self.error_code.to_native())
    }
}

impl Request for ProduceRequest {
    const API_KEY: ApiKey = ApiKey::Produce;
    type Response = ProduceResponse;
}

crate::protocol::codec::envelopes!(ProduceRequest, ProduceResponse);
