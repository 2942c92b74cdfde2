//! Metadata: every requested topic (all when none is named) with its partitions, the shard that
//! owns each, and each partition's log start offset and high watermark from its owner. The
//! internal offsets topic appears only when asked for by name. v1 also lists each shard's own
//! port; a v0 request gets the v0 response, without them.

use std::collections::HashMap;
use std::rc::Rc;

use futures::future::join_all;

use crate::protocol::{
    decode_envelope, encode_response, EncodedFrame, ErrorCode, MetadataPartition, MetadataRequest, MetadataResponse,
    MetadataResponseV0, MetadataTopic, OwnedFrame, ProtocolError, ResponseTo,
};
use crate::server::routing::{group_by_owner, run_on};
use crate::shard::ops::{ShardOp, ShardReply, TopicPartition};
use crate::shard::state::Shard;

pub async fn handle(shard: &Rc<Shard>, to: ResponseTo, frame: &OwnedFrame) -> Result<EncodedFrame, ProtocolError> {
    let request = decode_envelope::<MetadataRequest>(frame.envelope.as_slice())?;
    let table = shard.topics();
    let names: Vec<String> = if request.topics.is_empty() {
        // The internal offsets topic is listed only when named.
        table.iter().filter(|topic| topic.name != crate::group::OFFSETS_TOPIC).map(|topic| topic.name.clone()).collect()
    } else {
        request.topics.iter().map(|name| name.to_string()).collect()
    };
    let mut work = Vec::new();
    for name in &names {
        if let Some(topic) = table.get(name) {
            for partition in 0..topic.partitions {
                let tp = TopicPartition { topic: name.clone(), partition };
                work.push((shard.owner_of(&tp), tp));
            }
        }
    }
    let calls = group_by_owner(work)
        .into_iter()
        .map(|(owner, partitions)| async move { run_on(shard, owner, ShardOp::PartitionInfo { partitions }).await });
    let mut bounds: HashMap<TopicPartition, (u64, u64)> = HashMap::new();
    for reply in join_all(calls).await {
        if let ShardReply::PartitionInfo(results) = reply {
            for result in results {
                bounds.insert(result.topic_partition, (result.log_start_offset, result.high_watermark));
            }
        }
    }
    let topics = names
        .iter()
        .map(|name| match table.get(name) {
            Some(topic) => MetadataTopic {
                name: name.clone(),
                error_code: ErrorCode::None.as_u16(),
                partitions: (0..topic.partitions)
                    .map(|partition| {
                        let tp = TopicPartition { topic: name.clone(), partition };
                        let (log_start_offset, high_watermark) = bounds.get(&tp).copied().unwrap_or_default();
                        MetadataPartition {
                            partition,
                            shard: shard.owner_of(&tp).0 as u32,
                            log_start_offset,
                            high_watermark,
                        }
                    })
                    .collect(),
                retention_ms: topic.retention_ms,
                retention_bytes: topic.retention_bytes,
                segment_bytes: topic.segment_bytes,
            },
            None => MetadataTopic {
                name: name.clone(),
                error_code: ErrorCode::UnknownTopicOrPartition.as_u16(),
                partitions: Vec::new(),
                retention_ms: 0,
                retention_bytes: 0,
                segment_bytes: 0,
            },
        })
        .collect();
    let response = MetadataResponse {
        shard_count: shard.settings.shard_count as u32,
        topics,
        shard_ports: shard.settings.shard_ports.clone(),
    };
    if to.api_version == 0 {
        return encode_response(to, &MetadataResponseV0::from(response), Vec::new());
    }
    encode_response(to, &response, Vec::new())
}
