//! LeaveGroup: run on the group's coordinator shard; the new group epoch is durable before
//! the answer.

use std::rc::Rc;

use super::{call_coordinator, reply_error};
use crate::protocol::{
    decode_envelope, decode_envelope_owned, encode_response, EncodedFrame, LeaveGroupRequest, LeaveGroupResponse,
    OwnedFrame, ProtocolError, ResponseTo,
};
use crate::shard::ops::{GroupOp, GroupReply, ShardReply};
use crate::shard::state::Shard;

pub async fn handle(shard: &Rc<Shard>, to: ResponseTo, frame: &OwnedFrame) -> Result<EncodedFrame, ProtocolError> {
    let archived = decode_envelope::<LeaveGroupRequest>(frame.envelope.as_slice())?;
    if let Err(code) = archived.validate() {
        return encode_response(to, &LeaveGroupResponse { error_code: code.as_u16(), members: Vec::new() }, Vec::new());
    }
    let request = decode_envelope_owned::<LeaveGroupRequest>(frame.envelope.as_slice())?;
    let group_id = request.group_id.clone();
    let response = match call_coordinator(shard, &group_id, GroupOp::LeaveGroup(request)).await {
        ShardReply::Group(GroupReply::LeaveGroup(response)) => response,
        other => LeaveGroupResponse { error_code: reply_error(&other).0.as_u16(), members: Vec::new() },
    };
    encode_response(to, &response, Vec::new())
}
