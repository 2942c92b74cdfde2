//! DescribeGroup (key 15): a group's state, assignor, epochs and members with their
//! assignments.

use rkyv::{Archive, Deserialize, Serialize};

use crate::protocol::apis::consumer_group_heartbeat::TopicPartitions;
use crate::protocol::apis::group_limits::validate_group_id;
use crate::protocol::{ApiKey, ErrorCode, Request};

#[derive(Archive, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[rkyv(derive(Debug), compare(PartialEq))]
pub struct DescribeGroupRequest {
    pub group_id: String,
}

#[derive(Archive, Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[rkyv(derive(Debug), compare(PartialEq))]
pub struct DescribeGroupResponse {
    /// `GroupIdNotFound` for a group the coordinator does not know.
    pub error_code: u16,
    pub group_id: String,
    /// Kafka's names: `Empty`, `Assigning`, `Reconciling`, `Stable`, `Dead`. A string so that a
    /// state added later does not fail an older client's archive check.
    pub state: String,
    /// The server-side assignor: `uniform` or `range`.
    pub assignor: String,
    /// Bumped on every membership, subscription or topic-metadata change.
    pub group_epoch: i32,
    /// The group epoch the current target assignment was computed for.
    pub assignment_epoch: i32,
    pub members: Vec<DescribedMember>,
}

#[derive(Archive, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[rkyv(derive(Debug), compare(PartialEq))]
pub struct DescribedMember {
    pub member_id: String,
    pub member_epoch: i32,
    pub subscribed_topic_names: Vec<String>,
    /// What the member may consume now.
    pub assignment: Vec<TopicPartitions>,
    /// What the member will have once the rebalance completes.
    pub target_assignment: Vec<TopicPartitions>,
}

impl ArchivedDescribeGroupRequest {
    pub fn validate(&self) -> Result<(), ErrorCode> {
        validate_group_id(self.group_id.as_str())
    }
}

impl ArchivedDescribeGroupResponse {
    pub fn error_code(&self) -> ErrorCode {
        ErrorCode::from_u16(self.error_code.to_native())
    }
}

impl Request for DescribeGroupRequest {
    const API_KEY: ApiKey = ApiKey::DescribeGroup;
    type Response = DescribeGroupResponse;
}

crate::protocol::codec::envelopes!(DescribeGroupRequest, DescribeGroupResponse);
