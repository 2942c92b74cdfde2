//! The aligned buffer that appended batches are copied into before an O_DIRECT write.
//!
//! It always mirrors the file from a page boundary (`file_position`) to the logical end of the
//! active segment. A write sends every page that holds data, the last one padded with zeros;
//! the next buffer starts with a copy of that partial last page, so the next write rewrites the
//! page with more data in it. Owned by the partition's shard.

use glommio::io::DmaBuffer;

use super::segment::{align_down, align_up, PAGE_BYTES};
use super::streaming_copy::copy_for_device;

pub struct WriteBuffer {
    buffer: DmaBuffer,
    /// File position of `buffer[0]`; a multiple of `PAGE_BYTES`.
    file_position: u64,
    /// Bytes of `buffer` that hold data.
    len: usize,
    /// Whether the buffer holds bytes not yet sent by a write.
    dirty: bool,
}

/// A page-aligned write taken out of the buffer, ready for `DmaFile::write_at`.
pub struct PendingWrite {
    pub buffer: DmaBuffer,
    pub file_position: u64,
    /// File position after the last data byte written.
    pub end_position: u64,
    /// Whether the buffer went out at its full capacity (not trimmed), so it can be reused for
    /// a later write once this one completes.
    pub reusable: bool,
}

impl WriteBuffer {
    /// A buffer mirroring the file from `align_down(end_position)`, whose first bytes up to
    /// `end_position` are `partial_page` (the data already in the file's last page).
    pub fn new(mut buffer: DmaBuffer, end_position: u64, partial_page: &[u8]) -> Self {
        let file_position = align_down(end_position);
        let len = (end_position - file_position) as usize;
        debug_assert_eq!(partial_page.len(), len);
        debug_assert!(buffer.len() >= 2 * PAGE_BYTES && buffer.len() % PAGE_BYTES == 0);
        buffer.as_bytes_mut()[..len].copy_from_slice(partial_page);
        WriteBuffer { buffer, file_position, len, dirty: false }
    }

    pub fn room(&self) -> usize {
        self.buffer.len() - self.len
    }

    pub fn is_dirty(&self) -> bool {
        self.dirty
    }

    /// File position after the last byte in the buffer.
    pub fn end_position(&self) -> u64 {
        self.file_position + self.len as u64
    }

    /// Copies as much of `bytes` as fits; returns how much.
    pub fn push(&mut self, bytes: &[u8]) -> usize {
        let taken = bytes.len().min(self.room());
        copy_for_device(&mut self.buffer.as_bytes_mut()[self.len..self.len + taken], &bytes[..taken]);
        self.len += taken;
        self.dirty |= taken > 0;
        taken
    }

    /// Swaps in `fresh` (same capacity) and returns the filled pages for writing. The partial
    /// last page is copied to the start of `fresh`, so it is written again, fuller, next time.
    pub fn take(&mut self, fresh: DmaBuffer) -> PendingWrite {
        let end_position = self.end_position();
        let padded = align_up(self.len as u64) as usize;
        let full_pages = align_down(self.len as u64) as usize;
        let mut next = WriteBuffer::new(fresh, end_position, &self.buffer.as_bytes()[full_pages..self.len]);
        std::mem::swap(self, &mut next);
        let WriteBuffer { mut buffer, file_position, len, .. } = next;
        buffer.as_bytes_mut()[len..padded].fill(0);
        let reusable = padded == buffer.len();
        if !reusable {
            buffer.trim_to_size(padded);
        }
        PendingWrite { buffer, file_position, end_position, reusable }
    }
}
