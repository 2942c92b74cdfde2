//! An in-memory broker stream for the client's unit tests: request frames written to it are
//! split and handed to a handler, whose response frames become readable. Reads and writes move
//! at most `chunk_bytes` at a time, to exercise partial reads and short vectored writes. When
//! nothing is left to read, a read returns end-of-stream: the "broker" closed the connection.

use std::collections::VecDeque;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
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
}

impl FakeStream {
    pub fn new(chunk_bytes: usize, handler: Handler) -> FakeStream {
        FakeStream {
            handler,
            decoder: FrameDecoder::default(),
            inbound: BytesMut::new(),
            outbound: VecDeque::new(),
            chunk_bytes: chunk_bytes.max(1),
        }
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
        let take = buf.len().min(self.chunk_bytes).min(self.outbound.len());
        for (slot, byte) in buf.iter_mut().zip(self.outbound.drain(..take)) {
            *slot = byte;
        }
        Poll::Ready(Ok(take))
    }
}

/// Opens when told, or by a thread after a delay; a future waiting on it is woken.
#[derive(Default)]
pub struct Gate {
    open: AtomicBool,
    waker: Mutex<Option<Waker>>,
}

impl Gate {
    pub fn opened() -> Arc<Gate> {
        let gate = Arc::new(Gate::default());
        gate.open.store(true, Ordering::SeqCst);
        gate
    }

    pub fn open(&self) {
        self.open.store(true, Ordering::SeqCst);
        if let Some(waker) = self.waker.lock().expect("gate lock").take() {
            waker.wake();
        }
    }

    pub fn open_after(self: &Arc<Gate>, delay: Duration) {
        let gate = Arc::clone(self);
        std::thread::spawn(move || {
            std::thread::sleep(delay);
            gate.open();
        });
    }

    /// Holds responses back from now on (until [`Gate::open`]).
    pub fn close(&self) {
        self.open.store(false, Ordering::SeqCst);
    }

    pub fn poll_open(&self, context: &mut Context<'_>) -> Poll<()> {
        if self.open.load(Ordering::SeqCst) {
            return Poll::Ready(());
        }
        *self.waker.lock().expect("gate lock") = Some(context.waker().clone());
        // Opened between the check and the registration: do not miss it.
        if self.open.load(Ordering::SeqCst) {
            return Poll::Ready(());
        }
        Poll::Pending
    }
}

/// A [`FakeStream`] whose responses are readable only while its gate is open.
pub struct GatedStream {
    pub inner: FakeStream,
    pub gate: Arc<Gate>,
}

impl AsyncWrite for GatedStream {
    fn poll_write(mut self: Pin<&mut Self>, context: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(context, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, context: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(context)
    }

    fn poll_close(mut self: Pin<&mut Self>, context: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_close(context)
    }
}

impl AsyncRead for GatedStream {
    fn poll_read(mut self: Pin<&mut Self>, context: &mut Context<'_>, buf: &mut [u8]) -> Poll<io::Result<usize>> {
        if self.gate.poll_open(context).is_pending() {
            return Poll::Pending;
        }
        Pin::new(&mut self.inner).poll_read(context, buf)
    }
}

/// A sleeper whose sleeps never end: only a response can wake a wait.
pub struct NeverSleeper;

impl Sleeper for NeverSleeper {
    fn sleep(&self, _duration: Duration) -> Pin<Box<dyn std::future::Future<Output = ()>>> {
        Box::pin(std::future::pending())
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
