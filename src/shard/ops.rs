//! Work that one shard asks another to do for a partition it owns, and the answers. Plain,
//! `Send` data: it crosses cores over the channel mesh. Record batches travel as
//! `bytes::Bytes` (reference-counted, never copied or re-encoded).

use std::sync::Arc;

use bytes::{Bytes, BytesMut};

use crate::model::{ProducerEpoch, ProducerId};
use crate::protocol::{
    ConsumerGroupHeartbeatRequest, ConsumerGroupHeartbeatResponse, DescribeGroupRequest, DescribeGroupResponse,
    ErrorCode, LeaveGroupRequest, LeaveGroupResponse, ListGroupsRequest, ListGroupsResponse, OffsetCommitRequest,
    OffsetCommitResponse, OffsetFetchRequest, OffsetFetchResponse,
};
use crate::server::topics::TopicTable;

/// A partition named by topic and number.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TopicPartition {
    pub topic: String,
    pub partition: u32,
}

#[derive(Debug)]
pub enum ShardOp {
    /// Append validated batches, in order, per partition. Each batch is a uniquely owned slice
    /// of the request's payload: the owner stamps offsets into it in place, without a copy.
    /// `batches` holds every partition's batches back to back, in the order of `topics` and
    /// their partitions (each takes `batch_count` of them).
    Produce {
        acks: i16,
        topics: Vec<ProduceTopicOp>,
        batches: Vec<BytesMut>,
    },
    /// Read from each partition; with `max_wait_ms > 0`, wait until `min_bytes` are there or
    /// the time is up or the fetch is cancelled.
    Fetch {
        fetch_id: u64,
        max_wait_ms: u32,
        min_bytes: u32,
        partitions: Vec<FetchPartitionOp>,
    },
    /// Ends the wait of an earlier `Fetch` at once.
    CancelFetch {
        fetch_id: u64,
    },
    ListOffsets {
        partitions: Vec<(TopicPartition, OffsetQuery)>,
    },
    /// Log start offset and high watermark of each partition.
    PartitionInfo {
        partitions: Vec<TopicPartition>,
    },
    /// On shard 0, the metadata owner: add a topic, persist the table, have every shard adopt it.
    CreateTopic {
        topic: crate::server::topics::TopicConfig,
    },
    /// On shard 0: remove a topic, persist the table, have every shard close and delete its logs.
    DeleteTopic {
        name: String,
    },
    /// Adopt this topic table: open the logs of new partitions this shard owns, close and
    /// delete those of deleted topics.
    ApplyTopics {
        table: Arc<TopicTable>,
    },
    /// On shard 0: hand out a producer id and epoch (InitProducerId).
    InitProducerId {
        transactional_id: Option<String>,
    },
    /// On a group's coordinator shard: one group request, already validated and deserialized
    /// (owned, plain data) by the connection's shard.
    Group(GroupOp),
}

/// A group request for the coordinator shard's [`crate::group::GroupCoordinator`].
#[derive(Debug)]
pub enum GroupOp {
    Heartbeat(ConsumerGroupHeartbeatRequest),
    LeaveGroup(LeaveGroupRequest),
    OffsetCommit(OffsetCommitRequest),
    OffsetFetch(OffsetFetchRequest),
    DescribeGroup(DescribeGroupRequest),
    /// This shard's groups only; the connection's shard asks every shard and merges.
    ListGroups(ListGroupsRequest),
}

/// The answer to a [`GroupOp`]: the wire response, owned.
#[derive(Debug)]
pub enum GroupReply {
    Heartbeat(ConsumerGroupHeartbeatResponse),
    LeaveGroup(LeaveGroupResponse),
    OffsetCommit(OffsetCommitResponse),
    OffsetFetch(OffsetFetchResponse),
    DescribeGroup(DescribeGroupResponse),
    ListGroups(ListGroupsResponse),
}

/// The partitions of one topic in a [`ShardOp::Produce`]. The name is shared by every owner
/// the request's partitions of the topic go to (one allocation per topic and request).
#[derive(Debug)]
pub struct ProduceTopicOp {
    pub topic: Arc<str>,
    pub partitions: Vec<ProducePartitionOp>,
}

/// One partition of a [`ProduceTopicOp`]; `request_index` is its position in the produce
/// request (counting partitions over all topics), which names it in the answer.
#[derive(Clone, Copy, Debug)]
pub struct ProducePartitionOp {
    pub request_index: u32,
    pub partition: u32,
    pub batch_count: u32,
}

/// The outcome of a [`ProducePartitionOp`]: the base offset of its first batch.
#[derive(Debug)]
pub struct ProducedPartition {
    pub request_index: u32,
    pub outcome: Result<u64, (ErrorCode, String)>,
}

#[derive(Clone, Debug)]
pub struct FetchPartitionOp {
    pub topic_partition: TopicPartition,
    pub offset: u64,
    pub max_bytes: u32,
}

#[derive(Clone, Copy, Debug)]
pub enum OffsetQuery {
    Earliest,
    Latest,
    Timestamp(i64),
}

#[derive(Debug)]
pub enum ShardReply {
    Produce(Vec<ProducedPartition>),
    Fetch {
        results: Vec<PartitionResult<FetchedBatches>>,
        /// The shard found less than `min_bytes` at first and long-polled before answering: it
        /// had nothing when asked (see `server::handlers::fetch` for why that matters).
        waited: bool,
    },
    ListOffsets(Vec<PartitionResult<(u64, i64)>>),
    PartitionInfo(Vec<PartitionResult<()>>),
    Group(GroupReply),
    ProducerId {
        producer_id: ProducerId,
        producer_epoch: ProducerEpoch,
    },
    Done,
    /// The op could not run at all (shutting down, unknown op for the state).
    Failed {
        error_code: ErrorCode,
        message: String,
    },
}

/// One partition's outcome: the value, and the log's bounds at that moment.
#[derive(Debug)]
pub struct PartitionResult<T> {
    pub topic_partition: TopicPartition,
    pub outcome: Result<T, (ErrorCode, String)>,
    pub log_start_offset: u64,
    pub high_watermark: u64,
}

#[derive(Debug, Default)]
pub struct FetchedBatches {
    pub batches: Vec<Bytes>,
}

impl FetchedBatches {
    pub fn total_bytes(&self) -> usize {
        self.batches.iter().map(Bytes::len).sum()
    }
}
