//! The record batch: the unit that flows producer → broker → disk → consumer unchanged.
//!
//! Plain Rust, no I/O and no runtime: it builds, checks and reads byte slices.
//!
//! A batch is a fixed 72-byte little-endian header followed by the records as an rkyv archive
//! (root `Vec<Record>`) and zero padding to a multiple of 8 bytes; the byte diagram and every
//! rule are in `FORMAT.md` at the repository root.
//!
//! The two fields the broker owns, `base_offset` and `leader_epoch`, sit *before* the CRC, and
//! the CRC covers everything from byte 20 to the end. The producer computes the CRC once; the
//! broker validates it on produce, then stamps offsets and epoch with [`stamp`] without
//! recomputing it or touching the producer's bytes (Kafka's RecordBatch v2 does the same). The
//! price is that a corrupted `base_offset` or `leader_epoch` is not detected by the CRC: the
//! log's own offset bookkeeping (index, expected next offset) has to catch those.
//!
//! - [`BatchHeader::parse`]: header only, no CRC; for framing and recovery.
//! - [`validate_crc`]: header + length + CRC + zero padding; for recovery and replication.
//! - [`validate`]: everything, including the rkyv archive; for produce and for consumers.
//! - [`BatchBuilder`]: the producer side.
//! - [`BatchView`] / [`for_each_record`]: reading records back.

mod builder;
mod error;
mod header;
mod record;
mod records;
mod validate;

#[cfg(test)]
mod tests;

pub use builder::{BatchBuilder, BatchBuilderConfig};
pub use error::{BatchError, BuildError};
pub use header::{
    align_up, batch_length_for, peek_batch_length, stamp, Attributes, BatchHeader, Compression, TimestampType,
    BASE_SEQUENCE_NONE, BATCH_ALIGN_BYTES, BATCH_BYTES_MAX, BATCH_HEADER_BYTES, BATCH_MAGIC, CRC_COVERAGE_START,
};
pub use record::{ArchivedRecord, ArchivedRecordHeader, Record, RecordHeader, RECORDS_ALIGN_BYTES};
pub use records::{for_each_record, BatchView, RecordHeaders, RecordView, Records};
pub use validate::{validate, validate_crc};

/// Field offsets within the header, for code that patches or inspects raw bytes.
pub mod field {
    pub use super::header::{
        ATTRIBUTES_AT, BASE_OFFSET_AT, BASE_SEQUENCE_AT, BATCH_LENGTH_AT, CRC_AT, FIRST_TIMESTAMP_AT,
        LAST_OFFSET_DELTA_AT, LEADER_EPOCH_AT, MAGIC_AT, MAX_TIMESTAMP_AT, PRODUCER_EPOCH_AT, PRODUCER_ID_AT,
        RECORDS_LENGTH_AT, RECORD_COUNT_AT, RESERVED_U16_AT, RESERVED_U32_AT, RESERVED_U8_AT,
    };
}
