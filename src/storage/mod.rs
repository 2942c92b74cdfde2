//! The per-partition log (DESIGN.md §5).
//!
//! - [`batch`]: the record batch format, builder and validator (plain Rust; FORMAT.md).
//! - [`index`], [`scan`], [`tail_cache`], [`config`], [`meta_file`]: plain Rust pieces of the log.
//! - [`segment`], [`write_buffer`], [`log`]: the kernel-facing part, O_DIRECT segment files
//!   through glommio's `DmaFile`; a [`PartitionLog`] lives on the shard that owns it.
//! - [`dir_lock`]: one process per data directory.
//!
//! On disk, per partition: `topics/<topic>/<partition>/<base offset, 20 digits>.log|.index|.timeindex`,
//! plus `log_start_offset` and, after a clean close, `clean_shutdown`.

pub mod batch;
pub mod buffer_sizing;
pub mod config;
pub mod dir_lock;
pub mod direct_io;
pub mod error;
pub mod index;
pub mod log;
pub mod meta_file;
pub mod scan;
pub mod segment;
pub mod streaming_copy;
pub mod tail_cache;
pub mod write_buffer;

pub use config::{Durability, LogConfig};
pub use dir_lock::DataDirLock;
pub use error::{StorageError, StorageResult};
pub use log::{AppendInfo, PartitionLog, ReadBatches, RecoveryReport};
pub use tail_cache::TailCacheBudget;

use std::path::{Path, PathBuf};

use crate::model::PartitionId;

/// `<data dir>/topics/<topic>/<partition>`: where a partition's log lives, whatever shard
/// owns it.
pub fn partition_dir(data_dir: &Path, topic: &str, partition: PartitionId) -> PathBuf {
    data_dir.join("topics").join(topic).join(partition.0.to_string())
}
