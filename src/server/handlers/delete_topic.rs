use std::rc::Rc;

use crate::protocol::{
    decode_envelope, encode_response, DeleteTopicRequest, DeleteTopicResponse, EncodedFrame, ErrorCode, OwnedFrame,
    ProtocolError, ResponseTo,
};
use crate::server::routing::{run_on, METADATA_SHARD};
use crate::shard::ops::{ShardOp, ShardReply};
use crate::shard::state::Shard;

pub async fn handle(shard: &Rc<Shard>, to: ResponseTo, frame: &OwnedFrame) -> Result<EncodedFrame, ProtocolError> {
    let request = decode_envelope::<DeleteTopicRequest>(frame.envelope.as_slice())?;
    let respond = |code: ErrorCode, message: String| {
        encode_response(to, &DeleteTopicResponse { error_code: code.as_u16(), error_message: message }, Vec::new())
    };
    match run_on(shard, METADATA_SHARD, ShardOp::DeleteTopic { name: request.name.to_string() }).await {
        ShardReply::Done => respond(ErrorCode::None, String::new()),
        ShardReply::Failed { error_code, message } => respond(error_code, message),
        other => respond(ErrorCode::Unknown, format!("unexpected reply {other:?}")),
    }
}
