//! The group coordinator on its shard: the glue between [`crate::group::GroupCoordinator`]
//! (plain Rust) and the offsets topic's logs.
//!
//! - Start-up ([`load_groups`]): read every offsets-topic partition this shard owns from its
//!   start to its end and replay the records; until then every group request is answered
//!   `CoordinatorLoadInProgress`.
//! - Requests ([`execute_group`]): call the coordinator, append the records it returns to the
//!   group's offsets partition (one batch per partition, with the log's durability), and only
//!   then answer (and, for a commit, apply them).
//! - Expiry ([`expire_loop`]): every [`EXPIRE_INTERVAL`], remove silent members and append the
//!   resulting records.
//! - Compaction ([`super::offsets_snapshot`]): a partition whose log holds much more than its
//!   live state is rewritten as a snapshot of it and the log start moves past the old records;
//!   commits hold the snapshot's commit gate from their append to their apply.
//!
//! Group-state changes (heartbeat, leave, describe, expiry) run one at a time per shard, each
//! from the coordinator call to the end of its append (`Shard::group_write_lock`): a request
//! that only *sees* a change another request made (a new epoch) is not answered before that
//! change is durable. Commits change nothing until `apply`; they take the lock only for it.
//! A failed append unloads the coordinator and reloads it from the log
//! (`CoordinatorLoadInProgress` meanwhile; the request that failed gets `NotCoordinator`).
//!
//! No `RefCell` borrow of the coordinator is held across an `.await`.

use std::collections::{BTreeMap, BTreeSet};
use std::rc::Rc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};

use super::execute::{storage_error, LEADER_EPOCH};
use super::offsets_snapshot;
use super::ops::{GroupOp, GroupReply, TopicPartition};
use super::state::{BrokerSettings, Shard};
use crate::group::{
    coordinator_partition, CoordinatorOutput, GroupCoordinator, GroupRecord, TopicPartitionCounts, OFFSETS_TOPIC,
    OFFSETS_TOPIC_PARTITIONS_DEFAULT,
};
use crate::model::TimestampMs;
use crate::protocol::{ErrorCode, OffsetCommitResponse};
use crate::server::topics::{TopicConfig, TopicTable};
use crate::storage::batch::{for_each_record, BatchBuilder, BatchBuilderConfig, BatchHeader};

/// How often silent members are looked for.
pub const EXPIRE_INTERVAL: Duration = Duration::from_millis(250);
/// Bytes read per step while loading an offsets partition.
const LOAD_READ_BYTES: usize = 1 << 20;

/// The offsets topic as the broker creates it when it is missing: unlimited retention.
pub fn offsets_topic_config(settings: &BrokerSettings) -> TopicConfig {
    TopicConfig {
        name: OFFSETS_TOPIC.to_string(),
        partitions: OFFSETS_TOPIC_PARTITIONS_DEFAULT,
        retention_ms: -1,
        retention_bytes: -1,
        segment_bytes: settings.default_segment_bytes,
        segment_ms: settings.default_segment_ms,
    }
}

/// The offsets topic's partition count in `table` (the default if it is not there yet).
pub fn offsets_partitions(table: &TopicTable) -> u32 {
    table.get(OFFSETS_TOPIC).map_or(OFFSETS_TOPIC_PARTITIONS_DEFAULT, |topic| topic.partitions.max(1))
}

/// The offsets-topic partition holding `group_id`'s records.
pub fn group_partition(table: &TopicTable, group_id: &str) -> TopicPartition {
    TopicPartition {
        topic: OFFSETS_TOPIC.to_string(),
        partition: coordinator_partition(group_id, offsets_partitions(table)),
    }
}

/// The partition count of every topic, for the assignor.
fn topic_counts(table: &TopicTable) -> TopicPartitionCounts {
    table.iter().map(|topic| (topic.name.clone(), topic.partitions)).collect()
}

/// Reads this shard's offsets-topic partitions and loads the coordinator from their records.
/// Undecodable records are logged and skipped.
pub async fn load_groups(shard: &Rc<Shard>) {
    let table = shard.topics();
    let mut records: Vec<GroupRecord> = Vec::new();
    let mut skipped = 0usize;
    for partition in 0..offsets_partitions(&table) {
        let tp = TopicPartition { topic: OFFSETS_TOPIC.to_string(), partition };
        if shard.owner_of(&tp) != shard.id {
            continue;
        }
        let Some(handle) = shard.partition(&tp) else {
            tracing::warn!(shard = %shard.id, partition, "offsets partition not open; its groups start empty");
            continue;
        };
        let end = handle.log.log_end_offset();
        let mut offset = handle.log.log_start_offset();
        // Bounded: every round moves `offset` forward or stops.
        while offset < end {
            let read = match handle.log.read(offset, LOAD_READ_BYTES).await {
                Ok(read) => read,
                Err(error) => {
                    tracing::error!(shard = %shard.id, partition, %offset, %error, "reading the offsets partition");
                    break;
                }
            };
            let before = offset;
            for batch in &read.batches {
                let result = for_each_record(batch, |record| match GroupRecord::decode(record.value) {
                    Ok(decoded) => records.push(decoded),
                    Err(error) => {
                        skipped += 1;
                        tracing::warn!(partition, offset = %record.offset, %error, "skipping a bad group record");
                    }
                });
                match result {
                    Ok(header) => offset = header.next_offset(),
                    Err(error) => {
                        tracing::warn!(partition, %offset, %error, "skipping an unreadable offsets batch");
                        offset = BatchHeader::parse(batch).map_or(end, |header| header.next_offset());
                    }
                }
            }
            if offset <= before {
                break;
            }
        }
    }
    let count = records.len();
    shard.groups.borrow_mut().load(&records);
    tracing::info!(shard = %shard.id, records = count, skipped, "group coordinator loaded");
}

/// Every [`EXPIRE_INTERVAL`] until shutdown: removes silent members and appends the records,
/// then starts a snapshot of any offsets partition that is due (after start-up, one whose
/// loaded log is already big).
pub async fn expire_loop(shard: Rc<Shard>) {
    while !shard.shutting_down.get() {
        glommio::timer::sleep(EXPIRE_INTERVAL).await;
        if shard.shutting_down.get() || !shard.groups.borrow().is_loaded() {
            continue;
        }
        let now = shard.now_ms();
        // A failed append is logged and reloads the coordinator (in `mutate`).
        let _ = mutate(&shard, |c| CoordinatorOutput { response: (), records: c.expire(now) }).await;
        offsets_snapshot::schedule_due(&shard);
    }
}

/// Appends `records` to their groups' offsets partitions, one batch per partition, and waits
/// for the log's durability. A partition that has grown enough gets a snapshot afterwards.
pub async fn append_records(shard: &Rc<Shard>, records: &[GroupRecord]) -> Result<(), (ErrorCode, String)> {
    if records.is_empty() {
        return Ok(());
    }
    let table = shard.topics();
    let mut by_partition: BTreeMap<TopicPartition, Vec<&GroupRecord>> = BTreeMap::new();
    for record in records {
        by_partition.entry(group_partition(&table, record.group())).or_default().push(record);
    }
    for (tp, records) in by_partition {
        let Some(handle) = shard.partition(&tp) else {
            return Err((ErrorCode::NotCoordinator, format!("offsets partition {} is not open here", tp.partition)));
        };
        // One batch whatever its size: a request's records are all-or-nothing after a crash.
        if let Some(batch) = next_batch(&mut records.into_iter(), usize::MAX)? {
            let result = handle.log.append(BytesMut::from(&batch[..]), LEADER_EPOCH).await;
            handle.appended.notify_all();
            result.map_err(|error| storage_error(&error))?;
        }
        offsets_snapshot::schedule_if_due(shard, tp.partition, &handle);
    }
    Ok(())
}

/// The next offsets-topic batch of `records` (keyed by group id): records are taken until the
/// batch reaches `target_batch_bytes`, so it may pass it by one record. `None` once `records`
/// is exhausted. One batch at a time keeps a big snapshot from being encoded all at once.
pub(super) fn next_batch<'a>(
    records: &mut impl Iterator<Item = &'a GroupRecord>,
    target_batch_bytes: usize,
) -> Result<Option<Bytes>, (ErrorCode, String)> {
    let now = TimestampMs::now();
    let mut builder = BatchBuilder::new(BatchBuilderConfig::default());
    while builder.estimated_bytes() < target_batch_bytes {
        let Some(record) = records.next() else { break };
        let value = record
            .encode()
            .map_err(|error| (ErrorCode::InvalidRequest, format!("cannot encode a group record: {error:?}")))?;
        builder.push(now, Some(record.group().as_bytes()), &value, &[]);
    }
    if builder.is_empty() {
        return Ok(None);
    }
    builder.build().map(Some).map_err(|error| (ErrorCode::Unknown, format!("building a batch: {error}")))
}

/// Runs one group request on this (the coordinator) shard.
pub async fn execute_group(shard: &Rc<Shard>, op: GroupOp) -> GroupReply {
    match op {
        GroupOp::Heartbeat(request) => {
            let counts = topic_counts(&shard.topics());
            let now = shard.now_ms();
            let (mut response, appended) = mutate(shard, |c| c.heartbeat(&request, &counts, now)).await;
            if let Err((code, message)) = appended {
                response.error_code = not_coordinator(code).as_u16();
                response.error_message = message;
                response.assignment = None;
            }
            GroupReply::Heartbeat(response)
        }
        GroupOp::LeaveGroup(request) => {
            let (mut response, appended) = mutate(shard, |c| c.leave_group(&request)).await;
            if let Err((code, _)) = appended {
                response.error_code = not_coordinator(code).as_u16();
            }
            GroupReply::LeaveGroup(response)
        }
        GroupOp::OffsetCommit(request) => GroupReply::OffsetCommit(offset_commit(shard, &request).await),
        GroupOp::OffsetFetch(request) => GroupReply::OffsetFetch(shard.groups.borrow().offset_fetch(&request)),
        GroupOp::DescribeGroup(request) => {
            let now = shard.now_ms();
            let (mut response, appended) = mutate(shard, |c| c.describe_group(&request, now)).await;
            if let Err((code, _)) = appended {
                response.error_code = not_coordinator(code).as_u16();
            }
            GroupReply::DescribeGroup(response)
        }
        GroupOp::ListGroups(request) => GroupReply::ListGroups(shard.groups.borrow().list_groups(&request)),
    }
}

/// A group-state change and its append, under [`Shard::group_write_lock`]. If the append fails
/// the in-memory state is ahead of the log: the coordinator is unloaded and reloaded from the
/// log (requests get `CoordinatorLoadInProgress` meanwhile).
async fn mutate<R>(
    shard: &Rc<Shard>,
    change: impl FnOnce(&mut GroupCoordinator) -> CoordinatorOutput<R>,
) -> (R, Result<(), (ErrorCode, String)>) {
    // The lock is never closed; without a permit the change would still be made, unordered.
    let _permit = shard.group_write_lock.acquire_permit(1).await;
    let output = change(&mut shard.groups.borrow_mut());
    let appended = append_records(shard, &output.records).await;
    if let Err((_, message)) = &appended {
        tracing::error!(shard = %shard.id, %message, "appending group records; reloading the coordinator");
        reload(shard);
    }
    (output.response, appended)
}

/// Replaces the coordinator by an unloaded one and reloads it from the offsets topic (once
/// the current change has released the write lock).
fn reload(shard: &Rc<Shard>) {
    *shard.groups.borrow_mut() = GroupCoordinator::new(shard.settings.group_config());
    if shard.groups_reloading.replace(true) {
        return;
    }
    let shard = shard.clone();
    glommio::spawn_local(async move {
        let _permit = shard.group_write_lock.acquire_permit(1).await;
        load_groups(&shard).await;
        shard.groups_reloading.set(false);
    })
    .detach();
}

/// After a failed append the in-memory group state is ahead of the log: the client is told to
/// look for the coordinator again (shutting down stays shutting down).
fn not_coordinator(code: ErrorCode) -> ErrorCode {
    if code == ErrorCode::BrokerShuttingDown {
        code
    } else {
        ErrorCode::NotCoordinator
    }
}

/// OffsetCommit: unknown topics and partitions are refused here (the coordinator leaves that
/// check to the broker); the rest is validated, appended, applied, then answered.
async fn offset_commit(shard: &Rc<Shard>, request: &crate::protocol::OffsetCommitRequest) -> OffsetCommitResponse {
    // Held until the records are applied: a snapshot never sees them appended but not applied.
    let _gate = shard.offsets_snapshots.commit_permit().await;
    let table = shard.topics();
    let known = |topic: &str, partition: u32| table.get(topic).is_some_and(|t| partition < t.partitions);
    let output = shard.groups.borrow().offset_commit(request, TimestampMs::now().0);
    let mut response = output.response;
    let unknown: BTreeSet<(String, u32)> = request
        .topics
        .iter()
        .flat_map(|t| t.partitions.iter().map(move |p| (t.name.clone(), p.partition)))
        .filter(|(topic, partition)| !known(topic, *partition))
        .collect();
    let records: Vec<GroupRecord> = output
        .records
        .into_iter()
        .filter(|record| match record {
            GroupRecord::OffsetCommit(commit) => !unknown.contains(&(commit.topic.clone(), commit.partition)),
            _ => true,
        })
        .collect();
    for topic in &mut response.topics {
        for partition in &mut topic.partitions {
            if unknown.contains(&(topic.name.clone(), partition.partition)) {
                partition.error_code = ErrorCode::UnknownTopicOrPartition.as_u16();
            }
        }
    }
    match append_records(shard, &records).await {
        Ok(()) if !records.is_empty() => {
            // Under the write lock so that a reload from the log (which holds it) never
            // replays an older record over this one: the record is in the log already.
            let _permit = shard.group_write_lock.acquire_permit(1).await;
            shard.groups.borrow_mut().apply(&records);
        }
        Ok(()) => {}
        Err((_, message)) => {
            tracing::error!(shard = %shard.id, group = %request.group_id, %message, "appending offset commits");
            for partition in response.topics.iter_mut().flat_map(|t| t.partitions.iter_mut()) {
                if partition.error_code == ErrorCode::None.as_u16() {
                    partition.error_code = ErrorCode::StorageError.as_u16();
                }
            }
        }
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::group::OffsetCommitRecord;
    use crate::storage::batch::validate;

    /// Guards snapshot batching: every record lands once, in order, keyed by its group; a batch
    /// passes its target by one record at most; an unlimited target gives one batch.
    #[test]
    fn next_batch_splits_records_in_order_near_the_target() {
        let records: Vec<GroupRecord> = (0..500u32)
            .map(|i| {
                GroupRecord::OffsetCommit(OffsetCommitRecord {
                    group: format!("g{}", i % 7),
                    topic: "t".into(),
                    partition: i,
                    offset: u64::from(i),
                    metadata: "m".repeat(100),
                    commit_timestamp_ms: 0,
                })
            })
            .collect();
        let target = 8 << 10;
        let mut unwritten = records.iter();
        let mut decoded = Vec::new();
        let mut batches = 0;
        while let Some(batch) = next_batch(&mut unwritten, target).unwrap() {
            batches += 1;
            assert!(batch.len() < target + 512, "a batch of {} bytes", batch.len());
            validate(&batch).unwrap();
            for_each_record(&batch, |record| {
                let record_group = GroupRecord::decode(record.value).unwrap();
                assert_eq!(record.key, Some(record_group.group().as_bytes()));
                decoded.push(record_group);
            })
            .unwrap();
        }
        assert!(batches > 3, "{batches} batches");
        assert_eq!(decoded, records);
        assert!(next_batch(&mut records.iter(), usize::MAX).unwrap().is_some());
        assert!(next_batch(&mut [].iter(), usize::MAX).unwrap().is_none());
    }
}
