//! FindCoordinator (key 10): which shard coordinates a group.
//!
//! The coordinator is the shard that owns the group's partition of the internal offsets topic
//! (`crate::group::coordinator_partition`). Any shard answers; the client keeps using the same
//! connection and the broker routes group requests to that shard (a later shard-aware port may
//! let clients connect to it directly).

use rkyv::{Archive, Deserialize, Serialize};

use crate::protocol::apis::group_limits::validate_group_id;
use crate::protocol::{ApiKey, ErrorCode, Request};

#[derive(Archive, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[rkyv(derive(Debug), compare(PartialEq))]
pub struct FindCoordinatorRequest {
    pub group_id: String,
}

#[derive(Archive, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[rkyv(derive(Debug), compare(PartialEq))]
pub struct FindCoordinatorResponse {
    pub error_code: u16,
    pub error_message: String,
    /// The coordinating shard (core); meaningful only without an error.
    pub shard: u32,
}

impl ArchivedFindCoordinatorRequest {
    pub fn validate(&self) -> Result<(), ErrorCode> {
        validate_group_id(self.group_id.as_str())
    }
}

impl ArchivedFindCoordinatorResponse {
    pub fn error_code(&self) -> ErrorCode {
        ErrorCode::from_u16(self.error_code.to_native())
    }
}

impl Request for FindCoordinatorRequest {
    const API_KEY: ApiKey = ApiKey::FindCoordinator;
    type Response = FindCoordinatorResponse;
}

crate::protocol::codec::envelopes!(FindCoordinatorRequest, FindCoordinatorResponse);
