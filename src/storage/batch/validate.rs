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
        return Err(BatchError::CrcMismatch { stored: header.crc, computed });
    }
    let padding_at = records_end(&header);
    let padding = batch.get(padding_at..).unwrap_or_default();
    if let Some((index, &value)) = padding.iter().enumerate().find(|(_, &b)| b != 0) {
        return Err(BatchError::ReservedNotZero { at: padding_at.saturating_add(index), value });
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
        let archive =
            bytes.get(BATCH_HEADER_BYTES..end).ok_or(BatchError::TooShort { needed: end, got: bytes.len() })?;
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
pub(crate) fn check_records(header: &BatchHeader, records: &ArchivedVec<ArchivedRecord>) -> Result<(), BatchError> {
    if records.len() != header.record_count as usize {
        return Err(BatchError::RecordCountMismatch { header: header.record_count, archive: records.len() });
    }
    let first = header.first_timestamp;
    let max = header.max_timestamp;
    // `records.len() == record_count <= u32::MAX`, so the index range never runs out.
    for (index, record) in (0..header.record_count).zip(records.iter()) {
        let found = record.offset_delta.to_native();
        if found != index {
            return Err(BatchError::BadOffsetDelta { index, expected: index, found });
        }
        let timestamp_delta = record.timestamp_delta.to_native();
        let in_range =
            timestamp_delta >= 0 && first.0.checked_add(timestamp_delta).is_some_and(|timestamp| timestamp <= max.0);
        if !in_range {
            return Err(BatchError::TimestampOutOfRange { index, timestamp_delta, first, max });
        }
    }
    Ok(())
}

/// The first `batch_length` bytes of `bytes`.
fn batch_bytes<'a>(bytes: &'a [u8], header: &BatchHeader) -> Result<&'a [u8], BatchError> {
    let needed = header.batch_length as usize;
    bytes.get(..needed).ok_or(BatchError::TooShort { needed, got: bytes.len() })
}

/// Where the archive ends and the padding starts.
fn records_end(header: &BatchHeader) -> usize {
    BATCH_HEADER_BYTES.saturating_add(header.records_length as usize)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{LeaderEpoch, Offset, ProducerEpoch, ProducerId, TimestampMs};
    use crate::storage::batch::header::{align_up, Attributes, CRC_AT};
    use crate::storage::batch::record::Record;

    /// Assembles a batch around any record list, with a correct CRC, so that the record rules
    /// (which a `BatchBuilder` never breaks) can be tested one by one.
    fn assemble(records: &[Record], record_count: u32, first: i64, max: i64) -> Vec<u8> {
        let archive = rkyv::to_bytes::<rkyv::rancor::Error>(&records.to_vec()).unwrap();
        assemble_archive(&archive, record_count, first, max)
    }

    fn assemble_archive(archive: &[u8], record_count: u32, first: i64, max: i64) -> Vec<u8> {
        let batch_length = align_up(BATCH_HEADER_BYTES as u64 + archive.len() as u64) as usize;
        let header = BatchHeader {
            base_offset: Offset(0),
            batch_length: batch_length as u32,
            leader_epoch: LeaderEpoch(0),
            crc: 0,
            attributes: Attributes::NONE,
            records_length: archive.len() as u32,
            record_count,
            last_offset_delta: record_count.saturating_sub(1),
            producer_epoch: ProducerEpoch::NONE,
            first_timestamp: TimestampMs(first),
            max_timestamp: TimestampMs(max),
            producer_id: ProducerId::NONE,
            base_sequence: -1,
        };
        let mut head = [0; BATCH_HEADER_BYTES];
        header.write_to(&mut head);
        let mut batch = head.to_vec();
        batch.extend_from_slice(archive);
        batch.resize(batch_length, 0);
        let crc = crc32fast::hash(&batch[CRC_COVERAGE_START..]);
        batch[CRC_AT..CRC_AT + 4].copy_from_slice(&crc.to_le_bytes());
        batch
    }

    fn record(offset_delta: u32, timestamp_delta: i64) -> Record {
        Record { offset_delta, timestamp_delta, key: None, value: b"v".to_vec(), headers: vec![] }
    }

    /// Guards the rules rkyv cannot check: count, dense deltas, timestamp range.
    #[test]
    fn record_rules_are_enforced() {
        let good = assemble(&[record(0, 0), record(1, 5)], 2, 100, 105);
        assert!(validate(&good).is_ok());

        let gap = assemble(&[record(0, 0), record(2, 0)], 2, 100, 100);
        assert_eq!(validate(&gap), Err(BatchError::BadOffsetDelta { index: 1, expected: 1, found: 2 }));
        let count = assemble(&[record(0, 0), record(1, 0)], 3, 100, 100);
        assert_eq!(validate(&count), Err(BatchError::RecordCountMismatch { header: 3, archive: 2 }));
        let late = assemble(&[record(0, 0), record(1, 6)], 2, 100, 105);
        assert!(matches!(validate(&late), Err(BatchError::TimestampOutOfRange { index: 1, .. })));
        let early = assemble(&[record(0, -1)], 1, 100, 105);
        assert!(matches!(validate(&early), Err(BatchError::TimestampOutOfRange { index: 0, .. })));
        let overflow = assemble(&[record(0, i64::MAX)], 1, 1, i64::MAX);
        assert!(matches!(validate(&overflow), Err(BatchError::TimestampOutOfRange { .. })));
        // The CRC-level check passes all of these: they are intact, just not well formed.
        for batch in [&gap, &count, &late, &early, &overflow] {
            assert!(validate_crc(batch).is_ok());
        }
    }

    /// Guards the archive check itself: garbage with a valid CRC is `BadArchive`, not a panic.
    #[test]
    fn garbage_archive_with_valid_crc_is_bad_archive() {
        let mut batch = assemble(&[record(0, 0)], 1, 0, 0);
        let root_at = BATCH_HEADER_BYTES + (batch[24] as usize) - 8;
        // Point the root vector's relative pointer far outside the archive.
        batch[root_at..root_at + 4].copy_from_slice(&0x4000_0000i32.to_le_bytes());
        let crc = crc32fast::hash(&batch[CRC_COVERAGE_START..]);
        batch[CRC_AT..CRC_AT + 4].copy_from_slice(&crc.to_le_bytes());
        assert!(matches!(validate(&batch), Err(BatchError::BadArchive(_))));
    }

    /// Padding is covered by the CRC and must also be zero (one canonical encoding).
    ///
    /// rkyv archives of `Vec<Record>` happen to end 8-aligned, so builder-made batches have no
    /// padding; an archive with 4 leading bytes (relative pointers keep it readable, though no
    /// longer aligned) has 4 bytes of padding for this test.
    #[test]
    fn nonzero_padding_is_rejected() {
        let archive = rkyv::to_bytes::<rkyv::rancor::Error>(&vec![record(0, 0)]).unwrap();
        let mut shifted = vec![0; 4];
        shifted.extend_from_slice(&archive);
        let mut batch = assemble_archive(&shifted, 1, 0, 0);
        assert!(validate_crc(&batch).is_ok());
        let records_end = BATCH_HEADER_BYTES + batch[24] as usize;
        assert!(records_end < batch.len(), "this record list leaves padding");
        let last = batch.len() - 1;
        batch[last] = 1;
        let crc = crc32fast::hash(&batch[CRC_COVERAGE_START..]);
        batch[CRC_AT..CRC_AT + 4].copy_from_slice(&crc.to_le_bytes());
        assert_eq!(validate_crc(&batch), Err(BatchError::ReservedNotZero { at: last, value: 1 }));
    }
}
