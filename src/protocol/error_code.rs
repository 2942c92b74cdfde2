//! Stable numeric error codes, shared by broker and client.
//!
//! **The numbers are part of the wire format: a code is never renumbered and a number is never
//! reused**, even when a variant is retired (leave the number unused and say so here). New codes
//! take the next free number in their range:
//!
//! | range  | used for                                        |
//! |--------|-------------------------------------------------|
//! | 0–29   | general: framing, topics, partitions, storage   |
//! | 30–49  | consumer groups (reserved)                      |
//! | 50–69  | producer ids, idempotence, transactions (reserved) |
//! | 70–    | not allocated yet                               |
//!
//! On the wire an error code is a plain `u16`, not an rkyv enum: a client that meets a code from a
//! newer broker must still be able to read the rest of the response, so [`ErrorCode::from_u16`]
//! maps unknown numbers to [`ErrorCode::Unknown`] instead of failing the archive check.

use std::fmt;

/// A stable wire error code. See the module doc: never renumber a variant.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u16)]
pub enum ErrorCode {
    /// Success.
    None = 0,
    /// An error the broker did not classify, or a code this build does not know.
    Unknown = 1,
    /// A frame, envelope or record batch failed its check (bad CRC, invalid rkyv archive).
    CorruptMessage = 2,
    /// The topic or partition does not exist.
    UnknownTopicOrPartition = 3,
    /// The requested offset is below the log start offset or above the high watermark.
    OffsetOutOfRange = 4,
    /// A frame, batch or request exceeds a configured maximum.
    MessageTooLarge = 5,
    /// The request is well formed but its contents are not acceptable (e.g. a payload range
    /// outside the payload section, a response flag on a request).
    InvalidRequest = 6,
    /// The API exists but not in the requested version.
    UnsupportedVersion = 7,
    /// The API key is not one this broker knows.
    UnknownApiKey = 8,
    /// CreateTopic of a topic that already exists.
    TopicAlreadyExists = 9,
    /// The topic name breaks the naming rules (see `validate_topic_name`).
    InvalidTopicName = 10,
    /// The partition count is out of range.
    InvalidPartitions = 11,
    /// A topic setting (retention, segment size) is out of range.
    InvalidConfig = 12,
    /// This broker (or shard) does not lead the partition; refresh metadata and retry.
    NotLeader = 13,
    /// The request did not complete within its timeout.
    RequestTimedOut = 14,
    /// The partition's log cannot serve the request (poisoned after an I/O failure).
    StorageError = 15,
    /// The broker is shutting down; retry on another connection later.
    BrokerShuttingDown = 16,
    /// A bounded resource (memory budget, queue) is full; retry after a back-off.
    ThrottledBusy = 17,
    /// Produce `acks` is not one of 0, 1, -1.
    InvalidRequiredAcks = 18,
    // 19..=29: free for general errors.
    // 30..=49: reserved for consumer groups.
    // 50..=69: reserved for producer ids and transactions.
}

impl ErrorCode {
    /// Every code this build knows, in numeric order.
    pub const ALL: [ErrorCode; 19] = [
        ErrorCode::None,
        ErrorCode::Unknown,
        ErrorCode::CorruptMessage,
        ErrorCode::UnknownTopicOrPartition,
        ErrorCode::OffsetOutOfRange,
        ErrorCode::MessageTooLarge,
        ErrorCode::InvalidRequest,
        ErrorCode::UnsupportedVersion,
        ErrorCode::UnknownApiKey,
        ErrorCode::TopicAlreadyExists,
        ErrorCode::InvalidTopicName,
        ErrorCode::InvalidPartitions,
        ErrorCode::InvalidConfig,
        ErrorCode::NotLeader,
        ErrorCode::RequestTimedOut,
        ErrorCode::StorageError,
        ErrorCode::BrokerShuttingDown,
        ErrorCode::ThrottledBusy,
        ErrorCode::InvalidRequiredAcks,
    ];

    /// The wire number.
    pub const fn as_u16(self) -> u16 {
        self as u16
    }

    /// The code for a wire number; a number this build does not know reads as `Unknown`.
    pub const fn from_u16(code: u16) -> ErrorCode {
        match code {
            0 => ErrorCode::None,
            2 => ErrorCode::CorruptMessage,
            3 => ErrorCode::UnknownTopicOrPartition,
            4 => ErrorCode::OffsetOutOfRange,
            5 => ErrorCode::MessageTooLarge,
            6 => ErrorCode::InvalidRequest,
            7 => ErrorCode::UnsupportedVersion,
            8 => ErrorCode::UnknownApiKey,
            9 => ErrorCode::TopicAlreadyExists,
            10 => ErrorCode::InvalidTopicName,
            11 => ErrorCode::InvalidPartitions,
            12 => ErrorCode::InvalidConfig,
            13 => ErrorCode::NotLeader,
            14 => ErrorCode::RequestTimedOut,
            15 => ErrorCode::StorageError,
            16 => ErrorCode::BrokerShuttingDown,
            17 => ErrorCode::ThrottledBusy,
            18 => ErrorCode::InvalidRequiredAcks,
            _ => ErrorCode::Unknown,
        }
    }

    /// Whether the same request may succeed if retried, possibly after a metadata refresh or a
    /// back-off. Retrying a produce after `RequestTimedOut` may duplicate batches unless the
    /// producer is idempotent.
    pub const fn is_retriable(self) -> bool {
        matches!(
            self,
            ErrorCode::NotLeader
                | ErrorCode::RequestTimedOut
                | ErrorCode::BrokerShuttingDown
                | ErrorCode::ThrottledBusy
        )
    }

    /// A stable snake_case name, for logs and metrics labels.
    pub const fn as_str(self) -> &'static str {
        match self {
            ErrorCode::None => "none",
            ErrorCode::Unknown => "unknown",
            ErrorCode::CorruptMessage => "corrupt_message",
            ErrorCode::UnknownTopicOrPartition => "unknown_topic_or_partition",
            ErrorCode::OffsetOutOfRange => "offset_out_of_range",
            ErrorCode::MessageTooLarge => "message_too_large",
            ErrorCode::InvalidRequest => "invalid_request",
            ErrorCode::UnsupportedVersion => "unsupported_version",
            ErrorCode::UnknownApiKey => "unknown_api_key",
            ErrorCode::TopicAlreadyExists => "topic_already_exists",
            ErrorCode::InvalidTopicName => "invalid_topic_name",
            ErrorCode::InvalidPartitions => "invalid_partitions",
            ErrorCode::InvalidConfig => "invalid_config",
            ErrorCode::NotLeader => "not_leader",
            ErrorCode::RequestTimedOut => "request_timed_out",
            ErrorCode::StorageError => "storage_error",
            ErrorCode::BrokerShuttingDown => "broker_shutting_down",
            ErrorCode::ThrottledBusy => "throttled_busy",
            ErrorCode::InvalidRequiredAcks => "invalid_required_acks",
        }
    }

    /// Whether this is the success code.
    pub const fn is_ok(self) -> bool {
        matches!(self, ErrorCode::None)
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.as_str(), self.as_u16())
    }
}

impl From<ErrorCode> for u16 {
    fn from(code: ErrorCode) -> u16 {
        code.as_u16()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Guards the "never renumbered" rule: the table in PROTOCOL.md and these numbers must agree.
    #[test]
    fn numbers_are_stable() {
        let expected: [(ErrorCode, u16); 19] = [
            (ErrorCode::None, 0),
            (ErrorCode::Unknown, 1),
            (ErrorCode::CorruptMessage, 2),
            (ErrorCode::UnknownTopicOrPartition, 3),
            (ErrorCode::OffsetOutOfRange, 4),
            (ErrorCode::MessageTooLarge, 5),
            (ErrorCode::InvalidRequest, 6),
            (ErrorCode::UnsupportedVersion, 7),
            (ErrorCode::UnknownApiKey, 8),
            (ErrorCode::TopicAlreadyExists, 9),
            (ErrorCode::InvalidTopicName, 10),
            (ErrorCode::InvalidPartitions, 11),
            (ErrorCode::InvalidConfig, 12),
            (ErrorCode::NotLeader, 13),
            (ErrorCode::RequestTimedOut, 14),
            (ErrorCode::StorageError, 15),
            (ErrorCode::BrokerShuttingDown, 16),
            (ErrorCode::ThrottledBusy, 17),
            (ErrorCode::InvalidRequiredAcks, 18),
        ];
        for (code, number) in expected {
            assert_eq!(code.as_u16(), number, "{code:?}");
        }
    }

    /// Every known code survives `as_u16` → `from_u16`; unknown numbers read as `Unknown`.
    #[test]
    fn from_u16_round_trips_and_maps_unknown() {
        for code in ErrorCode::ALL {
            assert_eq!(ErrorCode::from_u16(code.as_u16()), code);
        }
        for n in [19u16, 30, 49, 50, 69, 1000, u16::MAX] {
            assert_eq!(ErrorCode::from_u16(n), ErrorCode::Unknown);
        }
    }

    #[test]
    fn names_are_unique_and_display_has_number() {
        let mut names: Vec<_> = ErrorCode::ALL.iter().map(|c| c.as_str()).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), ErrorCode::ALL.len());
        assert_eq!(ErrorCode::NotLeader.to_string(), "not_leader (13)");
        assert!(ErrorCode::ThrottledBusy.is_retriable());
        assert!(!ErrorCode::CorruptMessage.is_retriable());
    }
}
