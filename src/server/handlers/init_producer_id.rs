//! InitProducerId: a producer id and epoch for an idempotent producer, allocated on the
//! metadata shard (shard 0, see `crate::shard::producer_ids`) whatever shard the connection is
//! on. Transactional ids are refused until transactions exist.

use std::rc::Rc;

use crate::protocol::{
    decode_envelope, encode_response, EncodedFrame, ErrorCode, InitProducerIdRequest, InitProducerIdResponse,
    OwnedFrame, ProtocolError, ResponseTo,
};
use crate::server::routing::{run_on, METADATA_SHARD};
use crate::shard::ops::{ShardOp, ShardReply};
use crate::shard::state::Shard;

pub async fn handle(shard: &Rc<Shard>, to: ResponseTo, frame: &OwnedFrame) -> Result<EncodedFrame, ProtocolError> {
    let request = decode_envelope::<InitProducerIdRequest>(frame.envelope.as_slice())?;
    let fail = |code: ErrorCode, message: &str| {
        tracing::debug!(code = code.as_str(), message, "InitProducerId refused");
        encode_response(
            to,
            &InitProducerIdResponse { error_code: code.as_u16(), producer_id: -1, producer_epoch: -1 },
            Vec::new(),
        )
    };
    if let Err(code) = request.validate() {
        return fail(code, "invalid transactional id");
    }
    if request.transactional_id.is_some() {
        return fail(ErrorCode::InvalidRequest, "transactional ids are not supported yet");
    }
    match run_on(shard, METADATA_SHARD, ShardOp::InitProducerId { transactional_id: None }).await {
        ShardReply::ProducerId { producer_id, producer_epoch } => encode_response(
            to,
            &InitProducerIdResponse {
                error_code: ErrorCode::None.as_u16(),
                producer_id: producer_id.0,
                producer_epoch: producer_epoch.0,
            },
            Vec::new(),
        ),
        ShardReply::Failed { error_code, message } => fail(error_code, &message),
        other => fail(ErrorCode::Unknown, &format!("unexpected reply {other:?}")),
    }
}
