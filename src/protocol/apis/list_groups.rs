//! ListGroups (key 16): the groups this broker coordinates, with their states.
//!
//! Every shard coordinates some groups; the broker asks each shard and concatenates.

use rkyv::{Archive, Deserialize, Serialize};

use crate::protocol::apis::group_limits::GROUP_STATES_FILTER_MAX;
use crate::protocol::{ApiKey, ErrorCode, Request};

#[derive(Archive, Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[rkyv(derive(Debug), compare(PartialEq))]
pub struct ListGroupsRequest {
    /// Only groups in these states (names as in DescribeGroup); empty = every group.
    pub states_filter: Vec<String>,
}

#[derive(Archive, Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[rkyv(derive(Debug), compare(PartialEq))]
pub struct ListGroupsResponse {
    pub error_code: u16,
    pub groups: Vec<ListedGroup>,
}

#[derive(Archive, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[rkyv(derive(Debug), compare(PartialEq))]
pub struct ListedGroup {
    pub group_id: String,
    pub state: String,
}

impl ArchivedListGroupsRequest {
    pub fn validate(&self) -> Result<(), ErrorCode> {
        if self.states_filter.len() > GROUP_STATES_FILTER_MAX {
            return Err(ErrorCode::GroupListTooLong);
        }
        Ok(())
    }
}

impl ArchivedListGroupsResponse {
    pub fn error_code(&self) -> ErrorCode {
        ErrorCode::from_u16(self.error_code.to_native())
    }
}

impl Request for ListGroupsRequest {
    const API_KEY: ApiKey = ApiKey::ListGroups;
    type Response = ListGroupsResponse;
}

crate::protocol::codec::envelopes!(ListGroupsRequest, ListGroupsResponse);
