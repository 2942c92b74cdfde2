//! Fetch: route each partition to its owner with the request's wait rules; answer with the
//! batches exactly as stored, in a payload section written without copying them.
//!
//! When the partitions live on several shards, each shard long-polls its own; once the replies
//! in hand reach `min_bytes`, the shards still waiting are told to stop. Then:
//! - if the reply that reached `min_bytes` had long-polled (its shard had nothing when asked),
//!   every shard still out was asked at the same time and, having not answered at once, is
//!   long-polling too: the answer goes out without them and their partitions are left out
//!   (PROTOCOL.md), instead of waiting a cancel round trip over the mesh (~100 µs here);
//! - otherwise (data was there at once) the answer waits for every shard, so that a shard
//!   whose data is one mesh hop away is never starved by a local partition that always has
//!   data first.

use std::collections::HashMap;
use std::rc::Rc;

use futures::stream::{FuturesUnordered, StreamExt};

use crate::protocol::{
    decode_envelope, encode_response, EncodedFrame, ErrorCode, FetchPartitionResponse, FetchRequest, FetchResponse,
    FetchTopicResponse, OwnedFrame, PayloadBuilder, ProtocolError, ResponseTo,
};
use crate::server::routing::{group_by_owner, run_on};
use crate::shard::ops::{FetchPartitionOp, FetchedBatches, PartitionResult, ShardOp, ShardReply, TopicPartition};
use crate::shard::placement::ShardId;
use crate::shard::state::Shard;

/// Upper bound on one fetch's wait, whatever the client asks.
pub const FETCH_MAX_WAIT_MS_MAX: u32 = 30_000;

pub async fn handle(shard: &Rc<Shard>, to: ResponseTo, frame: &OwnedFrame) -> Result<EncodedFrame, ProtocolError> {
    let request = decode_envelope::<FetchRequest>(frame.envelope.as_slice())?;
    let max_wait_ms = request.max_wait_ms.to_native().min(FETCH_MAX_WAIT_MS_MAX);
    let min_bytes = request.min_bytes.to_native();
    let max_bytes = request.max_bytes.to_native() as usize;
    let mut order = Vec::new();
    let mut work = Vec::new();
    for topic in request.topics.iter() {
        for partition in topic.partitions.iter() {
            let tp = TopicPartition { topic: topic.name.to_string(), partition: partition.partition.to_native() };
            order.push(tp.clone());
            let op = FetchPartitionOp {
                topic_partition: tp.clone(),
                offset: partition.fetch_offset.to_native(),
                max_bytes: partition.partition_max_bytes.to_native().min(request.max_bytes.to_native()).max(1),
            };
            work.push((shard.owner_of(&tp), op));
        }
    }
    let groups = group_by_owner(work);
    let several_shards = groups.len() > 1;
    let mut pending: HashMap<ShardId, u64> = HashMap::new();
    let mut calls = FuturesUnordered::new();
    for (owner, partitions) in groups {
        let fetch_id = shard.new_fetch_id();
        pending.insert(owner, fetch_id);
        let shard = shard.clone();
        calls.push(async move {
            let asked: Vec<TopicPartition> = partitions.iter().map(|p| p.topic_partition.clone()).collect();
            let reply = run_on(&shard, owner, ShardOp::Fetch { fetch_id, max_wait_ms, min_bytes, partitions }).await;
            (owner, asked, reply)
        });
    }
    let mut results: HashMap<TopicPartition, PartitionResult<FetchedBatches>> = HashMap::new();
    let mut received_bytes = 0usize;
    let mut cancelled = false;
    while let Some((owner, asked, reply)) = calls.next().await {
        pending.remove(&owner);
        let mut reply_waited = false;
        let failure = match reply {
            ShardReply::Fetch { results: partition_results, waited } => {
                reply_waited = waited;
                for result in partition_results {
                    received_bytes += result.outcome.as_ref().map(FetchedBatches::total_bytes).unwrap_or(0);
                    results.insert(result.topic_partition.clone(), result);
                }
                None
            }
            ShardReply::Failed { error_code, message } => {
                tracing::debug!(shard = %owner, %error_code, %message, "fetch from a shard failed");
                Some((error_code, message))
            }
            other => {
                tracing::warn!(?other, "unexpected reply to a fetch");
                Some((ErrorCode::Unknown, format!("unexpected reply from shard {owner}")))
            }
        };
        if let Some((error_code, message)) = failure {
            for topic_partition in asked {
                let outcome = Err((error_code, message.clone()));
                let result = PartitionResult { topic_partition, outcome, log_start_offset: 0, high_watermark: 0 };
                results.insert(result.topic_partition.clone(), result);
            }
        }
        if cancelled || !several_shards || received_bytes < min_bytes as usize || pending.is_empty() {
            continue;
        }
        cancelled = true;
        for (&owner, &fetch_id) in &pending {
            let shard = shard.clone();
            glommio::spawn_local(async move {
                run_on(&shard, owner, ShardOp::CancelFetch { fetch_id }).await;
            })
            .detach();
        }
        // Decided once, by the reply that reached `min_bytes` (see the module doc).
        if reply_waited {
            // The cancelled shards' replies are taken off the mesh and dropped, not awaited.
            glommio::spawn_local(async move { while calls.next().await.is_some() {} }).detach();
            break;
        }
    }
    respond(to, &order, results, max_bytes)
}

fn respond(
    to: ResponseTo,
    order: &[TopicPartition],
    mut results: HashMap<TopicPartition, PartitionResult<FetchedBatches>>,
    max_bytes: usize,
) -> Result<EncodedFrame, ProtocolError> {
    let mut payload = PayloadBuilder::new();
    let mut topics: Vec<FetchTopicResponse> = Vec::new();
    for tp in order {
        // Not answered: its shard was still waiting when the answer went out (see module doc).
        let Some(result) = results.remove(tp) else { continue };
        let mut response = FetchPartitionResponse {
            partition: tp.partition,
            error_code: ErrorCode::None.as_u16(),
            high_watermark: 0,
            log_start_offset: 0,
            payload_offset: payload.len(),
            payload_length: 0,
        };
        response.high_watermark = result.high_watermark;
        response.log_start_offset = result.log_start_offset;
        match result.outcome {
            Ok(fetched) => {
                for batch in fetched.batches {
                    // Whole batches only; the first one always, so the consumer moves past a
                    // batch bigger than its limit.
                    if !payload.is_empty() && payload.len() as usize + batch.len() > max_bytes {
                        break;
                    }
                    response.payload_length += payload.push(batch)?.length;
                }
            }
            Err((code, _)) => response.error_code = code.as_u16(),
        }
        match topics.last_mut() {
            Some(last) if last.name == tp.topic => last.partitions.push(response),
            _ => topics.push(FetchTopicResponse { name: tp.topic.clone(), partitions: vec![response] }),
        }
    }
    encode_response(to, &FetchResponse { topics }, payload.finish())
}
