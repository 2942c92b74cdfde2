//! Checking untrusted bytes: CRC-level (cheap, for recovery) and full (for produce and fetch).

use rkyv::util::AlignedVec;
use rkyv::vec::ArchivedVec;

use super::error::BatchError;
use super::header::{BatchHeader, BATCH_HEADER_BYTES, CRC_COVERAGE_START};
use super::record::{ArchivedRecord, RECORDS_ALIGN_BYTES};

/// Checks the batch at the start of `bytes`: header rules, that `bytes` holds `batch_length`
/// bytes, the CRC over `[20, batch_length)` and that the padding after the archive is zero.
///
/// Bytes after `batch_length` are ignored, so a reader can call this on a buffer holding many
/// batches back to back and advance by the returned `batch_length`. The archive itself is not
/// decoded: a batch that passes is intact as the producer built it, not necessarily well formed.
pub fn validate_crc(bytes: &[u8]) -> Result<BatchHeader, BatchError> {
    let header = BatchHeader::parse(bytes)?;
    let batch = batch_bytes(bytes, &header)?;
    let covered = batch.get(CRC_COVERAGE_START..).unwrap_or_default();
    let computed = crc32fast::hash(covered);
    if computed != header.crc {
        return Err(BatchError::CrcMismatch {
            stored: header.crc,
            computed,
        });
    }
    let padding_at = records_end(&header);
    let padding = batch.get(padding_at..).unwrap_or_default();
    if let Some((index, &value)) = padding.iter().enumerate().find(|(_, &b)| b != 0) {
        return Err(BatchError::ReservedNotZero {
            at: padding_at.saturating_add(index),
            value,
        });
    }
    Ok(header)
}

/// Everything [`validate_crc`] checks, then the record archive: rkyv's checked access (every
/// pointer and length in bounds, strings UTF-8), the record count, offset deltas exactly
/// `0, 1, 2, ...`, and every timestamp within `[first_timestamp, max_timestamp]`.
///
/// If the archive is not 8-aligned in memory it is copied once into an aligned buffer first.
pub fn validate(bytes: &[u8]) -> Result<BatchHeader, BatchError> {
    let header = validate_crc(bytes)?;
    let archive = ArchiveBytes::new(bytes, &header)?;
    let records = access_records(archive.as_slice())?;
    check_records(&header, records)?;
    Ok(header)
}

/// The archive bytes of a batch, in place if suitably aligned, else copied into an aligned buffer.
///
/// rkyv reads primitives in place, so the archive must start at an address aligned for
/// [`ArchivedRecord`]. Batches read from a segment with O_DIRECT are aligned; bytes taken from a
/// network frame may not be.
pub(crate) enum ArchiveBytes<'a> {
    InPlace(&'a [u8]),
    Copied(AlignedVec),
}

impl<'a> ArchiveBytes<'a> {
    /// `bytes` must already have passed [`validate_crc`] for `header`.
    pub(crate) fn new(bytes: &'a [u8], header: &BatchHeader) -> Result<Self, BatchError> {
        let end = records_end(header);
        let archive = bytes
            .get(BATCH_HEADER_BYTES..end)
            .ok_or(BatchError::TooShort {
                needed: end,
                got: bytes.len(),
            })?;
        if (archive.as_ptr() as usize) % RECORDS_ALIGN_BYTES == 0 {
            Ok(ArchiveBytes::InPlace(archive))
        } else {
            let mut copy = AlignedVec::with_capacity(archive.len());
            copy.extend_from_slice(archive);
            Ok(ArchiveBytes::Copied(copy))
        }
    }

    pub(crate) fn as_slice(&self) -> &[u8] {
        match self {
            ArchiveBytes::InPlace(archive) => archive,
            ArchiveBytes::Copied(copy) => copy.as_slice(),
        }
    }

    pub(crate) fn is_copied(&self) -> bool {
        matches!(self, ArchiveBytes::Copied(_))
    }
}

/// rkyv's checked access to the archive root.
pub(crate) fn access_records(archive: &[u8]) -> Result<&ArchivedVec<ArchivedRecord>, BatchError> {
    rkyv::access::<ArchivedVec<ArchivedRecord>, rkyv::rancor::Error>(archive)
        .map_err(|error| BatchError::BadArchive(error.to_string()))
}

/// The rules rkyv cannot know: count, dense offset deltas, timestamps inside the header's range.
pub(crate) fn check_records(
    header: &BatchHeader,
    records: &ArchivedVec<ArchivedRecord>,
) -> Result<(), BatchError> {
    if records.len() != header.record_count as usize {
        return Err(BatchError::RecordCountMismatch {
            header: header.record_count,
            archive: records.len(),
        });
    }
    let first = header.first_timestamp;
    let max = header.max_timestamp;
    // `records.len() == record_count <= u32::MAX`, so the index range never runs out.
    for (index, record) in (0..header.record_count).zip(records.iter()) {
        let found = record.offset_delta.to_native();
        if found != index {
            return Err(BatchError::BadOffsetDelta {
                index,
                expected: index,
                found,
            });
        }
        let timestamp_delta = record.timestamp_delta.to_native();
        let in_range = timestamp_delta >= 0
            && first
                .0
                .checked_add(timestamp_delta)
                .is_some_and(|timestamp| timestamp <= max.0);
        if !in_range {
            return Err(BatchError::TimestampOutOfRange {
                index,
                timestamp_delta,
                first,
                max,
            });
        }
    }
    Ok(())
}

/// The first `batch_length` bytes of `bytes`.
fn batch_bytes<'a>(bytes: &'a [u8], header: &BatchHeader) -> Result<&'a [u8], BatchError> {
    let needed = header.batch_length as usize;
    bytes.get(..needed).ok_or(BatchError::TooShort {
        needed,
        got: bytes.len(),
    })
}

/// Where the archive ends and the padding starts.
fn records_end(header: &BatchHeader) -> usize {
    BATCH_HEADER_BYTES.saturating_add(header.records_length as usize)
}
