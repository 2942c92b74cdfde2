//! Envelope encoding and checked decoding, payload-section helpers, and the protocol error.
//!
//! Encoding writes the frame header and the envelope archive into one aligned buffer and keeps
//! the payload batches as separate [`Bytes`], so a sender can hand header + envelope + batches to
//! one vectored write without copying a batch. Decoding validates the envelope with rkyv's
//! checked access (bytecheck) and returns a reference into the receive buffer.

use std::io::IoSlice;

use bytes::Bytes;
use rkyv::api::high::{HighDeserializer, HighSerializer, HighValidator};
use rkyv::bytecheck::CheckBytes;
use rkyv::rancor;
use rkyv::ser::allocator::ArenaHandle;
use rkyv::util::AlignedVec;
use rkyv::{Archive, Deserialize, Portable, Serialize};

use super::frame::{
    padded_body_length, FrameError, FrameHeader, ENVELOPE_ALIGN_BYTES, FLAGS_KNOWN, FLAG_ERROR, FLAG_RESPONSE,
    FRAME_HEADER_BYTES,
};
use super::{ApiKey, ErrorCode, ErrorResponse};

/// A type that travels as a frame's envelope: an rkyv archive that can be checked on receipt.
///
/// Archived envelopes must not need more than [`ENVELOPE_ALIGN_BYTES`] of alignment, because
/// that is all the framing guarantees (each API file asserts it at compile time).
pub trait Envelope:
    Sized
    + Archive<
        Archived: Portable
                      + for<'a> CheckBytes<HighValidator<'a, rancor::Error>>
                      + Deserialize<Self, HighDeserializer<rancor::Error>>,
    > + for<'a> Serialize<HighSerializer<AlignedVec, ArenaHandle<'a>, rancor::Error>>
{
}

/// A request envelope: which API it belongs to and what it is answered with.
pub trait Request: Envelope {
    const API_KEY: ApiKey;
    /// The version this build writes: v0 unless the API says otherwise.
    const API_VERSION: u16 = 0;
    type Response: Envelope;
}

/// Declares envelope types and checks their archived alignment at compile time.
macro_rules! envelopes {
    ($($ty:ty),+ $(,)?) => {
        $(
            impl $crate::protocol::codec::Envelope for $ty {}
            const _: () = assert!(
                ::core::mem::align_of::<<$ty as ::rkyv::Archive>::Archived>()
                    <= $crate::protocol::frame::ENVELOPE_ALIGN_BYTES
            );
        )+
    };
}
pub(crate) use envelopes;

/// Everything that can go wrong between bytes and a checked envelope.
#[derive(Debug, thiserror::Error)]
pub enum ProtocolError {
    /// The header itself is bad: answer (best effort) and close the connection.
    #[error(transparent)]
    Frame(#[from] FrameError),
    /// The envelope failed rkyv's check; the frame boundary is intact.
    #[error("corrupt envelope: {0}")]
    CorruptEnvelope(#[source] rancor::Error),
    /// `decode_envelope` was handed a buffer that does not start 8-aligned. A caller bug: copy
    /// the envelope with `aligned_copy` (or use `FrameDecoder::split_frame`, which does).
    #[error("envelope buffer at address {address:#x} is not {ENVELOPE_ALIGN_BYTES}-aligned")]
    UnalignedEnvelope { address: usize },
    #[error("serializing the envelope failed: {0}")]
    Encode(#[source] rancor::Error),
    /// The encoded frame does not fit the u32 length fields.
    #[error("frame too large to encode: envelope {body_length} + payload {payload_length} bytes")]
    EncodeTooLarge { body_length: usize, payload_length: u64 },
    /// An envelope's (offset, length) points outside the payload section.
    #[error("payload range {offset}+{length} is outside the {payload_length}-byte payload section")]
    PayloadOutOfRange { offset: u32, length: u32, payload_length: usize },
    #[error("unknown api key {0}")]
    UnknownApiKey(u16),
    #[error("{api_key} v{version} is not supported")]
    UnsupportedVersion { api_key: ApiKey, version: u16 },
    /// A request with the response flag or with unknown flag bits.
    #[error("unexpected frame flags {flags:#06x}")]
    UnexpectedFlags { flags: u16 },
    /// A response whose api key does not match the request it answers.
    #[error("response for api key {found}, expected {expected}")]
    ApiMismatch { expected: ApiKey, found: u16 },
}

impl ProtocolError {
    /// The wire code to answer with.
    pub fn error_code(&self) -> ErrorCode {
        match self {
            ProtocolError::Frame(err) => err.error_code(),
            ProtocolError::CorruptEnvelope(_) => ErrorCode::CorruptMessage,
            ProtocolError::UnalignedEnvelope { .. } | ProtocolError::Encode(_) => ErrorCode::Unknown,
            ProtocolError::EncodeTooLarge { .. } => ErrorCode::MessageTooLarge,
            ProtocolError::PayloadOutOfRange { .. }
            | ProtocolError::UnexpectedFlags { .. }
            | ProtocolError::ApiMismatch { .. } => ErrorCode::InvalidRequest,
            ProtocolError::UnknownApiKey(_) => ErrorCode::UnknownApiKey,
            ProtocolError::UnsupportedVersion { .. } => ErrorCode::UnsupportedVersion,
        }
    }

    /// Whether the connection must be closed (after the error response): true when the frame
    /// boundary can no longer be trusted. Every other error is answered and the connection
    /// reads the next frame.
    pub fn closes_connection(&self) -> bool {
        matches!(self, ProtocolError::Frame(_))
    }
}

/// Identifies the request a response answers: echoed from the request header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ResponseTo {
    pub correlation_id: u32,
    pub api_key: u16,
    pub api_version: u16,
}

impl From<&FrameHeader> for ResponseTo {
    fn from(header: &FrameHeader) -> ResponseTo {
        ResponseTo { correlation_id: header.correlation_id, api_key: header.api_key, api_version: header.api_version }
    }
}

/// A frame ready to send: header + envelope (+ padding) in one aligned buffer, then the payload
/// batches as they were given, uncopied.
#[derive(Debug)]
pub struct EncodedFrame {
    header: FrameHeader,
    /// Header, envelope archive and zero padding to 8.
    head: AlignedVec,
    /// The payload section, in order.
    payload: Vec<Bytes>,
}

impl EncodedFrame {
    /// The header as written at the start of `head`.
    pub fn header(&self) -> FrameHeader {
        self.header
    }

    /// Header, envelope and padding: the first buffer to write.
    pub fn head(&self) -> &[u8] {
        &self.head
    }

    /// The payload section's buffers, to write after [`EncodedFrame::head`].
    pub fn payload(&self) -> &[Bytes] {
        &self.payload
    }

    /// The head buffer and the payload buffers, for a writer that takes ownership.
    pub fn into_parts(self) -> (AlignedVec, Vec<Bytes>) {
        (self.head, self.payload)
    }

    /// Total bytes on the wire.
    pub fn len(&self) -> usize {
        self.head.len() + self.payload.iter().map(Bytes::len).sum::<usize>()
    }

    pub fn is_empty(&self) -> bool {
        false
    }

    /// The frame as slices for one vectored write (`writev` / `sendmsg`).
    pub fn io_slices(&self) -> Vec<IoSlice<'_>> {
        let mut slices = Vec::with_capacity(1 + self.payload.len());
        slices.push(IoSlice::new(&self.head));
        slices.extend(self.payload.iter().map(|part| IoSlice::new(part)));
        slices
    }

    /// The frame in one contiguous buffer (copies the payload: tests and small frames only).
    pub fn to_vec(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.len());
        out.extend_from_slice(&self.head);
        for part in &self.payload {
            out.extend_from_slice(part);
        }
        out
    }
}

fn encode_frame<T: Envelope>(
    to: ResponseTo,
    flags: u16,
    envelope: &T,
    payload: Vec<Bytes>,
) -> Result<EncodedFrame, ProtocolError> {
    let mut head = AlignedVec::with_capacity(256);
    head.extend_from_slice(&[0u8; FRAME_HEADER_BYTES]);
    // Serializing after the header keeps rkyv's alignment right: the header is a multiple of 8
    // and rkyv pads relative to the (16-aligned) start of `head`.
    let mut head = rkyv::api::high::to_bytes_in::<_, rancor::Error>(envelope, head).map_err(ProtocolError::Encode)?;
    let body_length = head.len() - FRAME_HEADER_BYTES;
    let payload_length: u64 = payload.iter().map(|part| part.len() as u64).sum();
    let too_large = || ProtocolError::EncodeTooLarge { body_length, payload_length };
    let body_length_u32 = u32::try_from(body_length).map_err(|_| too_large())?;
    let payload_length_u32 = u32::try_from(payload_length).map_err(|_| too_large())?;
    head.resize(FRAME_HEADER_BYTES + padded_body_length(body_length_u32) as usize, 0);
    let header = FrameHeader {
        body_length: body_length_u32,
        payload_length: payload_length_u32,
        api_key: to.api_key,
        api_version: to.api_version,
        correlation_id: to.correlation_id,
        flags,
    };
    // A frame whose lengths do not fit the receivers' u32 limit could never be accepted.
    if header.frame_bytes_after_header() > u64::from(u32::MAX) {
        return Err(too_large());
    }
    head[..FRAME_HEADER_BYTES].copy_from_slice(&header.encode());
    Ok(EncodedFrame { header, head, payload })
}

/// Encodes a request frame. `payload` is the payload section (record batches); the envelope's
/// (offset, length) pairs must point into it (see [`PayloadBuilder`]).
pub fn encode_request<T: Request>(
    correlation_id: u32,
    request: &T,
    payload: Vec<Bytes>,
) -> Result<EncodedFrame, ProtocolError> {
    let to = ResponseTo { correlation_id, api_key: T::API_KEY.as_u16(), api_version: T::API_VERSION };
    encode_frame(to, 0, request, payload)
}

/// Encodes the normal response to the request identified by `to`.
pub fn encode_response<T: Envelope>(
    to: ResponseTo,
    response: &T,
    payload: Vec<Bytes>,
) -> Result<EncodedFrame, ProtocolError> {
    encode_frame(to, FLAG_RESPONSE, response, payload)
}

/// Encodes an [`ErrorResponse`] (flags: response + error) to the request identified by `to`.
pub fn encode_error_response(
    to: ResponseTo,
    error_code: ErrorCode,
    message: &str,
) -> Result<EncodedFrame, ProtocolError> {
    let response = ErrorResponse { error_code: error_code.as_u16(), message: message.to_owned() };
    encode_frame(to, FLAG_RESPONSE | FLAG_ERROR, &response, Vec::new())
}

/// Checks a request header before its envelope is decoded: no response or unknown flags, a
/// known API key, a supported version. Returns the API to dispatch to.
pub fn check_request_header(header: &FrameHeader) -> Result<ApiKey, ProtocolError> {
    if header.flags & !FLAGS_KNOWN != 0 || header.is_response() || header.is_error() {
        return Err(ProtocolError::UnexpectedFlags { flags: header.flags });
    }
    let api_key = ApiKey::from_u16(header.api_key).ok_or(ProtocolError::UnknownApiKey(header.api_key))?;
    if !api_key.supported_versions().contains(header.api_version) {
        return Err(ProtocolError::UnsupportedVersion { api_key, version: header.api_version });
    }
    Ok(api_key)
}

/// Checks a response header on the client: a response to `expected`. Returns whether the body is
/// an [`ErrorResponse`] (decode it as such) rather than `expected`'s response type.
pub fn check_response_header(header: &FrameHeader, expected: ApiKey) -> Result<bool, ProtocolError> {
    if header.flags & !FLAGS_KNOWN != 0 || !header.is_response() {
        return Err(ProtocolError::UnexpectedFlags { flags: header.flags });
    }
    if header.api_key != expected.as_u16() {
        return Err(ProtocolError::ApiMismatch { expected, found: header.api_key });
    }
    Ok(header.is_error())
}

/// Validates `body` as an archived `T` and returns a reference into it (no copy).
///
/// `body` must be exactly the envelope (`body_length` bytes, no padding) and must start at an
/// 8-aligned address; an unaligned buffer is refused with `UnalignedEnvelope`, never a panic.
/// [`FrameDecoder::split_frame`](super::FrameDecoder::split_frame) guarantees both; a caller
/// reading into its own buffer can use [`aligned_copy`](super::aligned_copy).
pub fn decode_envelope<T: Envelope>(body: &[u8]) -> Result<&T::Archived, ProtocolError> {
    let address = body.as_ptr() as usize;
    if address % ENVELOPE_ALIGN_BYTES != 0 {
        return Err(ProtocolError::UnalignedEnvelope { address });
    }
    rkyv::access::<T::Archived, rancor::Error>(body).map_err(ProtocolError::CorruptEnvelope)
}

/// [`decode_envelope`], then deserializes into an owned `T` (allocates; the client side and
/// tests use it, the broker's hot paths read the archive in place).
pub fn decode_envelope_owned<T: Envelope>(body: &[u8]) -> Result<T, ProtocolError> {
    let archived = decode_envelope::<T>(body)?;
    rkyv::deserialize::<T, rancor::Error>(archived).map_err(ProtocolError::CorruptEnvelope)
}

/// The bytes `offset..offset + length` of the payload section, as a zero-copy view; an error if
/// the range is not inside it (the lengths come from an untrusted envelope).
pub fn payload_slice(payload: &Bytes, offset: u32, length: u32) -> Result<Bytes, ProtocolError> {
    let start = offset as usize;
    match start.checked_add(length as usize) {
        Some(end) if end <= payload.len() => Ok(payload.slice(start..end)),
        _ => Err(ProtocolError::PayloadOutOfRange { offset, length, payload_length: payload.len() }),
    }
}

/// Where one partition's batches sit in the payload section.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PayloadRange {
    pub offset: u32,
    pub length: u32,
}

/// Builds a payload section from batch buffers without copying them, handing out the
/// (offset, length) to put in the envelope.
#[derive(Debug, Default)]
pub struct PayloadBuilder {
    parts: Vec<Bytes>,
    length: u32,
}

impl PayloadBuilder {
    pub fn new() -> PayloadBuilder {
        PayloadBuilder::default()
    }

    /// Appends `batches` (one or more whole batches back to back) and returns their range.
    pub fn push(&mut self, batches: Bytes) -> Result<PayloadRange, ProtocolError> {
        let length = u32::try_from(batches.len()).ok();
        let end = length.and_then(|length| self.length.checked_add(length));
        let (Some(length), Some(end)) = (length, end) else {
            return Err(ProtocolError::EncodeTooLarge {
                body_length: 0,
                payload_length: u64::from(self.length) + batches.len() as u64,
            });
        };
        let range = PayloadRange { offset: self.length, length };
        if length > 0 {
            self.parts.push(batches);
        }
        self.length = end;
        Ok(range)
    }

    /// Payload bytes so far.
    pub fn len(&self) -> u32 {
        self.length
    }

    pub fn is_empty(&self) -> bool {
        self.length == 0
    }

    /// The payload section, to pass to `encode_request` / `encode_response`.
    pub fn finish(self) -> Vec<Bytes> {
        self.parts
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Guards the bounds check on envelope-supplied payload ranges, including u32 overflow.
    #[test]
    fn payload_slice_checks_bounds() {
        let payload = Bytes::from_static(&[1, 2, 3, 4, 5, 6, 7, 8]);
        assert_eq!(&payload_slice(&payload, 0, 8).unwrap()[..], &payload[..]);
        assert_eq!(&payload_slice(&payload, 2, 3).unwrap()[..], &[3, 4, 5]);
        assert!(payload_slice(&payload, 8, 0).unwrap().is_empty());
        for (offset, length) in [(0, 9), (8, 1), (9, 0), (u32::MAX, 1), (1, u32::MAX)] {
            let err = payload_slice(&payload, offset, length).unwrap_err();
            assert!(matches!(err, ProtocolError::PayloadOutOfRange { .. }), "{err}");
            assert_eq!(err.error_code(), ErrorCode::InvalidRequest);
            assert!(!err.closes_connection());
        }
    }

    #[test]
    fn payload_builder_hands_out_ranges() {
        let mut builder = PayloadBuilder::new();
        let a = builder.push(Bytes::from_static(&[0u8; 16])).unwrap();
        let empty = builder.push(Bytes::new()).unwrap();
        let b = builder.push(Bytes::from_static(&[1u8; 8])).unwrap();
        assert_eq!(a, PayloadRange { offset: 0, length: 16 });
        assert_eq!(empty, PayloadRange { offset: 16, length: 0 });
        assert_eq!(b, PayloadRange { offset: 16, length: 8 });
        assert_eq!(builder.len(), 24);
        assert_eq!(builder.finish().len(), 2);
    }

    #[test]
    fn request_header_checks() {
        let mut header = FrameHeader {
            body_length: 8,
            payload_length: 0,
            api_key: ApiKey::Fetch.as_u16(),
            api_version: 0,
            correlation_id: 1,
            flags: 0,
        };
        assert_eq!(check_request_header(&header).unwrap(), ApiKey::Fetch);
        header.api_version = 1;
        assert_eq!(check_request_header(&header).unwrap_err().error_code(), ErrorCode::UnsupportedVersion);
        header.api_version = 0;
        header.api_key = 99;
        assert_eq!(check_request_header(&header).unwrap_err().error_code(), ErrorCode::UnknownApiKey);
        header.api_key = ApiKey::Fetch.as_u16();
        for flags in [FLAG_RESPONSE, FLAG_ERROR, 1 << 7] {
            header.flags = flags;
            assert_eq!(check_request_header(&header).unwrap_err().error_code(), ErrorCode::InvalidRequest);
        }
    }
}
