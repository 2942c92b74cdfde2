//! OffsetCommit: run on the group's coordinator shard: validated against the group, appended
//! durably to the offsets topic, applied, then answered (StorageError if the append failed).

use std::rc::Rc;

use super::{call_coordinator, reply_error};
use crate::protocol::{
    decode_envelope, decode_envelope_owned, encode_response, EncodedFrame, OffsetCommitRequest, OffsetCommitResponse,
    OwnedFrame, ProtocolError, ResponseTo,
};
use crate::shard::ops::{GroupOp, GroupReply, ShardReply};
use crate::shard::state::Shard;

pub async fn handle(shard: &Rc<Shard>, to: ResponseTo, frame: &OwnedFrame) -> Result<EncodedFrame, ProtocolError> {
    let archived = decode_envelope::<OffsetCommitRequest>(frame.envelope.as_slice())?;
    if let Err(code) = archived.validate() {
        return encode_response(
            to,
            &OffsetCommitResponse { error_code: code.as_u16(), topics: Vec::new() },
            Vec::new(),
        );
    }
    let request = decode_envelope_owned::<OffsetCommitRequest>(frame.envelope.as_slice())?;
    let group_id = request.group_id.clone();
    let response = match call_coordinator(shard, &group_id, GroupOp::OffsetCommit(request)).await {
        ShardReply::Group(GroupReply::OffsetCommit(response)) => response,
        other => OffsetCommitResponse { error_code: reply_error(&other).0.as_u16(), topics: Vec::new() },
    };
    encode_response(to, &response, Vec::new())
}
