//! The owner's side of a produce: append each partition's batches, then wait for the promised
//! durability, without an allocation per partition or per batch beyond the answer itself.
//!
//! Every partition's ticket ([`PartitionHandle::append_turns`]) is taken before the first
//! `.await`, so requests keep their arrival order at each partition. The appends then run one
//! partition after the other: a request holds at most one turn at a time and every request
//! took all its tickets at once, so a request waits only for requests that arrived before it
//! (no cycle). An append rarely suspends (a segment roll, a full write buffer); the waits for
//! an fdatasync (`--fsync always`) run concurrently, after all the appends.

use std::rc::Rc;

use bytes::BytesMut;
use futures::future::join_all;

use super::execute::storage_error;
use super::ops::{ProducePartitionOp, ProduceTopicOp, ProducedPartition};
use super::state::{PartitionHandle, Shard};
use super::turns::Ticket;
use crate::model::Offset;
use crate::protocol::ErrorCode;

type Outcome = Result<u64, (ErrorCode, String)>;

/// Appends `batches` (each partition's `batch_count` of them, in order) to the partitions of
/// `topics`; one answer per partition, in the order given.
pub async fn produce(shard: &Shard, topics: Vec<ProduceTopicOp>, batches: Vec<BytesMut>) -> Vec<ProducedPartition> {
    let partition_count = topics.iter().map(|topic| topic.partitions.len()).sum();
    let mut handles = Vec::with_capacity(partition_count);
    for topic in &topics {
        shard.extend_with_partitions(&topic.topic, topic.partitions.iter().map(|p| p.partition), &mut handles);
    }
    // Before any `.await`: this request's place in line at every partition.
    let tickets: Vec<Option<Ticket<'_>>> =
        handles.iter().map(|handle| handle.as_ref().map(|handle| handle.append_turns.ticket())).collect();
    let mut answers = Vec::with_capacity(partition_count);
    let mut syncs = Vec::new();
    let mut batches = batches.into_iter();
    let mut slots = handles.iter().zip(tickets);
    for topic in &topics {
        for (op, (handle, ticket)) in topic.partitions.iter().zip(slots.by_ref()) {
            let mut partition_batches = batches.by_ref().take(op.batch_count as usize);
            let (Some(handle), Some(ticket)) = (handle, ticket) else {
                partition_batches.for_each(drop);
                let message = format!("unknown topic or partition {}/{}", topic.topic, op.partition);
                answers.push(answer(op, Err((ErrorCode::UnknownTopicOrPartition, message))));
                continue;
            };
            let appended = append_partition(handle, ticket, &mut partition_batches).await;
            // Batches after a failed one are not appended; they are not the next partition's.
            partition_batches.for_each(drop);
            match appended {
                Ok((base_offset, next_offset)) if handle.log.acks_wait_for_sync() => {
                    syncs.push((answers.len(), handle, next_offset));
                    answers.push(answer(op, Ok(base_offset.0)));
                }
                outcome => {
                    // After the append (no durability wait): waiting fetches may read it now.
                    handle.appended.notify_all();
                    answers.push(answer(op, outcome.map(|(base_offset, _)| base_offset.0)));
                }
            }
        }
    }
    if !syncs.is_empty() {
        let waits = syncs.into_iter().map(|(answer_index, handle, next_offset)| async move {
            let synced = handle.log.await_durability(next_offset).await;
            // After the wait: with `--fsync always` the high watermark is the synced offset, so
            // a waiting fetch woken earlier would find nothing new and sleep on.
            handle.appended.notify_all();
            (answer_index, synced)
        });
        for (answer_index, synced) in join_all(waits).await {
            if let Err(error) = synced {
                answers[answer_index].outcome = Err(storage_error(&error));
            }
        }
    }
    answers
}

fn answer(op: &ProducePartitionOp, outcome: Outcome) -> ProducedPartition {
    ProducedPartition { request_index: op.request_index, outcome }
}

/// Appends one partition's batches in order in its turn: the first batch's base offset and the
/// offset after the last one. After a failed batch the rest are dropped, not appended.
async fn append_partition(
    handle: &Rc<PartitionHandle>,
    ticket: Ticket<'_>,
    batches: impl Iterator<Item = BytesMut>,
) -> Result<(Offset, Offset), (ErrorCode, String)> {
    let turn = ticket.turn().await;
    let mut first_base = None;
    let mut durable_needed = None;
    for batch in batches {
        let (base_offset, next_offset) = super::append::append_batch(handle, batch).await?;
        first_base.get_or_insert(base_offset);
        durable_needed = durable_needed.max(Some(next_offset));
    }
    drop(turn);
    match (first_base, durable_needed) {
        (Some(base_offset), Some(next_offset)) => Ok((base_offset, next_offset)),
        _ => Err((ErrorCode::InvalidRequest, "no batches for the partition".into())),
    }
}
