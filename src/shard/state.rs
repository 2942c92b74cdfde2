//! A shard's state: the partitions it owns (their open logs), its snapshot of the topic table,
//! its tail-cache budget and its end of the mesh. Lives on one shard (`Rc`, `RefCell`); no
//! borrow is held across an `.await`.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::path::PathBuf;
use std::rc::Rc;
use std::sync::Arc;

use futures::channel::oneshot;

use super::mesh::MeshRouter;
use super::notify::LocalNotify;
use super::ops::TopicPartition;
use super::placement::{owner_shard, ShardId};
use super::producer_ids::ProducerIdBlocks;
use crate::group::producer_state::PartitionProducerState;
use crate::group::{GroupConfig, GroupCoordinator, HEARTBEAT_INTERVAL_MS_DEFAULT};
use crate::model::{Offset, PartitionId};
use crate::server::topics::TopicTable;
use crate::storage::{Durability, PartitionLog, TailCacheBudget};

/// Broker-wide settings, the same on every shard.
#[derive(Clone, Debug)]
pub struct BrokerSettings {
    pub data_dir: PathBuf,
    pub durability: Durability,
    pub shard_count: usize,
    /// The port of each shard's own listener (index = shard id), for Metadata.
    pub shard_ports: Vec<u16>,
    pub tail_cache_bytes: usize,
    pub max_frame_bytes: u32,
    pub max_inflight_requests: usize,
    pub shard_memory_bytes: usize,
    pub default_segment_bytes: u64,
    pub default_segment_ms: u64,
    pub default_retention_ms: i64,
    pub default_retention_bytes: i64,
    /// A group member silent this long is removed.
    pub group_session_timeout_ms: u64,
}

impl BrokerSettings {
    /// The group coordinators' settings: the session timeout from the flag, members told to
    /// heartbeat at least three times per session.
    pub fn group_config(&self) -> GroupConfig {
        let session_timeout_ms = self.group_session_timeout_ms.max(1);
        let heartbeat_interval_ms =
            u32::try_from((session_timeout_ms / 3).max(1)).unwrap_or(u32::MAX).min(HEARTBEAT_INTERVAL_MS_DEFAULT);
        GroupConfig { session_timeout_ms, heartbeat_interval_ms, ..GroupConfig::default() }
    }
}

/// An open partition on its owning shard.
pub struct PartitionHandle {
    pub log: Rc<PartitionLog>,
    /// Fired after every append, for waiting fetches.
    pub appended: LocalNotify,
    durability: Durability,
    /// The idempotent producers' last batches here (rebuilt from the log at open). Never
    /// borrowed across an `.await`.
    pub producers: RefCell<PartitionProducerState>,
    /// Produce requests' turns at this partition, in arrival order: a turn covers a request's
    /// sequence checks and offset assignment, so that pipelined batches of one producer are
    /// judged one after the other, in the order they were sent.
    pub append_turns: super::turns::Turns,
}

impl PartitionHandle {
    pub fn new(log: Rc<PartitionLog>, durability: Durability, producers: PartitionProducerState) -> Self {
        PartitionHandle {
            log,
            appended: LocalNotify::default(),
            durability,
            producers: RefCell::new(producers),
            append_turns: super::turns::Turns::default(),
        }
    }

    /// The offset up to which consumers may read. With `--fsync always` it is the durable
    /// offset, so a consumer never sees a record that a crash could take back; with `interval`
    /// and `never`, which trade that safety away, it is the log end.
    pub fn high_watermark(&self) -> Offset {
        match self.durability {
            Durability::Always => self.log.durable_offset(),
            Durability::IntervalMs(_) | Durability::Never => self.log.log_end_offset(),
        }
    }
}

/// One topic's open partitions on a shard, indexed by partition number. Partition numbers are
/// below the topic's partition count (at most `PARTITIONS_MAX`), so the table stays small.
#[derive(Default)]
struct TopicHandles {
    by_partition: Vec<Option<Rc<PartitionHandle>>>,
    open: usize,
}

impl TopicHandles {
    fn get(&self, partition: u32) -> Option<Rc<PartitionHandle>> {
        self.by_partition.get(partition as usize)?.clone()
    }

    fn insert(&mut self, partition: u32, handle: Rc<PartitionHandle>) {
        let index = partition as usize;
        if index >= self.by_partition.len() {
            self.by_partition.resize(index + 1, None);
        }
        if self.by_partition[index].replace(handle).is_none() {
            self.open += 1;
        }
    }

    fn remove(&mut self, partition: u32) -> Option<Rc<PartitionHandle>> {
        let removed = self.by_partition.get_mut(partition as usize)?.take();
        if removed.is_some() {
            self.open -= 1;
        }
        removed
    }

    fn is_empty(&self) -> bool {
        self.open == 0
    }

    fn iter(&self) -> impl Iterator<Item = (u32, &Rc<PartitionHandle>)> {
        self.by_partition.iter().enumerate().filter_map(|(index, handle)| Some((index as u32, handle.as_ref()?)))
    }
}

pub struct Shard {
    pub id: ShardId,
    pub settings: Arc<BrokerSettings>,
    pub router: Rc<MeshRouter>,
    topics: RefCell<Arc<TopicTable>>,
    /// The open partitions by topic, each topic's indexed by partition number (`None`: not
    /// open here): one hash of the topic name per lookup, none of the number.
    partitions: RefCell<HashMap<String, TopicHandles>>,
    pub cache_budget: Rc<TailCacheBudget>,
    /// Waiting fetches that another shard may cancel, by fetch id.
    pub fetch_cancels: RefCell<HashMap<u64, oneshot::Sender<()>>>,
    next_fetch_id: Cell<u64>,
    pub shutting_down: Cell<bool>,
    /// Serializes topic creation and deletion (used on the metadata shard).
    pub metadata_lock: glommio::sync::Semaphore,
    /// Requests being handled by this shard's connections.
    pub requests_in_flight: Cell<usize>,
    /// The groups whose offsets-topic partitions this shard owns. Never borrowed across an
    /// `.await`.
    pub groups: RefCell<GroupCoordinator>,
    /// Held from a group-state change to the end of its append (heartbeat, leave, describe,
    /// expiry, reload): a request that sees a change in memory is answered only after the
    /// change is durable, even when another request made it.
    pub group_write_lock: glommio::sync::Semaphore,
    /// A reload of the coordinator from the offsets topic is under way.
    pub groups_reloading: Cell<bool>,
    /// The producer-id allocator (shard 0 only), loaded from its file on first use. Never
    /// borrowed across an `.await`.
    pub producer_ids: RefCell<Option<ProducerIdBlocks>>,
    /// Snapshot compaction of the offsets partitions this shard owns.
    pub offsets_snapshots: super::offsets_snapshot::SnapshotState,
    /// The zero of [`Shard::now_ms`].
    started_at: std::time::Instant,
}

impl Shard {
    pub fn new(id: ShardId, settings: Arc<BrokerSettings>, router: Rc<MeshRouter>) -> Rc<Shard> {
        let cache_budget = TailCacheBudget::new(settings.tail_cache_bytes);
        Rc::new(Shard {
            id,
            groups: RefCell::new(GroupCoordinator::new(settings.group_config())),
            settings,
            router,
            topics: RefCell::new(Arc::new(TopicTable::default())),
            partitions: RefCell::new(HashMap::new()),
            cache_budget,
            fetch_cancels: RefCell::new(HashMap::new()),
            next_fetch_id: Cell::new(0),
            shutting_down: Cell::new(false),
            metadata_lock: glommio::sync::Semaphore::new(1),
            requests_in_flight: Cell::new(0),
            group_write_lock: glommio::sync::Semaphore::new(1),
            groups_reloading: Cell::new(false),
            producer_ids: RefCell::new(None),
            offsets_snapshots: Default::default(),
            started_at: std::time::Instant::now(),
        })
    }

    pub fn topics(&self) -> Arc<TopicTable> {
        self.topics.borrow().clone()
    }

    pub fn set_topics(&self, table: Arc<TopicTable>) {
        *self.topics.borrow_mut() = table;
    }

    pub fn owner_of(&self, topic_partition: &TopicPartition) -> ShardId {
        owner_shard(&topic_partition.topic, PartitionId(topic_partition.partition), self.settings.shard_count)
    }

    pub fn partition(&self, topic_partition: &TopicPartition) -> Option<Rc<PartitionHandle>> {
        self.partitions.borrow().get(&topic_partition.topic)?.get(topic_partition.partition)
    }

    /// Appends to `into` the handles of `partitions` of `topic`, in order (`None`: not open
    /// here): one lookup of the topic for all of them.
    pub fn extend_with_partitions(
        &self,
        topic: &str,
        partitions: impl Iterator<Item = u32>,
        into: &mut Vec<Option<Rc<PartitionHandle>>>,
    ) {
        let open = self.partitions.borrow();
        let handles = open.get(topic);
        into.extend(partitions.map(|partition| handles.and_then(|handles| handles.get(partition))));
    }

    pub fn insert_partition(&self, topic_partition: TopicPartition, handle: Rc<PartitionHandle>) {
        let TopicPartition { topic, partition } = topic_partition;
        self.partitions.borrow_mut().entry(topic).or_default().insert(partition, handle);
    }

    pub fn remove_partition(&self, topic_partition: &TopicPartition) -> Option<Rc<PartitionHandle>> {
        let mut open = self.partitions.borrow_mut();
        let handles = open.get_mut(&topic_partition.topic)?;
        let removed = handles.remove(topic_partition.partition);
        if handles.is_empty() {
            open.remove(&topic_partition.topic);
        }
        removed
    }

    /// Every partition this shard has open.
    pub fn open_partitions(&self) -> Vec<(TopicPartition, Rc<PartitionHandle>)> {
        let open = self.partitions.borrow();
        let mut all = Vec::new();
        for (topic, handles) in open.iter() {
            for (partition, handle) in handles.iter() {
                all.push((TopicPartition { topic: topic.clone(), partition }, handle.clone()));
            }
        }
        all
    }

    /// Monotonic milliseconds since this shard started: the group coordinator's clock (it
    /// only compares times).
    pub fn now_ms(&self) -> u64 {
        u64::try_from(self.started_at.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// A fetch id unique across shards: the shard in the top bits.
    pub fn new_fetch_id(&self) -> u64 {
        let counter = self.next_fetch_id.get();
        self.next_fetch_id.set(counter.wrapping_add(1));
        ((self.id.0 as u64) << 48) | (counter & ((1 << 48) - 1))
    }
}
