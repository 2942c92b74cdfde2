//! The fixed 72-byte batch header: constants, field offsets, parsing and broker stamping.
//!
//! Parsing reads only the header bytes and never the CRC-covered body, so that recovery can
//! learn a batch's length cheaply before it decides whether to read and check the rest.

use super::error::BatchError;
use crate::model::{LeaderEpoch, Offset, ProducerEpoch, ProducerId, TimestampMs};

/// Bytes of the fixed header; the record archive starts right after it.
pub const BATCH_HEADER_BYTES: usize = 72;
/// Every batch length is a multiple of this, so batches sit back to back at aligned positions.
pub const BATCH_ALIGN_BYTES: usize = 8;
/// The only format version accepted.
pub const BATCH_MAGIC: u8 = 1;
/// The largest batch accepted, header and padding included.
pub const BATCH_BYTES_MAX: u32 = 64 * 1024 * 1024;
/// "No producer sequence" (non-idempotent producer).
pub const BASE_SEQUENCE_NONE: i32 = -1;

// Field offsets within the header. Broker-stamped fields come before the CRC.
pub const BASE_OFFSET_AT: usize = 0;
pub const BATCH_LENGTH_AT: usize = 8;
pub const LEADER_EPOCH_AT: usize = 12;
pub const CRC_AT: usize = 16;
/// The CRC covers bytes `[CRC_COVERAGE_START, batch_length)`.
pub const CRC_COVERAGE_START: usize = 20;
pub const MAGIC_AT: usize = 20;
pub const RESERVED_U8_AT: usize = 21;
pub const ATTRIBUTES_AT: usize = 22;
pub const RECORDS_LENGTH_AT: usize = 24;
pub const RECORD_COUNT_AT: usize = 28;
pub const LAST_OFFSET_DELTA_AT: usize = 32;
pub const PRODUCER_EPOCH_AT: usize = 36;
pub const RESERVED_U16_AT: usize = 38;
pub const FIRST_TIMESTAMP_AT: usize = 40;
pub const MAX_TIMESTAMP_AT: usize = 48;
pub const PRODUCER_ID_AT: usize = 56;
pub const BASE_SEQUENCE_AT: usize = 64;
pub const RESERVED_U32_AT: usize = 68;

const _: () = assert!(BASE_OFFSET_AT + 8 == BATCH_LENGTH_AT);
const _: () = assert!(BATCH_LENGTH_AT + 4 == LEADER_EPOCH_AT);
const _: () = assert!(LEADER_EPOCH_AT + 4 == CRC_AT);
const _: () = assert!(CRC_AT + 4 == CRC_COVERAGE_START);
const _: () = assert!(CRC_COVERAGE_START == MAGIC_AT);
// The broker writes base_offset and leader_epoch after the CRC is computed: both must lie
// entirely before the CRC-covered range.
const _: () = assert!(BASE_OFFSET_AT + 8 <= CRC_COVERAGE_START);
const _: () = assert!(LEADER_EPOCH_AT + 4 <= CRC_COVERAGE_START);
const _: () = assert!(MAGIC_AT + 1 == RESERVED_U8_AT);
const _: () = assert!(RESERVED_U8_AT + 1 == ATTRIBUTES_AT);
const _: () = assert!(ATTRIBUTES_AT + 2 == RECORDS_LENGTH_AT);
const _: () = assert!(RECORDS_LENGTH_AT + 4 == RECORD_COUNT_AT);
const _: () = assert!(RECORD_COUNT_AT + 4 == LAST_OFFSET_DELTA_AT);
const _: () = assert!(LAST_OFFSET_DELTA_AT + 4 == PRODUCER_EPOCH_AT);
const _: () = assert!(PRODUCER_EPOCH_AT + 2 == RESERVED_U16_AT);
const _: () = assert!(RESERVED_U16_AT + 2 == FIRST_TIMESTAMP_AT);
const _: () = assert!(FIRST_TIMESTAMP_AT + 8 == MAX_TIMESTAMP_AT);
const _: () = assert!(MAX_TIMESTAMP_AT + 8 == PRODUCER_ID_AT);
const _: () = assert!(PRODUCER_ID_AT + 8 == BASE_SEQUENCE_AT);
const _: () = assert!(BASE_SEQUENCE_AT + 4 == RESERVED_U32_AT);
const _: () = assert!(RESERVED_U32_AT + 4 == BATCH_HEADER_BYTES);
// The archive starts right after the header and must start aligned.
const _: () = assert!(BATCH_HEADER_BYTES % BATCH_ALIGN_BYTES == 0);
const _: () = assert!(BATCH_ALIGN_BYTES.is_power_of_two());
const _: () = assert!(BATCH_BYTES_MAX as usize % BATCH_ALIGN_BYTES == 0);
const _: () = assert!(BATCH_BYTES_MAX as usize > BATCH_HEADER_BYTES);
// batch_length is a u32 field.
const _: () = assert!(BATCH_BYTES_MAX as u64 <= u32::MAX as u64);

/// How the records part is compressed. Only `None` exists today (bits 0-2 of the attributes).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Compression {
    None,
}

/// What a batch's timestamps mean (bit 3 of the attributes).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TimestampType {
    /// Set by the producer when it created the record.
    CreateTime,
    /// Set by the broker when it appended the batch.
    LogAppendTime,
}

/// The `attributes` field. A value of this type always holds only known, supported bits.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Attributes(u16);

impl Attributes {
    pub const NONE: Attributes = Attributes(0);
    const COMPRESSION_MASK: u16 = 0b111;
    const TIMESTAMP_TYPE_BIT: u16 = 1 << 3;
    const TRANSACTIONAL_BIT: u16 = 1 << 4;
    const CONTROL_BIT: u16 = 1 << 5;
    const KNOWN_MASK: u16 =
        Self::COMPRESSION_MASK | Self::TIMESTAMP_TYPE_BIT | Self::TRANSACTIONAL_BIT | Self::CONTROL_BIT;

    /// Accepts the bits only if every set bit is known and compression is `none`.
    pub fn from_bits(bits: u16) -> Result<Attributes, BatchError> {
        if bits & !Self::KNOWN_MASK != 0 || bits & Self::COMPRESSION_MASK != 0 {
            return Err(BatchError::BadAttributes(bits));
        }
        Ok(Attributes(bits))
    }

    pub fn bits(self) -> u16 {
        self.0
    }

    pub fn compression(self) -> Compression {
        Compression::None
    }

    pub fn timestamp_type(self) -> TimestampType {
        if self.0 & Self::TIMESTAMP_TYPE_BIT == 0 {
            TimestampType::CreateTime
        } else {
            TimestampType::LogAppendTime
        }
    }

    pub fn is_transactional(self) -> bool {
        self.0 & Self::TRANSACTIONAL_BIT != 0
    }

    pub fn is_control(self) -> bool {
        self.0 & Self::CONTROL_BIT != 0
    }

    pub fn with_timestamp_type(self, timestamp_type: TimestampType) -> Attributes {
        let set = timestamp_type == TimestampType::LogAppendTime;
        self.with_bit(Self::TIMESTAMP_TYPE_BIT, set)
    }

    pub fn with_transactional(self, transactional: bool) -> Attributes {
        self.with_bit(Self::TRANSACTIONAL_BIT, transactional)
    }

    pub fn with_control(self, control: bool) -> Attributes {
        self.with_bit(Self::CONTROL_BIT, control)
    }

    fn with_bit(self, bit: u16, set: bool) -> Attributes {
        if set {
            Attributes(self.0 | bit)
        } else {
            Attributes(self.0 & !bit)
        }
    }
}

/// The decoded header of one batch. Magic and reserved fields are not kept: parsing checked them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BatchHeader {
    pub base_offset: Offset,
    /// Total bytes of the batch: header, archive and zero padding; a multiple of 8.
    pub batch_length: u32,
    pub leader_epoch: LeaderEpoch,
    pub crc: u32,
    pub attributes: Attributes,
    pub records_length: u32,
    pub record_count: u32,
    pub last_offset_delta: u32,
    pub producer_epoch: ProducerEpoch,
    pub first_timestamp: TimestampMs,
    pub max_timestamp: TimestampMs,
    pub producer_id: ProducerId,
    pub base_sequence: i32,
}

/// `value` rounded up to a multiple of [`BATCH_ALIGN_BYTES`]; `u64` so it cannot overflow for
/// any `u32` input.
pub fn align_up(value: u64) -> u64 {
    let align = BATCH_ALIGN_BYTES as u64;
    value.div_ceil(align) * align
}

/// The only valid `batch_length` for an archive of `records_length` bytes.
pub fn batch_length_for(records_length: u32) -> u64 {
    align_up(BATCH_HEADER_BYTES as u64 + u64::from(records_length))
}

/// Reads the `batch_length` field without checking anything else; `None` if `bytes` is shorter
/// than the field's end. Cheap framing for a reader that will validate afterwards.
pub fn peek_batch_length(bytes: &[u8]) -> Option<u32> {
    let field = bytes.get(BATCH_LENGTH_AT..BATCH_LENGTH_AT + 4)?;
    Some(u32::from_le_bytes(field.try_into().ok()?))
}

/// Writes the two broker-owned fields into a batch. Both lie before the CRC-covered range, so
/// the CRC stays valid and the broker never touches the producer's bytes.
pub fn stamp(batch: &mut [u8], base_offset: Offset, leader_epoch: LeaderEpoch) -> Result<(), BatchError> {
    let got = batch.len();
    let header = batch.get_mut(..BATCH_HEADER_BYTES).ok_or(BatchError::TooShort { needed: BATCH_HEADER_BYTES, got })?;
    put(header, BASE_OFFSET_AT, &base_offset.0.to_le_bytes());
    put(header, LEADER_EPOCH_AT, &leader_epoch.0.to_le_bytes());
    Ok(())
}

impl BatchHeader {
    /// Decodes and checks the 72 header bytes at the start of `bytes` (the rest is not read).
    ///
    /// Checks magic, reserved fields, attributes, the length rules, the record count and the
    /// timestamp order, but NOT the CRC: see [`validate_crc`](super::validate_crc).
    pub fn parse(bytes: &[u8]) -> Result<BatchHeader, BatchError> {
        let got = bytes.len();
        let h: &[u8; BATCH_HEADER_BYTES] = bytes
            .get(..BATCH_HEADER_BYTES)
            .and_then(|head| head.try_into().ok())
            .ok_or(BatchError::TooShort { needed: BATCH_HEADER_BYTES, got })?;

        let magic = h[MAGIC_AT];
        if magic != BATCH_MAGIC {
            return Err(BatchError::BadMagic(magic));
        }
        for at in [RESERVED_U8_AT, RESERVED_U16_AT, RESERVED_U16_AT + 1]
            .into_iter()
            .chain(RESERVED_U32_AT..RESERVED_U32_AT + 4)
        {
            if h[at] != 0 {
                return Err(BatchError::ReservedNotZero { at, value: h[at] });
            }
        }
        let attributes = Attributes::from_bits(u16::from_le_bytes(field(h, ATTRIBUTES_AT)))?;

        let batch_length = u32::from_le_bytes(field(h, BATCH_LENGTH_AT));
        let records_length = u32::from_le_bytes(field(h, RECORDS_LENGTH_AT));
        if batch_length > BATCH_BYTES_MAX {
            return Err(BatchError::TooLarge {
                batch_length: u64::from(batch_length),
                batch_bytes_max: BATCH_BYTES_MAX,
            });
        }
        // One valid length per archive size: the header, the archive, then the fewest zero bytes
        // that reach a multiple of 8. This also implies batch_length >= 72 + records_length.
        let expected = batch_length_for(records_length);
        if u64::from(batch_length) != expected {
            return Err(BatchError::BadLength { batch_length, records_length, expected });
        }

        let record_count = u32::from_le_bytes(field(h, RECORD_COUNT_AT));
        let last_offset_delta = u32::from_le_bytes(field(h, LAST_OFFSET_DELTA_AT));
        if record_count == 0 || last_offset_delta != record_count - 1 {
            return Err(BatchError::BadRecordCount { record_count, last_offset_delta });
        }
        let base_offset = Offset(u64::from_le_bytes(field(h, BASE_OFFSET_AT)));
        if base_offset.0.checked_add(u64::from(record_count)).is_none() {
            return Err(BatchError::OffsetOverflow { base_offset, record_count });
        }
        let first_timestamp = TimestampMs(i64::from_le_bytes(field(h, FIRST_TIMESTAMP_AT)));
        let max_timestamp = TimestampMs(i64::from_le_bytes(field(h, MAX_TIMESTAMP_AT)));
        if first_timestamp > max_timestamp {
            return Err(BatchError::BadTimestampRange { first: first_timestamp, max: max_timestamp });
        }

        Ok(BatchHeader {
            base_offset,
            batch_length,
            leader_epoch: LeaderEpoch(u32::from_le_bytes(field(h, LEADER_EPOCH_AT))),
            crc: u32::from_le_bytes(field(h, CRC_AT)),
            attributes,
            records_length,
            record_count,
            last_offset_delta,
            producer_epoch: ProducerEpoch(i16::from_le_bytes(field(h, PRODUCER_EPOCH_AT))),
            first_timestamp,
            max_timestamp,
            producer_id: ProducerId(i64::from_le_bytes(field(h, PRODUCER_ID_AT))),
            base_sequence: i32::from_le_bytes(field(h, BASE_SEQUENCE_AT)),
        })
    }

    /// The offset of the batch's last record. Saturates instead of overflowing; `parse` rejects
    /// headers for which it would.
    pub fn last_offset(&self) -> Offset {
        Offset(self.base_offset.0.saturating_add(u64::from(self.last_offset_delta)))
    }

    /// The offset the next batch in the log starts at.
    pub fn next_offset(&self) -> Offset {
        Offset(self.last_offset().0.saturating_add(1))
    }

    /// Encodes every field, including `crc` as it is, into the 72 header bytes.
    pub(crate) fn write_to(&self, h: &mut [u8; BATCH_HEADER_BYTES]) {
        h.fill(0);
        put(h, BASE_OFFSET_AT, &self.base_offset.0.to_le_bytes());
        put(h, BATCH_LENGTH_AT, &self.batch_length.to_le_bytes());
        put(h, LEADER_EPOCH_AT, &self.leader_epoch.0.to_le_bytes());
        put(h, CRC_AT, &self.crc.to_le_bytes());
        h[MAGIC_AT] = BATCH_MAGIC;
        put(h, ATTRIBUTES_AT, &self.attributes.bits().to_le_bytes());
        put(h, RECORDS_LENGTH_AT, &self.records_length.to_le_bytes());
        put(h, RECORD_COUNT_AT, &self.record_count.to_le_bytes());
        put(h, LAST_OFFSET_DELTA_AT, &self.last_offset_delta.to_le_bytes());
        put(h, PRODUCER_EPOCH_AT, &self.producer_epoch.0.to_le_bytes());
        put(h, FIRST_TIMESTAMP_AT, &self.first_timestamp.0.to_le_bytes());
        put(h, MAX_TIMESTAMP_AT, &self.max_timestamp.0.to_le_bytes());
        put(h, PRODUCER_ID_AT, &self.producer_id.0.to_le_bytes());
        put(h, BASE_SEQUENCE_AT, &self.base_sequence.to_le_bytes());
    }
}

/// The `N` bytes at `at` of the header. The offsets are the constants above, all checked at
/// compile time to end within the 72 bytes, so the fallback never happens.
fn field<const N: usize>(h: &[u8; BATCH_HEADER_BYTES], at: usize) -> [u8; N] {
    h.get(at..at + N).and_then(|bytes| bytes.try_into().ok()).unwrap_or([0; N])
}

/// Copies `value` to `at`; silently ignores a range outside `out` (never the case for the field
/// constants, which end within the header).
fn put(out: &mut [u8], at: usize, value: &[u8]) {
    if let Some(dst) = out.get_mut(at..at + value.len()) {
        dst.copy_from_slice(value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A header that parses: one record, 8-byte archive, no producer.
    fn valid_header() -> [u8; BATCH_HEADER_BYTES] {
        let header = BatchHeader {
            base_offset: Offset(10),
            batch_length: 80,
            leader_epoch: LeaderEpoch(2),
            crc: 0xdead_beef,
            attributes: Attributes::NONE,
            records_length: 8,
            record_count: 1,
            last_offset_delta: 0,
            producer_epoch: ProducerEpoch::NONE,
            first_timestamp: TimestampMs(5),
            max_timestamp: TimestampMs(5),
            producer_id: ProducerId::NONE,
            base_sequence: BASE_SEQUENCE_NONE,
        };
        let mut bytes = [0; BATCH_HEADER_BYTES];
        header.write_to(&mut bytes);
        bytes
    }

    fn with(at: usize, value: &[u8]) -> [u8; BATCH_HEADER_BYTES] {
        let mut bytes = valid_header();
        put(&mut bytes, at, value);
        bytes
    }

    /// Guards that `write_to` and `parse` agree field by field, and that parse never reads
    /// past the header (the archive is absent here).
    #[test]
    fn parse_reads_what_write_to_wrote() {
        let header = BatchHeader::parse(&valid_header()).unwrap();
        assert_eq!(header.base_offset, Offset(10));
        assert_eq!(header.leader_epoch, LeaderEpoch(2));
        assert_eq!(header.crc, 0xdead_beef);
        assert_eq!((header.batch_length, header.records_length), (80, 8));
        assert_eq!((header.last_offset(), header.next_offset()), (Offset(10), Offset(11)));
        assert_eq!(peek_batch_length(&valid_header()), Some(80));
        assert_eq!(peek_batch_length(&[0; 11]), None);
    }

    /// Each header rule rejects with its own variant.
    #[test]
    fn each_header_rule_has_its_error() {
        let parse = |bytes: [u8; BATCH_HEADER_BYTES]| BatchHeader::parse(&bytes);
        assert_eq!(parse(with(MAGIC_AT, &[2])), Err(BatchError::BadMagic(2)));
        assert!(matches!(
            parse(with(RESERVED_U16_AT + 1, &[1])),
            Err(BatchError::ReservedNotZero { at: 39, value: 1 })
        ));
        assert!(matches!(parse(with(RESERVED_U8_AT, &[4])), Err(BatchError::ReservedNotZero { at: 21, .. })));
        assert!(matches!(parse(with(RESERVED_U32_AT + 3, &[4])), Err(BatchError::ReservedNotZero { at: 71, .. })));
        assert_eq!(
            parse(with(ATTRIBUTES_AT, &1u16.to_le_bytes())),
            Err(BatchError::BadAttributes(1)),
            "compression is not supported yet"
        );
        assert_eq!(parse(with(ATTRIBUTES_AT, &0x40u16.to_le_bytes())), Err(BatchError::BadAttributes(0x40)));
        assert!(parse(with(ATTRIBUTES_AT, &0x38u16.to_le_bytes())).is_ok());
        for bad_length in [0u32, 72, 79, 81, 88] {
            assert!(matches!(
                parse(with(BATCH_LENGTH_AT, &bad_length.to_le_bytes())),
                Err(BatchError::BadLength { .. })
            ));
        }
        assert!(matches!(
            parse(with(BATCH_LENGTH_AT, &(BATCH_BYTES_MAX + 8).to_le_bytes())),
            Err(BatchError::TooLarge { .. })
        ));
        // records_length so large that 72 + it needs more than u32: caught, not wrapped.
        assert!(matches!(parse(with(RECORDS_LENGTH_AT, &u32::MAX.to_le_bytes())), Err(BatchError::BadLength { .. })));
        assert!(matches!(parse(with(RECORD_COUNT_AT, &0u32.to_le_bytes())), Err(BatchError::BadRecordCount { .. })));
        assert!(matches!(
            parse(with(LAST_OFFSET_DELTA_AT, &1u32.to_le_bytes())),
            Err(BatchError::BadRecordCount { .. })
        ));
        assert!(matches!(
            parse(with(FIRST_TIMESTAMP_AT, &6i64.to_le_bytes())),
            Err(BatchError::BadTimestampRange { .. })
        ));
        assert!(matches!(parse(with(BASE_OFFSET_AT, &u64::MAX.to_le_bytes())), Err(BatchError::OffsetOverflow { .. })));
        assert!(matches!(BatchHeader::parse(&valid_header()[..71]), Err(BatchError::TooShort { needed: 72, got: 71 })));
    }

    #[test]
    fn attributes_round_trip_their_flags() {
        let attributes = Attributes::NONE
            .with_timestamp_type(TimestampType::LogAppendTime)
            .with_transactional(true)
            .with_control(true);
        assert_eq!(attributes.bits(), 0x38);
        assert_eq!(Attributes::from_bits(0x38), Ok(attributes));
        assert_eq!(attributes.timestamp_type(), TimestampType::LogAppendTime);
        assert!(attributes.is_transactional() && attributes.is_control());
        assert_eq!(attributes.compression(), Compression::None);
        assert_eq!(attributes.with_control(false).bits(), 0x18);
    }
}
