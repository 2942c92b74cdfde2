//! The client's one error type. Carries the broker's [`ErrorCode`] wherever there is one.

use std::io;
use std::sync::Arc;

use crate::model::{Offset, PartitionId};
use crate::protocol::{ErrorCode, ProtocolError};
use crate::storage::batch::{BatchError, BuildError};

/// Everything a client call can fail with.
///
/// `Clone` so that one failed produce request can fail every delivery handle it carried; the
/// non-`Clone` causes (`io::Error`, `ProtocolError`) are kept whole behind an `Arc`.
#[derive(Clone, Debug, thiserror::Error)]
pub enum ClientError {
    /// Reading from or writing to the broker failed.
    #[error("I/O error talking to the broker: {0}")]
    Io(#[source] Arc<io::Error>),
    /// The broker closed the connection (end of stream), with `in_flight` requests unanswered.
    #[error("the broker closed the connection ({in_flight} requests unanswered)")]
    ConnectionClosed { in_flight: usize },
    /// A frame from the broker could not be read: bad header, bad envelope, wrong API.
    #[error("bad frame from the broker: {0}")]
    Protocol(#[source] Arc<ProtocolError>),
    /// A response whose correlation id is not the one of the oldest request in flight: the
    /// broker broke the "responses in request order" rule.
    #[error("response correlation id {found}, expected {expected}")]
    CorrelationMismatch { expected: u32, found: u32 },
    /// A response arrived while no request was in flight.
    #[error("unsolicited response with correlation id {0}")]
    UnexpectedResponse(u32),
    /// An earlier error left the connection unusable (the frame boundary or the request order
    /// can no longer be trusted); open a new one.
    #[error("connection unusable after an earlier error: {0}")]
    Poisoned(String),
    /// No response within the request timeout. The connection is poisoned: a late response
    /// would otherwise be taken for the answer to a later request.
    #[error("no response from the broker within {timeout_ms} ms")]
    TimedOut { timeout_ms: u64 },
    /// The broker answered a whole request with an error (`ErrorResponse`) or a top-level code.
    #[error("broker error {code}{}", fmt_message(message))]
    Broker { code: ErrorCode, message: String },
    /// A per-topic error (e.g. `UnknownTopicOrPartition` from Metadata).
    #[error("topic '{topic}': {code}{}", fmt_message(message))]
    Topic { topic: String, code: ErrorCode, message: String },
    /// A per-partition error from Produce, Fetch or ListOffsets.
    #[error("topic '{topic}' partition {partition}: {code}{}", fmt_message(message))]
    Partition { topic: String, partition: PartitionId, code: ErrorCode, message: String },
    /// A fetch position outside `[log_start_offset, high_watermark]`. The consumer leaves the
    /// position as it was; the caller decides where to go (the CLI resets to earliest).
    #[error(
        "offset {offset} is out of range for topic '{topic}' partition {partition} \
         (log start {log_start_offset}, high watermark {high_watermark})"
    )]
    OffsetOutOfRange {
        topic: String,
        partition: PartitionId,
        offset: Offset,
        log_start_offset: Offset,
        high_watermark: Offset,
    },
    /// A fetched batch failed validation (CRC, archive, offsets).
    #[error("corrupt batch from topic '{topic}' partition {partition}: {source}")]
    CorruptBatch {
        topic: String,
        partition: PartitionId,
        #[source]
        source: BatchError,
    },
    /// A record could not be put into a batch (too large, bad timestamps).
    #[error("cannot build a record batch: {0}")]
    Build(#[from] BuildError),
    /// The caller asked for something impossible (partition out of range, no assignment, ...).
    #[error("{0}")]
    InvalidArgument(String),
}

fn fmt_message(message: &str) -> String {
    if message.is_empty() {
        String::new()
    } else {
        format!(": {message}")
    }
}

impl ClientError {
    /// The broker's error code, when the error came from the broker.
    pub fn error_code(&self) -> Option<ErrorCode> {
        match self {
            ClientError::Broker { code, .. }
            | ClientError::Topic { code, .. }
            | ClientError::Partition { code, .. } => Some(*code),
            ClientError::OffsetOutOfRange { .. } => Some(ErrorCode::OffsetOutOfRange),
            _ => None,
        }
    }

    /// Whether the same request may succeed if retried on the same connection after a
    /// back-off: only broker codes that say so ([`ErrorCode::is_retriable`]). Connection
    /// failures are not: the connection is gone or poisoned.
    pub fn is_retriable(&self) -> bool {
        self.error_code().is_some_and(ErrorCode::is_retriable)
    }
}

impl From<io::Error> for ClientError {
    fn from(error: io::Error) -> ClientError {
        ClientError::Io(Arc::new(error))
    }
}

impl From<ProtocolError> for ClientError {
    fn from(error: ProtocolError) -> ClientError {
        ClientError::Protocol(Arc::new(error))
    }
}

impl From<crate::protocol::FrameError> for ClientError {
    fn from(error: crate::protocol::FrameError) -> ClientError {
        ClientError::from(ProtocolError::from(error))
    }
}

/// Result of a client call.
pub type ClientResult<T> = Result<T, ClientError>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_and_retriability() {
        let not_leader = ClientError::Partition {
            topic: "t".into(),
            partition: PartitionId(1),
            code: ErrorCode::NotLeader,
            message: String::new(),
        };
        assert!(not_leader.is_retriable());
        assert_eq!(not_leader.to_string(), "topic 't' partition 1: not_leader (13)");
        let unknown = ClientError::Topic {
            topic: "t".into(),
            code: ErrorCode::UnknownTopicOrPartition,
            message: "no such topic".into(),
        };
        assert!(!unknown.is_retriable());
        assert_eq!(unknown.error_code(), Some(ErrorCode::UnknownTopicOrPartition));
        let io = ClientError::from(io::Error::from(io::ErrorKind::BrokenPipe));
        assert!(!io.is_retriable());
        assert_eq!(io.error_code(), None);
    }
}
