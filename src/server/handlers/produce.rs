//! Produce: validate every batch (length, CRC, archive) on the shard that read it, route each
//! partition's batches to its owner, answer each partition with the base offset of its first
//! batch once the promised durability is reached (acks=0: at once).

use std::collections::HashMap;
use std::rc::Rc;

use bytes::BytesMut;
use futures::future::join_all;

use crate::protocol::{
    decode_envelope, encode_response, EncodedFrame, ErrorCode, OwnedFrame, ProducePartitionResponse, ProduceRequest,
    ProduceResponse, ProduceTopicResponse, ProtocolError, ResponseTo, OFFSET_UNKNOWN,
};
use crate::server::routing::{group_by_owner, run_on};
use crate::shard::ops::{PartitionResult, ShardOp, ShardReply, TopicPartition};
use crate::shard::state::Shard;
use crate::storage::batch::{peek_batch_length, validate};

type Outcome = Result<u64, (ErrorCode, String)>;

pub async fn handle(shard: &Rc<Shard>, to: ResponseTo, frame: OwnedFrame) -> Result<EncodedFrame, ProtocolError> {
    let OwnedFrame { envelope, payload, .. } = frame;
    let request = decode_envelope::<ProduceRequest>(envelope.as_slice())?;
    if let Err(code) = request.validate_acks() {
        return crate::protocol::encode_error_response(to, code, "acks must be 0, 1 or -1 (all)");
    }
    let acks = request.acks.to_native();
    let topics = shard.topics();
    let mut order: Vec<TopicPartition> = Vec::new();
    let mut ranges = Vec::new();
    for topic in request.topics.iter() {
        for partition in topic.partitions.iter() {
            let tp = TopicPartition { topic: topic.name.to_string(), partition: partition.partition.to_native() };
            order.push(tp.clone());
            ranges.push((tp, partition.payload_offset.to_native(), partition.payload_length.to_native()));
        }
    }
    // Per partition, in request order: an early error, or the batches to append.
    let mut outcomes: HashMap<TopicPartition, Outcome> = HashMap::new();
    let mut work = Vec::new();
    let payload_bytes = payload.len();
    for (tp, slice) in split_payload(payload, ranges) {
        let known = topics.get(&tp.topic).is_some_and(|t| tp.partition < t.partitions);
        let batches = if tp.topic == crate::group::offsets::OFFSETS_TOPIC {
            // Only the coordinators write there; a client's record would be replayed as a commit.
            Err((ErrorCode::InvalidRequest, format!("{} is internal: clients cannot produce to it", tp.topic)))
        } else if known {
            slice.and_then(|slice| split_and_validate(slice, payload_bytes))
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
    let calls = group_by_owner(work)
        .into_iter()
        .map(|(owner, partitions)| {
            let shard = shard.clone();
            let asked: Vec<TopicPartition> = partitions.iter().map(|(tp, _)| tp.clone()).collect();
            async move { (asked, run_on(&shard, owner, ShardOp::Produce { acks, partitions }).await) }
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

type Slice = Result<BytesMut, (ErrorCode, String)>;

/// Cuts the payload into each partition's range without copying: the ranges are taken in
/// payload order, and a range that overlaps another or leaves the payload is refused.
fn split_payload(mut payload: BytesMut, ranges: Vec<(TopicPartition, u32, u32)>) -> Vec<(TopicPartition, Slice)> {
    let payload_length = payload.len() as u64;
    let mut by_offset: Vec<_> = ranges.into_iter().enumerate().collect();
    by_offset.sort_by_key(|(_, (_, offset, _))| *offset);
    let mut consumed: u64 = 0;
    let mut out: Vec<(usize, TopicPartition, Slice)> = Vec::with_capacity(by_offset.len());
    for (index, (tp, offset, length)) in by_offset {
        let (offset, length) = (u64::from(offset), u64::from(length));
        let slice = if offset < consumed {
            Err((ErrorCode::InvalidRequest, format!("payload range at {offset} overlaps another partition's")))
        } else if offset + length > payload_length {
            Err((
                ErrorCode::InvalidRequest,
                format!("payload range {offset}+{length} is outside the {payload_length}-byte payload"),
            ))
        } else {
            let _gap = payload.split_to((offset - consumed) as usize);
            consumed = offset + length;
            Ok(payload.split_to(length as usize))
        };
        out.push((index, tp, slice));
    }
    out.sort_by_key(|(index, _, _)| *index);
    out.into_iter().map(|(_, tp, slice)| (tp, slice)).collect()
}

/// Batches under this size are copied out of the request before they are kept (see
/// [`detach_if_small`]): frames read together share one read buffer of at least 64 KiB.
const OWN_ALLOCATION_BELOW_BYTES: usize = 64 * 1024;

/// A batch goes to the owner's tail cache, which holds it until it is evicted; the cache's
/// budget counts batch bytes. A slice pins the whole buffer it was cut from, so a small batch
/// kept from a large request (or from a read buffer shared by many small frames) held far more
/// than it was counted for: a client could pin gigabytes under a budget of megabytes. Such a
/// batch is copied into an allocation of its own; a batch of at least half the request's
/// payload is kept in place, so the throughput path stays free of copies.
fn detach_if_small(batch: BytesMut, request_payload_bytes: usize) -> BytesMut {
    if batch.len() < OWN_ALLOCATION_BELOW_BYTES || batch.len().saturating_mul(2) < request_payload_bytes {
        BytesMut::from(&batch[..])
    } else {
        batch
    }
}

/// Splits a partition's payload into batches and validates each one completely; small batches
/// are detached from the request's buffer (`request_payload_bytes`: its whole payload).
fn split_and_validate(
    mut payload: BytesMut,
    request_payload_bytes: usize,
) -> Result<Vec<BytesMut>, (ErrorCode, String)> {
    let mut batches = Vec::new();
    while !payload.is_empty() {
        let length = peek_batch_length(&payload).map(|l| l as usize).unwrap_or(0);
        if length == 0 || length > payload.len() {
            return Err((
                ErrorCode::CorruptMessage,
                format!("batch length {length} does not fit the {} bytes left", payload.len()),
            ));
        }
        let batch = payload.split_to(length);
        validate(&batch).map_err(|e| (ErrorCode::CorruptMessage, format!("invalid record batch: {e}")))?;
        batches.push(detach_if_small(batch, request_payload_bytes));
    }
    if batches.is_empty() {
        return Err((ErrorCode::InvalidRequest, "no record batch for the partition".into()));
    }
    Ok(batches)
}

fn collect(asked: Vec<TopicPartition>, reply: ShardReply, outcomes: &mut HashMap<TopicPartition, Outcome>) {
    match reply {
        ShardReply::Produce(results) => {
            for PartitionResult { topic_partition, outcome, .. } in results {
                outcomes.insert(topic_partition, outcome);
            }
        }
        ShardReply::Failed { error_code, message } => {
            for tp in asked {
                outcomes.insert(tp, Err((error_code, message.clone())));
            }
        }
        other => {
            for tp in asked {
                outcomes.insert(tp, Err((ErrorCode::Unknown, format!("unexpected reply {other:?}"))));
            }
        }
    }
}

fn response(order: &[TopicPartition], outcomes: &HashMap<TopicPartition, Outcome>) -> ProduceResponse {
    let mut topics: Vec<ProduceTopicResponse> = Vec::new();
    for tp in order {
        let (error_code, base_offset, error_message) = match outcomes.get(tp) {
            Some(Ok(base)) => (ErrorCode::None, *base, String::new()),
            Some(Err((code, message))) => (*code, OFFSET_UNKNOWN, message.clone()),
            None => (ErrorCode::BrokerShuttingDown, OFFSET_UNKNOWN, "the owning shard did not answer".into()),
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
            _ => topics.push(ProduceTopicResponse { name: tp.topic.clone(), partitions: vec![partition] }),
        }
    }
    ProduceResponse { topics }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tp(partition: u32) -> TopicPartition {
        TopicPartition { topic: "t".into(), partition }
    }

    /// Guards the zero-copy split of a produce payload: ranges in any order, gaps skipped,
    /// overlapping or out-of-bounds ranges refused without affecting the others.
    #[test]
    fn payload_ranges_are_cut_in_place_and_bad_ones_refused() {
        let payload = BytesMut::from(&b"aaaabbbbccccdddd"[..]);
        let ranges = vec![(tp(0), 8, 4), (tp(1), 0, 4), (tp(2), 2, 4), (tp(3), 12, 8), (tp(4), 12, 4)];
        let out = split_payload(payload, ranges);
        let texts: Vec<_> =
            out.iter().map(|(tp, slice)| (tp.partition, slice.as_ref().ok().map(|b| b.to_vec()))).collect();
        assert_eq!(texts[0], (0, Some(b"cccc".to_vec())));
        assert_eq!(texts[1], (1, Some(b"aaaa".to_vec())));
        assert_eq!(texts[2], (2, None), "overlaps partition 1's range");
        assert_eq!(texts[3].1, None, "runs past the payload");
        assert_eq!(texts[4], (4, Some(b"dddd".to_vec())));
    }

    /// Guards the tail cache's memory bound: small batches leave the request's buffer (a copy
    /// with the same bytes), a batch that is most of the request stays in place.
    #[test]
    fn small_batches_are_detached_from_the_request_buffer() {
        let timestamp = crate::model::TimestampMs(1);
        let small = crate::testing::make_batch(1, 3, 100, timestamp);
        let large = crate::testing::make_batch(2, 1_000, 200, timestamp);
        assert!(large.len() >= OWN_ALLOCATION_BELOW_BYTES);
        let mut request = BytesMut::new();
        request.extend_from_slice(&small);
        request.extend_from_slice(&large);
        let start = request.as_ptr() as usize;
        let request_range = start..start + request.len();
        let batches = split_and_validate(request, small.len() + large.len()).expect("valid batches");
        assert_eq!(batches.len(), 2);
        assert_eq!(&batches[0][..], &small[..]);
        assert_eq!(&batches[1][..], &large[..]);
        assert!(!request_range.contains(&(batches[0].as_ptr() as usize)), "the small batch is copied");
        assert_eq!(batches[1].as_ptr() as usize, start + small.len(), "the large one is not");

        // The same large batch beside a request payload three times its size is detached too.
        let mut request = BytesMut::from(&large[..]);
        let start = request.as_ptr();
        let kept = split_and_validate(request.split(), large.len()).expect("valid batch");
        assert_eq!(kept[0].as_ptr(), start, "most of the request: kept in place");
        let mut request = BytesMut::from(&large[..]);
        let start = request.as_ptr();
        let detached = split_and_validate(request.split(), 3 * large.len()).expect("valid batch");
        assert_ne!(detached[0].as_ptr(), start, "a third of the request: copied");
        assert_eq!(&detached[0][..], &large[..]);
    }
}
