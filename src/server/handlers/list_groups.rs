//! ListGroups: every shard coordinates some groups; ask each and merge (sorted by group id).
//! A shard that cannot answer (still loading, shutting down) sets the response's error code;
//! the groups of the others are still listed.

use std::rc::Rc;

use futures::future::join_all;

use super::reply_error;
use crate::protocol::{
    decode_envelope, decode_envelope_owned, encode_response, EncodedFrame, ErrorCode, ListGroupsRequest,
    ListGroupsResponse, OwnedFrame, ProtocolError, ResponseTo,
};
use crate::server::routing::run_on;
use crate::shard::ops::{GroupOp, GroupReply, ShardOp, ShardReply};
use crate::shard::placement::ShardId;
use crate::shard::state::Shard;

pub async fn handle(shard: &Rc<Shard>, to: ResponseTo, frame: &OwnedFrame) -> Result<EncodedFrame, ProtocolError> {
    let archived = decode_envelope::<ListGroupsRequest>(frame.envelope.as_slice())?;
    if let Err(code) = archived.validate() {
        return encode_response(to, &ListGroupsResponse { error_code: code.as_u16(), groups: Vec::new() }, Vec::new());
    }
    let request = decode_envelope_owned::<ListGroupsRequest>(frame.envelope.as_slice())?;
    let calls = (0..shard.settings.shard_count)
        .map(|id| run_on(shard, ShardId(id), ShardOp::Group(GroupOp::ListGroups(request.clone()))));
    let mut merged = ListGroupsResponse { error_code: ErrorCode::None.as_u16(), groups: Vec::new() };
    for reply in join_all(calls).await {
        let (code, groups) = match reply {
            ShardReply::Group(GroupReply::ListGroups(response)) => (response.error_code, response.groups),
            other => (reply_error(&other).0.as_u16(), Vec::new()),
        };
        if merged.error_code == ErrorCode::None.as_u16() {
            merged.error_code = code;
        }
        merged.groups.extend(groups);
    }
    merged.groups.sort_by(|a, b| a.group_id.cmp(&b.group_id));
    encode_response(to, &merged, Vec::new())
}
