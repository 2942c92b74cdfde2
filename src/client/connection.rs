//! One connection to the broker: request frames out, response frames in, in request order.
//!
//! Runtime-agnostic: any `futures-io` stream (a glommio `TcpStream` in production, an in-memory
//! fake broker in the tests). Owned by one task; not shared between tasks.
//!
//! Pipelining: [`Connection::send`] writes a request and returns a [`Pending`] ticket without
//! waiting; [`Connection::receive`] waits for the response to one ticket. Several requests may
//! be in flight (up to [`ConnectionConfig::max_in_flight`]). The broker answers in request
//! order, and every response frame is checked against the oldest request in flight; a response
//! that arrives before the one being waited for is parked until its ticket is received.
//!
//! After any error that leaves the stream's frame boundary or request order in doubt (I/O
//! error, end of stream, bad frame, wrong correlation id, timeout) the connection is
//! *poisoned*: every later call fails with [`ClientError::Poisoned`]. Broker errors carried in
//! a well-formed response do not poison it.

use std::collections::VecDeque;
use std::marker::PhantomData;
use std::rc::Rc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use std::pin::Pin;
use std::task::{Context, Poll, Waker};

use futures_lite::future::poll_fn;
use futures_lite::io::{AsyncRead, AsyncWrite};
use rustc_hash::FxHashMap;

use super::error::{ClientError, ClientResult};
use super::Sleeper;
use crate::protocol::frame_writer::write_frame;
use crate::protocol::{
    check_response_header, decode_envelope_owned, encode_request, ApiKey, ErrorCode, ErrorResponse, Frame,
    FrameDecoder, FrameLimits, FrameStatus, Request, MAX_FRAME_BYTES_DEFAULT,
};
pub use crate::sys::socket_recv::Recv;

/// Slack above the broker's default frame limit for response frames: a fetch returns at least
/// one whole batch (up to 64 MiB) plus its envelope, so a client must accept a little more
/// than the broker accepts from it.
pub const RESPONSE_FRAME_SLACK_BYTES: u32 = 1 << 20;
/// Default bound on one response frame (envelope + payload), checked from its header before
/// anything is allocated.
pub const RESPONSE_FRAME_BYTES_MAX_DEFAULT: u32 = MAX_FRAME_BYTES_DEFAULT + RESPONSE_FRAME_SLACK_BYTES;
/// Default bound on requests written and not yet answered.
pub const IN_FLIGHT_MAX_DEFAULT: usize = 16;
/// Default time to wait for a response (a fetch adds its `max_wait_ms`).
pub const REQUEST_TIMEOUT_MS_DEFAULT: u64 = 30_000;
/// Smallest read the connection asks the stream for.
const READ_CHUNK_BYTES: usize = 64 * 1024;
/// Largest read: the scratch buffer a connection's reads go through grows to this at most.
const READ_SCRATCH_BYTES_MAX: usize = 1024 * 1024;

const _: () = assert!(RESPONSE_FRAME_BYTES_MAX_DEFAULT > MAX_FRAME_BYTES_DEFAULT);
const _: () = assert!(IN_FLIGHT_MAX_DEFAULT >= 1);

/// Connection settings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConnectionConfig {
    /// Bound on one response frame (padded envelope + payload), header excluded.
    pub response_frame_bytes_max: u32,
    /// Requests written and not yet answered; `send` refuses more.
    pub max_in_flight: usize,
    /// How long to wait for a response, on top of any long-poll wait the request asks for.
    pub request_timeout: Duration,
}

impl Default for ConnectionConfig {
    fn default() -> Self {
        ConnectionConfig {
            response_frame_bytes_max: RESPONSE_FRAME_BYTES_MAX_DEFAULT,
            max_in_flight: IN_FLIGHT_MAX_DEFAULT,
            request_timeout: Duration::from_millis(REQUEST_TIMEOUT_MS_DEFAULT),
        }
    }
}

/// A request written to the broker and not yet received. Hand it to [`Connection::receive`].
#[must_use = "a pending request must be received, or the connection keeps waiting for it"]
#[derive(Debug)]
pub struct Pending<R: Request> {
    correlation_id: u32,
    /// Extra wait the request itself asks the broker for (a fetch's `max_wait_ms`).
    extra_wait: Duration,
    request: PhantomData<fn() -> R>,
}

impl<R: Request> Pending<R> {
    pub fn correlation_id(&self) -> u32 {
        self.correlation_id
    }
}

/// A decoded response and the frame's payload section (record batches; empty for most APIs).
#[derive(Debug)]
pub struct Response<T> {
    pub body: T,
    pub payload: Bytes,
}

/// A stream's receive that never waits and writes straight into `buffer`'s spare capacity (at
/// most `want` bytes, appended), skipping the copy a `futures-io` read needs. Supplied by the
/// runtime for its sockets (`crate::runtime` for glommio TCP streams); when it reports
/// [`Recv::WouldBlock`] the connection waits through the stream's `poll_read` as usual.
pub type ReceiveInPlace<S> = fn(&mut S, &mut BytesMut, usize) -> std::io::Result<Recv>;

/// A connection to one broker. See the module doc.
pub struct Connection<S> {
    stream: S,
    config: ConnectionConfig,
    sleeper: Rc<dyn Sleeper>,
    decoder: FrameDecoder,
    read_buffer: BytesMut,
    /// Zeroed once, reused for every read of a small frame: zero-filling a fresh chunk on each
    /// poll cost more than the data (a 64 KiB memset per poll, even when nothing arrived).
    read_scratch: Box<[u8]>,
    /// The stream's non-blocking receive into spare capacity, if it has one.
    receive_in_place: Option<ReceiveInPlace<S>>,
    /// Where a request's small parts are gathered into one write (see `frame_writer`).
    write_scratch: Vec<u8>,
    next_correlation_id: u32,
    /// Correlation ids and APIs of the requests in flight, oldest first.
    in_flight: VecDeque<(u32, ApiKey)>,
    /// Responses that arrived before the one being waited for.
    parked: FxHashMap<u32, Frame>,
    poisoned: Option<String>,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Connection<S> {
    pub fn new(stream: S, config: ConnectionConfig, sleeper: Rc<dyn Sleeper>) -> Connection<S> {
        Connection {
            stream,
            decoder: FrameDecoder::new(FrameLimits { max_frame_bytes: config.response_frame_bytes_max }),
            config,
            sleeper,
            read_buffer: BytesMut::new(),
            read_scratch: vec![0u8; READ_CHUNK_BYTES].into_boxed_slice(),
            receive_in_place: None,
            write_scratch: Vec::new(),
            next_correlation_id: 1,
            in_flight: VecDeque::new(),
            parked: FxHashMap::default(),
            poisoned: None,
        }
    }

    /// Receives the rest of large frames with `receive` (see [`ReceiveInPlace`]).
    pub fn with_receive_in_place(mut self, receive: ReceiveInPlace<S>) -> Connection<S> {
        self.receive_in_place = Some(receive);
        self
    }

    pub fn config(&self) -> &ConnectionConfig {
        &self.config
    }

    /// The sleeper this connection times out with; the producer and consumer reuse it.
    pub fn sleeper(&self) -> Rc<dyn Sleeper> {
        Rc::clone(&self.sleeper)
    }

    /// Requests written and not yet received.
    pub fn in_flight(&self) -> usize {
        self.in_flight.len()
    }

    /// Whether another request may be sent without receiving one first.
    pub fn can_send(&self) -> bool {
        self.in_flight.len() < self.config.max_in_flight
    }

    /// Why the connection is unusable, if it is.
    pub fn poisoned(&self) -> Option<&str> {
        self.poisoned.as_deref()
    }

    /// One request, then its response: no pipelining.
    pub async fn call<R: Request>(&mut self, request: &R) -> ClientResult<R::Response> {
        let pending = self.send(request, Vec::new()).await?;
        Ok(self.receive(pending).await?.body)
    }

    /// Writes one request frame (envelope + `payload` batches, one vectored write) and returns
    /// the ticket for its response. Fails without writing when `max_in_flight` requests are
    /// already in flight.
    pub async fn send<R: Request>(&mut self, request: &R, payload: Vec<Bytes>) -> ClientResult<Pending<R>> {
        self.send_with_wait(request, payload, Duration::ZERO).await
    }

    /// [`Connection::send`] for a request that asks the broker to wait up to `extra_wait`
    /// before answering (a long-poll fetch): the response timeout grows by that much.
    pub async fn send_with_wait<R: Request>(
        &mut self,
        request: &R,
        payload: Vec<Bytes>,
        extra_wait: Duration,
    ) -> ClientResult<Pending<R>> {
        self.check_usable()?;
        if !self.can_send() {
            return Err(ClientError::InvalidArgument(format!(
                "{} requests already in flight on this connection (the limit)",
                self.in_flight.len()
            )));
        }
        let correlation_id = self.next_correlation_id;
        self.next_correlation_id = self.next_correlation_id.wrapping_add(1);
        // Encoding errors leave nothing half-written: the connection stays usable.
        let frame = encode_request(correlation_id, request, payload)?;
        if let Err(error) = write_frame(&mut self.stream, &frame, &mut self.write_scratch).await {
            return Err(self.poison(error.into()));
        }
        self.in_flight.push_back((correlation_id, R::API_KEY));
        Ok(Pending { correlation_id, extra_wait, request: PhantomData })
    }

    /// Waits for the response to `pending` and decodes it. Responses to earlier requests that
    /// arrive first are parked for their own `receive`.
    ///
    /// A response with the error flag becomes [`ClientError::Broker`]; per-topic and
    /// per-partition codes inside a normal response are left to the caller.
    pub async fn receive<R: Request>(&mut self, pending: Pending<R>) -> ClientResult<Response<R::Response>> {
        let deadline = Instant::now() + self.response_timeout(&pending);
        self.wait_until_arrived(&pending, deadline).await?;
        let Some(frame) = self.parked.remove(&pending.correlation_id) else {
            return Err(self.poison(ClientError::UnexpectedResponse(pending.correlation_id)));
        };
        let is_error = match check_response_header(&frame.header, R::API_KEY) {
            Ok(is_error) => is_error,
            Err(error) => return Err(self.poison(error.into())),
        };
        if is_error {
            let response: ErrorResponse = decode_envelope_owned(frame.envelope.as_slice())?;
            return Err(ClientError::Broker {
                code: ErrorCode::from_u16(response.error_code),
                message: response.message,
            });
        }
        let body = decode_envelope_owned::<R::Response>(frame.envelope.as_slice())?;
        Ok(Response { body, payload: frame.payload })
    }

    /// How long a response to `pending` may take once sent: the request timeout, plus the wait
    /// the request asked the broker for.
    pub fn response_timeout<R: Request>(&self, pending: &Pending<R>) -> Duration {
        self.config.request_timeout + pending.extra_wait
    }

    /// Waits until the response to `pending` has arrived (it is then parked for its
    /// [`Connection::receive`], which returns at once), parking the responses that come before
    /// it. Past `deadline` the connection is poisoned with [`ClientError::TimedOut`].
    /// Cancellation-safe: dropping the future loses no bytes and keeps `pending` valid, so
    /// several connections can be waited on at once and the losers dropped.
    pub async fn wait_until_arrived<R: Request>(
        &mut self,
        pending: &Pending<R>,
        deadline: Instant,
    ) -> ClientResult<()> {
        if self.parked.contains_key(&pending.correlation_id) {
            return Ok(());
        }
        self.check_usable()?;
        let timeout = deadline.saturating_duration_since(Instant::now());
        let sleeper = Rc::clone(&self.sleeper);
        let wanted = pending.correlation_id;
        let wait = async { Some(self.read_while(|connection| !connection.parked.contains_key(&wanted)).await) };
        let timer = async {
            sleeper.sleep(timeout).await;
            None
        };
        match futures_lite::future::or(wait, timer).await {
            Some(result) => result,
            None => {
                let timeout_ms = u64::try_from(self.response_timeout(pending).as_millis()).unwrap_or(u64::MAX);
                Err(self.poison(ClientError::TimedOut { timeout_ms }))
            }
        }
    }

    /// Whether the response to `pending` has arrived and is parked, without reading the stream.
    pub fn is_parked<R: Request>(&self, pending: &Pending<R>) -> bool {
        self.parked.contains_key(&pending.correlation_id)
    }

    /// Whether the response to `pending` has arrived, without waiting: takes whatever bytes
    /// the stream has ready now (one non-blocking read attempt per loop) and parks complete
    /// frames. Lets a producer settle deliveries between sends.
    pub fn is_ready<R: Request>(&mut self, pending: &Pending<R>) -> ClientResult<bool> {
        if self.parked.contains_key(&pending.correlation_id) {
            return Ok(true);
        }
        self.check_usable()?;
        let mut context = Context::from_waker(Waker::noop());
        loop {
            while let Some(frame) = self.split_frame()? {
                self.accept(frame)?;
            }
            if self.parked.contains_key(&pending.correlation_id) {
                return Ok(true);
            }
            match self.poll_read_more(&mut context) {
                Poll::Ready(Ok(())) => {}
                Poll::Ready(Err(error)) => return Err(self.poison(error)),
                Poll::Pending => return Ok(false),
            }
        }
    }

    /// Waits until a response to any request in flight has arrived (it is parked for its
    /// `receive`), or returns at once when one is parked already or nothing is in flight.
    /// Cancellation-safe: dropping the future loses no bytes. Unlike [`Connection::receive`] it
    /// sets no timeout: callers bound it with their own deadline.
    pub async fn wait_for_response(&mut self) -> ClientResult<()> {
        self.check_usable()?;
        self.read_while(|connection| connection.parked.is_empty() && !connection.in_flight.is_empty()).await
    }

    /// Parks every complete frame, reading more while `waiting` holds. Cancellation-safe: the
    /// read buffer only ever holds bytes that arrived.
    async fn read_while(&mut self, waiting: impl Fn(&Self) -> bool) -> ClientResult<()> {
        // Bounded by the connection: each round parks frames, reads bytes, or waits for them.
        loop {
            while let Some(frame) = self.split_frame()? {
                self.accept(frame)?;
            }
            if !waiting(self) {
                return Ok(());
            }
            if let Err(error) = poll_fn(|context| self.poll_read_more(context)).await {
                return Err(self.poison(error));
            }
        }
    }

    /// Checks a complete frame against the oldest request in flight, then parks it.
    fn accept(&mut self, frame: Frame) -> ClientResult<()> {
        let found = frame.header.correlation_id;
        let Some(&(expected, _)) = self.in_flight.front() else {
            return Err(self.poison(ClientError::UnexpectedResponse(found)));
        };
        if found != expected {
            return Err(self.poison(ClientError::CorrelationMismatch { expected, found }));
        }
        self.in_flight.pop_front();
        self.parked.insert(found, frame);
        Ok(())
    }

    /// Splits one complete frame off the read buffer; the header is checked against the frame
    /// limit before the buffer grows for the body.
    fn split_frame(&mut self) -> ClientResult<Option<Frame>> {
        match self.decoder.split_frame(&mut self.read_buffer) {
            Ok(frame) => Ok(frame),
            Err(error) => Err(self.poison(error.into())),
        }
    }

    /// One read into the buffer, sized for the rest of the current frame (at least
    /// [`READ_CHUNK_BYTES`], at most [`READ_SCRATCH_BYTES_MAX`]). Cancellation-safe: the buffer
    /// only ever holds bytes that arrived.
    ///
    /// Reads go through a scratch buffer zeroed once, then are copied. Reading straight into
    /// the frame buffer through `futures-io` needs it zero-filled first (its reads take
    /// initialized memory), and a large frame arriving in many partial reads, or a read that
    /// returned `Pending`, re-zeroed the whole rest of the frame each time: ~11 % of a tailing
    /// consumer's CPU went to `memset`. With a [`ReceiveInPlace`] (TCP on glommio), the rest of
    /// a frame larger than [`READ_CHUNK_BYTES`] is received straight into the buffer's spare
    /// capacity instead; the copy from the scratch buffer was 16 % of an end-to-end consumer's
    /// samples (PERF.md). Small frames (acks) keep the scratch path: it waits through the
    /// runtime with no extra system call when nothing has arrived.
    fn poll_read_more(&mut self, context: &mut Context<'_>) -> Poll<ClientResult<()>> {
        let needed = match self.decoder.status(&self.read_buffer) {
            Ok(FrameStatus::NeedMore(needed)) => needed,
            Ok(FrameStatus::Ready(_)) => return Poll::Ready(Ok(())),
            Err(error) => return Poll::Ready(Err(error.into())),
        };
        if let Some(receive) = self.receive_in_place.filter(|_| needed > READ_CHUNK_BYTES) {
            match receive(&mut self.stream, &mut self.read_buffer, needed) {
                Ok(Recv::Read(_)) => return Poll::Ready(Ok(())),
                Ok(Recv::Closed) => {
                    return Poll::Ready(Err(ClientError::ConnectionClosed { in_flight: self.in_flight.len() }))
                }
                // Nothing yet: wait through the runtime's read below. It usually finds nothing
                // either and only arms the wake-up; the next call receives in place again.
                Ok(Recv::WouldBlock) => {}
                Err(error) => return Poll::Ready(Err(error.into())),
            }
        }
        let want = needed.clamp(READ_CHUNK_BYTES, READ_SCRATCH_BYTES_MAX);
        if self.read_scratch.len() < want {
            // Grows at most a few times per connection, to the largest read it needs.
            self.read_scratch = vec![0u8; want].into_boxed_slice();
        }
        let got = match Pin::new(&mut self.stream).poll_read(context, &mut self.read_scratch[..want]) {
            Poll::Ready(Ok(got)) => got,
            Poll::Ready(Err(error)) => return Poll::Ready(Err(error.into())),
            Poll::Pending => return Poll::Pending,
        };
        if got == 0 {
            return Poll::Ready(Err(ClientError::ConnectionClosed { in_flight: self.in_flight.len() }));
        }
        self.read_buffer.extend_from_slice(&self.read_scratch[..got]);
        Poll::Ready(Ok(()))
    }

    fn check_usable(&self) -> ClientResult<()> {
        match &self.poisoned {
            Some(reason) => Err(ClientError::Poisoned(reason.clone())),
            None => Ok(()),
        }
    }

    fn poison(&mut self, error: ClientError) -> ClientError {
        if self.poisoned.is_none() {
            self.poisoned = Some(error.to_string());
        }
        error
    }
}
