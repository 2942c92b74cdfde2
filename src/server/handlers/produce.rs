//! Produce: validate every batch (length, CRC, archive) on the shard that read it, route each
//! partition's batches to its owner, answer each partition with the base offset of its first
//! batch once the promised durability is reached (acks=0: at once).

use std::collections::HashMap;
use std::rc::Rc;

use bytes::Bytes;
use futures::future::join_all;

use crate::protocol::{
    decode_envelope, encode_response, payload_slice, EncodedFrame, ErrorCode, Frame,
    ProducePartitionResponse, ProduceRequest, ProduceResponse, ProduceTopicResponse, ProtocolError,
    ResponseTo, OFFSET_UNKNOWN,
};
use crate::server::routing::{group_by_owner, run_on};
use crate::shard::ops::{PartitionResult, ShardOp, ShardReply, TopicPartition};
use crate::shard::state::Shard;
use crate::storage::batch::{peek_batch_length, validate};

type Outcome = Result<u64, (ErrorCode, String)>;

pub async fn handle(
    shard: &Rc<Shard>,
    to: ResponseTo,
    frame: &Frame,
) -> Result<EncodedFrame, ProtocolError> {
    let request = decode_envelope::<ProduceRequest>(frame.envelope.as_slice())?;
    if let Err(code) = request.validate_acks() {
        return crate::protocol::encode_error_response(to, code, "acks must be 0, 1 or -1 (all)");
    }
    let acks = request.acks.to_native();
    let topics = shard.topics();
    // Per partition, in request order: an early error, or the batches to append.
    let mut order: Vec<TopicPartition> = Vec::new();
    let mut outcomes: HashMap<TopicPartition, Outcome> = HashMap::new();
    let mut work = Vec::new();
    for topic in request.topics.iter() {
        for partition in topic.partitions.iter() {
            let tp = TopicPartition {
                topic: topic.name.to_string(),
                partition: partition.partition.to_native(),
            };
            order.push(tp.clone());
            let known = topics
                .get(&tp.topic)
                .is_some_and(|t| tp.partition < t.partitions);
            let batches = if known {
                payload_slice(
                    &frame.payload,
                    partition.payload_offset.to_native(),
                    partition.payload_length.to_native(),
                )
                .map_err(|e| (e.error_code(), e.to_string()))
                .and_then(split_and_validate)
            } else {
                Err((
                    ErrorCode::UnknownTopicOrPartition,
                    format!("unknown topic or partition {}/{}", tp.topic, tp.partition),
                ))
            };
            match batches {
                Ok(batches) => work.push((shard.owner_of(&tp), (tp, batches))),
                Err(error) => {
                    outcomes.insert(tp, Err(error));
                }
            }
        }
    }
    let calls = group_by_owner(work)
        .into_iter()
        .map(|(owner, partitions)| {
            let shard = shard.clone();
            let asked: Vec<TopicPartition> = partitions.iter().map(|(tp, _)| tp.clone()).collect();
            async move {
                (
                    asked,
                    run_on(&shard, owner, ShardOp::Produce { acks, partitions }).await,
                )
            }
        })
        .collect::<Vec<_>>();
    if acks == 0 {
        // Fire and forget: answer now; failures are only logged.
        let shard_id = shard.id;
        glommio::spawn_local(async move {
            for (_, reply) in join_all(calls).await {
                if let ShardReply::Failed { message, .. } = reply {
                    tracing::debug!(shard = %shard_id, %message, "acks=0 produce failed");
                }
            }
        })
        .detach();
        for tp in &order {
            outcomes.entry(tp.clone()).or_insert(Ok(OFFSET_UNKNOWN));
        }
    } else {
        for (asked, reply) in join_all(calls).await {
            collect(asked, reply, &mut outcomes);
        }
    }
    encode_response(to, &response(&order, &outcomes), Vec::new())
}

/// Splits a partition's payload into batches and validates each one completely.
fn split_and_validate(mut payload: Bytes) -> Result<Vec<Bytes>, (ErrorCode, String)> {
    let mut batches = Vec::new();
    while !payload.is_empty() {
        let length = peek_batch_length(&payload).map(|l| l as usize).unwrap_or(0);
        if length == 0 || length > payload.len() {
            return Err((
                ErrorCode::CorruptMessage,
                format!(
                    "batch length {length} does not fit the {} bytes left",
                    payload.len()
                ),
            ));
        }
        let batch = payload.split_to(length);
        validate(&batch).map_err(|e| {
            (
                ErrorCode::CorruptMessage,
                format!("invalid record batch: {e}"),
            )
        })?;
        batches.push(batch);
    }
    if batches.is_empty() {
        return Err((
            ErrorCode::InvalidRequest,
            "no record batch for the partition".into(),
        ));
    }
    Ok(batches)
}

fn collect(
    asked: Vec<TopicPartition>,
    reply: ShardReply,
    outcomes: &mut HashMap<TopicPartition, Outcome>,
) {
    match reply {
        ShardReply::Produce(results) => {
            for PartitionResult {
                topic_partition,
                outcome,
                ..
            } in results
            {
                outcomes.insert(topic_partition, outcome);
            }
        }
        ShardReply::Failed {
            error_code,
            message,
        } => {
            for tp in asked {
                outcomes.insert(tp, Err((error_code, message.clone())));
            }
        }
        other => {
            for tp in asked {
                outcomes.insert(
                    tp,
                    Err((ErrorCode::Unknown, format!("unexpected reply {other:?}"))),
                );
            }
        }
    }
}

fn response(
    order: &[TopicPartition],
    outcomes: &HashMap<TopicPartition, Outcome>,
) -> ProduceResponse {
    let mut topics: Vec<ProduceTopicResponse> = Vec::new();
    for tp in order {
        let (error_code, base_offset, error_message) = match outcomes.get(tp) {
            Some(Ok(base)) => (ErrorCode::None, *base, String::new()),
            Some(Err((code, message))) => (*code, OFFSET_UNKNOWN, message.clone()),
            None => (
                ErrorCode::BrokerShuttingDown,
                OFFSET_UNKNOWN,
                "the owning shard did not answer".into(),
            ),
        };
        let partition = ProducePartitionResponse {
            partition: tp.partition,
            error_code: error_code.as_u16(),
            base_offset,
            log_start_offset: OFFSET_UNKNOWN,
            error_message,
        };
        match topics.last_mut() {
            Some(last) if last.name == tp.topic => last.partitions.push(partition),
            _ => topics.push(ProduceTopicResponse {
                name: tp.topic.clone(),
                partitions: vec![partition],
            }),
        }
    }
    ProduceResponse { topics }
}
