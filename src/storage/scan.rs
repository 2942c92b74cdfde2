//! Walking the batches of a segment: plain Rust over a byte range read from the file.
//!
//! Used by recovery (find the valid prefix of the tail segment) and by reads (find whole batches
//! from an offset). Every batch is checked — header, length, CRC, and that its base offset is
//! the one expected next — so a corrupt, torn or stale batch is never returned as valid.
//!
//! Decision table for what stops a scan:
//!
//! | bytes at the position                  | meaning                                  | recovery            |
//! |----------------------------------------|------------------------------------------|---------------------|
//! | fewer than a header, file ends         | clean end                                | keep all before     |
//! | a header of zeros                      | clean end (pre-allocated, never written) | keep all before     |
//! | header claims more bytes than the file | torn write                               | cut here, log it    |
//! | bad header / CRC mismatch              | corrupt or torn                          | cut here, log it    |
//! | base offset is not the expected one    | stale data from before a truncation      | cut here, log it    |

use super::batch::{BatchError, BatchHeader, BATCH_HEADER_BYTES};
use crate::model::{Offset, TimestampMs};

/// One valid batch found by a scan.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ScannedBatch {
    pub base_offset: Offset,
    pub next_offset: Offset,
    /// Position in the segment file.
    pub position: u64,
    pub length: u32,
    pub max_timestamp: TimestampMs,
}

/// Why a scan stopped before the end of the bytes it was given.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ScanStop {
    /// A zeroed header: the rest was pre-allocated and never written.
    EndOfData,
    /// The batch at the position is damaged.
    Corrupt(BatchError),
    /// The batch is intact but does not continue the log.
    UnexpectedOffset { expected: Offset, found: Offset },
}

impl std::fmt::Display for ScanStop {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ScanStop::EndOfData => f.write_str("end of written data"),
            ScanStop::Corrupt(error) => write!(f, "corrupt batch: {error}"),
            ScanStop::UnexpectedOffset { expected, found } => {
                write!(f, "batch has base offset {found}, expected {expected} (stale data)")
            }
        }
    }
}

/// What a scan of one chunk found.
#[derive(Debug, Default)]
pub struct ChunkScan {
    pub batches: Vec<ScannedBatch>,
    /// Bytes of the chunk taken by whole valid batches.
    pub consumed_bytes: usize,
    /// Set when the scan met something that is not a valid next batch.
    pub stop: Option<ScanStop>,
    /// When the chunk ended inside a batch: that batch's full length, so that the caller can
    /// read a chunk big enough to hold it.
    pub incomplete_batch_bytes: Option<u32>,
}

/// Scans `chunk`, which starts at file position `position` with a batch whose base offset must
/// be `expected_offset`. Stops at the end of the chunk, at the first bad batch, or once
/// `max_batches` were found.
pub fn scan_chunk(chunk: &[u8], position: u64, mut expected_offset: Offset, max_batches: usize) -> ChunkScan {
    let mut scan = ChunkScan::default();
    while scan.batches.len() < max_batches {
        let rest = &chunk[scan.consumed_bytes..];
        if rest.len() < BATCH_HEADER_BYTES {
            if !rest.is_empty() && rest.iter().any(|&byte| byte != 0) {
                scan.incomplete_batch_bytes = Some(BATCH_HEADER_BYTES as u32);
            }
            break;
        }
        if rest[..BATCH_HEADER_BYTES].iter().all(|&byte| byte == 0) {
            scan.stop = Some(ScanStop::EndOfData);
            break;
        }
        let header = match BatchHeader::parse(rest) {
            Ok(header) => header,
            Err(error) => {
                scan.stop = Some(ScanStop::Corrupt(error));
                break;
            }
        };
        let length = header.batch_length as usize;
        if rest.len() < length {
            scan.incomplete_batch_bytes = Some(header.batch_length);
            break;
        }
        let header = match super::batch::validate_crc(&rest[..length]) {
            Ok(header) => header,
            Err(error) => {
                scan.stop = Some(ScanStop::Corrupt(error));
                break;
            }
        };
        if header.base_offset != expected_offset {
            scan.stop = Some(ScanStop::UnexpectedOffset { expected: expected_offset, found: header.base_offset });
            break;
        }
        let next_offset = header.next_offset();
        scan.batches.push(ScannedBatch {
            base_offset: header.base_offset,
            next_offset,
            position: position + scan.consumed_bytes as u64,
            length: header.batch_length,
            max_timestamp: header.max_timestamp,
        });
        scan.consumed_bytes += length;
        expected_offset = next_offset;
    }
    scan
}
