//! One file per API: its request and response envelopes.
//!
//! Conventions shared by every API:
//! - Error codes are `u16` fields read with [`crate::protocol::ErrorCode::from_u16`], so that a
//!   code from a newer broker never fails the archive check.
//! - Offsets are `u64` ([`crate::model::Offset`]); an offset that is not known (an error, or no
//!   match) is [`OFFSET_UNKNOWN`]. Partitions are `u32` ([`crate::model::PartitionId`]).
//! - Record batches never appear in an envelope: the envelope holds `(payload_offset,
//!   payload_length)` into the frame's payload section.

pub mod api_versions;
pub mod create_topic;
pub mod delete_topic;
pub mod error_response;
pub mod fetch;
pub mod list_offsets;
pub mod metadata;
pub mod produce;

/// The offset field's value when there is no offset to report.
pub const OFFSET_UNKNOWN: u64 = u64::MAX;
