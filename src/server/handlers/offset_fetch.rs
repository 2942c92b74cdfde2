//! OffsetFetch: the committed (durable) offsets, from the group's coordinator shard.

use std::rc::Rc;

use super::{call_coordinator, reply_error};
use crate::protocol::{
    decode_envelope, decode_envelope_owned, encode_response, EncodedFrame, OffsetFetchRequest, OffsetFetchResponse,
    OwnedFrame, ProtocolError, ResponseTo,
};
use crate::shard::ops::{GroupOp, GroupReply, ShardReply};
use crate::shard::state::Shard;

pub async fn handle(shard: &Rc<Shard>, to: ResponseTo, frame: &OwnedFrame) -> Result<EncodedFrame, ProtocolError> {
    let archived = decode_envelope::<OffsetFetchRequest>(frame.envelope.as_slice())?;
    if let Err(code) = archived.validate() {
        return encode_response(to, &OffsetFetchResponse { error_code: code.as_u16(), topics: Vec::new() }, Vec::new());
    }
    let request = decode_envelope_owned::<OffsetFetchRequest>(frame.envelope.as_slice())?;
    let group_id = request.group_id.clone();
    let response = match call_coordinator(shard, &group_id, GroupOp::OffsetFetch(request)).await {
        ShardReply::Group(GroupReply::OffsetFetch(response)) => response,
        other => OffsetFetchResponse { error_code: reply_error(&other).0.as_u16(), topics: Vec::new() },
    };
    encode_response(to, &response, Vec::new())
}
