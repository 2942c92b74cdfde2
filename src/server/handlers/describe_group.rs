//! DescribeGroup: the group's state and members, from its coordinator shard (which first
//! expires silent members and appends the resulting epoch change).

use std::rc::Rc;

use super::{call_coordinator, reply_error};
use crate::protocol::{
    decode_envelope, decode_envelope_owned, encode_response, DescribeGroupRequest, DescribeGroupResponse, EncodedFrame,
    OwnedFrame, ProtocolError, ResponseTo,
};
use crate::shard::ops::{GroupOp, GroupReply, ShardReply};
use crate::shard::state::Shard;

pub async fn handle(shard: &Rc<Shard>, to: ResponseTo, frame: &OwnedFrame) -> Result<EncodedFrame, ProtocolError> {
    let archived = decode_envelope::<DescribeGroupRequest>(frame.envelope.as_slice())?;
    let failed = |code: crate::protocol::ErrorCode| DescribeGroupResponse {
        error_code: code.as_u16(),
        group_id: archived.group_id.to_string(),
        ..DescribeGroupResponse::default()
    };
    if let Err(code) = archived.validate() {
        return encode_response(to, &failed(code), Vec::new());
    }
    let request = decode_envelope_owned::<DescribeGroupRequest>(frame.envelope.as_slice())?;
    let group_id = request.group_id.clone();
    let response = match call_coordinator(shard, &group_id, GroupOp::DescribeGroup(request)).await {
        ShardReply::Group(GroupReply::DescribeGroup(response)) => response,
        other => failed(reply_error(&other).0),
    };
    encode_response(to, &response, Vec::new())
}
