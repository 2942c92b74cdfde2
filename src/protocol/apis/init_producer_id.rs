//! InitProducerId (key 17): get a producer id and epoch for idempotent (and later
//! transactional) producing.
//!
//! Without a transactional id every call hands out a fresh id with epoch 0. With one, the same
//! id comes back with the epoch bumped, which fences the previous producer that used it.

use rkyv::{Archive, Deserialize, Serialize};

use crate::protocol::apis::group_limits::TRANSACTIONAL_ID_BYTES_MAX;
use crate::protocol::{ApiKey, ErrorCode, Request};

#[derive(Archive, Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[rkyv(derive(Debug), compare(PartialEq))]
pub struct InitProducerIdRequest {
    /// `None` for an idempotent-only producer.
    pub transactional_id: Option<String>,
    /// Transactions: how long the broker waits before aborting an open one (unused until
    /// transactions exist; 0 = broker default).
    pub transaction_timeout_ms: u32,
}

#[derive(Archive, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[rkyv(derive(Debug), compare(PartialEq))]
pub struct InitProducerIdResponse {
    pub error_code: u16,
    /// -1 on error.
    pub producer_id: i64,
    /// -1 on error.
    pub producer_epoch: i16,
}

impl ArchivedInitProducerIdRequest {
    pub fn validate(&self) -> Result<(), ErrorCode> {
        match self.transactional_id.as_ref() {
            Some(id) if id.is_empty() || id.len() > TRANSACTIONAL_ID_BYTES_MAX || id.chars().any(char::is_control) => {
                Err(ErrorCode::InvalidTransactionalId)
            }
            _ => Ok(()),
        }
    }
}

impl ArchivedInitProducerIdResponse {
    pub fn error_code(&self) -> ErrorCode {
        ErrorCode::from_u16(self.error_code.to_native())
    }
}

impl Request for InitProducerIdRequest {
    const API_KEY: ApiKey = ApiKey::InitProducerId;
    type Response = InitProducerIdResponse;
}

crate::protocol::codec::envelopes!(InitProducerIdRequest, InitProducerIdResponse);
