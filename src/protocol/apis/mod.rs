//! One file per API: its request and response envelopes.
//!
//! Conventions shared by every API:
//! - Error codes are `u16` fields read with [`crate::protocol::ErrorCode::from_u16`], so that a
//!   code from a newer broker never fails the archive check.
//! - Offsets are `u64` ([`crate::model::Offset`]); an offset that is not known (an error, or no
//!   match) is [`OFFSET_UNKNOWN`]. Partitions are `u32` ([`crate::model::PartitionId`]).
//! - Record batches never appear in an envelope: the envelope holds `(payload_offset,
//!   payload_length)` into the frame's payload section.
//! - Group and producer-id APIs (keys 10..=17) bound every client-sent list with the constants
//!   of [`group_limits`]; `validate()` on the archived request checks them.

pub mod api_versions;
pub mod consumer_group_heartbeat;
pub mod create_topic;
pub mod delete_topic;
pub mod describe_group;
pub mod error_response;
pub mod fetch;
pub mod find_coordinator;
pub mod group_limits;
pub mod init_producer_id;
pub mod leave_group;
pub mod list_groups;
pub mod list_offsets;
pub mod metadata;
pub mod offset_commit;
pub mod offset_fetch;
pub mod produce;

/// The offset field's value when there is no offset to report.
pub const OFFSET_UNKNOWN: u64 = u64::MAX;
