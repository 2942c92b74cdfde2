//! Reading the records of a batch back: offsets and timestamps made absolute, data borrowed.
//!
//! Consumers get batches out of network frames, whose payload need not sit at an 8-aligned
//! address. rkyv reads the archive in place and needs that alignment, so an unaligned archive is
//! copied once into an aligned buffer owned by the [`BatchView`]; an aligned one (a DMA buffer,
//! a batch built by [`BatchBuilder`](super::BatchBuilder)) is read with no copy at all.

use rkyv::vec::ArchivedVec;

use super::error::BatchError;
use super::header::BatchHeader;
use super::record::{ArchivedRecord, ArchivedRecordHeader};
use super::validate::{access_records, check_records, validate_crc, ArchiveBytes};
use crate::model::{Offset, TimestampMs};

/// A fully validated batch whose records can be iterated, any number of times.
pub struct BatchView<'a> {
    header: BatchHeader,
    archive: ArchiveBytes<'a>,
}

impl<'a> BatchView<'a> {
    /// Runs the same checks as [`validate`](super::validate) on the batch at the start of `batch`
    /// (bytes after `batch_length` are ignored).
    pub fn new(batch: &'a [u8]) -> Result<BatchView<'a>, BatchError> {
        let header = validate_crc(batch)?;
        let archive = ArchiveBytes::new(batch, &header)?;
        check_records(&header, access_records(archive.as_slice())?)?;
        Ok(BatchView { header, archive })
    }

    pub fn header(&self) -> &BatchHeader {
        &self.header
    }

    /// Whether the archive had to be copied because it was not 8-aligned in memory.
    pub fn copied_for_alignment(&self) -> bool {
        self.archive.is_copied()
    }

    pub fn records(&self) -> Records<'_> {
        // SAFETY: `new` ran rkyv's checked access for this exact root type over these exact
        // bytes, and they cannot have changed since: they are either borrowed immutably for 'a
        // or an aligned copy owned privately by `self` and never mutated.
        let records = unsafe { rkyv::access_unchecked::<ArchivedVec<ArchivedRecord>>(self.archive.as_slice()) };
        Records { header: self.header, inner: records.iter() }
    }
}

/// Validates `batch` fully, then calls `f` for each record in offset order.
pub fn for_each_record(batch: &[u8], mut f: impl FnMut(RecordView<'_>)) -> Result<BatchHeader, BatchError> {
    let view = BatchView::new(batch)?;
    view.records().for_each(&mut f);
    Ok(view.header)
}

/// Iterator over the records of a [`BatchView`].
pub struct Records<'v> {
    header: BatchHeader,
    inner: std::slice::Iter<'v, ArchivedRecord>,
}

impl<'v> Iterator for Records<'v> {
    type Item = RecordView<'v>;

    fn next(&mut self) -> Option<RecordView<'v>> {
        let record = self.inner.next()?;
        // Validation proved base_offset + record_count and first_timestamp + delta do not
        // overflow; saturating keeps that an invariant rather than a panic site.
        let offset = Offset(self.header.base_offset.0.saturating_add(u64::from(record.offset_delta.to_native())));
        let timestamp = TimestampMs(self.header.first_timestamp.0.saturating_add(record.timestamp_delta.to_native()));
        Some(RecordView {
            offset,
            timestamp,
            key: record.key.as_ref().map(|key| key.as_slice()),
            value: record.value.as_slice(),
            headers: RecordHeaders(record.headers.as_slice()),
        })
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        self.inner.size_hint()
    }
}

impl ExactSizeIterator for Records<'_> {}

/// One record with its absolute offset and timestamp; key, value and headers borrow the batch.
#[derive(Clone, Copy, Debug)]
pub struct RecordView<'v> {
    pub offset: Offset,
    pub timestamp: TimestampMs,
    pub key: Option<&'v [u8]>,
    pub value: &'v [u8],
    pub headers: RecordHeaders<'v>,
}

/// The headers of one record, in the order the producer added them.
#[derive(Clone, Copy)]
pub struct RecordHeaders<'v>(&'v [ArchivedRecordHeader]);

impl<'v> RecordHeaders<'v> {
    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn iter(&self) -> impl ExactSizeIterator<Item = (&'v str, &'v [u8])> + 'v {
        self.0.iter().map(|header| (header.key.as_str(), header.value.as_slice()))
    }
}

impl std::fmt::Debug for RecordHeaders<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}
