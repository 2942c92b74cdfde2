//! One client connection on the shard that accepted it: read frames, run requests (pipelined,
//! each as a task), write responses in request order.
//!
//! Bounds: the frame length is checked against `max_frame_bytes` before anything is allocated;
//! the bytes of a frame are taken from the shard's memory budget before its body is read; at
//! most `max_inflight_requests` requests per connection run at once. When a bound is reached
//! the connection simply stops reading — TCP pushes back on the client. A client that never
//! reads its responses fills its socket, then its in-flight slots, then is no longer read.

use std::net::SocketAddr;
use std::os::fd::{AsRawFd, RawFd};
use std::rc::Rc;
use std::time::Duration;

use bytes::BytesMut;
use futures::io::{AsyncReadExt, AsyncWriteExt, ReadHalf, WriteHalf};
use glommio::channels::local_channel;
use glommio::net::TcpStream;
use glommio::sync::{Semaphore, StaticPermit};

use super::handlers::dispatch;
use crate::protocol::frame_writer::{write_frame, COALESCE_BUFFER_BYTES};
use crate::protocol::{
    encode_error_response, EncodedFrame, FrameDecoder, FrameHeader, FrameLimits, FrameStatus, ResponseTo,
    FRAME_HEADER_BYTES,
};
use crate::shard::execute::with_timeout;
use crate::shard::state::Shard;
use crate::sys::socket_recv::{recv_into_spare, Recv};

/// A frame that started arriving must be complete within this time, or the connection closes.
pub const FRAME_BODY_TIMEOUT: Duration = Duration::from_secs(30);
/// A connection with no request for this long is closed (Kafka's `connections.max.idle.ms`).
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(600);
/// Smallest read from the socket.
const READ_CHUNK_BYTES: usize = 64 << 10;

/// A response waiting its turn to be written, with the resources its request held until the
/// response is written (or the connection dropped).
struct Pending {
    response: glommio::task::JoinHandle<Option<EncodedFrame>>,
    _memory: Option<StaticPermit>,
    _in_flight: InFlight,
}

/// Counts a request in its shard's `requests_in_flight` for as long as it lives: shutdown waits
/// for the count to reach zero, so every answered request is also written out.
struct InFlight(Rc<Shard>);

impl InFlight {
    fn new(shard: &Rc<Shard>) -> Self {
        shard.requests_in_flight.set(shard.requests_in_flight.get() + 1);
        InFlight(shard.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.requests_in_flight.set(self.0.requests_in_flight.get().saturating_sub(1));
    }
}

pub async fn serve(shard: Rc<Shard>, stream: TcpStream, peer: SocketAddr, memory: Rc<Semaphore>) {
    let _ = stream.set_nodelay(true);
    // Open for as long as either half of the stream lives: `read_requests` holds the reader.
    let fd = stream.as_raw_fd();
    let (reader, writer) = futures::io::AsyncReadExt::split(stream);
    let max_inflight = shard.settings.max_inflight_requests.max(1);
    let (queue_sender, queue_receiver) = local_channel::new_bounded::<Pending>(max_inflight);
    let writer_task = glommio::spawn_local(write_responses(writer, queue_receiver, peer));
    let close_reason = read_requests(&shard, reader, fd, &queue_sender, peer, &memory).await;
    drop(queue_sender);
    // Every request read so far gets its answer before the connection closes.
    writer_task.await;
    match close_reason {
        CloseReason::ClientClosed => tracing::debug!(%peer, "connection closed by the client"),
        CloseReason::Violation(reason) => {
            tracing::warn!(%peer, %reason, "closing connection: protocol violation")
        }
        CloseReason::Other(reason) => tracing::info!(%peer, %reason, "closing connection"),
    }
}

enum CloseReason {
    ClientClosed,
    Violation(String),
    Other(String),
}

async fn read_requests(
    shard: &Rc<Shard>,
    mut reader: ReadHalf<TcpStream>,
    fd: RawFd,
    queue: &local_channel::LocalSender<Pending>,
    peer: SocketAddr,
    memory: &Rc<Semaphore>,
) -> CloseReason {
    let decoder = FrameDecoder::new(FrameLimits { max_frame_bytes: shard.settings.max_frame_bytes });
    let mut buffer = BytesMut::with_capacity(READ_CHUNK_BYTES);
    let mut frame_memory: Option<StaticPermit> = None;
    let mut scratch = vec![0u8; READ_CHUNK_BYTES].into_boxed_slice();
    // Bounded by the connection's life: each round reads bytes or handles one frame.
    loop {
        if shard.shutting_down.get() {
            return CloseReason::Other("the broker is shutting down".into());
        }
        match decoder.status(&buffer) {
            Ok(FrameStatus::Ready(_)) => {
                if frame_memory.is_none() {
                    // The frame came in one read: account for it all the same.
                    match reserve_frame(shard, &buffer, memory).await {
                        Some(permit) => frame_memory = Some(permit),
                        None => return CloseReason::Other("the broker is shutting down".into()),
                    }
                }
                let frame = match decoder.split_frame_owned(&mut buffer) {
                    Ok(Some(frame)) => frame,
                    Ok(None) => continue,
                    Err(error) => return refuse(shard, queue, &buffer, error.to_string(), error.error_code()).await,
                };
                let in_flight = InFlight::new(shard);
                let shard = shard.clone();
                let response = glommio::spawn_local(async move {
                    match dispatch(&shard, frame).await {
                        Ok(frame) => Some(frame),
                        Err(error) => {
                            tracing::warn!(%error, "cannot encode a response");
                            None
                        }
                    }
                })
                .detach();
                let pending = Pending { response, _memory: frame_memory.take(), _in_flight: in_flight };
                if queue.send(pending).await.is_err() {
                    return CloseReason::Other("the response writer stopped".into());
                }
            }
            Ok(FrameStatus::NeedMore(needed)) => {
                if buffer.len() >= FRAME_HEADER_BYTES && frame_memory.is_none() {
                    // The header is in and checked: reserve the whole frame before reading its body.
                    match reserve_frame(shard, &buffer, memory).await {
                        Some(permit) => frame_memory = Some(permit),
                        None => return CloseReason::Other("the broker is shutting down".into()),
                    }
                }
                if needed > READ_CHUNK_BYTES {
                    // A large frame is read in place, to its end.
                    let body = read_body_in_place(shard, &mut reader, fd, &mut buffer, needed, &mut scratch);
                    if let Err(reason) = body.await {
                        return reason;
                    }
                    continue;
                }
                // Small reads go through a scratch buffer zeroed once.
                let timeout = if buffer.is_empty() { IDLE_TIMEOUT } else { FRAME_BODY_TIMEOUT };
                let start = buffer.len();
                match with_timeout(timeout, reader.read(&mut scratch[..])).await {
                    None if start == 0 => return CloseReason::Other("idle timeout".into()),
                    None => return cut_off(start),
                    Some(Ok(0)) if start == 0 => return CloseReason::ClientClosed,
                    Some(Ok(0)) => return closed_mid_frame(start),
                    Some(Ok(read)) => buffer.extend_from_slice(&scratch[..read]),
                    Some(Err(error)) => return CloseReason::Other(format!("read failed: {error}")),
                }
            }
            Err(error) => return refuse(shard, queue, &buffer, error.to_string(), error.error_code()).await,
        }
        let _ = peer;
    }
}

/// Reads the next `needed` bytes (the rest of a frame) into `buffer`, straight from the socket
/// into its spare capacity: no zeroing first (see [`crate::sys::socket_recv`]; the `memset` a
/// `futures-io` read needs was 10–11 % of a shard's samples with 1 MiB batches). When the
/// socket has nothing, the wait goes through glommio as a read into `scratch` (at most its
/// size, copied once), then reading in place goes on.
async fn read_body_in_place(
    shard: &Rc<Shard>,
    reader: &mut ReadHalf<TcpStream>,
    fd: RawFd,
    buffer: &mut BytesMut,
    needed: usize,
    scratch: &mut [u8],
) -> Result<(), CloseReason> {
    let end = buffer.len() + needed;
    // Bounded by `needed`: each round appends at least one byte or returns.
    while buffer.len() < end {
        if shard.shutting_down.get() {
            return Err(CloseReason::Other("the broker is shutting down".into()));
        }
        let filled = buffer.len();
        match recv_into_spare(fd, buffer, end - filled) {
            Ok(Recv::Read(_)) => continue,
            Ok(Recv::Closed) => return Err(closed_mid_frame(filled)),
            Ok(Recv::WouldBlock) => {}
            Err(error) => return Err(CloseReason::Other(format!("read failed: {error}"))),
        }
        let want = (end - filled).min(scratch.len());
        match with_timeout(FRAME_BODY_TIMEOUT, reader.read(&mut scratch[..want])).await {
            Some(Ok(read)) if read > 0 => buffer.extend_from_slice(&scratch[..read]),
            None => return Err(cut_off(filled)),
            Some(Ok(_)) => return Err(closed_mid_frame(filled)),
            Some(Err(error)) => return Err(CloseReason::Other(format!("read failed: {error}"))),
        }
    }
    Ok(())
}

fn cut_off(received_bytes: usize) -> CloseReason {
    CloseReason::Violation(format!(
        "a frame was cut off: {received_bytes} bytes received, then nothing for {}s",
        FRAME_BODY_TIMEOUT.as_secs()
    ))
}

fn closed_mid_frame(received_bytes: usize) -> CloseReason {
    CloseReason::Violation(format!("the client closed in the middle of a frame ({received_bytes} bytes)"))
}

/// Takes the bytes of the frame at the front of `buffer` from the shard's memory budget,
/// waiting while other requests hold it. `None` once the budget is closed (shutdown).
async fn reserve_frame(shard: &Shard, buffer: &[u8], memory: &Rc<Semaphore>) -> Option<StaticPermit> {
    let header_bytes: [u8; FRAME_HEADER_BYTES] = buffer.get(..FRAME_HEADER_BYTES)?.try_into().ok()?;
    let limits = FrameLimits { max_frame_bytes: shard.settings.max_frame_bytes };
    let frame_bytes = FrameHeader::decode(&header_bytes, &limits).map(|h| h.frame_bytes()).unwrap_or(0);
    memory.clone().acquire_static_permit(frame_bytes).await.ok()
}

/// Answers a frame whose header cannot be trusted with an error response, then closes: the
/// frame boundary is lost, so nothing after it can be read.
async fn refuse(
    shard: &Rc<Shard>,
    queue: &local_channel::LocalSender<Pending>,
    buffer: &[u8],
    reason: String,
    code: crate::protocol::ErrorCode,
) -> CloseReason {
    let header_bytes: [u8; FRAME_HEADER_BYTES] =
        buffer.get(..FRAME_HEADER_BYTES).and_then(|b| b.try_into().ok()).unwrap_or([0; FRAME_HEADER_BYTES]);
    let to = ResponseTo { correlation_id: FrameHeader::peek_correlation_id(&header_bytes), api_key: 0, api_version: 0 };
    let message = reason.clone();
    let response = glommio::spawn_local(async move { encode_error_response(to, code, &message).ok() }).detach();
    let _ = queue.send(Pending { response, _memory: None, _in_flight: InFlight::new(shard) }).await;
    CloseReason::Violation(reason)
}

async fn write_responses(
    mut writer: WriteHalf<TcpStream>,
    queue: local_channel::LocalReceiver<Pending>,
    peer: SocketAddr,
) {
    let mut scratch = Vec::with_capacity(COALESCE_BUFFER_BYTES);
    while let Some(pending) = queue.recv().await {
        let Some(Some(frame)) = pending.response.await else {
            continue;
        };
        if let Err(error) = write_frame(&mut writer, &frame, &mut scratch).await {
            tracing::debug!(%peer, %error, "writing a response failed");
            break;
        }
    }
    let _ = writer.close().await;
}
