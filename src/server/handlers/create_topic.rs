use std::rc::Rc;

use crate::protocol::{
    decode_envelope, encode_response, CreateTopicRequest, CreateTopicResponse, EncodedFrame, ErrorCode, OwnedFrame,
    ProtocolError, ResponseTo,
};
use crate::server::routing::{run_on, METADATA_SHARD};
use crate::server::topics::TopicConfig;
use crate::shard::ops::{ShardOp, ShardReply};
use crate::shard::state::Shard;

pub async fn handle(shard: &Rc<Shard>, to: ResponseTo, frame: &OwnedFrame) -> Result<EncodedFrame, ProtocolError> {
    let request = decode_envelope::<CreateTopicRequest>(frame.envelope.as_slice())?;
    let respond = |code: ErrorCode, message: String| {
        encode_response(to, &CreateTopicResponse { error_code: code.as_u16(), error_message: message }, Vec::new())
    };
    if let Err(code) = request.validate() {
        let reason = match code {
            ErrorCode::InvalidTopicName => {
                "a topic name is 1 to 249 characters of a-z, A-Z, 0-9, '.', '_' and '-', and not '.' or '..'"
                    .to_string()
            }
            ErrorCode::InvalidPartitions => {
                format!("partitions must be 1 to {}", crate::protocol::apis::create_topic::PARTITIONS_MAX)
            }
            _ => format!(
                "retention must be -1 (no limit) or more, and segment bytes 0 (broker default) or {} to {}",
                crate::protocol::apis::create_topic::SEGMENT_BYTES_MIN,
                crate::protocol::apis::create_topic::SEGMENT_BYTES_MAX
            ),
        };
        return respond(code, reason);
    }
    let settings = &shard.settings;
    let or_default = |value: i64, default: i64| if value == 0 { default } else { value };
    let segment_bytes = match request.segment_bytes.to_native() {
        0 => settings.default_segment_bytes,
        bytes => bytes,
    };
    let topic = TopicConfig {
        name: request.name.to_string(),
        partitions: request.partitions.to_native(),
        retention_ms: or_default(request.retention_ms.to_native(), settings.default_retention_ms),
        retention_bytes: or_default(request.retention_bytes.to_native(), settings.default_retention_bytes),
        segment_bytes,
        segment_ms: settings.default_segment_ms,
    };
    match run_on(shard, METADATA_SHARD, ShardOp::CreateTopic { topic }).await {
        ShardReply::Done => respond(ErrorCode::None, String::new()),
        ShardReply::Failed { error_code, message } => respond(error_code, message),
        other => respond(ErrorCode::Unknown, format!("unexpected reply {other:?}")),
    }
}
