//! ListOffsets: earliest (log start), latest (high watermark) or the first offset at or after a
//! timestamp, per partition, from the partition's owner.

use std::collections::HashMap;
use std::rc::Rc;

use futures::future::join_all;

use crate::protocol::apis::list_offsets::ArchivedOffsetSpec;
use crate::protocol::{
    decode_envelope, encode_response, EncodedFrame, ErrorCode, ListOffsetsPartitionResponse, ListOffsetsRequest,
    ListOffsetsResponse, ListOffsetsTopicResponse, OwnedFrame, ProtocolError, ResponseTo, OFFSET_UNKNOWN,
};
use crate::server::routing::{group_by_owner, run_on};
use crate::shard::ops::{OffsetQuery, ShardOp, ShardReply, TopicPartition};
use crate::shard::state::Shard;

pub async fn handle(shard: &Rc<Shard>, to: ResponseTo, frame: &OwnedFrame) -> Result<EncodedFrame, ProtocolError> {
    let request = decode_envelope::<ListOffsetsRequest>(frame.envelope.as_slice())?;
    let mut order = Vec::new();
    let mut work = Vec::new();
    for topic in request.topics.iter() {
        for partition in topic.partitions.iter() {
            let tp = TopicPartition { topic: topic.name.to_string(), partition: partition.partition.to_native() };
            let query = match partition.spec {
                ArchivedOffsetSpec::Earliest => OffsetQuery::Earliest,
                ArchivedOffsetSpec::Latest => OffsetQuery::Latest,
                ArchivedOffsetSpec::Timestamp(timestamp) => OffsetQuery::Timestamp(timestamp.to_native()),
            };
            order.push(tp.clone());
            work.push((shard.owner_of(&tp), (tp, query)));
        }
    }
    let calls = group_by_owner(work).into_iter().map(|(owner, partitions)| async move {
        let asked: Vec<TopicPartition> = partitions.iter().map(|(tp, _)| tp.clone()).collect();
        (asked, run_on(shard, owner, ShardOp::ListOffsets { partitions }).await)
    });
    let mut outcomes: HashMap<TopicPartition, Result<(u64, i64), ErrorCode>> = HashMap::new();
    for (asked, reply) in join_all(calls).await {
        match reply {
            ShardReply::ListOffsets(results) => {
                for result in results {
                    outcomes.insert(result.topic_partition, result.outcome.map_err(|(code, _)| code));
                }
            }
            ShardReply::Failed { error_code, .. } => {
                for tp in asked {
                    outcomes.insert(tp, Err(error_code));
                }
            }
            _ => {}
        }
    }
    let mut topics: Vec<ListOffsetsTopicResponse> = Vec::new();
    for tp in order {
        let (error_code, offset, timestamp_ms) = match outcomes.get(&tp) {
            Some(Ok((offset, timestamp))) => (ErrorCode::None, *offset, *timestamp),
            Some(Err(code)) => (*code, OFFSET_UNKNOWN, -1),
            None => (ErrorCode::Unknown, OFFSET_UNKNOWN, -1),
        };
        let partition = ListOffsetsPartitionResponse {
            partition: tp.partition,
            error_code: error_code.as_u16(),
            offset,
            timestamp_ms,
        };
        match topics.last_mut() {
            Some(last) if last.name == tp.topic => last.partitions.push(partition),
            _ => topics.push(ListOffsetsTopicResponse { name: tp.topic, partitions: vec![partition] }),
        }
    }
    encode_response(to, &ListOffsetsResponse { topics }, Vec::new())
}
