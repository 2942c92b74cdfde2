//! The topic table: every topic's name, partition count and log settings. Plain Rust.
//!
//! Shard 0 owns the table and persists it to `<data dir>/meta/topics.json` (atomically);
//! every shard holds an immutable snapshot (`Arc<TopicTable>`) that shard 0 replaces when a
//! topic is created or deleted.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::storage::meta_file;
use crate::storage::{Durability, LogConfig, StorageError, StorageResult};

pub const META_DIR_NAME: &str = "meta";
pub const TOPICS_FILE_NAME: &str = "topics.json";

/// A topic's settings as stored. `-1` retention means "no limit".
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopicConfig {
    pub name: String,
    pub partitions: u32,
    pub retention_ms: i64,
    pub retention_bytes: i64,
    pub segment_bytes: u64,
    pub segment_ms: u64,
}

impl TopicConfig {
    /// The log configuration of each of this topic's partitions.
    pub fn log_config(&self, durability: Durability) -> LogConfig {
        LogConfig {
            segment_bytes: self.segment_bytes,
            segment_ms: Some(self.segment_ms),
            retention_ms: u64::try_from(self.retention_ms).ok(),
            retention_bytes: u64::try_from(self.retention_bytes).ok(),
            durability,
            ..LogConfig::default()
        }
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopicTable {
    topics: BTreeMap<String, TopicConfig>,
}

impl TopicTable {
    pub fn get(&self, name: &str) -> Option<&TopicConfig> {
        self.topics.get(name)
    }

    pub fn iter(&self) -> impl Iterator<Item = &TopicConfig> {
        self.topics.values()
    }

    pub fn len(&self) -> usize {
        self.topics.len()
    }

    pub fn is_empty(&self) -> bool {
        self.topics.is_empty()
    }

    /// A copy with `topic` added; `None` if a topic of that name exists.
    pub fn with_topic(&self, topic: TopicConfig) -> Option<TopicTable> {
        if self.topics.contains_key(&topic.name) {
            return None;
        }
        let mut next = self.clone();
        next.topics.insert(topic.name.clone(), topic);
        Some(next)
    }

    /// A copy without `name`; `None` if there is no such topic.
    pub fn without_topic(&self, name: &str) -> Option<TopicTable> {
        let mut next = self.clone();
        next.topics.remove(name)?;
        Some(next)
    }

    pub fn load(data_dir: &Path) -> StorageResult<TopicTable> {
        let dir = data_dir.join(META_DIR_NAME);
        let Some(bytes) = meta_file::read_optional(&dir, TOPICS_FILE_NAME)? else {
            return Ok(TopicTable::default());
        };
        serde_json::from_slice(&bytes).map_err(|e| StorageError::Corrupt {
            path: dir.join(TOPICS_FILE_NAME),
            position: e.column() as u64,
            reason: format!("not a valid topic table: {e}"),
        })
    }

    pub fn persist(&self, data_dir: &Path) -> StorageResult<()> {
        let dir = data_dir.join(META_DIR_NAME);
        std::fs::create_dir_all(&dir)
            .map_err(|e| StorageError::io("creating metadata directory", &dir, e))?;
        let json = serde_json::to_vec_pretty(self).map_err(|e| StorageError::Corrupt {
            path: dir.join(TOPICS_FILE_NAME),
            position: 0,
            reason: format!("encoding the topic table: {e}"),
        })?;
        meta_file::write_atomically(&dir, TOPICS_FILE_NAME, &json)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn topic(name: &str) -> TopicConfig {
        TopicConfig {
            name: name.into(),
            partitions: 3,
            retention_ms: -1,
            retention_bytes: 1 << 30,
            segment_bytes: 1 << 20,
            segment_ms: 1000,
        }
    }

    #[test]
    fn the_table_persists_and_refuses_duplicates() {
        let dir = tempfile::tempdir().unwrap();
        assert!(TopicTable::load(dir.path()).unwrap().is_empty());
        let table = TopicTable::default()
            .with_topic(topic("a"))
            .unwrap()
            .with_topic(topic("b"))
            .unwrap();
        assert!(table.with_topic(topic("a")).is_none());
        table.persist(dir.path()).unwrap();
        assert_eq!(TopicTable::load(dir.path()).unwrap(), table);
        let smaller = table.without_topic("a").unwrap();
        assert!(smaller.without_topic("a").is_none());
        assert_eq!(smaller.len(), 1);
    }

    #[test]
    fn a_garbled_table_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join(META_DIR_NAME)).unwrap();
        std::fs::write(
            dir.path().join(META_DIR_NAME).join(TOPICS_FILE_NAME),
            b"{not json",
        )
        .unwrap();
        assert!(matches!(
            TopicTable::load(dir.path()),
            Err(StorageError::Corrupt { .. })
        ));
    }

    #[test]
    fn log_config_maps_unlimited_retention_to_none() {
        let config = topic("a").log_config(Durability::Never);
        assert_eq!(config.retention_ms, None);
        assert_eq!(config.retention_bytes, Some(1 << 30));
        assert_eq!(config.durability, Durability::Never);
    }
}
