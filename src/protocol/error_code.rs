//! Stable numeric error codes, shared by broker and client.
//!
//! **The numbers are part of the wire format: a code is never renumbered and a number is never
//! reused**, even when a variant is retired (leave the number unused and say so here). New codes
//! take the next free number in their range:
//!
//! | range  | used for                                        |
//! |--------|-------------------------------------------------|
//! | 0–29   | general: framing, topics, partitions, storage   |
//! | 30–49  | consumer groups (30–44 used)                    |
//! | 50–69  | producer ids, idempotence, transactions (50–55 used) |
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
    /// The group does not exist (DescribeGroup, or a heartbeat with a member epoch > 0 for a
    /// group the coordinator does not know).
    GroupIdNotFound = 30,
    /// The member id is not a member of the group (never joined, left, or removed after its
    /// session timed out). The client rejoins with an empty member id and epoch 0.
    UnknownMemberId = 31,
    /// The member epoch is not the member's current one: a zombie or a newer incarnation. The
    /// client gives up its partitions without committing and rejoins with epoch 0.
    FencedMemberEpoch = 32,
    /// OffsetCommit with an older member epoch: the member should heartbeat (to learn its new
    /// epoch) and commit again.
    StaleMemberEpoch = 33,
    /// A join would take the group over its member limit.
    GroupMaxSizeReached = 34,
    /// The group id breaks the naming rules (empty, too long, control characters).
    InvalidGroupId = 35,
    /// This shard (or broker) is not the group's coordinator: send FindCoordinator again.
    NotCoordinator = 36,
    /// The coordinator is still replaying the offsets topic after a start-up; retry after a back-off.
    CoordinatorLoadInProgress = 37,
    /// The operation needs a stable group; retry after the rebalance.
    RebalanceInProgress = 38,
    /// A committed offset is not a valid offset (`OFFSET_UNKNOWN` or above `i64::MAX`).
    InvalidCommitOffset = 39,
    /// A commit's metadata string is longer than the bound.
    OffsetMetadataTooLarge = 40,
    /// The requested server-side assignor is not one the broker has.
    UnsupportedAssignor = 41,
    /// A list in a group request (topics, partitions, members, group ids) is longer than its
    /// bound (see `PROTOCOL.md`, limits).
    GroupListTooLong = 42,
    /// An admin operation (commit without a member id, group deletion) on a group that still has
    /// members.
    NonEmptyGroup = 43,
    /// A member id that breaks the rules (too long, or empty with an epoch other than 0 / -1).
    InvalidMemberId = 44,
    // 45..=49: free for consumer groups.
    /// An idempotent batch's base sequence is not the next expected one (a gap): records were
    /// lost between producer and broker.
    OutOfOrderSequence = 50,
    /// An idempotent batch that was already appended; the response carries the original base
    /// offset and the producer treats it as success.
    DuplicateSequence = 51,
    /// The producer epoch is not valid for this producer id (e.g. a new epoch not starting at
    /// sequence 0).
    InvalidProducerEpoch = 52,
    /// A newer producer with the same id (a higher epoch) exists: this one is a zombie and stops.
    ProducerFenced = 53,
    /// The producer id was never handed out by InitProducerId, or its state expired.
    UnknownProducerId = 54,
    /// The transactional id is empty or longer than the bound.
    InvalidTransactionalId = 55,
    // 56..=69: free for producer ids and transactions.
}

impl ErrorCode {
    /// Every code this build knows, in numeric order.
    pub const ALL: [ErrorCode; 40] = [
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
        ErrorCode::GroupIdNotFound,
        ErrorCode::UnknownMemberId,
        ErrorCode::FencedMemberEpoch,
        ErrorCode::StaleMemberEpoch,
        ErrorCode::GroupMaxSizeReached,
        ErrorCode::InvalidGroupId,
        ErrorCode::NotCoordinator,
        ErrorCode::CoordinatorLoadInProgress,
        ErrorCode::RebalanceInProgress,
        ErrorCode::InvalidCommitOffset,
        ErrorCode::OffsetMetadataTooLarge,
        ErrorCode::UnsupportedAssignor,
        ErrorCode::GroupListTooLong,
        ErrorCode::NonEmptyGroup,
        ErrorCode::InvalidMemberId,
        ErrorCode::OutOfOrderSequence,
        ErrorCode::DuplicateSequence,
        ErrorCode::InvalidProducerEpoch,
        ErrorCode::ProducerFenced,
        ErrorCode::UnknownProducerId,
        ErrorCode::InvalidTransactionalId,
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
            30 => ErrorCode::GroupIdNotFound,
            31 => ErrorCode::UnknownMemberId,
            32 => ErrorCode::FencedMemberEpoch,
            33 => ErrorCode::StaleMemberEpoch,
            34 => ErrorCode::GroupMaxSizeReached,
            35 => ErrorCode::InvalidGroupId,
            36 => ErrorCode::NotCoordinator,
            37 => ErrorCode::CoordinatorLoadInProgress,
            38 => ErrorCode::RebalanceInProgress,
            39 => ErrorCode::InvalidCommitOffset,
            40 => ErrorCode::OffsetMetadataTooLarge,
            41 => ErrorCode::UnsupportedAssignor,
            42 => ErrorCode::GroupListTooLong,
            43 => ErrorCode::NonEmptyGroup,
            44 => ErrorCode::InvalidMemberId,
            50 => ErrorCode::OutOfOrderSequence,
            51 => ErrorCode::DuplicateSequence,
            52 => ErrorCode::InvalidProducerEpoch,
            53 => ErrorCode::ProducerFenced,
            54 => ErrorCode::UnknownProducerId,
            55 => ErrorCode::InvalidTransactionalId,
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
                | ErrorCode::NotCoordinator
                | ErrorCode::CoordinatorLoadInProgress
                | ErrorCode::RebalanceInProgress
                | ErrorCode::StaleMemberEpoch
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
            ErrorCode::GroupIdNotFound => "group_id_not_found",
            ErrorCode::UnknownMemberId => "unknown_member_id",
            ErrorCode::FencedMemberEpoch => "fenced_member_epoch",
            ErrorCode::StaleMemberEpoch => "stale_member_epoch",
            ErrorCode::GroupMaxSizeReached => "group_max_size_reached",
            ErrorCode::InvalidGroupId => "invalid_group_id",
            ErrorCode::NotCoordinator => "not_coordinator",
            ErrorCode::CoordinatorLoadInProgress => "coordinator_load_in_progress",
            ErrorCode::RebalanceInProgress => "rebalance_in_progress",
            ErrorCode::InvalidCommitOffset => "invalid_commit_offset",
            ErrorCode::OffsetMetadataTooLarge => "offset_metadata_too_large",
            ErrorCode::UnsupportedAssignor => "unsupported_assignor",
            ErrorCode::GroupListTooLong => "group_list_too_long",
            ErrorCode::NonEmptyGroup => "non_empty_group",
            ErrorCode::InvalidMemberId => "invalid_member_id",
            ErrorCode::OutOfOrderSequence => "out_of_order_sequence",
            ErrorCode::DuplicateSequence => "duplicate_sequence",
            ErrorCode::InvalidProducerEpoch => "invalid_producer_epoch",
            ErrorCode::ProducerFenced => "producer_fenced",
            ErrorCode::UnknownProducerId => "unknown_producer_id",
            ErrorCode::InvalidTransactionalId => "invalid_transactional_id",
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
        let expected: [(ErrorCode, u16); 40] = [
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
            (ErrorCode::GroupIdNotFound, 30),
            (ErrorCode::UnknownMemberId, 31),
            (ErrorCode::FencedMemberEpoch, 32),
            (ErrorCode::StaleMemberEpoch, 33),
            (ErrorCode::GroupMaxSizeReached, 34),
            (ErrorCode::InvalidGroupId, 35),
            (ErrorCode::NotCoordinator, 36),
            (ErrorCode::CoordinatorLoadInProgress, 37),
            (ErrorCode::RebalanceInProgress, 38),
            (ErrorCode::InvalidCommitOffset, 39),
            (ErrorCode::OffsetMetadataTooLarge, 40),
            (ErrorCode::UnsupportedAssignor, 41),
            (ErrorCode::GroupListTooLong, 42),
            (ErrorCode::NonEmptyGroup, 43),
            (ErrorCode::InvalidMemberId, 44),
            (ErrorCode::OutOfOrderSequence, 50),
            (ErrorCode::DuplicateSequence, 51),
            (ErrorCode::InvalidProducerEpoch, 52),
            (ErrorCode::ProducerFenced, 53),
            (ErrorCode::UnknownProducerId, 54),
            (ErrorCode::InvalidTransactionalId, 55),
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
        for n in [19u16, 29, 45, 49, 56, 69, 70, 1000, u16::MAX] {
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
