//! Produce: validate every batch (length, CRC, archive) on the shard that read it, route each
//! partition's batches to its owner, answer each partition with the base offset of its first
//! batch once the promised durability is reached (acks=0: at once).

use std::rc::Rc;
use std::sync::Arc;

use bytes::BytesMut;
use futures::future::join_all;

use super::produce_answers::{settle_duplicates, Answer, DuplicateCheck};
use crate::model::PartitionId;
use crate::protocol::apis::produce::ArchivedProduceRequest;
use crate::protocol::{
    decode_envelope, encode_response, EncodedFrame, ErrorCode, OwnedFrame, ProducePartitionResponse, ProduceRequest,
    ProduceResponse, ProduceTopicResponse, ProtocolError, ResponseTo, OFFSET_UNKNOWN,
};
use crate::server::routing::run_on;
use crate::shard::ops::{ProducePartitionOp, ProduceTopicOp, ShardOp, ShardReply};
use crate::shard::placement::{owner_shard, ShardId};
use crate::shard::state::Shard;
use crate::storage::batch::{peek_batch_length, validate};

pub async fn handle(shard: &Rc<Shard>, to: ResponseTo, frame: OwnedFrame) -> Result<EncodedFrame, ProtocolError> {
    let OwnedFrame { envelope, payload, .. } = frame;
    let request = decode_envelope::<ProduceRequest>(envelope.as_slice())?;
    if let Err(code) = request.validate_acks() {
        return crate::protocol::encode_error_response(to, code, "acks must be 0, 1 or -1 (all)");
    }
    let acks = request.acks.to_native();
    let ranges: Vec<(u32, u32)> = request
        .topics
        .iter()
        .flat_map(|topic| topic.partitions.iter())
        .map(|partition| (partition.payload_offset.to_native(), partition.payload_length.to_native()))
        .collect();
    let payload_bytes = payload.len();
    let slices = split_payload(payload, &ranges);
    // Per partition, by its position in the request: an early refusal, or sent to its owner.
    let mut answers: Vec<Answer> = Vec::with_capacity(ranges.len());
    let mut owners: Vec<OwnerWork> = (0..shard.settings.shard_count.max(1)).map(|_| OwnerWork::default()).collect();
    let mut duplicates = DuplicateCheck::default();
    let table = shard.topics();
    let mut slices = slices.into_iter();
    for topic in request.topics.iter() {
        let name = topic.name.as_str();
        let partition_count = table.get(name).map_or(0, |config| config.partitions);
        let mut marks = duplicates.topic(name, partition_count);
        let mut shared_name: Option<Arc<str>> = None;
        for (partition, slice) in topic.partitions.iter().zip(slices.by_ref()) {
            let partition = partition.partition.to_native();
            let request_index = answers.len() as u32;
            marks.mark(partition);
            if name == crate::group::offsets::OFFSETS_TOPIC {
                // Only the coordinators write there; a client's record would be replayed as a commit.
                let message = format!("{name} is internal: clients cannot produce to it");
                answers.push(Answer::Early((ErrorCode::InvalidRequest, message)));
                continue;
            }
            if partition >= partition_count {
                let message = format!("unknown topic or partition {name}/{partition}");
                answers.push(Answer::Early((ErrorCode::UnknownTopicOrPartition, message)));
                continue;
            }
            let owner = owner_shard(name, PartitionId(partition), shard.settings.shard_count);
            let Some(work) = owners.get_mut(owner.0) else {
                answers.push(Answer::Early((ErrorCode::Unknown, format!("no shard {owner}"))));
                continue;
            };
            let batches_before = work.batches.len();
            match slice.and_then(|slice| split_and_validate(slice, payload_bytes, &mut work.batches)) {
                Ok(batch_count) => {
                    let topic_name = shared_name.get_or_insert_with(|| Arc::from(name));
                    work.push(topic_name, ProducePartitionOp { request_index, partition, batch_count });
                    answers.push(Answer::Pending);
                }
                Err(refusal) => {
                    work.batches.truncate(batches_before);
                    answers.push(Answer::Early(refusal));
                }
            }
        }
    }
    let calls = owners
        .into_iter()
        .enumerate()
        .filter(|(_, work)| !work.topics.is_empty())
        .map(|(owner, OwnerWork { topics, batches })| {
            let shard = shard.clone();
            let asked: Vec<u32> =
                topics.iter().flat_map(|topic| topic.partitions.iter().map(|p| p.request_index)).collect();
            async move { (asked, run_on(&shard, ShardId(owner), ShardOp::Produce { acks, topics, batches }).await) }
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
    } else {
        for (asked, reply) in join_all(calls).await {
            collect(&asked, reply, &mut answers);
        }
    }
    if duplicates.found {
        settle_duplicates(&mut answers, partition_keys(request));
    }
    encode_response(to, &response(request, answers, acks), Vec::new())
}

/// What one owner is asked: the partitions by topic, their batches back to back.
#[derive(Default)]
struct OwnerWork {
    topics: Vec<ProduceTopicOp>,
    batches: Vec<BytesMut>,
}

impl OwnerWork {
    /// Adds a partition of `topic` (the request's one name for it: partitions of a topic that
    /// follow one another in the request share an entry).
    fn push(&mut self, topic: &Arc<str>, partition: ProducePartitionOp) {
        match self.topics.last_mut() {
            Some(last) if Arc::ptr_eq(&last.topic, topic) => last.partitions.push(partition),
            _ => self.topics.push(ProduceTopicOp { topic: topic.clone(), partitions: vec![partition] }),
        }
    }
}

/// Topic and partition of each position of the request.
fn partition_keys<'a>(request: &'a ArchivedProduceRequest) -> impl Iterator<Item = (&'a str, u32)> + 'a {
    request.topics.iter().flat_map(|topic| {
        topic.partitions.iter().map(move |partition| (topic.name.as_str(), partition.partition.to_native()))
    })
}

type Slice = Result<BytesMut, (ErrorCode, String)>;

/// Cuts the payload into each partition's range (`ranges`: offset and length, by position in
/// the request) without copying: the ranges are taken in payload order, and a range that
/// overlaps another or leaves the payload is refused. The slices are in request order.
fn split_payload(mut payload: BytesMut, ranges: &[(u32, u32)]) -> Vec<Slice> {
    let payload_length = payload.len() as u64;
    let mut consumed: u64 = 0;
    let mut cut = |(offset, length): (u32, u32)| {
        let (offset, length) = (u64::from(offset), u64::from(length));
        if offset < consumed {
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
        }
    };
    if ranges.windows(2).all(|pair| pair[0].0 <= pair[1].0) {
        // The usual request: partitions in payload order.
        return ranges.iter().map(|range| cut(*range)).collect();
    }
    let mut by_offset: Vec<usize> = (0..ranges.len()).collect();
    by_offset.sort_by_key(|index| ranges[*index].0);
    let mut slices: Vec<Option<Slice>> = (0..ranges.len()).map(|_| None).collect();
    for index in by_offset {
        slices[index] = Some(cut(ranges[index]));
    }
    slices.into_iter().flatten().collect()
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

/// Splits a partition's payload into batches, validates each one completely and appends them to
/// `batches`; the number of batches. Small batches are detached from the request's buffer
/// (`request_payload_bytes`: its whole payload). On an error some batches may have been
/// appended already: the caller takes them back.
fn split_and_validate(
    mut payload: BytesMut,
    request_payload_bytes: usize,
    batches: &mut Vec<BytesMut>,
) -> Result<u32, (ErrorCode, String)> {
    let mut batch_count: u32 = 0;
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
        batch_count += 1;
    }
    if batch_count == 0 {
        return Err((ErrorCode::InvalidRequest, "no record batch for the partition".into()));
    }
    Ok(batch_count)
}

/// Records an owner's reply for the positions it was `asked` about.
fn collect(asked: &[u32], reply: ShardReply, answers: &mut [Answer]) {
    match reply {
        ShardReply::Produce(results) => {
            for result in results {
                if let Some(answer) = answers.get_mut(result.request_index as usize) {
                    *answer = Answer::Owner(result.outcome);
                }
            }
        }
        ShardReply::Failed { error_code, message } => {
            for &index in asked {
                if let Some(answer) = answers.get_mut(index as usize) {
                    *answer = Answer::Owner(Err((error_code, message.clone())));
                }
            }
        }
        other => {
            let message = format!("unexpected reply {other:?}");
            for &index in asked {
                if let Some(answer) = answers.get_mut(index as usize) {
                    *answer = Answer::Owner(Err((ErrorCode::Unknown, message.clone())));
                }
            }
        }
    }
}

/// The response, in request order; consecutive entries of one topic share a topic entry.
fn response(request: &ArchivedProduceRequest, answers: Vec<Answer>, acks: i16) -> ProduceResponse {
    let mut topics: Vec<ProduceTopicResponse> = Vec::new();
    let mut answers = answers.into_iter();
    for topic in request.topics.iter() {
        let name = topic.name.as_str();
        let mut partitions = topic.partitions.iter().zip(answers.by_ref()).map(|(partition, answer)| {
            let (error_code, base_offset, error_message) = answer.into_wire(acks);
            ProducePartitionResponse {
                partition: partition.partition.to_native(),
                error_code: error_code.as_u16(),
                base_offset,
                log_start_offset: OFFSET_UNKNOWN,
                error_message,
            }
        });
        let Some(first) = partitions.next() else { continue };
        match topics.last_mut() {
            Some(last) if last.name == name => last.partitions.push(first),
            _ => topics.push(ProduceTopicResponse { name: name.to_owned(), partitions: vec![first] }),
        }
        if let Some(last) = topics.last_mut() {
            last.partitions.extend(partitions);
        }
    }
    ProduceResponse { topics }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Guards the zero-copy split of a produce payload: ranges in any order, gaps skipped,
    /// overlapping or out-of-bounds ranges refused without affecting the others.
    #[test]
    fn payload_ranges_are_cut_in_place_and_bad_ones_refused() {
        let payload = BytesMut::from(&b"aaaabbbbccccdddd"[..]);
        let ranges = [(8, 4), (0, 4), (2, 4), (12, 8), (12, 4)];
        let out = split_payload(payload, &ranges);
        let texts: Vec<_> = out.iter().map(|slice| slice.as_ref().ok().map(|b| b.to_vec())).collect();
        assert_eq!(texts[0], Some(b"cccc".to_vec()));
        assert_eq!(texts[1], Some(b"aaaa".to_vec()));
        assert_eq!(texts[2], None, "overlaps partition 1's range");
        assert_eq!(texts[3], None, "runs past the payload");
        assert_eq!(texts[4], Some(b"dddd".to_vec()));

        // In payload order (the usual case, no sort): the same cuts and refusals.
        let payload = BytesMut::from(&b"aaaabbbbccccdddd"[..]);
        let out = split_payload(payload, &[(0, 4), (2, 4), (8, 4), (12, 8)]);
        let texts: Vec<_> = out.iter().map(|slice| slice.as_ref().ok().map(|b| b.to_vec())).collect();
        assert_eq!(texts, vec![Some(b"aaaa".to_vec()), None, Some(b"cccc".to_vec()), None]);
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
        let mut batches = Vec::new();
        let count = split_and_validate(request, small.len() + large.len(), &mut batches).expect("valid batches");
        assert_eq!((count, batches.len()), (2, 2));
        assert_eq!(&batches[0][..], &small[..]);
        assert_eq!(&batches[1][..], &large[..]);
        assert!(!request_range.contains(&(batches[0].as_ptr() as usize)), "the small batch is copied");
        assert_eq!(batches[1].as_ptr() as usize, start + small.len(), "the large one is not");

        // The same large batch beside a request payload three times its size is detached too.
        let mut request = BytesMut::from(&large[..]);
        let start = request.as_ptr();
        let mut kept = Vec::new();
        split_and_validate(request.split(), large.len(), &mut kept).expect("valid batch");
        assert_eq!(kept[0].as_ptr(), start, "most of the request: kept in place");
        let mut request = BytesMut::from(&large[..]);
        let start = request.as_ptr();
        let mut detached = Vec::new();
        split_and_validate(request.split(), 3 * large.len(), &mut detached).expect("valid batch");
        assert_ne!(detached[0].as_ptr(), start, "a third of the request: copied");
        assert_eq!(&detached[0][..], &large[..]);
    }
}
