//! What the owning shard does with a [`ShardOp`]: append, read (with long poll), look up
//! offsets, adopt a new topic table. The same code runs for a local call and for one that
//! came over the mesh.

use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use futures::future::{join_all, select, Either};
use futures::FutureExt;

use super::ops::{FetchPartitionOp, FetchedBatches, OffsetQuery, PartitionResult, ShardOp, ShardReply, TopicPartition};
use super::state::{PartitionHandle, Shard};
use crate::model::{LeaderEpoch, Offset, PartitionId, TimestampMs};
use crate::protocol::ErrorCode;
use crate::server::topics::TopicTable;
use crate::storage::{partition_dir, PartitionLog, StorageError};

/// The leader epoch stamped on every batch until replication exists.
pub const LEADER_EPOCH: LeaderEpoch = LeaderEpoch(0);

pub async fn execute(shard: Rc<Shard>, op: ShardOp) -> ShardReply {
    if shard.shutting_down.get() && !matches!(op, ShardOp::CancelFetch { .. }) {
        return ShardReply::Failed {
            error_code: ErrorCode::BrokerShuttingDown,
            message: "the broker is shutting down".into(),
        };
    }
    match op {
        ShardOp::Produce { topics, batches, .. } => {
            ShardReply::Produce(super::produce::produce(&shard, topics, batches).await)
        }
        ShardOp::Fetch { fetch_id, max_wait_ms, min_bytes, partitions } => {
            let (results, waited) = fetch(&shard, fetch_id, max_wait_ms, min_bytes, partitions).await;
            ShardReply::Fetch { results, waited }
        }
        ShardOp::CancelFetch { fetch_id } => {
            if let Some(cancel) = shard.fetch_cancels.borrow_mut().remove(&fetch_id) {
                let _ = cancel.send(());
            }
            ShardReply::Done
        }
        ShardOp::ListOffsets { partitions } => {
            let lookups = partitions.into_iter().map(|(tp, query)| list_offset(&shard, tp, query));
            ShardReply::ListOffsets(join_all(lookups).await)
        }
        ShardOp::PartitionInfo { partitions } => {
            ShardReply::PartitionInfo(partitions.into_iter().map(|tp| with_partition(&shard, tp, |_| Ok(()))).collect())
        }
        ShardOp::CreateTopic { topic } => super::metadata::create_topic(&shard, topic).await,
        ShardOp::DeleteTopic { name } => super::metadata::delete_topic(&shard, name).await,
        ShardOp::ApplyTopics { table } => match apply_topics(&shard, table).await {
            Ok(()) => ShardReply::Done,
            Err(message) => ShardReply::Failed { error_code: ErrorCode::StorageError, message },
        },
        ShardOp::InitProducerId { transactional_id } => {
            super::producer_ids::init_producer_id(&shard, transactional_id.as_deref())
        }
        ShardOp::Group(op) => ShardReply::Group(super::groups::execute_group(&shard, op).await),
    }
}

/// The wire code for a storage error, and its message.
pub fn storage_error(error: &StorageError) -> (ErrorCode, String) {
    let code = match error {
        StorageError::InvalidBatch(_) | StorageError::Corrupt { .. } => ErrorCode::CorruptMessage,
        StorageError::OffsetOutOfRange { .. } => ErrorCode::OffsetOutOfRange,
        StorageError::BatchLargerThanSegment { .. } => ErrorCode::MessageTooLarge,
        StorageError::Closed => ErrorCode::BrokerShuttingDown,
        StorageError::InvalidConfig(_) => ErrorCode::InvalidConfig,
        StorageError::Io { .. } | StorageError::Poisoned { .. } | StorageError::Locked { .. } => {
            ErrorCode::StorageError
        }
    };
    (code, error.to_string())
}

fn unknown_partition(tp: &TopicPartition) -> (ErrorCode, String) {
    (ErrorCode::UnknownTopicOrPartition, format!("unknown topic or partition {}/{}", tp.topic, tp.partition))
}

/// A result for `tp` computed by `f` from its handle, with the log bounds filled in.
fn with_partition<T>(
    shard: &Shard,
    tp: TopicPartition,
    f: impl FnOnce(&PartitionHandle) -> Result<T, (ErrorCode, String)>,
) -> PartitionResult<T> {
    match shard.partition(&tp) {
        Some(handle) => PartitionResult {
            outcome: f(&handle),
            log_start_offset: handle.log.log_start_offset().0,
            high_watermark: handle.high_watermark().0,
            topic_partition: tp,
        },
        None => PartitionResult {
            outcome: Err(unknown_partition(&tp)),
            log_start_offset: 0,
            high_watermark: 0,
            topic_partition: tp,
        },
    }
}

/// `outcome` for `tp`, with the bounds of its log as they are now.
fn bounded<T>(
    tp: TopicPartition,
    handle: &PartitionHandle,
    outcome: Result<T, (ErrorCode, String)>,
) -> PartitionResult<T> {
    PartitionResult {
        topic_partition: tp,
        outcome,
        log_start_offset: handle.log.log_start_offset().0,
        high_watermark: handle.high_watermark().0,
    }
}

/// Reads every partition; waits (up to `max_wait_ms`, woken by appends, cancellable) until at
/// least `min_bytes` are there. Also says whether it had to wait.
async fn fetch(
    shard: &Rc<Shard>,
    fetch_id: u64,
    max_wait_ms: u32,
    min_bytes: u32,
    partitions: Vec<FetchPartitionOp>,
) -> (Vec<PartitionResult<FetchedBatches>>, bool) {
    let deadline = std::time::Instant::now() + Duration::from_millis(u64::from(max_wait_ms));
    let (cancel_sender, cancel_receiver) = futures::channel::oneshot::channel::<()>();
    shard.fetch_cancels.borrow_mut().insert(fetch_id, cancel_sender);
    let mut cancel = cancel_receiver.fuse();
    let mut waited = false;
    // Bounded: each round either returns or waits for an append, the deadline or a cancel.
    let results = loop {
        // Register for wake-ups before reading, so an append during the read is not missed.
        let wakeups: Vec<_> = partitions
            .iter()
            .filter_map(|p| shard.partition(&p.topic_partition))
            .map(|handle| handle.appended.notified())
            .collect();
        let results = join_all(partitions.iter().map(|p| read_partition(shard, p))).await;
        let total: usize =
            results.iter().map(|r| r.outcome.as_ref().map(FetchedBatches::total_bytes).unwrap_or(0)).sum();
        let any_error = results.iter().any(|r| r.outcome.is_err());
        let now = std::time::Instant::now();
        if total >= min_bytes as usize || any_error || now >= deadline || wakeups.is_empty() {
            break results;
        }
        waited = true;
        let timer = glommio::timer::sleep(deadline - now).fuse();
        let appended = futures::future::select_all(wakeups).fuse();
        futures::pin_mut!(timer, appended);
        let cancelled = futures::select! {
            _ = timer => false,
            _ = appended => false,
            _ = cancel => true,
        };
        if cancelled || std::time::Instant::now() >= deadline {
            break join_all(partitions.iter().map(|p| read_partition(shard, p))).await;
        }
    };
    shard.fetch_cancels.borrow_mut().remove(&fetch_id);
    (results, waited)
}

async fn read_partition(shard: &Shard, op: &FetchPartitionOp) -> PartitionResult<FetchedBatches> {
    let tp = op.topic_partition.clone();
    let Some(handle) = shard.partition(&tp) else {
        return with_partition(shard, tp, |_| Ok(FetchedBatches::default()));
    };
    let high_watermark = handle.high_watermark();
    let outcome = if Offset(op.offset) >= high_watermark && Offset(op.offset) <= handle.log.log_end_offset() {
        Ok(FetchedBatches::default()) // caught up: nothing visible yet
    } else {
        match handle.log.read(Offset(op.offset), op.max_bytes as usize).await {
            Ok(read) => {
                // Only what is below the high watermark is visible.
                let batches = read
                    .batches
                    .into_iter()
                    .take_while(|batch| {
                        crate::storage::batch::BatchHeader::parse(batch)
                            .is_ok_and(|header| header.base_offset < high_watermark)
                    })
                    .collect();
                Ok(FetchedBatches { batches })
            }
            Err(error) => Err(storage_error(&error)),
        }
    };
    PartitionResult { high_watermark: high_watermark.0, ..bounded(tp, &handle, outcome) }
}

async fn list_offset(shard: &Shard, tp: TopicPartition, query: OffsetQuery) -> PartitionResult<(u64, i64)> {
    let Some(handle) = shard.partition(&tp) else {
        return with_partition(shard, tp, |_| Ok((0, -1)));
    };
    let high_watermark = handle.high_watermark();
    let outcome = match query {
        OffsetQuery::Earliest => Ok((handle.log.log_start_offset().0, -1)),
        OffsetQuery::Latest => Ok((high_watermark.0, -1)),
        OffsetQuery::Timestamp(timestamp) => match handle.log.offset_for_timestamp(TimestampMs(timestamp)).await {
            Ok(Some(offset)) if offset < high_watermark => Ok((offset.0, timestamp)),
            // Every visible record is older (PROTOCOL.md: no such offset).
            Ok(_) => Ok((crate::protocol::OFFSET_UNKNOWN, -1)),
            Err(error) => Err(storage_error(&error)),
        },
    };
    PartitionResult { high_watermark: high_watermark.0, ..bounded(tp, &handle, outcome) }
}

/// Opens the logs of partitions this shard owns that `table` has and it has not opened; closes
/// and deletes those whose topic is gone.
pub async fn apply_topics(shard: &Rc<Shard>, table: Arc<TopicTable>) -> Result<(), String> {
    let settings = shard.settings.clone();
    for (tp, handle) in shard.open_partitions() {
        if table.get(&tp.topic).is_none_or(|topic| tp.partition >= topic.partitions) {
            shard.remove_partition(&tp);
            if let Err(error) = handle.log.close().await {
                tracing::warn!(topic = %tp.topic, partition = tp.partition, %error, "closing a deleted partition");
            }
            let dir = partition_dir(&settings.data_dir, &tp.topic, PartitionId(tp.partition));
            if let Err(error) = std::fs::remove_dir_all(&dir) {
                tracing::warn!(dir = %dir.display(), %error, "removing a deleted partition");
            }
        }
    }
    let mut opened = Vec::new();
    for topic in table.iter() {
        for partition in 0..topic.partitions {
            let tp = TopicPartition { topic: topic.name.clone(), partition };
            if shard.owner_of(&tp) != shard.id || shard.partition(&tp).is_some() {
                continue;
            }
            let dir = partition_dir(&settings.data_dir, &topic.name, PartitionId(partition));
            let config = topic.log_config(settings.durability);
            opened.push(async move {
                let result = match PartitionLog::open(&dir, config, shard.cache_budget.clone()).await {
                    Ok((log, report)) => {
                        super::append::replay_producers(&log).await.map(|producers| (log, report, producers))
                    }
                    Err(error) => Err(error),
                };
                (tp, result)
            });
        }
    }
    let mut failures = Vec::new();
    for (tp, result) in join_all(opened).await {
        match result {
            Ok((log, report, producers)) => {
                if let Some(cut) = &report.truncation {
                    tracing::warn!(topic = %tp.topic, partition = tp.partition, position = cut.position,
                        log_end_offset = %cut.next_offset, reason = %cut.reason, "recovery cut the log tail");
                }
                tracing::debug!(topic = %tp.topic, partition = tp.partition, log_start_offset = %report.log_start_offset,
                    log_end_offset = %report.log_end_offset, clean = report.clean_shutdown, "partition open");
                shard.insert_partition(tp, Rc::new(PartitionHandle::new(log, settings.durability, producers)));
            }
            Err(error) => {
                tracing::error!(topic = %tp.topic, partition = tp.partition, %error, "cannot open partition");
                failures.push(format!("{}/{}: {error}", tp.topic, tp.partition));
            }
        }
    }
    shard.set_topics(table);
    if failures.is_empty() {
        Ok(())
    } else {
        Err(failures.join("; "))
    }
}

/// Deletes old segments of every partition this shard owns.
pub async fn apply_retention(shard: &Shard) {
    let now = TimestampMs::now();
    for (tp, handle) in shard.open_partitions() {
        if let Err(error) = handle.log.apply_retention(now).await {
            tracing::warn!(topic = %tp.topic, partition = tp.partition, %error, "retention failed");
        }
    }
}

/// Waits for `receiver` or returns `None` after `timeout`.
pub async fn with_timeout<T>(timeout: Duration, future: impl std::future::Future<Output = T>) -> Option<T> {
    let timer = glommio::timer::sleep(timeout);
    futures::pin_mut!(future, timer);
    match select(future, timer).await {
        Either::Left((value, _)) => Some(value),
        Either::Right(_) => None,
    }
}
