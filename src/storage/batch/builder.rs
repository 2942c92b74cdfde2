//! The producer side: collect records, then serialize them once into a finished batch.

use bytes::Bytes;
use rkyv::util::AlignedVec;
use rkyv::vec::ArchivedVec;
use rkyv::{Archive, Serialize};

use super::error::BuildError;
use super::header::{
    align_up, Attributes, BatchHeader, BASE_SEQUENCE_NONE, BATCH_BYTES_MAX, BATCH_HEADER_BYTES, CRC_AT,
    CRC_COVERAGE_START,
};
use super::record::{ArchivedRecord, ArchivedRecordHeader, RecordHeader};
use crate::model::{LeaderEpoch, Offset, ProducerEpoch, ProducerId, TimestampMs};

/// The producer identity and flags written into every batch a builder makes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BatchBuilderConfig {
    pub producer_id: ProducerId,
    pub producer_epoch: ProducerEpoch,
    pub base_sequence: i32,
    pub attributes: Attributes,
}

impl Default for BatchBuilderConfig {
    /// A non-idempotent, non-transactional producer with create-time timestamps.
    fn default() -> Self {
        BatchBuilderConfig {
            producer_id: ProducerId::NONE,
            producer_epoch: ProducerEpoch::NONE,
            base_sequence: BASE_SEQUENCE_NONE,
            attributes: Attributes::NONE,
        }
    }
}

/// Fixed bytes of a batch beyond its records, as an upper bound: the header, the root
/// `ArchivedVec`, alignment before the record array and before the root, final padding.
const BATCH_OVERHEAD_BYTES_MAX: usize = BATCH_HEADER_BYTES + size_of::<ArchivedVec<ArchivedRecord>>() + 7 + 3 + 7;

/// A record waiting in a builder: archived exactly as a [`super::record::Record`], but its key
/// and value are the producer's own buffers (reference-counted, not copied), so that `build`
/// copies each byte once, into the batch.
#[derive(Archive, Serialize, Debug)]
#[rkyv(as = ArchivedRecord)]
struct PendingRecord {
    offset_delta: u32,
    /// The absolute timestamp until `build` knows the smallest one, then the delta.
    timestamp_delta: i64,
    key: Option<Bytes>,
    value: Bytes,
    headers: Vec<RecordHeader>,
}

/// Builds one batch. Owned by one producer task; not shared.
#[derive(Debug)]
pub struct BatchBuilder {
    config: BatchBuilderConfig,
    records: Vec<PendingRecord>,
    estimated_bytes: usize,
}

impl BatchBuilder {
    pub fn new(config: BatchBuilderConfig) -> BatchBuilder {
        BatchBuilder { config, records: Vec::new(), estimated_bytes: BATCH_OVERHEAD_BYTES_MAX }
    }

    /// Stamps the producer identity and base sequence the batch will carry (an idempotent
    /// producer assigns the sequence when it seals the batch, not when it opens it).
    pub fn set_producer(&mut self, producer_id: ProducerId, producer_epoch: ProducerEpoch, base_sequence: i32) {
        self.config.producer_id = producer_id;
        self.config.producer_epoch = producer_epoch;
        self.config.base_sequence = base_sequence;
    }

    /// Appends a record; its offset delta is its position in the batch. Copies the data.
    pub fn push(&mut self, timestamp: TimestampMs, key: Option<&[u8]>, value: &[u8], headers: &[(&str, &[u8])]) {
        self.push_shared(timestamp, key.map(Bytes::copy_from_slice), Bytes::copy_from_slice(value), headers);
    }

    /// [`BatchBuilder::push`] without copying the key and value: the builder holds on to them
    /// until `build` writes them into the batch. Headers are copied.
    pub fn push_shared(&mut self, timestamp: TimestampMs, key: Option<Bytes>, value: Bytes, headers: &[(&str, &[u8])]) {
        let offset_delta = u32::try_from(self.records.len()).unwrap_or(u32::MAX);
        self.estimated_bytes = self.estimated_bytes.saturating_add(record_bytes_max(key.as_deref(), &value, headers));
        self.records.push(PendingRecord {
            offset_delta,
            timestamp_delta: timestamp.0,
            key,
            value,
            headers: headers
                .iter()
                .map(|&(key, value)| RecordHeader { key: key.to_owned(), value: value.to_vec() })
                .collect(),
        });
    }

    pub fn record_count(&self) -> usize {
        self.records.len()
    }

    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    /// An upper bound of the built batch's length, kept up to date by `push` in O(1).
    /// A client compares it with its batch size target to decide when to send.
    pub fn estimated_bytes(&self) -> usize {
        self.estimated_bytes
    }

    /// Serializes the records once and writes the header, with `base_offset` 0 and
    /// `leader_epoch` 0 (the broker stamps them) and the CRC over `[20, batch_length)`.
    ///
    /// `first_timestamp` is the smallest record timestamp, `max_timestamp` the largest.
    /// The returned bytes start at a 16-aligned address, so the archive can be read in place.
    pub fn build(self) -> Result<Bytes, BuildError> {
        let buffer = AlignedVec::<16>::with_capacity(self.buffer_bytes());
        self.build_into(buffer).map(Bytes::from_owner)
    }

    /// The capacity `build` gives its buffer: enough for the batch without growing.
    pub fn buffer_bytes(&self) -> usize {
        self.estimated_bytes.min(BATCH_BYTES_MAX as usize)
    }

    /// [`BatchBuilder::build`] into a buffer the caller supplies (emptied first), e.g. one
    /// reused from an earlier batch: a fresh 1 MiB allocation is a page fault and a zeroed
    /// page per 4 KiB written. Returns the buffer holding exactly the batch.
    pub fn build_into(mut self, mut buffer: AlignedVec<16>) -> Result<AlignedVec<16>, BuildError> {
        let (Some(first), Some(max)) = (
            self.records.iter().map(|r| r.timestamp_delta).min(),
            self.records.iter().map(|r| r.timestamp_delta).max(),
        ) else {
            return Err(BuildError::Empty);
        };
        let (first, max) = (TimestampMs(first), TimestampMs(max));
        for record in &mut self.records {
            record.timestamp_delta =
                record.timestamp_delta.checked_sub(first.0).ok_or(BuildError::TimestampSpanTooLarge { first, max })?;
        }
        let too_large = |batch_length: u64| BuildError::TooLarge { batch_length, batch_bytes_max: BATCH_BYTES_MAX };
        let record_count = u32::try_from(self.records.len())
            .map_err(|_| too_large(u64::try_from(self.estimated_bytes).unwrap_or(u64::MAX)))?;

        // Serialize behind a zeroed header so that the archive lands at offset 72 of an aligned
        // buffer and the batch is never copied; rkyv's pointers are relative, so the archive is
        // position independent.
        buffer.clear();
        buffer.reserve(self.buffer_bytes());
        buffer.extend_from_slice(&[0; BATCH_HEADER_BYTES]);
        let mut buffer = rkyv::api::high::to_bytes_in::<_, rkyv::rancor::Error>(&self.records, buffer)
            .map_err(|error| BuildError::Archive(error.to_string()))?;

        let records_length = buffer.len().saturating_sub(BATCH_HEADER_BYTES);
        let batch_length = align_up(u64::try_from(buffer.len()).unwrap_or(u64::MAX));
        if batch_length > u64::from(BATCH_BYTES_MAX) {
            return Err(too_large(batch_length));
        }
        // Both fit in u32: they are at most BATCH_BYTES_MAX.
        let (Ok(records_length), Ok(batch_length)) = (u32::try_from(records_length), u32::try_from(batch_length))
        else {
            return Err(too_large(batch_length));
        };
        buffer.resize(batch_length as usize, 0);

        let header = BatchHeader {
            base_offset: Offset(0),
            batch_length,
            leader_epoch: LeaderEpoch(0),
            crc: 0,
            attributes: self.config.attributes,
            records_length,
            record_count,
            last_offset_delta: record_count - 1,
            producer_epoch: self.config.producer_epoch,
            first_timestamp: first,
            max_timestamp: max,
            producer_id: self.config.producer_id,
            base_sequence: self.config.base_sequence,
        };
        let bytes = buffer.as_mut_slice();
        if let Some(head) =
            bytes.get_mut(..BATCH_HEADER_BYTES).and_then(|head| <&mut [u8; BATCH_HEADER_BYTES]>::try_from(head).ok())
        {
            header.write_to(head);
        }
        let crc = crc32fast::hash(bytes.get(CRC_COVERAGE_START..).unwrap_or_default());
        if let Some(field) = bytes.get_mut(CRC_AT..CRC_AT + 4) {
            field.copy_from_slice(&crc.to_le_bytes());
        }
        Ok(buffer)
    }
}

/// Upper bound of what one record adds to the archive: its fixed part, its out-of-line data,
/// and alignment before its header array.
fn record_bytes_max(key: Option<&[u8]>, value: &[u8], headers: &[(&str, &[u8])]) -> usize {
    let headers_bytes = headers.iter().fold(3usize, |sum, (key, value)| {
        sum.saturating_add(size_of::<ArchivedRecordHeader>()).saturating_add(key.len()).saturating_add(value.len())
    });
    size_of::<ArchivedRecord>()
        .saturating_add(key.map_or(0, <[u8]>::len))
        .saturating_add(value.len())
        .saturating_add(headers_bytes)
}
