//! DeleteTopic (key 3): delete a topic and all its data.

use rkyv::{Archive, Deserialize, Serialize};

use crate::protocol::{ApiKey, ErrorCode, Request};

#[derive(Archive, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[rkyv(derive(Debug), compare(PartialEq))]
pub struct DeleteTopicRequest {
    pub name: String,
}

#[derive(Archive, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[rkyv(derive(Debug), compare(PartialEq))]
pub struct DeleteTopicResponse {
    /// `UnknownTopicOrPartition` if there is no such topic.
    pub error_code: u16,
    /// For humans; may be empty.
    pub error_message: String,
}

impl ArchivedDeleteTopicResponse {
    pub fn error_code(&self) -> ErrorCode {
        ErrorCode::from_u16(self.error_code.to_native())
    }
}

impl Request for DeleteTopicRequest {
    const API_KEY: ApiKey = ApiKey::DeleteTopic;
    type Response = DeleteTopicResponse;
}

crate::protocol::codec::envelopes!(DeleteTopicRequest, DeleteTopicResponse);
