//! An in-memory broker stream for the client's unit tests: request frames written to it are
//! split and handed to a handler, whose response frames become readable. Reads and writes move
//! at most `chunk_bytes` at a time, to exercise partial reads and short vectored writes. When
//! nothing is left to read, a read returns end-of-stream: the "broker" closed the connection.

use std::cell::Cell;
use std::collections::VecDeque;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::BytesMut;
use futures_lite::io::{AsyncRead, AsyncWrite};

use super::connection::{Connection, ConnectionConfig};
use super::Sleeper;
use crate::protocol::{Frame, FrameDecoder};

pub type Handler = Box<dyn FnMut(Frame) -> Vec<Vec<u8>>>;

pub struct FakeStream {
    handler: Handler,
    decoder: FrameDecoder,
    inbound: BytesMut,
    outbound: VecDeque<u8>,
    chunk_bytes: usize,
    /// While it holds `true`, answers are held back: reads are `Pending` (and wake no one), as
    /// if every answer were still on its way. Poll such a stream only with `now_or_never`.
    answers_held: Option<Rc<Cell<bool>>>,
}

impl FakeStream {
    pub fn new(chunk_bytes: usize, handler: Handler) -> FakeStream {
        FakeStream {
            handler,
            decoder: FrameDecoder::default(),
            inbound: BytesMut::new(),
            outbound: VecDeque::new(),
            chunk_bytes: chunk_bytes.max(1),
            answers_held: None,
        }
    }

    /// Holds answers back while `held` is `true` (see the field).
    pub fn with_answers_held(mut self, held: Rc<Cell<bool>>) -> FakeStream {
        self.answers_held = Some(held);
        self
    }
}

impl AsyncWrite for FakeStream {
    fn poll_write(mut self: Pin<&mut Self>, _context: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let take = buf.len().min(self.chunk_bytes);
        self.inbound.extend_from_slice(&buf[..take]);
        loop {
            let this = &mut *self;
            let frame = match this.decoder.split_frame(&mut this.inbound) {
                Ok(Some(frame)) => frame,
                Ok(None) => break,
                Err(error) => return Poll::Ready(Err(io::Error::other(error))),
            };
            for response in (this.handler)(frame) {
                this.outbound.extend(response);
            }
        }
        Poll::Ready(Ok(take))
    }

    fn poll_flush(self: Pin<&mut Self>, _context: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_close(self: Pin<&mut Self>, _context: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

impl AsyncRead for FakeStream {
    fn poll_read(mut self: Pin<&mut Self>, _context: &mut Context<'_>, buf: &mut [u8]) -> Poll<io::Result<usize>> {
        if self.answers_held.as_ref().is_some_and(|held| held.get()) {
            return Poll::Pending;
        }
        let take = buf.len().min(self.chunk_bytes).min(self.outbound.len());
        for (slot, byte) in buf.iter_mut().zip(self.outbound.drain(..take)) {
            *slot = byte;
        }
        Poll::Ready(Ok(take))
    }
}

/// A sleeper that never waits: back-off loops in tests spin on the real clock instead, and a
/// response timeout never fires first because the fake answers synchronously.
pub struct InstantSleeper;

impl Sleeper for InstantSleeper {
    fn sleep(&self, _duration: Duration) -> Pin<Box<dyn Future<Output = ()>>> {
        Box::pin(std::future::ready(()))
    }
}

pub fn connection(chunk_bytes: usize, config: ConnectionConfig, handler: Handler) -> Connection<FakeStream> {
    Connection::new(FakeStream::new(chunk_bytes, handler), config, Rc::new(InstantSleeper))
}

/// The ListOffsets answer of a fake broker: every asked partition, with the offset `offset_of`
/// gives for its spec, and no timestamp.
pub fn list_offsets_answer(
    frame: &Frame,
    offset_of: impl Fn(u32, &crate::protocol::OffsetSpec) -> u64,
) -> crate::protocol::ListOffsetsResponse {
    use crate::protocol::{ListOffsetsPartitionResponse, ListOffsetsRequest, ListOffsetsTopicResponse};
    let request: ListOffsetsRequest =
        crate::protocol::decode_envelope_owned(frame.envelope.as_slice()).expect("a ListOffsets request");
    let topics = request
        .topics
        .iter()
        .map(|topic| ListOffsetsTopicResponse {
            name: topic.name.clone(),
            partitions: topic
                .partitions
                .iter()
                .map(|p| ListOffsetsPartitionResponse {
                    partition: p.partition,
                    error_code: 0,
                    offset: offset_of(p.partition, &p.spec),
                    timestamp_ms: -1,
                })
                .collect(),
        })
        .collect();
    crate::protocol::ListOffsetsResponse { topics }
}
