//! Typed errors of the batch format: one enum for reading (untrusted bytes), one for building.

use crate::model::{Offset, TimestampMs};

/// Why a byte slice is not a valid record batch.
///
/// Every variant carries the values that disagreed, so that a recovery log line or a produce
/// error says what was wrong without a hex dump.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum BatchError {
    #[error("batch too short: need {needed} bytes, got {got}")]
    TooShort { needed: usize, got: usize },
    #[error("bad batch magic {0}, expected {expected}", expected = super::header::BATCH_MAGIC)]
    BadMagic(u8),
    #[error(
        "bad batch length {batch_length}: records_length {records_length} \
         requires batch_length {expected}"
    )]
    BadLength { batch_length: u32, records_length: u32, expected: u64 },
    #[error("batch of {batch_length} bytes exceeds the maximum of {batch_bytes_max} bytes")]
    TooLarge { batch_length: u64, batch_bytes_max: u32 },
    #[error("batch CRC mismatch: stored {stored:#010x}, computed {computed:#010x}")]
    CrcMismatch { stored: u32, computed: u32 },
    #[error("unknown or unsupported batch attributes {0:#06x}")]
    BadAttributes(u16),
    #[error("reserved or padding byte at batch offset {at} is {value:#04x}, must be 0")]
    ReservedNotZero { at: usize, value: u8 },
    #[error("record archive is invalid: {0}")]
    BadArchive(String),
    #[error("bad record count {record_count} with last_offset_delta {last_offset_delta}")]
    BadRecordCount { record_count: u32, last_offset_delta: u32 },
    #[error("header says {header} records, the archive holds {archive}")]
    RecordCountMismatch { header: u32, archive: usize },
    #[error("record {index} has offset_delta {found}, expected {expected}")]
    BadOffsetDelta { index: u32, expected: u32, found: u32 },
    #[error("header timestamps are inverted: first {first:?} > max {max:?}")]
    BadTimestampRange { first: TimestampMs, max: TimestampMs },
    #[error("record {index} has timestamp_delta {timestamp_delta}, outside [first {first:?}, max {max:?}]")]
    TimestampOutOfRange { index: u32, timestamp_delta: i64, first: TimestampMs, max: TimestampMs },
    #[error("base offset {base_offset} + {record_count} records overflows the offset space")]
    OffsetOverflow { base_offset: Offset, record_count: u32 },
}

/// Why a [`BatchBuilder`](super::BatchBuilder) could not produce a batch.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum BuildError {
    #[error("a batch needs at least one record")]
    Empty,
    #[error("batch of {batch_length} bytes exceeds the maximum of {batch_bytes_max} bytes")]
    TooLarge { batch_length: u64, batch_bytes_max: u32 },
    #[error("timestamps {first:?}..{max:?} span more than i64 milliseconds")]
    TimestampSpanTooLarge { first: TimestampMs, max: TimestampMs },
    #[error("serializing the records failed: {0}")]
    Archive(String),
}
