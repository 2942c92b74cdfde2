//! One segment of a partition's log: a `.log` file of batches back to back, written with
//! O_DIRECT through glommio's `DmaFile`, and its in-memory sparse indexes.
//!
//! Kernel-facing: this file and [`super::log`] are the only storage code that touches glommio.
//! A segment lives on the shard that owns its partition.
//!
//! Positions: `size_bytes` is the logical end (whole batches, including those still in the
//! write buffer); `written_bytes` is how much of the file holds data written by a completed
//! O_DIRECT write — reads from disk never go past it. The file itself is longer: it is
//! pre-allocated in large steps, and the region past the logical end reads as zeros.

use std::path::{Path, PathBuf};
use std::rc::Rc;

use glommio::io::{DmaBuffer, DmaFile, OpenOptions};

use super::error::{StorageError, StorageResult};
use super::index::{OffsetIndex, TimeIndex};
use super::scan::{scan_chunk, ScanStop, ScannedBatch};
use crate::model::{Offset, TimestampMs};

/// O_DIRECT unit: every write starts at a multiple of this and has a length that is one.
/// 4096 covers every NVMe logical block size in use.
pub const PAGE_BYTES: usize = 4096;
/// Recovery and reads fetch at least this much per DMA read.
pub const READ_CHUNK_BYTES: usize = 256 << 10;

const _: () = assert!(PAGE_BYTES.is_power_of_two());
const _: () = assert!(READ_CHUNK_BYTES % PAGE_BYTES == 0);

pub fn align_down(position: u64) -> u64 {
    position & !(PAGE_BYTES as u64 - 1)
}

pub fn align_up(position: u64) -> u64 {
    align_down(position + PAGE_BYTES as u64 - 1)
}

/// `<base offset, 20 digits>.<extension>`, Kafka's naming.
pub fn segment_file_name(base_offset: Offset, extension: &str) -> String {
    format!("{:020}.{extension}", base_offset.0)
}

/// The base offset a `.log` file name stands for, or `None` for any other file.
pub fn parse_segment_file_name(name: &str) -> Option<Offset> {
    let digits = name.strip_suffix(".log")?;
    if digits.len() != 20 || !digits.bytes().all(|byte| byte.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok().map(Offset)
}

/// A segment's files and in-memory state. Owned by the partition's shard.
pub struct Segment {
    pub base_offset: Offset,
    pub file: Rc<DmaFile>,
    pub log_path: PathBuf,
    pub size_bytes: u64,
    pub written_bytes: u64,
    /// Offset after the last batch of the segment (its base offset while empty).
    pub next_offset: Offset,
    pub max_timestamp: Option<TimestampMs>,
    pub index: OffsetIndex,
    pub time_index: TimeIndex,
    /// Bytes appended since the last index entry.
    bytes_since_index_entry: u64,
    /// The file's allocated length (pre-allocation included).
    pub allocated_bytes: u64,
}

impl Segment {
    /// Creates an empty segment file named by `base_offset` and pre-allocates `preallocate_bytes`.
    pub async fn create(dir: &Path, base_offset: Offset, preallocate_bytes: u64) -> StorageResult<Segment> {
        let log_path = dir.join(segment_file_name(base_offset, "log"));
        let file = OpenOptions::new()
            .create(true)
            .truncate(true)
            .read(true)
            .write(true)
            .dma_open(&log_path)
            .await
            .map_err(|e| StorageError::io("creating segment", &log_path, e))?;
        let mut segment = Segment::with_file(base_offset, file, log_path, 0);
        segment.ensure_allocated(preallocate_bytes).await?;
        Ok(segment)
    }

    /// Opens an existing segment file; its indexes start empty (see [`Segment::load_indexes`]).
    pub async fn open(dir: &Path, base_offset: Offset) -> StorageResult<Segment> {
        let log_path = dir.join(segment_file_name(base_offset, "log"));
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .dma_open(&log_path)
            .await
            .map_err(|e| StorageError::io("opening segment", &log_path, e))?;
        let file_bytes = file.file_size().await.map_err(|e| StorageError::io("sizing segment", &log_path, e))?;
        let mut segment = Segment::with_file(base_offset, file, log_path, file_bytes);
        segment.allocated_bytes = file_bytes;
        Ok(segment)
    }

    fn with_file(base_offset: Offset, file: DmaFile, log_path: PathBuf, size_bytes: u64) -> Segment {
        Segment {
            base_offset,
            file: Rc::new(file),
            log_path,
            size_bytes,
            written_bytes: size_bytes,
            next_offset: base_offset,
            max_timestamp: None,
            index: OffsetIndex::new(base_offset),
            time_index: TimeIndex::new(base_offset),
            bytes_since_index_entry: 0,
            allocated_bytes: 0,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.next_offset == self.base_offset
    }

    pub fn path_with_extension(&self, extension: &str) -> PathBuf {
        self.log_path.with_extension(extension)
    }

    /// Accounts for a batch appended at the logical end: size, next offset, indexes.
    pub fn record_batch(&mut self, batch: &ScannedBatch, index_interval_bytes: u32) {
        debug_assert_eq!(batch.position, self.size_bytes, "batches are appended back to back");
        debug_assert_eq!(batch.base_offset, self.next_offset, "offsets are contiguous");
        if self.index.is_empty() || self.bytes_since_index_entry >= u64::from(index_interval_bytes) {
            if let Ok(position) = u32::try_from(batch.position) {
                self.index.push(batch.base_offset, position);
            }
            self.time_index.push(batch.max_timestamp, batch.base_offset);
            self.bytes_since_index_entry = 0;
        }
        self.bytes_since_index_entry += u64::from(batch.length);
        self.size_bytes = batch.position + u64::from(batch.length);
        self.next_offset = batch.next_offset;
        if self.max_timestamp.is_none_or(|max| batch.max_timestamp > max) {
            self.max_timestamp = Some(batch.max_timestamp);
            self.time_index.push(batch.max_timestamp, batch.base_offset);
        }
    }

    /// Grows the file to `target_bytes` by fallocate (without KEEP_SIZE: the file size moves
    /// now, so a later fdatasync has no size to update). Nothing to do if it is that long.
    pub async fn ensure_allocated(&mut self, target_bytes: u64) -> StorageResult<()> {
        if target_bytes <= self.allocated_bytes {
            return Ok(());
        }
        self.file
            .pre_allocate(target_bytes, false)
            .await
            .map_err(|e| StorageError::io("pre-allocating segment", &self.log_path, e))?;
        self.allocated_bytes = target_bytes;
        Ok(())
    }

    /// A handle for reading the file without borrowing the segment (reads await; the log's
    /// state must not stay borrowed meanwhile).
    pub fn reader(&self) -> SegmentReader {
        SegmentReader { file: self.file.clone(), log_path: self.log_path.clone() }
    }

    /// Loads the `.index` / `.timeindex` files if they are present and well formed. Returns
    /// false when they are not (the caller then rebuilds them by a scan).
    pub fn load_indexes(&mut self) -> bool {
        let (Ok(offsets), Ok(times)) =
            (std::fs::read(self.path_with_extension("index")), std::fs::read(self.path_with_extension("timeindex")))
        else {
            return false;
        };
        match (OffsetIndex::decode(self.base_offset, &offsets), TimeIndex::decode(self.base_offset, &times)) {
            (Ok(index), Ok(time_index)) => {
                let fits = index.last().is_none_or(|entry| u64::from(entry.position) < self.size_bytes.max(1));
                if !fits {
                    return false;
                }
                self.max_timestamp = time_index.max_timestamp();
                self.index = index;
                self.time_index = time_index;
                true
            }
            _ => false,
        }
    }

    /// Writes the indexes next to the log file, atomically and durably, on the executor's
    /// blocking thread: each file is written, fdatasynced, renamed into place and its directory
    /// synced, four syncs that would otherwise stop every partition of the shard for a
    /// millisecond or more. The indexes are copied first, so the segment is not borrowed while
    /// the writes run.
    pub fn persist_indexes(&self) -> impl std::future::Future<Output = StorageResult<()>> {
        let dir = self.log_path.parent().unwrap_or(Path::new(".")).to_path_buf();
        let files = [
            (segment_file_name(self.base_offset, "index"), self.index.encode()),
            (segment_file_name(self.base_offset, "timeindex"), self.time_index.encode()),
        ];
        glommio::executor().spawn_blocking(move || {
            files.iter().try_for_each(|(name, contents)| super::meta_file::write_atomically(&dir, name, contents))
        })
    }

    /// Removes the index files (they are rewritten when the segment closes).
    pub fn remove_index_files(&self) -> StorageResult<()> {
        for extension in ["index", "timeindex"] {
            let path = self.path_with_extension(extension);
            match std::fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(StorageError::io("removing index", path, e)),
            }
        }
        Ok(())
    }

    /// Resets the in-memory state to the first `position` bytes, holding batches up to
    /// `next_offset`.
    pub fn forget_after(&mut self, position: u64, next_offset: Offset) {
        self.size_bytes = position;
        self.written_bytes = self.written_bytes.min(position);
        self.next_offset = next_offset;
        if let Ok(position) = u32::try_from(position) {
            self.index.truncate_to_position(position);
        }
        self.time_index.truncate_to_offset(next_offset);
        self.max_timestamp = self.time_index.max_timestamp();
        // The next batch gets an entry, standing in for the ones just dropped.
        self.bytes_since_index_entry = u64::MAX / 2;
    }

    /// Cuts the file at `position`: the bytes after it are gone for good, even after a crash.
    pub async fn truncate_file(&mut self, position: u64) -> StorageResult<()> {
        self.file.truncate(position).await.map_err(|e| StorageError::io("truncating segment", &self.log_path, e))?;
        self.allocated_bytes = position;
        self.file.fdatasync().await.map_err(|e| StorageError::io("syncing segment", &self.log_path, e))
    }

    /// Allocates an aligned buffer usable for this file's O_DIRECT writes.
    pub fn alloc_buffer(&self, bytes: usize) -> DmaBuffer {
        self.file.alloc_dma_buffer(bytes)
    }
}

/// Reads batches of one segment file; holds the file open even if retention drops the segment
/// meanwhile.
pub struct SegmentReader {
    file: Rc<DmaFile>,
    log_path: PathBuf,
}

impl SegmentReader {
    /// Reads `[position, position + length)` of the file into memory with one aligned DMA read
    /// (fewer bytes at the end of the file).
    pub async fn read_range(&self, position: u64, length: usize) -> StorageResult<Vec<u8>> {
        let start = align_down(position);
        let end = align_up(position + length as u64);
        let read = self
            .file
            .read_at_aligned(start, (end - start) as usize)
            .await
            .map_err(|e| StorageError::io("reading segment", &self.log_path, e))?;
        let skip = (position - start) as usize;
        let available = read.len().saturating_sub(skip).min(length);
        Ok(read.get(skip..skip + available).map(<[u8]>::to_vec).unwrap_or_default())
    }

    /// Walks the valid batches from `position` (where the batch with base offset
    /// `expected_offset` starts) up to `end_position`, calling `visit` for each until it returns
    /// false. Returns why the walk stopped early, if it did, and the position it stopped at.
    pub async fn walk(
        &self,
        mut position: u64,
        mut expected_offset: Offset,
        end_position: u64,
        mut visit: impl FnMut(&ScannedBatch, &[u8]) -> bool,
    ) -> StorageResult<(u64, Option<ScanStop>)> {
        let mut chunk_bytes = READ_CHUNK_BYTES;
        while position < end_position {
            let want = chunk_bytes.min((end_position - position) as usize);
            let chunk = self.read_range(position, want).await?;
            let scan = scan_chunk(&chunk, position, expected_offset, usize::MAX);
            for batch in &scan.batches {
                let start = (batch.position - position) as usize;
                let bytes = &chunk[start..start + batch.length as usize];
                if !visit(batch, bytes) {
                    return Ok((batch.position + u64::from(batch.length), None));
                }
            }
            if let Some(last) = scan.batches.last() {
                expected_offset = last.next_offset;
            }
            position += scan.consumed_bytes as u64;
            if let Some(stop) = scan.stop {
                return Ok((position, Some(stop)));
            }
            if scan.consumed_bytes == 0 && scan.incomplete_batch_bytes.is_none() {
                break; // nothing but a short run of zeros before the end
            }
            match scan.incomplete_batch_bytes {
                // The chunk ended inside a batch: read again from it, big enough to hold it.
                Some(needed) if scan.consumed_bytes == 0 => {
                    if position + u64::from(needed) > end_position || chunk.len() < want {
                        return Ok((position, Some(torn(needed, end_position - position))));
                    }
                    chunk_bytes = (needed as usize).max(READ_CHUNK_BYTES);
                }
                Some(_) => chunk_bytes = READ_CHUNK_BYTES,
                None if chunk.len() < want => break,
                None => {}
            }
        }
        Ok((position, None))
    }
}

impl SegmentReader {
    /// Visits the header of every batch in `[position, end_position)`, oldest first, stepping
    /// from header to header by each batch's length: records are not decoded and CRCs are not
    /// checked (the caller walks a segment that recovery already checked). Reads in chunks of
    /// [`READ_CHUNK_BYTES`]; a batch larger than a chunk is skipped without reading its body.
    /// Stops at the first header that does not parse (zeros: the end of the written data).
    pub async fn walk_headers(
        &self,
        mut position: u64,
        end_position: u64,
        mut visit: impl FnMut(&super::batch::BatchHeader),
    ) -> StorageResult<()> {
        use super::batch::{BatchHeader, BATCH_HEADER_BYTES};
        // Bounded: every round either returns or moves `position` forward by a whole batch.
        while position + BATCH_HEADER_BYTES as u64 <= end_position {
            let want = READ_CHUNK_BYTES.min((end_position - position) as usize);
            let chunk = self.read_range(position, want).await?;
            let mut consumed: usize = 0;
            while let Some(rest) = chunk.get(consumed..).filter(|rest| rest.len() >= BATCH_HEADER_BYTES) {
                let Ok(header) = BatchHeader::parse(rest) else {
                    return Ok(());
                };
                let length = header.batch_length as usize;
                if length == 0 {
                    return Ok(());
                }
                visit(&header);
                consumed += length;
            }
            if consumed == 0 {
                return Ok(()); // a short read at the end of the file
            }
            position += consumed as u64;
        }
        Ok(())
    }
}

fn torn(needed: u32, available: u64) -> ScanStop {
    ScanStop::Corrupt(super::batch::BatchError::TooShort { needed: needed as usize, got: available as usize })
}
