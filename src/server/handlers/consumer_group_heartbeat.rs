//! ConsumerGroupHeartbeat: validated here, run on the group's coordinator shard, which appends
//! the group's new epoch (if it moved) durably before answering.

use std::rc::Rc;

use super::{call_coordinator, reply_error};
use crate::protocol::{
    decode_envelope, decode_envelope_owned, encode_response, ConsumerGroupHeartbeatRequest,
    ConsumerGroupHeartbeatResponse, EncodedFrame, OwnedFrame, ProtocolError, ResponseTo,
};
use crate::shard::ops::{GroupOp, GroupReply, ShardReply};
use crate::shard::state::Shard;

pub async fn handle(shard: &Rc<Shard>, to: ResponseTo, frame: &OwnedFrame) -> Result<EncodedFrame, ProtocolError> {
    let archived = decode_envelope::<ConsumerGroupHeartbeatRequest>(frame.envelope.as_slice())?;
    let failed = |code: crate::protocol::ErrorCode, message: String| ConsumerGroupHeartbeatResponse {
        error_code: code.as_u16(),
        error_message: message,
        member_id: archived.member_id.to_string(),
        member_epoch: archived.member_epoch.to_native(),
        heartbeat_interval_ms: 0,
        assignment: None,
    };
    if let Err(code) = archived.validate() {
        return encode_response(to, &failed(code, format!("invalid heartbeat: {code}")), Vec::new());
    }
    let request = decode_envelope_owned::<ConsumerGroupHeartbeatRequest>(frame.envelope.as_slice())?;
    let group_id = request.group_id.clone();
    let response = match call_coordinator(shard, &group_id, GroupOp::Heartbeat(request)).await {
        ShardReply::Group(GroupReply::Heartbeat(response)) => response,
        other => {
            let (code, message) = reply_error(&other);
            failed(code, message)
        }
    };
    encode_response(to, &response, Vec::new())
}
