//! The records part of a batch: an rkyv archive whose root is `Vec<Record>`.
//!
//! The archived layout is rkyv 0.8's default: little-endian, aligned primitives, 32-bit relative
//! pointers. A crate in the build enabling rkyv's `big_endian`, `unaligned` or `pointer_width_*`
//! features would change the on-disk format; the golden test in `tests.rs` catches that.

use rkyv::{Archive, Deserialize, Serialize};

use super::header::BATCH_ALIGN_BYTES;

/// One record as the producer wrote it.
#[derive(Archive, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct Record {
    /// Offset of this record minus the batch's base offset: 0, 1, 2, ... in order.
    pub offset_delta: u32,
    /// Timestamp minus the batch's `first_timestamp` (the smallest in the batch), so `>= 0`.
    pub timestamp_delta: i64,
    pub key: Option<Vec<u8>>,
    pub value: Vec<u8>,
    pub headers: Vec<RecordHeader>,
}

/// An application header attached to a record (Kafka's record headers).
#[derive(Archive, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct RecordHeader {
    pub key: String,
    pub value: Vec<u8>,
}

/// The alignment the archive needs in memory to be read in place.
pub const RECORDS_ALIGN_BYTES: usize = align_of::<ArchivedRecord>();

// The archive starts at an 8-aligned offset of an 8-aligned batch: that is enough only if no
// archived type needs more. `AlignedVec` (16) must be enough for the copy fallback.
const _: () = assert!(RECORDS_ALIGN_BYTES <= BATCH_ALIGN_BYTES);
const _: () = assert!(align_of::<ArchivedRecordHeader>() <= BATCH_ALIGN_BYTES);
const _: () = assert!(BATCH_ALIGN_BYTES <= 16);
