//! FindCoordinator: the shard that owns the group's offsets-topic partition. Any shard answers
//! from its topic table snapshot; no hop.

use std::rc::Rc;

use crate::group::coordinator_shard;
use crate::protocol::{
    decode_envelope, encode_response, EncodedFrame, ErrorCode, FindCoordinatorRequest, FindCoordinatorResponse,
    OwnedFrame, ProtocolError, ResponseTo,
};
use crate::shard::groups::offsets_partitions;
use crate::shard::state::Shard;

pub async fn handle(shard: &Rc<Shard>, to: ResponseTo, frame: &OwnedFrame) -> Result<EncodedFrame, ProtocolError> {
    let request = decode_envelope::<FindCoordinatorRequest>(frame.envelope.as_slice())?;
    let response = match request.validate() {
        Err(code) => FindCoordinatorResponse {
            error_code: code.as_u16(),
            error_message: "a group id is 1 to 255 bytes".into(),
            shard: 0,
        },
        Ok(()) => {
            let partitions = offsets_partitions(&shard.topics());
            let owner = coordinator_shard(request.group_id.as_str(), partitions, shard.settings.shard_count);
            FindCoordinatorResponse {
                error_code: ErrorCode::None.as_u16(),
                error_message: String::new(),
                shard: owner.0 as u32,
            }
        }
    };
    encode_response(to, &response, Vec::new())
}
