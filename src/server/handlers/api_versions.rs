//! ApiVersions: the APIs this broker serves (those declared but not served are left out).

use crate::protocol::{
    decode_envelope, encode_response, ApiVersionsRequest, ApiVersionsResponse, EncodedFrame, OwnedFrame, ProtocolError,
    ResponseTo,
};

pub fn handle(to: ResponseTo, frame: &OwnedFrame) -> Result<EncodedFrame, ProtocolError> {
    decode_envelope::<ApiVersionsRequest>(frame.envelope.as_slice())?;
    let mut response = ApiVersionsResponse::supported();
    response.api_keys.retain(|range| super::NOT_SERVED.iter().all(|key| key.as_u16() != range.api_key));
    encode_response(to, &response, Vec::new())
}
