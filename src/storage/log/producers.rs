//! Walking the batch headers of the whole log, for the broker to rebuild its idempotent
//! producers' state after a restart.
//!
//! Start-up cost: one sequential pass over the bytes of every retained segment (headers
//! parsed, records not decoded, CRCs not checked again; a batch larger than a read chunk is
//! skipped without reading its body). Retention bounds it: the pass never reads more than the
//! partition keeps. A producer-state snapshot at each segment roll (as Kafka does) would bound
//! it to the active segment; not done yet.

use super::PartitionLog;
use crate::storage::batch::BatchHeader;
use crate::storage::error::{StorageError, StorageResult};

impl PartitionLog {
    /// Calls `visit` with the header of every batch in the log, oldest first.
    ///
    /// Meant to run right after [`PartitionLog::open`], before the first append: it reads the
    /// segment files only (at open, everything appended is in them).
    pub async fn visit_batch_headers(&self, mut visit: impl FnMut(&BatchHeader)) -> StorageResult<()> {
        let segments: Vec<_> = {
            let state = self.state.borrow();
            if state.closed {
                return Err(StorageError::Closed);
            }
            state.segments.values().map(|segment| (segment.reader(), segment.size_bytes)).collect()
        };
        for (reader, size_bytes) in segments {
            reader.walk_headers(0, size_bytes, &mut visit).await?;
        }
        Ok(())
    }
}
