//! The broker's producer-id allocator (InitProducerId), on the metadata shard (shard 0).
//!
//! Ids are handed out from blocks of [`PRODUCER_ID_BLOCK_SIZE`]. Before the first id of a block
//! is given, the block's upper bound is written to `<data dir>/meta/producer_ids` atomically
//! (temp file, fsync, rename, directory fsync). After a restart, even a `kill -9`, allocation
//! resumes at the persisted bound, so no id is ever handed out twice; a crash wastes at most
//! the rest of one block. The file is decimal text: the first id no process has handed out.

use std::path::{Path, PathBuf};

use super::ops::ShardReply;
use super::state::Shard;
use crate::group::producer_state::ProducerIdManager;
use crate::model::{ProducerEpoch, ProducerId};
use crate::protocol::ErrorCode;
use crate::server::topics::META_DIR_NAME;
use crate::storage::meta_file;
use crate::storage::{StorageError, StorageResult};

pub const PRODUCER_IDS_FILE_NAME: &str = "producer_ids";
/// Ids reserved by one write of the file.
pub const PRODUCER_ID_BLOCK_SIZE: i64 = 1_000;

/// [`ProducerIdManager`] with its block bound persisted. See the module doc.
#[derive(Debug)]
pub struct ProducerIdBlocks {
    dir: PathBuf,
    manager: ProducerIdManager,
    /// Ids below this may be handed out: it is in the file.
    persisted_limit: i64,
}

impl ProducerIdBlocks {
    /// Loads the bound from `<data_dir>/meta/producer_ids` (0 when absent).
    pub fn load(data_dir: &Path) -> StorageResult<ProducerIdBlocks> {
        let dir = data_dir.join(META_DIR_NAME);
        let limit = match meta_file::read_optional(&dir, PRODUCER_IDS_FILE_NAME)? {
            None => 0,
            Some(bytes) => std::str::from_utf8(&bytes)
                .ok()
                .and_then(|text| text.trim().parse::<i64>().ok())
                .filter(|limit| *limit >= 0)
                .ok_or_else(|| StorageError::Corrupt {
                    path: dir.join(PRODUCER_IDS_FILE_NAME),
                    position: 0,
                    reason: "not a non-negative decimal producer id".into(),
                })?,
        };
        Ok(ProducerIdBlocks { dir, manager: ProducerIdManager::new(limit), persisted_limit: limit })
    }

    /// A producer id and epoch (see [`ProducerIdManager::init`]); persists a new block bound
    /// first when the current block is used up.
    pub fn init(&mut self, transactional_id: Option<&str>) -> StorageResult<(ProducerId, ProducerEpoch)> {
        let next = self.manager.next_producer_id();
        if next >= self.persisted_limit {
            let Some(limit) = next.checked_add(PRODUCER_ID_BLOCK_SIZE) else {
                return Err(StorageError::InvalidConfig("producer ids are exhausted".into()));
            };
            std::fs::create_dir_all(&self.dir)
                .map_err(|e| StorageError::io("creating metadata directory", &self.dir, e))?;
            meta_file::write_atomically(&self.dir, PRODUCER_IDS_FILE_NAME, limit.to_string().as_bytes())?;
            self.persisted_limit = limit;
        }
        Ok(self.manager.init(transactional_id))
    }
}

/// Runs InitProducerId on the metadata shard: loads the allocator on first use, then hands out
/// an id. Synchronous (the rare block write is a small blocking file write, like the topic
/// table's), so two calls never interleave.
pub fn init_producer_id(shard: &Shard, transactional_id: Option<&str>) -> ShardReply {
    let mut slot = shard.producer_ids.borrow_mut();
    let blocks = match slot.as_mut() {
        Some(blocks) => blocks,
        None => match ProducerIdBlocks::load(&shard.settings.data_dir) {
            Ok(loaded) => slot.insert(loaded),
            Err(error) => {
                return ShardReply::Failed { error_code: ErrorCode::StorageError, message: error.to_string() }
            }
        },
    };
    match blocks.init(transactional_id) {
        Ok((producer_id, producer_epoch)) => ShardReply::ProducerId { producer_id, producer_epoch },
        Err(error) => ShardReply::Failed { error_code: ErrorCode::StorageError, message: error.to_string() },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Guards id uniqueness across restarts: the block bound is on disk before an id of the
    /// block is handed out, so a restart (even without a clean close) resumes above every id
    /// handed out; a garbled file is a clear error, not a reset to 0.
    #[test]
    fn ids_are_never_reused_after_a_restart() {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut ids = ProducerIdBlocks::load(dir.path()).expect("load");
        let first: Vec<i64> = (0..3).map(|_| ids.init(None).expect("init").0 .0).collect();
        assert_eq!(first, [0, 1, 2]);
        let on_disk = std::fs::read_to_string(dir.path().join(META_DIR_NAME).join(PRODUCER_IDS_FILE_NAME)).unwrap();
        assert_eq!(on_disk, PRODUCER_ID_BLOCK_SIZE.to_string());
        drop(ids); // a crash: nothing more is written

        let mut ids = ProducerIdBlocks::load(dir.path()).expect("reload");
        let (id, epoch) = ids.init(None).expect("init");
        assert_eq!((id, epoch), (ProducerId(PRODUCER_ID_BLOCK_SIZE), ProducerEpoch(0)));
        for _ in 1..PRODUCER_ID_BLOCK_SIZE {
            ids.init(None).expect("init");
        }
        // The second block is used up: the next id persists a third bound first.
        assert_eq!(ids.init(None).expect("init").0, ProducerId(2 * PRODUCER_ID_BLOCK_SIZE));
        let on_disk = std::fs::read_to_string(dir.path().join(META_DIR_NAME).join(PRODUCER_IDS_FILE_NAME)).unwrap();
        assert_eq!(on_disk, (3 * PRODUCER_ID_BLOCK_SIZE).to_string());

        std::fs::write(dir.path().join(META_DIR_NAME).join(PRODUCER_IDS_FILE_NAME), b"-5").unwrap();
        assert!(matches!(ProducerIdBlocks::load(dir.path()), Err(StorageError::Corrupt { .. })));
    }
}
