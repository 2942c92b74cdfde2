//! Cross-module tests of the batch format: round trips, corruption, truncation, fuzzing.

use proptest::prelude::*;

use super::*;
use crate::model::{LeaderEpoch, Offset, ProducerEpoch, ProducerId, TimestampMs};

/// A batch with a mix of keys, empty values, headers and out-of-order timestamps.
fn sample_batch() -> Vec<u8> {
    let mut builder = BatchBuilder::new(BatchBuilderConfig {
        producer_id: ProducerId(42),
        producer_epoch: ProducerEpoch(3),
        base_sequence: 7,
        attributes: Attributes::NONE.with_transactional(true),
    });
    builder.push(TimestampMs(1_000), Some(b"k0"), b"value zero", &[]);
    builder.push(TimestampMs(990), None, b"", &[("trace", b"abc")]);
    builder.push(
        TimestampMs(1_010),
        Some(b"a longer key than eight bytes"),
        b"v2",
        &[("h1", b""), ("a longer header key", b"x")],
    );
    builder.build().expect("three records build").to_vec()
}

/// Copies `batch` to an address that is 8-aligned plus `misalign` bytes.
fn at_misaligned(batch: &[u8], misalign: usize) -> (rkyv::util::AlignedVec, usize) {
    let mut buffer = rkyv::util::AlignedVec::<16>::new();
    buffer.extend_from_slice(&vec![0; misalign]);
    buffer.extend_from_slice(batch);
    (buffer, misalign)
}

type OwnedRecord = (Offset, TimestampMs, Option<Vec<u8>>, Vec<u8>, Vec<(String, Vec<u8>)>);

fn read_all(batch: &[u8]) -> Result<Vec<OwnedRecord>, BatchError> {
    let mut out = Vec::new();
    for_each_record(batch, |r| {
        out.push((
            r.offset,
            r.timestamp,
            r.key.map(<[u8]>::to_vec),
            r.value.to_vec(),
            r.headers.iter().map(|(k, v)| (k.to_owned(), v.to_vec())).collect(),
        ))
    })?;
    Ok(out)
}

/// Guards the whole producer → broker → consumer path: what the producer pushed is what the
/// consumer reads, with offsets and timestamps made absolute after the broker stamps the batch.
#[test]
fn round_trip_after_stamp() {
    let mut batch = sample_batch();
    assert_eq!(batch.len() % BATCH_ALIGN_BYTES, 0);
    stamp(&mut batch, Offset(1_000_000), LeaderEpoch(9)).unwrap();
    let header = validate(&batch).unwrap();
    assert_eq!(header.base_offset, Offset(1_000_000));
    assert_eq!(header.leader_epoch, LeaderEpoch(9));
    assert_eq!(header.record_count, 3);
    assert_eq!(header.last_offset(), Offset(1_000_002));
    assert_eq!(header.next_offset(), Offset(1_000_003));
    assert_eq!(header.first_timestamp, TimestampMs(990));
    assert_eq!(header.max_timestamp, TimestampMs(1_010));
    assert_eq!(header.producer_id, ProducerId(42));
    assert_eq!(header.producer_epoch, ProducerEpoch(3));
    assert_eq!(header.base_sequence, 7);
    assert!(header.attributes.is_transactional());
    assert!(!header.attributes.is_control());
    assert_eq!(header.attributes.timestamp_type(), TimestampType::CreateTime);
    assert_eq!(header.batch_length as usize, batch.len());
    assert_eq!(peek_batch_length(&batch), Some(header.batch_length));

    let records = read_all(&batch).unwrap();
    let expected: Vec<OwnedRecord> = vec![
        (Offset(1_000_000), TimestampMs(1_000), Some(b"k0".to_vec()), b"value zero".to_vec(), vec![]),
        (Offset(1_000_001), TimestampMs(990), None, vec![], vec![("trace".into(), b"abc".to_vec())]),
        (
            Offset(1_000_002),
            TimestampMs(1_010),
            Some(b"a longer key than eight bytes".to_vec()),
            b"v2".to_vec(),
            vec![("h1".into(), vec![]), ("a longer header key".into(), b"x".to_vec())],
        ),
    ];
    assert_eq!(records, expected);
}

/// The broker stamps offsets and epoch after validating; the CRC must not cover them.
#[test]
fn stamp_keeps_crc_valid() {
    let mut batch = sample_batch();
    let before = validate_crc(&batch).unwrap();
    stamp(&mut batch, Offset(u64::MAX - 3), LeaderEpoch(u32::MAX)).unwrap();
    let after = validate(&batch).unwrap();
    assert_eq!(before.crc, after.crc);
    assert_eq!(after.last_offset(), Offset(u64::MAX - 1));
    assert!(matches!(stamp(&mut [0u8; 71], Offset(0), LeaderEpoch(0)), Err(BatchError::TooShort { .. })));
}

/// A base offset so high that the batch's offsets would overflow is rejected, not wrapped.
#[test]
fn offset_overflow_is_rejected() {
    let mut batch = sample_batch();
    stamp(&mut batch, Offset(u64::MAX - 2), LeaderEpoch(0)).unwrap();
    assert!(matches!(BatchHeader::parse(&batch), Err(BatchError::OffsetOverflow { .. })));
}

/// Guards CRC coverage: every single-bit flip from byte 8 on is detected by `validate`, except
/// in base_offset [0, 8) (not tested) and leader_epoch [12, 16): those are broker-stamped, sit
/// before the CRC on purpose, and a flip there is a different but valid stamp.
#[test]
fn every_single_bit_flip_is_detected() {
    let batch = sample_batch();
    for at in BATCH_LENGTH_AT_FOR_TEST..batch.len() {
        let leader_epoch = field::LEADER_EPOCH_AT..field::LEADER_EPOCH_AT + 4;
        for bit in 0..8 {
            let mut corrupt = batch.clone();
            corrupt[at] ^= 1 << bit;
            let result = validate(&corrupt);
            if leader_epoch.contains(&at) {
                assert!(result.is_ok(), "leader_epoch flip at {at} must stay valid");
            } else {
                assert!(result.is_err(), "flip of bit {bit} at byte {at} went undetected");
                assert!(validate_crc(&corrupt).is_err(), "validate_crc missed byte {at}");
            }
        }
    }
}
const BATCH_LENGTH_AT_FOR_TEST: usize = field::BATCH_LENGTH_AT;

/// Guards recovery of torn writes: every proper prefix of a batch is an error, never a panic.
#[test]
fn every_truncation_is_an_error() {
    let batch = sample_batch();
    for len in 0..batch.len() {
        let prefix = &batch[..len];
        assert!(validate(prefix).is_err(), "prefix of {len} bytes accepted");
        assert!(validate_crc(prefix).is_err());
        assert!(BatchView::new(prefix).is_err());
        if len < BATCH_HEADER_BYTES {
            assert!(matches!(BatchHeader::parse(prefix), Err(BatchError::TooShort { .. })));
        }
    }
}

/// Batches are stored back to back; `validate_crc` frames them by `batch_length`.
#[test]
fn back_to_back_batches_frame_by_length() {
    let one = sample_batch();
    let mut log = Vec::new();
    for base in [0u64, 3, 6] {
        let mut batch = one.clone();
        stamp(&mut batch, Offset(base), LeaderEpoch(1)).unwrap();
        log.extend_from_slice(&batch);
    }
    let mut position = 0;
    let mut next = Offset(0);
    while position < log.len() {
        let header = validate(&log[position..]).unwrap();
        assert_eq!(header.base_offset, next);
        next = header.next_offset();
        position += header.batch_length as usize;
        assert_eq!(position % BATCH_ALIGN_BYTES, 0);
    }
    assert_eq!(next, Offset(9));
}

/// Consumers may hold a batch at any address: an unaligned archive is copied, then read alike.
#[test]
fn unaligned_batches_read_the_same() {
    let batch = sample_batch();
    let expected = read_all(&batch).unwrap();
    assert!(!BatchView::new(&batch).unwrap().copied_for_alignment() || batch.as_ptr() as usize % 8 != 0);
    for misalign in 1..8 {
        let (buffer, at) = at_misaligned(&batch, misalign);
        let view = BatchView::new(&buffer[at..]).unwrap();
        assert!(view.copied_for_alignment());
        assert_eq!(view.records().len(), 3);
        assert_eq!(read_all(&buffer[at..]).unwrap(), expected);
    }
}

#[test]
fn built_bytes_are_aligned_and_read_in_place() {
    let mut builder = BatchBuilder::new(BatchBuilderConfig::default());
    builder.push(TimestampMs(5), None, b"v", &[]);
    let bytes = builder.build().unwrap();
    assert_eq!(bytes.as_ptr() as usize % 16, 0);
    let view = BatchView::new(&bytes).unwrap();
    assert!(!view.copied_for_alignment());
    let header = view.header();
    assert_eq!(header.producer_id, ProducerId::NONE);
    assert_eq!(header.producer_epoch, ProducerEpoch::NONE);
    assert_eq!(header.base_sequence, BASE_SEQUENCE_NONE);
    assert_eq!((header.first_timestamp, header.max_timestamp), (TimestampMs(5), TimestampMs(5)));
}

#[test]
fn empty_and_extreme_builds_are_errors_not_panics() {
    assert_eq!(BatchBuilder::new(BatchBuilderConfig::default()).build(), Err(BuildError::Empty));
    let mut builder = BatchBuilder::new(BatchBuilderConfig::default());
    builder.push(TimestampMs(i64::MIN), None, b"", &[]);
    builder.push(TimestampMs(i64::MAX), None, b"", &[]);
    assert!(matches!(builder.build(), Err(BuildError::TimestampSpanTooLarge { .. })));
}

/// Guards the on-disk format against silent drift (an rkyv upgrade or a feature such as
/// `big_endian`/`unaligned`/`pointer_width_64` enabled elsewhere in the build): a fixed batch
/// must keep its exact length and CRC.
#[test]
fn golden_batch_layout_is_stable() {
    let mut builder = BatchBuilder::new(BatchBuilderConfig::default());
    builder.push(TimestampMs(1_700_000_000_000), Some(b"key"), b"value", &[("h", b"v")]);
    builder.push(TimestampMs(1_700_000_000_001), None, b"second value", &[]);
    let batch = builder.build().unwrap();
    let header = validate(&batch).unwrap();
    assert_eq!(
        (header.records_length, header.batch_length, header.crc),
        GOLDEN_LENGTHS_AND_CRC,
        "the batch format changed: bump BATCH_MAGIC and update FORMAT.md, or fix the build"
    );
    assert_eq!(&batch[..BATCH_HEADER_BYTES], &GOLDEN_HEADER[..]);
}

const GOLDEN_LENGTHS_AND_CRC: (u32, u32, u32) = (144, 216, 2335449043);
#[rustfmt::skip]
const GOLDEN_HEADER: [u8; BATCH_HEADER_BYTES] = [
    0, 0, 0, 0, 0, 0, 0, 0,                         // base_offset 0 (not stamped)
    0xd8, 0, 0, 0,                                  // batch_length 216
    0, 0, 0, 0,                                     // leader_epoch 0
    0xd3, 0x1f, 0x34, 0x8b,                         // crc 0x8b341fd3
    1, 0,                                           // magic 1, reserved
    0, 0,                                           // attributes: none
    0x90, 0, 0, 0,                                  // records_length 144
    2, 0, 0, 0,                                     // record_count 2
    1, 0, 0, 0,                                     // last_offset_delta 1
    0xff, 0xff,                                     // producer_epoch -1
    0, 0,                                           // reserved
    0x00, 0x68, 0xe5, 0xcf, 0x8b, 0x01, 0, 0,       // first_timestamp 1_700_000_000_000
    0x01, 0x68, 0xe5, 0xcf, 0x8b, 0x01, 0, 0,       // max_timestamp 1_700_000_000_001
    0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, // producer_id -1
    0xff, 0xff, 0xff, 0xff,                         // base_sequence -1
    0, 0, 0, 0,                                     // reserved
];

/// A record to push: timestamp, key, value, headers.
type ArbRecord = (i64, Option<Vec<u8>>, Vec<u8>, Vec<(String, Vec<u8>)>);

fn arb_record() -> impl Strategy<Value = ArbRecord> {
    (
        -1_000_000i64..1_000_000,
        proptest::option::of(proptest::collection::vec(any::<u8>(), 0..24)),
        proptest::collection::vec(any::<u8>(), 0..64),
        proptest::collection::vec((".{0,12}", proptest::collection::vec(any::<u8>(), 0..12)), 0..3),
    )
}

fn build_from(records: &[ArbRecord]) -> (usize, Vec<u8>) {
    let mut builder = BatchBuilder::new(BatchBuilderConfig::default());
    for (timestamp, key, value, headers) in records {
        let headers: Vec<(&str, &[u8])> = headers.iter().map(|(k, v)| (k.as_str(), v.as_slice())).collect();
        builder.push(TimestampMs(*timestamp), key.as_deref(), value, &headers);
    }
    (builder.estimated_bytes(), builder.build().unwrap().to_vec())
}

/// Every reader must answer with `Ok` or `Err`, never panic.
fn exercise_all_readers(bytes: &[u8]) {
    let _ = BatchHeader::parse(bytes);
    let _ = peek_batch_length(bytes);
    let _ = validate_crc(bytes);
    let full = validate(bytes);
    let mut count = 0u32;
    let read = for_each_record(bytes, |r| {
        count += 1;
        let _ = (r.key, r.value, r.headers.iter().count());
    });
    assert_eq!(full.is_ok(), read.is_ok());
    if let Ok(header) = read {
        assert_eq!(count, header.record_count);
    }
}

/// Rewrites the CRC so that a mutation gets past it and reaches the archive and record checks.
fn fix_crc(bytes: &mut [u8]) {
    if bytes.len() >= BATCH_HEADER_BYTES {
        let end = (peek_batch_length(bytes).unwrap_or(0) as usize).clamp(CRC_COVERAGE_START, bytes.len());
        let crc = crc32fast::hash(&bytes[CRC_COVERAGE_START..end]);
        bytes[field::CRC_AT..field::CRC_AT + 4].copy_from_slice(&crc.to_le_bytes());
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// Round trip over arbitrary contents; `estimated_bytes` is an upper bound of the length.
    #[test]
    fn arbitrary_batches_round_trip(records in proptest::collection::vec(arb_record(), 1..20)) {
        let (estimate, batch) = build_from(&records);
        prop_assert!(estimate >= batch.len(), "estimate {} < actual {}", estimate, batch.len());
        let read = read_all(&batch).unwrap();
        prop_assert_eq!(read.len(), records.len());
        for (i, ((timestamp, key, value, headers), got)) in records.iter().zip(&read).enumerate() {
            prop_assert_eq!(got.0, Offset(i as u64));
            prop_assert_eq!(got.1, TimestampMs(*timestamp));
            prop_assert_eq!(&got.2, key);
            prop_assert_eq!(&got.3, value);
            prop_assert_eq!(&got.4, headers);
        }
    }

    /// Arbitrary bytes, with or without a plausible header in front, never panic a reader.
    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..400), plausible: bool) {
        let mut bytes = bytes;
        if plausible && bytes.len() >= BATCH_HEADER_BYTES {
            bytes[field::MAGIC_AT] = BATCH_MAGIC;
            bytes[field::RESERVED_U8_AT] = 0;
            bytes[field::ATTRIBUTES_AT] &= 0b0011_1000;
            bytes[field::ATTRIBUTES_AT + 1] = 0;
            let records_length = (bytes.len() - BATCH_HEADER_BYTES) as u32;
            bytes[field::RECORDS_LENGTH_AT..field::RECORDS_LENGTH_AT + 4].copy_from_slice(&records_length.to_le_bytes());
            let batch_length = batch_length_for(records_length) as u32;
            bytes[field::BATCH_LENGTH_AT..field::BATCH_LENGTH_AT + 4].copy_from_slice(&batch_length.to_le_bytes());
            bytes.resize(batch_length as usize, 0);
            fix_crc(&mut bytes);
        }
        exercise_all_readers(&bytes);
    }

    /// Mutations of a valid batch, with the CRC left stale or recomputed, never panic a reader;
    /// with a stale CRC, any change from byte 16 on is rejected.
    #[test]
    fn mutated_batches_never_panic(
        records in proptest::collection::vec(arb_record(), 1..6),
        mutations in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
        recompute_crc: bool,
        truncate_to in proptest::option::of(any::<prop::sample::Index>()),
    ) {
        let (_, original) = build_from(&records);
        let mut batch = original.clone();
        for (index, byte) in &mutations {
            let at = index.index(batch.len());
            batch[at] = *byte;
        }
        if recompute_crc {
            fix_crc(&mut batch);
        }
        if let Some(len) = truncate_to {
            batch.truncate(len.index(batch.len() + 1));
        }
        exercise_all_readers(&batch);
        let changed_covered = batch.len() != original.len()
            || batch[16..] != original[16..]
            || batch[8..12] != original[8..12];
        if changed_covered && !recompute_crc {
            prop_assert!(validate(&batch).is_err());
        }
        // Misaligned copies go through the same checks.
        let (buffer, at) = at_misaligned(&batch, 3);
        exercise_all_readers(&buffer[at..]);
    }
}
