//! Errors of the storage layer. Every I/O failure keeps its `io::Error` and says what was being
//! done to which file.

use std::io;
use std::path::PathBuf;

use super::batch::BatchError;
use crate::model::Offset;

#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("{operation} {path}: {source}")]
    Io {
        operation: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// A write or fdatasync failed earlier; the log refuses appends until it is reopened,
    /// because the kernel may have dropped the dirty pages and a retried fsync can succeed
    /// without the data ("fsyncgate").
    #[error("partition log {path} is poisoned by an earlier I/O failure ({cause}); reopen it")]
    Poisoned { path: PathBuf, cause: String },
    #[error("offset {requested} is out of range: the log holds [{log_start}, {log_end})")]
    OffsetOutOfRange { requested: Offset, log_start: Offset, log_end: Offset },
    #[error("invalid batch: {0}")]
    InvalidBatch(#[from] BatchError),
    #[error("batch of {batch_bytes} bytes does not fit in a segment of {segment_bytes} bytes")]
    BatchLargerThanSegment { batch_bytes: usize, segment_bytes: u64 },
    #[error("corrupt data in {path} at position {position}: {reason}")]
    Corrupt { path: PathBuf, position: u64, reason: String },
    #[error("data directory {path} is locked by another process ({detail})")]
    Locked { path: PathBuf, detail: String },
    #[error("invalid log configuration: {0}")]
    InvalidConfig(String),
    #[error("the log is closed")]
    Closed,
}

impl StorageError {
    pub fn io(operation: &'static str, path: impl Into<PathBuf>, source: impl Into<io::Error>) -> Self {
        StorageError::Io { operation, path: path.into(), source: source.into() }
    }
}

pub type StorageResult<T> = Result<T, StorageError>;
