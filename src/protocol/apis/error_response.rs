//! The generic error envelope, sent with flags `response | error` when a request cannot be
//! served at all: its header or envelope was refused, its API key or version is unknown.

use rkyv::{Archive, Deserialize, Serialize};

use crate::protocol::ErrorCode;

/// The body of any response frame that has the error flag set.
#[derive(Archive, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[rkyv(derive(Debug), compare(PartialEq))]
pub struct ErrorResponse {
    pub error_code: u16,
    /// For humans and logs; may be empty.
    pub message: String,
}

impl ArchivedErrorResponse {
    pub fn error_code(&self) -> ErrorCode {
        ErrorCode::from_u16(self.error_code.to_native())
    }
}

crate::protocol::codec::envelopes!(ErrorResponse);
