//! The fixed frame header, frame limits, and a buffer-driven frame splitter (no I/O).
//!
//! ```text
//! byte  0      3   4            8               12        14          16               20      22       24
//!       ┌──────┬───┬────────────┬───────────────┬─────────┬───────────┬────────────────┬───────┬────────┐
//!       │ "RMQ"│ v │ body_length│ payload_length│ api_key │api_version│ correlation_id │ flags │reserved│
//!       └──────┴───┴────────────┴───────────────┴─────────┴───────────┴────────────────┴───────┴────────┘
//!        magic  u8   u32 LE       u32 LE          u16 LE    u16 LE      u32 LE           u16 LE  u16 (0)
//! ```
//!
//! After the header: the envelope (an rkyv archive, `body_length` bytes), zero padding up to the
//! next multiple of 8, then the payload section (`payload_length` bytes of record batches).
//! Because the header is 24 bytes and the envelope is padded, the envelope and the payload
//! section both start 8-aligned relative to the frame start.

use bytes::{Bytes, BytesMut};
use rkyv::util::AlignedVec;

/// Size of the fixed frame header in bytes.
pub const FRAME_HEADER_BYTES: usize = 24;
/// The first three bytes of every frame.
pub const FRAME_MAGIC: [u8; 3] = *b"RMQ";
/// The frame format version in byte 3. A new header layout takes a new number.
pub const FRAME_VERSION: u8 = 1;
/// Alignment of the envelope and of the payload section within a frame.
pub const ENVELOPE_ALIGN_BYTES: usize = 8;
/// Default bound on `padded body + payload` (the header is not counted).
pub const MAX_FRAME_BYTES_DEFAULT: u32 = 64 * 1024 * 1024;

const _: () = assert!(FRAME_HEADER_BYTES % ENVELOPE_ALIGN_BYTES == 0);
const _: () = assert!(ENVELOPE_ALIGN_BYTES.is_power_of_two());
const _: () = assert!((MAX_FRAME_BYTES_DEFAULT as usize) < u32::MAX as usize);

/// Bit 0 of `flags`: the frame is a response (clear on requests).
pub const FLAG_RESPONSE: u16 = 1 << 0;
/// Bit 1 of `flags`: the envelope is an `ErrorResponse`, not the API's normal response.
pub const FLAG_ERROR: u16 = 1 << 1;
/// Every flag bit this build knows.
pub const FLAGS_KNOWN: u16 = FLAG_RESPONSE | FLAG_ERROR;

/// Receiver-side limits, checked from the header alone, before any allocation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FrameLimits {
    /// Bound on the padded envelope plus the payload section, in bytes (header excluded).
    pub max_frame_bytes: u32,
}

impl Default for FrameLimits {
    fn default() -> Self {
        FrameLimits { max_frame_bytes: MAX_FRAME_BYTES_DEFAULT }
    }
}

/// A header that cannot be trusted: the frame boundary is lost (or the frame is refused), so the
/// receiver answers with an error response (if it can) and closes the connection.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error("bad frame magic {found:02x?}, expected \"RMQ\"")]
    BadMagic { found: [u8; 3] },
    #[error("unsupported frame format version {found}, this build speaks {FRAME_VERSION}")]
    UnsupportedFrameVersion { found: u8 },
    #[error(
        "frame too large: envelope {body_length} + payload {payload_length} bytes \
         exceeds the limit of {max_frame_bytes} bytes"
    )]
    FrameTooLarge { body_length: u32, payload_length: u32, max_frame_bytes: u32 },
}

impl FrameError {
    /// The wire code to put in the error response sent before closing.
    pub fn error_code(&self) -> crate::protocol::ErrorCode {
        use crate::protocol::ErrorCode;
        match self {
            FrameError::BadMagic { .. } => ErrorCode::CorruptMessage,
            FrameError::UnsupportedFrameVersion { .. } => ErrorCode::UnsupportedVersion,
            FrameError::FrameTooLarge { .. } => ErrorCode::MessageTooLarge,
        }
    }
}

/// The decoded fixed header of one frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FrameHeader {
    /// Exact length of the envelope archive, without its padding.
    pub body_length: u32,
    /// Length of the payload section (record batches back to back; 0 if none).
    pub payload_length: u32,
    /// Raw API key; see [`crate::protocol::ApiKey::from_u16`].
    pub api_key: u16,
    pub api_version: u16,
    /// Chosen by the client, echoed in the response.
    pub correlation_id: u32,
    /// [`FLAG_RESPONSE`], [`FLAG_ERROR`]; other bits must be zero.
    pub flags: u16,
}

/// `len` rounded up to the envelope alignment, in `u64` so that it cannot overflow.
pub const fn padded_body_length(body_length: u32) -> u64 {
    let align = ENVELOPE_ALIGN_BYTES as u64;
    (body_length as u64).div_ceil(align) * align
}

impl FrameHeader {
    /// Decodes and checks a header: magic, frame version, and the length limit. Nothing is
    /// allocated; call this before reserving space for the body.
    pub fn decode(bytes: &[u8; FRAME_HEADER_BYTES], limits: &FrameLimits) -> Result<FrameHeader, FrameError> {
        let magic = [bytes[0], bytes[1], bytes[2]];
        if magic != FRAME_MAGIC {
            return Err(FrameError::BadMagic { found: magic });
        }
        if bytes[3] != FRAME_VERSION {
            return Err(FrameError::UnsupportedFrameVersion { found: bytes[3] });
        }
        let u16_at = |at: usize| u16::from_le_bytes([bytes[at], bytes[at + 1]]);
        let u32_at = |at: usize| u32::from_le_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]]);
        let header = FrameHeader {
            body_length: u32_at(4),
            payload_length: u32_at(8),
            api_key: u16_at(12),
            api_version: u16_at(14),
            correlation_id: u32_at(16),
            flags: u16_at(20),
        };
        if header.frame_bytes_after_header() > u64::from(limits.max_frame_bytes) {
            return Err(FrameError::FrameTooLarge {
                body_length: header.body_length,
                payload_length: header.payload_length,
                max_frame_bytes: limits.max_frame_bytes,
            });
        }
        Ok(header)
    }

    /// The correlation id at its fixed position, read without any check: lets the receiver
    /// address its error response even when [`FrameHeader::decode`] refused the header.
    pub fn peek_correlation_id(bytes: &[u8; FRAME_HEADER_BYTES]) -> u32 {
        u32::from_le_bytes([bytes[16], bytes[17], bytes[18], bytes[19]])
    }

    /// Writes the header. The reserved bytes are written as zero.
    pub fn encode(&self) -> [u8; FRAME_HEADER_BYTES] {
        let mut out = [0u8; FRAME_HEADER_BYTES];
        out[0..3].copy_from_slice(&FRAME_MAGIC);
        out[3] = FRAME_VERSION;
        out[4..8].copy_from_slice(&self.body_length.to_le_bytes());
        out[8..12].copy_from_slice(&self.payload_length.to_le_bytes());
        out[12..14].copy_from_slice(&self.api_key.to_le_bytes());
        out[14..16].copy_from_slice(&self.api_version.to_le_bytes());
        out[16..20].copy_from_slice(&self.correlation_id.to_le_bytes());
        out[20..22].copy_from_slice(&self.flags.to_le_bytes());
        out
    }

    /// Padded envelope plus payload section.
    pub fn frame_bytes_after_header(&self) -> u64 {
        padded_body_length(self.body_length) + u64::from(self.payload_length)
    }

    /// The whole frame, header included.
    pub fn frame_bytes(&self) -> u64 {
        FRAME_HEADER_BYTES as u64 + self.frame_bytes_after_header()
    }

    /// Offset of the payload section from the start of the frame.
    pub fn payload_start(&self) -> u64 {
        FRAME_HEADER_BYTES as u64 + padded_body_length(self.body_length)
    }

    pub fn is_response(&self) -> bool {
        self.flags & FLAG_RESPONSE != 0
    }

    pub fn is_error(&self) -> bool {
        self.flags & FLAG_ERROR != 0
    }

    /// Flag bits this build does not know (a request with any is answered `InvalidRequest`).
    pub fn unknown_flags(&self) -> u16 {
        self.flags & !FLAGS_KNOWN
    }
}

/// What [`FrameDecoder::status`] found in the input buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FrameStatus {
    /// At least this many more bytes are needed before the next step can be taken (the header,
    /// then the rest of the frame).
    NeedMore(usize),
    /// A whole frame of `header.frame_bytes()` bytes is at the front of the buffer.
    Ready(FrameHeader),
}

/// One complete frame split off the input buffer.
#[derive(Clone, Debug)]
pub struct Frame {
    pub header: FrameHeader,
    /// The envelope archive, 8-aligned in memory (copied only if the input was not aligned).
    pub envelope: EnvelopeBytes,
    /// The payload section: a view of the input buffer, never copied.
    pub payload: Bytes,
}

/// Envelope bytes that are guaranteed to start at an 8-aligned address, as rkyv's checked access
/// requires. Holds the input bytes as they were when they happened to be aligned, or an aligned
/// copy otherwise (the envelope is metadata only: batches are in the payload, never copied).
#[derive(Clone, Debug)]
pub struct EnvelopeBytes(EnvelopeRepr);

#[derive(Clone, Debug)]
enum EnvelopeRepr {
    Shared(Bytes),
    Copied(AlignedVec),
}

impl EnvelopeBytes {
    /// Wraps `bytes`, copying them into an aligned buffer if they do not start 8-aligned.
    pub fn new(bytes: Bytes) -> EnvelopeBytes {
        if (bytes.as_ptr() as usize) % ENVELOPE_ALIGN_BYTES == 0 {
            EnvelopeBytes(EnvelopeRepr::Shared(bytes))
        } else {
            EnvelopeBytes(EnvelopeRepr::Copied(aligned_copy(&bytes)))
        }
    }

    pub fn as_slice(&self) -> &[u8] {
        match &self.0 {
            EnvelopeRepr::Shared(bytes) => bytes,
            EnvelopeRepr::Copied(vec) => vec.as_slice(),
        }
    }
}

impl AsRef<[u8]> for EnvelopeBytes {
    fn as_ref(&self) -> &[u8] {
        self.as_slice()
    }
}

/// Copies `bytes` into a fresh buffer that starts 16-aligned: use it on an envelope read into an
/// unaligned buffer before calling `decode_envelope`.
pub fn aligned_copy(bytes: &[u8]) -> AlignedVec {
    let mut vec = AlignedVec::with_capacity(bytes.len());
    vec.extend_from_slice(bytes);
    vec
}

/// Splits frames off a growable input buffer. Owns no buffer and does no I/O: the connection
/// reads into its `BytesMut`, then asks the decoder what to do next.
#[derive(Clone, Copy, Debug, Default)]
pub struct FrameDecoder {
    pub limits: FrameLimits,
}

impl FrameDecoder {
    pub fn new(limits: FrameLimits) -> FrameDecoder {
        FrameDecoder { limits }
    }

    /// How far the frame at the front of `input` is from complete. The header is checked (and a
    /// too-large frame refused) as soon as its 24 bytes are present, so the caller can reserve
    /// `NeedMore(n)` bytes safely.
    pub fn status(&self, input: &[u8]) -> Result<FrameStatus, FrameError> {
        let Some(header_bytes) = input.first_chunk::<FRAME_HEADER_BYTES>() else {
            return Ok(FrameStatus::NeedMore(FRAME_HEADER_BYTES - input.len()));
        };
        let header = FrameHeader::decode(header_bytes, &self.limits)?;
        // Bounded by the limit (a u32) plus the header, so it fits a usize on 32- and 64-bit.
        let frame_bytes = header.frame_bytes() as usize;
        if input.len() < frame_bytes {
            Ok(FrameStatus::NeedMore(frame_bytes - input.len()))
        } else {
            Ok(FrameStatus::Ready(header))
        }
    }

    /// Splits the first frame off `input` if it is complete; `Ok(None)` means read more (see
    /// [`FrameDecoder::status`] for how much). The payload is a zero-copy view of `input`.
    pub fn split_frame(&self, input: &mut BytesMut) -> Result<Option<Frame>, FrameError> {
        let header = match self.status(input)? {
            FrameStatus::NeedMore(_) => return Ok(None),
            FrameStatus::Ready(header) => header,
        };
        let mut frame = input.split_to(header.frame_bytes() as usize).freeze();
        let payload = frame.split_off(header.payload_start() as usize);
        let envelope = frame.slice(FRAME_HEADER_BYTES..FRAME_HEADER_BYTES + header.body_length as usize);
        Ok(Some(Frame { header, envelope: EnvelopeBytes::new(envelope), payload }))
    }

    /// As [`FrameDecoder::split_frame`], but the payload stays a uniquely owned `BytesMut`, so
    /// that the receiver can cut it into batches and write into them (the broker stamps offsets
    /// into produced batches in place, without copying them).
    pub fn split_frame_owned(&self, input: &mut BytesMut) -> Result<Option<OwnedFrame>, FrameError> {
        let header = match self.status(input)? {
            FrameStatus::NeedMore(_) => return Ok(None),
            FrameStatus::Ready(header) => header,
        };
        let mut frame = input.split_to(header.frame_bytes() as usize);
        let payload = frame.split_off(header.payload_start() as usize);
        let envelope = frame.freeze().slice(FRAME_HEADER_BYTES..FRAME_HEADER_BYTES + header.body_length as usize);
        Ok(Some(OwnedFrame { header, envelope: EnvelopeBytes::new(envelope), payload }))
    }
}

/// A frame whose payload section is owned and writable (see [`FrameDecoder::split_frame_owned`]).
#[derive(Debug)]
pub struct OwnedFrame {
    pub header: FrameHeader,
    pub envelope: EnvelopeBytes,
    pub payload: BytesMut,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(body_length: u32, payload_length: u32) -> FrameHeader {
        FrameHeader {
            body_length,
            payload_length,
            api_key: 4,
            api_version: 0,
            correlation_id: 0xDEAD_BEEF,
            flags: FLAG_RESPONSE,
        }
    }

    /// Guards the owned split: same header, envelope and payload as the shared one.
    #[test]
    fn split_frame_owned_matches_split_frame() {
        let frame = crate::protocol::encode_request(
            9,
            &crate::protocol::MetadataRequest { topics: vec!["t".into()] },
            vec![Bytes::from_static(b"payload!")],
        )
        .unwrap()
        .to_vec();
        let decoder = FrameDecoder::default();
        let shared = decoder.split_frame(&mut BytesMut::from(&frame[..])).unwrap().unwrap();
        let mut input = BytesMut::from(&frame[..]);
        input.extend_from_slice(b"next");
        let owned = decoder.split_frame_owned(&mut input).unwrap().unwrap();
        assert_eq!(owned.header, shared.header);
        assert_eq!(owned.envelope.as_slice(), shared.envelope.as_slice());
        assert_eq!(&owned.payload[..], &shared.payload[..]);
        assert_eq!(&input[..], b"next");
    }

    #[test]
    fn header_round_trips() {
        let h = header(123, 4096);
        let bytes = h.encode();
        assert_eq!(&bytes[..4], b"RMQ\x01");
        assert_eq!(FrameHeader::decode(&bytes, &FrameLimits::default()), Ok(h));
        assert_eq!(FrameHeader::peek_correlation_id(&bytes), 0xDEAD_BEEF);
        assert_eq!(h.payload_start(), 24 + 128);
        assert_eq!(h.frame_bytes(), 24 + 128 + 4096);
    }

    /// Guards the framing checks: bad magic and a bad frame version are refused.
    #[test]
    fn header_rejects_bad_magic_and_version() {
        let mut bytes = header(8, 0).encode();
        bytes[0] = b'X';
        assert!(matches!(FrameHeader::decode(&bytes, &FrameLimits::default()), Err(FrameError::BadMagic { .. })));
        let mut bytes = header(8, 0).encode();
        bytes[3] = 2;
        assert_eq!(
            FrameHeader::decode(&bytes, &FrameLimits::default()),
            Err(FrameError::UnsupportedFrameVersion { found: 2 })
        );
    }

    /// Guards "check the length before allocating": an oversize frame is refused from the header
    /// alone, including lengths whose sum overflows a u32, and the decoder never asks for its body.
    #[test]
    fn oversize_frames_are_refused_from_the_header() {
        let limits = FrameLimits { max_frame_bytes: 1024 };
        let exact = header(1000, 24); // 1000 pads to 1000, + 24 = 1024.
        assert!(FrameHeader::decode(&exact.encode(), &limits).is_ok());
        for (body, payload) in [(1001, 24), (0, 1025), (u32::MAX, u32::MAX), (1, u32::MAX)] {
            let err = FrameHeader::decode(&header(body, payload).encode(), &limits).unwrap_err();
            assert!(matches!(err, FrameError::FrameTooLarge { .. }), "{err}");
            assert_eq!(err.error_code(), crate::protocol::ErrorCode::MessageTooLarge);
        }
        let decoder = FrameDecoder::new(limits);
        let bytes = header(u32::MAX, 0).encode();
        assert!(decoder.status(&bytes).is_err());
    }

    #[test]
    fn decoder_reports_bytes_needed_and_splits() {
        let decoder = FrameDecoder::default();
        let h = header(5, 16);
        let mut wire = BytesMut::new();
        wire.extend_from_slice(&h.encode());
        wire.extend_from_slice(&[1, 2, 3, 4, 5, 0, 0, 0]);
        wire.extend_from_slice(&[7u8; 16]);
        let full = wire.clone();

        let mut partial = BytesMut::new();
        assert_eq!(decoder.status(&partial), Ok(FrameStatus::NeedMore(24)));
        partial.extend_from_slice(&full[..10]);
        assert_eq!(decoder.status(&partial), Ok(FrameStatus::NeedMore(14)));
        partial.extend_from_slice(&full[10..30]);
        assert_eq!(decoder.status(&partial), Ok(FrameStatus::NeedMore(18)));
        assert!(decoder.split_frame(&mut partial).unwrap().is_none());
        partial.extend_from_slice(&full[30..]);
        partial.extend_from_slice(&full[..3]); // the start of the next frame stays behind
        let frame = decoder.split_frame(&mut partial).unwrap().unwrap();
        assert_eq!(frame.header, h);
        assert_eq!(frame.envelope.as_slice(), &[1, 2, 3, 4, 5]);
        assert_eq!(frame.envelope.as_slice().as_ptr() as usize % 8, 0);
        assert_eq!(&frame.payload[..], &[7u8; 16]);
        assert_eq!(&partial[..], &full[..3]);
    }

    #[test]
    fn unaligned_envelope_is_copied_aligned() {
        let backing = Bytes::from(vec![0u8; 64]);
        let unaligned = (0..8)
            .map(|i| backing.slice(i..i + 16))
            .find(|b| b.as_ptr() as usize % 8 != 0)
            .expect("one of 8 consecutive offsets is unaligned");
        let env = EnvelopeBytes::new(unaligned.clone());
        assert_eq!(env.as_slice(), &unaligned[..]);
        assert_eq!(env.as_slice().as_ptr() as usize % 8, 0);
    }
}
