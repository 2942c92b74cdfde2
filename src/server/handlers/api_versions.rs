use crate::protocol::{
    decode_envelope, encode_response, ApiVersionsRequest, ApiVersionsResponse, EncodedFrame, OwnedFrame, ProtocolError,
    ResponseTo,
};

pub fn handle(to: ResponseTo, frame: &OwnedFrame) -> Result<EncodedFrame, ProtocolError> {
    decode_envelope::<ApiVersionsRequest>(frame.envelope.as_slice())?;
    encode_response(to, &ApiVersionsResponse::supported(), Vec::new())
}
