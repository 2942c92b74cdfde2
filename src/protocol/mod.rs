//! The native wire protocol: frames, API envelopes, error codes. Plain Rust, no runtime; the
//! only I/O is [`frame_writer::write_frame`], over any `futures-io` writer.
//!
//! ## Framing
//!
//! ```text
//! ┌──────────────────────┬───────────────────────────────┬─────────┬─────────────────────────────┐
//! │ header (24 bytes)    │ envelope: rkyv archive of the │ zero    │ payload section:            │
//! │ "RMQ" v1, lengths,   │ API's request/response type   │ padding │ record batches back to back,│
//! │ api key/version,     │ (body_length bytes)           │ to 8    │ untouched (payload_length)  │
//! │ correlation id, flags│                               │         │                             │
//! └──────────────────────┴───────────────────────────────┴─────────┴─────────────────────────────┘
//!                          ▲ 8-aligned                               ▲ 8-aligned
//! ```
//!
//! - The receiver reads the 24-byte header, checks magic, frame version and the lengths against
//!   [`FrameLimits`] *before* allocating ([`FrameHeader::decode`], [`FrameDecoder`]).
//! - The envelope is validated with rkyv's checked access ([`decode_envelope`]) and read in place.
//! - Record batches never enter an archive: Produce requests and Fetch responses carry
//!   `(payload_offset, payload_length)` per partition in the envelope and the bytes in the payload
//!   section, sliced out with the bounds-checked [`payload_slice`]. A sender writes
//!   header + envelope + batches with one vectored write ([`EncodedFrame::io_slices`]).
//! - Requests on a connection may be pipelined; every request gets exactly one response, in
//!   request order, echoing its correlation id, api key and version.
//!
//! The byte-level reference, every API's fields, the error table and the broker's behaviour on
//! bad input are in `PROTOCOL.md` at the repository root.
//!
//! ## Files
//!
//! - [`frame`]: header, limits, frame splitter.
//! - [`frame_writer`]: writing a frame with few syscalls (small batches gathered).
//! - [`codec`]: envelope encode / checked decode, payload helpers, [`ProtocolError`].
//! - [`error_code`]: the stable wire error codes.
//! - [`api`]: API keys and supported versions.
//! - [`apis`]: one file per API with its request and response types.

pub mod api;
pub mod apis;
pub mod codec;
pub mod error_code;
pub mod frame;
pub mod frame_writer;

pub use api::{ApiKey, VersionRange};
pub use apis::api_versions::{ApiVersionRange, ApiVersionsRequest, ApiVersionsResponse};
pub use apis::consumer_group_heartbeat::{
    ConsumerGroupHeartbeatRequest, ConsumerGroupHeartbeatResponse, TopicPartitions, JOIN_EPOCH, LEAVE_EPOCH,
};
pub use apis::create_topic::{validate_topic_name, CreateTopicRequest, CreateTopicResponse};
pub use apis::delete_topic::{DeleteTopicRequest, DeleteTopicResponse};
pub use apis::describe_group::{DescribeGroupRequest, DescribeGroupResponse, DescribedMember};
pub use apis::error_response::ErrorResponse;
pub use apis::fetch::{
    FetchPartition, FetchPartitionResponse, FetchRequest, FetchResponse, FetchTopic, FetchTopicResponse,
};
pub use apis::find_coordinator::{FindCoordinatorRequest, FindCoordinatorResponse};
pub use apis::group_limits::{validate_group_id, validate_member_id};
pub use apis::init_producer_id::{InitProducerIdRequest, InitProducerIdResponse};
pub use apis::leave_group::{LeaveGroupMemberResponse, LeaveGroupRequest, LeaveGroupResponse};
pub use apis::list_groups::{ListGroupsRequest, ListGroupsResponse, ListedGroup};
pub use apis::list_offsets::{
    ListOffsetsPartition, ListOffsetsPartitionResponse, ListOffsetsRequest, ListOffsetsResponse, ListOffsetsTopic,
    ListOffsetsTopicResponse, OffsetSpec,
};
pub use apis::metadata::{MetadataPartition, MetadataRequest, MetadataResponse, MetadataResponseV0, MetadataTopic};
pub use apis::offset_commit::{
    OffsetCommitPartition, OffsetCommitPartitionResponse, OffsetCommitRequest, OffsetCommitResponse, OffsetCommitTopic,
    OffsetCommitTopicResponse, ADMIN_COMMIT_EPOCH,
};
pub use apis::offset_fetch::{
    OffsetFetchPartitionResponse, OffsetFetchRequest, OffsetFetchResponse, OffsetFetchTopic, OffsetFetchTopicResponse,
};
pub use apis::produce::{
    ProducePartition, ProducePartitionResponse, ProduceRequest, ProduceResponse, ProduceTopic, ProduceTopicResponse,
};
pub use apis::OFFSET_UNKNOWN;
pub use codec::{
    check_request_header, check_response_header, decode_envelope, decode_envelope_owned, encode_error_response,
    encode_request, encode_response, payload_slice, EncodedFrame, Envelope, PayloadBuilder, PayloadRange,
    ProtocolError, Request, ResponseTo,
};
pub use error_code::ErrorCode;
pub use frame::{
    aligned_copy, EnvelopeBytes, Frame, FrameDecoder, FrameError, FrameHeader, FrameLimits, FrameStatus, OwnedFrame,
    FRAME_HEADER_BYTES, MAX_FRAME_BYTES_DEFAULT,
};

#[cfg(test)]
mod tests;
