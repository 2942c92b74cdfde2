//! One handler per API, named after it. Each decodes its envelope with rkyv's checked access,
//! routes partition work to the owning shards, and encodes the response in request order.

pub mod api_versions;
pub mod consumer_group_heartbeat;
pub mod create_topic;
pub mod delete_topic;
pub mod describe_group;
pub mod fetch;
pub mod find_coordinator;
pub mod init_producer_id;
pub mod leave_group;
pub mod list_groups;
pub mod list_offsets;
pub mod metadata;
pub mod offset_commit;
pub mod offset_fetch;
pub mod produce;
pub mod produce_answers;

use std::rc::Rc;

use crate::group::coordinator_shard;
use crate::protocol::{
    check_request_header, encode_error_response, ApiKey, EncodedFrame, ErrorCode, OwnedFrame, ProtocolError, ResponseTo,
};
use crate::server::routing::run_on;
use crate::shard::groups::offsets_partitions;
use crate::shard::ops::{GroupOp, ShardOp, ShardReply};
use crate::shard::state::Shard;

/// APIs this build declares in `protocol` but the broker does not serve yet: answered
/// `UnknownApiKey` and left out of ApiVersions.
pub const NOT_SERVED: [ApiKey; 0] = [];

/// Runs the request in `frame` and returns the response frame; a request that cannot be
/// served gets an `ErrorResponse` with a stable code.
pub async fn dispatch(shard: &Rc<Shard>, frame: OwnedFrame) -> Result<EncodedFrame, ProtocolError> {
    let to = ResponseTo::from(&frame.header);
    let result = match check_request_header(&frame.header) {
        Ok(ApiKey::ApiVersions) => api_versions::handle(to, &frame),
        Ok(ApiKey::Metadata) => metadata::handle(shard, to, &frame).await,
        Ok(ApiKey::CreateTopic) => create_topic::handle(shard, to, &frame).await,
        Ok(ApiKey::DeleteTopic) => delete_topic::handle(shard, to, &frame).await,
        Ok(ApiKey::Produce) => produce::handle(shard, to, frame).await,
        Ok(ApiKey::Fetch) => fetch::handle(shard, to, &frame).await,
        Ok(ApiKey::ListOffsets) => list_offsets::handle(shard, to, &frame).await,
        Ok(ApiKey::FindCoordinator) => find_coordinator::handle(shard, to, &frame).await,
        Ok(ApiKey::ConsumerGroupHeartbeat) => consumer_group_heartbeat::handle(shard, to, &frame).await,
        Ok(ApiKey::LeaveGroup) => leave_group::handle(shard, to, &frame).await,
        Ok(ApiKey::OffsetCommit) => offset_commit::handle(shard, to, &frame).await,
        Ok(ApiKey::OffsetFetch) => offset_fetch::handle(shard, to, &frame).await,
        Ok(ApiKey::DescribeGroup) => describe_group::handle(shard, to, &frame).await,
        Ok(ApiKey::ListGroups) => list_groups::handle(shard, to, &frame).await,
        Ok(ApiKey::InitProducerId) => init_producer_id::handle(shard, to, &frame).await,
        Err(error) => Err(error),
    };
    match result {
        Ok(response) => Ok(response),
        Err(error) => encode_error_response(to, error.error_code(), &error.to_string()),
    }
}

/// Runs a group request on the group's coordinator shard (the owner of its offsets-topic
/// partition).
pub(crate) async fn call_coordinator(shard: &Rc<Shard>, group_id: &str, op: GroupOp) -> ShardReply {
    let partitions = offsets_partitions(&shard.topics());
    let owner = coordinator_shard(group_id, partitions, shard.settings.shard_count);
    run_on(shard, owner, ShardOp::Group(op)).await
}

/// The code and message for a reply that is not the expected group reply.
pub(crate) fn reply_error(reply: &ShardReply) -> (ErrorCode, String) {
    match reply {
        ShardReply::Failed { error_code, message } => (*error_code, message.clone()),
        other => (ErrorCode::Unknown, format!("unexpected reply {other:?}")),
    }
}
