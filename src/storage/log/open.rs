//! Opening a log: find the segments, load or rebuild their indexes, recover the tail.
//!
//! Recovery cases for the active (last) segment:
//!
//! | clean-shutdown marker                | what open does                                          |
//! |--------------------------------------|---------------------------------------------------------|
//! | present, names this segment and size | trust the marker and the index files: no scan           |
//! | absent, unreadable or mismatched     | scan the whole segment, checking every batch's length,  |
//! |                                      | CRC and offset; cut at the first bad one                 |
//!
//! The active segment's index files exist only between a clean close and the next open,
//! so after a crash the scan starts at position 0 (its "last index entry" is the start).
//! Closed segments were written, synced and cut to size when they rolled, before the next
//! segment was created; their index files are loaded, or rebuilt by a scan when missing or
//! malformed. The marker is removed as soon as the log is open, so that a crash afterwards
//! never trusts a stale one.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::path::Path;
use std::rc::{Rc, Weak};
use std::time::{Duration, Instant};

use glommio::sync::Semaphore;

use super::{LogState, PartitionLog};
use crate::model::Offset;
use crate::storage::buffer_sizing::BufferSizing;
use crate::storage::config::{Durability, LogConfig};
use crate::storage::error::{StorageError, StorageResult};
use crate::storage::meta_file::{self, CleanShutdown, CLEAN_SHUTDOWN_FILE_NAME};
use crate::storage::scan::ScanStop;
use crate::storage::segment::{align_down, parse_segment_file_name, Segment, PAGE_BYTES};
use crate::storage::tail_cache::{TailCache, TailCacheBudget};
use crate::storage::write_buffer::WriteBuffer;

/// What opening a log found and did.
#[derive(Clone, Debug, Default)]
pub struct RecoveryReport {
    pub segments: usize,
    pub clean_shutdown: bool,
    /// Bytes of the tail segment that recovery read and checked.
    pub scanned_bytes: u64,
    pub log_start_offset: Offset,
    pub log_end_offset: Offset,
    /// Set when recovery cut the tail.
    pub truncation: Option<Truncation>,
    /// Segments entirely below the log start, deleted (left over by an interrupted retention).
    pub removed_segments: usize,
}

/// Where recovery cut a torn or corrupt tail, and why.
#[derive(Clone, Debug)]
pub struct Truncation {
    pub segment_base_offset: Offset,
    pub position: u64,
    /// The log end offset after the cut.
    pub next_offset: Offset,
    /// Bytes the file held after the cut point, zeros of the pre-allocation included.
    pub bytes_after_cut: u64,
    pub reason: String,
}

impl PartitionLog {
    /// Opens (or creates) the log in `dir`, recovering its tail if it was not closed cleanly.
    /// The log's tail cache draws on the shard's `cache_budget`.
    pub async fn open(
        dir: &Path,
        config: LogConfig,
        cache_budget: Rc<TailCacheBudget>,
    ) -> StorageResult<(Rc<PartitionLog>, RecoveryReport)> {
        config.validate().map_err(StorageError::InvalidConfig)?;
        crate::storage::direct_io::check_direct_io(dir).await?;
        let mut report = RecoveryReport::default();
        let marker =
            meta_file::read_optional(dir, CLEAN_SHUTDOWN_FILE_NAME)?.and_then(|bytes| CleanShutdown::decode(&bytes));
        let mut bases = list_segment_bases(dir)?;
        let mut log_start = meta_file::read_log_start(dir)?.or(bases.first().copied()).unwrap_or_default();

        // An interrupted retention: segments whose successor starts at or below the log start.
        while bases.len() >= 2 && bases[1] <= log_start {
            remove_segment_files(dir, bases.remove(0))?;
            report.removed_segments += 1;
        }

        let mut segments = BTreeMap::new();
        let closed_count = bases.len().saturating_sub(1);
        for i in 0..closed_count {
            let mut segment = Segment::open(dir, bases[i]).await?;
            if !segment.load_indexes() {
                let whole = rebuild(&mut segment, &config).await?;
                let last_closed = i + 1 == closed_count;
                if last_closed && segment.next_offset < bases[i + 1] {
                    // A crash interrupted this segment's seal (see `roll.rs`): its data ends
                    // before the next segment starts, and nothing from there on was
                    // acknowledged as durable. It becomes the active segment again.
                    cut_after_unsealed(dir, &segment, bases.split_off(i + 1), &mut report)?;
                    break;
                }
                if last_closed && segment.allocated_bytes > segment.size_bytes {
                    // Whole, but its seal did not finish: cut it (the indexes follow).
                    let size = segment.size_bytes;
                    segment.truncate_file(size).await?;
                }
                if whole && segment.next_offset == bases[i + 1] {
                    // So that the next open loads them instead of scanning the segment again.
                    segment.persist_indexes().await?;
                }
            }
            segment.next_offset = bases[i + 1];
            segments.insert(bases[i], segment);
        }

        let active = match bases.last() {
            None => Segment::create(dir, log_start, config.preallocation_target(0, 1)).await?,
            Some(&base) => {
                let mut segment = Segment::open(dir, base).await?;
                recover_active(&mut segment, marker, &config, &mut report).await?;
                segment
            }
        };
        let next = active.next_offset;
        if log_start > next {
            // Retention had emptied the log: nothing below the log start survives.
            log_start = next;
        }
        segments.insert(active.base_offset, active);
        meta_file::remove_if_present(dir, CLEAN_SHUTDOWN_FILE_NAME)?;
        let write_buffer = resume_write_buffer(segments.values().next_back(), &config).await?;
        let buffer_sizing = BufferSizing::new(config.write_buffer_bytes, write_buffer.end_position(), Instant::now());
        if let Some(active) = segments.values().next_back() {
            active.remove_index_files()?;
        }

        report.segments = segments.len();
        report.log_start_offset = log_start;
        report.log_end_offset = next;
        let log = Rc::new_cyclic(|me| PartitionLog {
            me: me.clone(),
            dir: dir.to_path_buf(),
            config,
            state: RefCell::new(LogState {
                segments,
                write_buffer,
                log_start,
                durable: next,
                written: next,
                next,
                cache: TailCache::new(cache_budget),
                in_flight: Default::default(),
                spare_buffers: Vec::new(),
                buffer_sizing,
                #[cfg(test)]
                inject_write_failure: false,
                stats: Default::default(),
                sync_in_flight: false,
                sync_waiters: Vec::new(),
                poisoned: None,
                closed: false,
                active_roll_deadline_ms: None,
                sealing: false,
                seal_waiters: Vec::new(),
                index_writes: Vec::new(),
                preallocation: None,
                preallocation_refused_at: None,
            }),
            append_lock: Semaphore::new(1),
            flush_lock: Semaphore::new(1),
        });
        if let Durability::IntervalMs(interval_ms) = log.config.durability {
            spawn_interval_sync(Rc::downgrade(&log), interval_ms);
        }
        Ok((log, report))
    }
}

/// Base offsets of the `.log` files in `dir`, ascending.
fn list_segment_bases(dir: &Path) -> StorageResult<Vec<Offset>> {
    let entries = std::fs::read_dir(dir).map_err(|e| StorageError::io("listing partition directory", dir, e))?;
    let mut bases = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| StorageError::io("listing partition directory", dir, e))?;
        if let Some(base) = entry.file_name().to_str().and_then(parse_segment_file_name) {
            bases.push(base);
        }
    }
    bases.sort();
    Ok(bases)
}

pub(super) fn remove_segment_files(dir: &Path, base: Offset) -> StorageResult<()> {
    for extension in ["log", "index", "timeindex"] {
        let path = dir.join(crate::storage::segment::segment_file_name(base, extension));
        match std::fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(StorageError::io("removing segment file", path, e)),
        }
    }
    meta_file::sync_dir(dir).map_err(|e| StorageError::io("syncing directory", dir, e))
}

/// Forgets what the segment's indexes said and rebuilds them, with its size and next offset,
/// by checking every batch of its first `file_bytes` bytes. Returns where the valid data ends,
/// why the scan stopped there (if not at the end), and how many batches it found.
async fn rescan(
    segment: &mut Segment,
    file_bytes: u64,
    config: &LogConfig,
) -> StorageResult<(u64, Option<ScanStop>, usize)> {
    segment.forget_after(0, segment.base_offset);
    segment.index = crate::storage::index::OffsetIndex::new(segment.base_offset);
    segment.time_index = crate::storage::index::TimeIndex::new(segment.base_offset);
    let mut found = Vec::new();
    let (end, stop) = segment
        .reader()
        .walk(0, segment.base_offset, file_bytes, |batch, _| {
            found.push(*batch);
            true
        })
        .await?;
    for batch in &found {
        segment.record_batch(batch, config.index_interval_bytes);
    }
    segment.written_bytes = segment.size_bytes;
    debug_assert_eq!(end, segment.size_bytes);
    Ok((end, stop.filter(|stop| *stop != ScanStop::EndOfData), found.len()))
}

/// Removes the segments (`later` base offsets) that follow a segment whose seal a crash
/// interrupted, and reports the cut.
fn cut_after_unsealed(
    dir: &Path,
    unsealed: &Segment,
    later: Vec<Offset>,
    report: &mut RecoveryReport,
) -> StorageResult<()> {
    let reason = format!(
        "segment {} was not sealed: its data ends at offset {}, before the next segment's base {}",
        unsealed.base_offset,
        unsealed.next_offset,
        later.first().copied().unwrap_or(unsealed.next_offset)
    );
    tracing::warn!(segment = %unsealed.log_path.display(), removed_segments = later.len(), %reason, "recovery cut the log after an unsealed segment");
    for base in &later {
        remove_segment_files(dir, *base)?;
    }
    report.truncation = Some(Truncation {
        segment_base_offset: unsealed.base_offset,
        position: unsealed.size_bytes,
        next_offset: unsealed.next_offset,
        bytes_after_cut: unsealed.allocated_bytes.saturating_sub(unsealed.size_bytes),
        reason,
    });
    Ok(())
}

/// Rebuilds a closed segment's indexes by scanning all of it. Returns whether every batch
/// checked out (the scan reached the end of the data).
async fn rebuild(segment: &mut Segment, config: &LogConfig) -> StorageResult<bool> {
    let file_bytes = segment.size_bytes;
    let (_, stop, batches) = rescan(segment, file_bytes, config).await?;
    if let Some(stop) = &stop {
        tracing::warn!(segment = %segment.log_path.display(), %stop, "closed segment has a bad batch; reads stop before it");
    }
    tracing::info!(segment = %segment.log_path.display(), batches, "rebuilt segment indexes");
    Ok(stop.is_none())
}

/// Brings the active segment to a known-good end: trusts a matching clean-shutdown marker, or
/// scans and cuts.
async fn recover_active(
    segment: &mut Segment,
    marker: Option<CleanShutdown>,
    config: &LogConfig,
    report: &mut RecoveryReport,
) -> StorageResult<()> {
    let file_bytes = segment.allocated_bytes;
    if let Some(marker) =
        marker.filter(|m| m.active_base_offset == segment.base_offset && m.active_size_bytes <= file_bytes)
    {
        let size = marker.active_size_bytes;
        segment.size_bytes = size;
        segment.written_bytes = size;
        if segment.load_indexes() {
            segment.next_offset = marker.next_offset;
            report.clean_shutdown = true;
            return Ok(());
        }
    }
    // No clean close: the active segment's index was never persisted while it was active
    // (open removes it), so every batch of the segment is checked, from the start.
    let (end, stop, _) = rescan(segment, file_bytes, config).await?;
    report.scanned_bytes = end;
    if let Some(stop) = stop {
        let truncation = Truncation {
            segment_base_offset: segment.base_offset,
            position: end,
            next_offset: segment.next_offset,
            bytes_after_cut: file_bytes - end,
            reason: stop.to_string(),
        };
        tracing::warn!(
            segment = %segment.log_path.display(),
            position = end,
            log_end_offset = %segment.next_offset,
            bytes_after_cut = truncation.bytes_after_cut,
            reason = %truncation.reason,
            "recovery cut a torn or corrupt tail"
        );
        report.truncation = Some(truncation);
    }
    // Cut the file at the valid end, so that stale bytes after it can never be scanned as
    // data again, then pre-allocate afresh (the new extent reads as zeros).
    segment.truncate_file(end).await?;
    segment.ensure_allocated(config.preallocation_target(end, end + 1)).await
}

/// A write buffer that continues the active segment: it holds the segment's last partial page.
async fn resume_write_buffer(active: Option<&Segment>, config: &LogConfig) -> StorageResult<WriteBuffer> {
    let Some(active) = active else {
        return Err(StorageError::InvalidConfig("a log needs an active segment".into()));
    };
    let end = active.size_bytes;
    let page_start = align_down(end);
    let partial = if end > page_start {
        let page = active.reader().read_range(page_start, PAGE_BYTES).await?;
        let wanted = (end - page_start) as usize;
        if page.len() < wanted {
            return Err(StorageError::Corrupt {
                path: active.log_path.clone(),
                position: page_start,
                reason: format!("the last page holds {} bytes, expected {wanted}", page.len()),
            });
        }
        page[..wanted].to_vec()
    } else {
        Vec::new()
    };
    let first_buffer_bytes = BufferSizing::new(config.write_buffer_bytes, end, Instant::now()).buffer_bytes();
    Ok(WriteBuffer::new(active.alloc_buffer(first_buffer_bytes), end, &partial))
}

/// `Durability::IntervalMs`: write and sync the log every `interval_ms` while it lives.
fn spawn_interval_sync(log: Weak<PartitionLog>, interval_ms: u64) {
    glommio::spawn_local(async move {
        loop {
            glommio::timer::sleep(Duration::from_millis(interval_ms)).await;
            let Some(log) = log.upgrade() else { break };
            if log.state.borrow().closed {
                break;
            }
            if let Err(error) = log.flush(true).await {
                tracing::error!(dir = %log.dir.display(), %error, "interval sync failed");
                break;
            }
        }
    })
    .detach();
}
