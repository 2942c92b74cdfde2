//! LeaveGroup (key 12): remove members from a group.
//!
//! A consumer normally leaves with a ConsumerGroupHeartbeat at epoch -1; LeaveGroup is the
//! admin path (and a consumer's path when it has lost its epoch): it removes the listed members
//! whatever their epoch, releasing their partitions at once.

use rkyv::{Archive, Deserialize, Serialize};

use crate::protocol::apis::group_limits::{validate_group_id, validate_member_id, GROUP_MEMBERS_MAX};
use crate::protocol::{ApiKey, ErrorCode, Request};

#[derive(Archive, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[rkyv(derive(Debug), compare(PartialEq))]
pub struct LeaveGroupRequest {
    pub group_id: String,
    /// 1..=[`GROUP_MEMBERS_MAX`] member ids.
    pub member_ids: Vec<String>,
}

#[derive(Archive, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[rkyv(derive(Debug), compare(PartialEq))]
pub struct LeaveGroupResponse {
    /// A request-level error (bad group id, not the coordinator); then `members` is empty.
    pub error_code: u16,
    pub members: Vec<LeaveGroupMemberResponse>,
}

#[derive(Archive, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[rkyv(derive(Debug), compare(PartialEq))]
pub struct LeaveGroupMemberResponse {
    pub member_id: String,
    /// `UnknownMemberId` if the member was not in the group.
    pub error_code: u16,
}

impl ArchivedLeaveGroupRequest {
    pub fn validate(&self) -> Result<(), ErrorCode> {
        validate_group_id(self.group_id.as_str())?;
        if self.member_ids.is_empty() {
            return Err(ErrorCode::InvalidRequest);
        }
        if self.member_ids.len() > GROUP_MEMBERS_MAX {
            return Err(ErrorCode::GroupListTooLong);
        }
        for member_id in self.member_ids.iter() {
            validate_member_id(member_id.as_str())?;
        }
        Ok(())
    }
}

impl ArchivedLeaveGroupResponse {
    pub fn error_code(&self) -> ErrorCode {
        ErrorCode::from_u16(self.error_code.to_native())
    }
}

impl Request for LeaveGroupRequest {
    const API_KEY: ApiKey = ApiKey::LeaveGroup;
    type Response = LeaveGroupResponse;
}

crate::protocol::codec::envelopes!(LeaveGroupRequest, LeaveGroupResponse);
