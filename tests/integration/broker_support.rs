//! Starting a real broker (`ringmq serve`) on 127.0.0.1 with an ephemeral port and a temp data
//! dir, and a blocking raw-protocol client for talking to it byte by byte.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use ringmq::protocol::{
    check_response_header, decode_envelope_owned, encode_request, CreateTopicRequest, ErrorCode, FetchPartition,
    FetchRequest, FetchTopic, FrameDecoder, FrameLimits, FrameStatus, ProducePartition, ProduceRequest, ProduceTopic,
    Request,
};

const START_TIMEOUT: Duration = Duration::from_secs(30);
const IO_TIMEOUT: Duration = Duration::from_secs(20);

/// A broker child process; killed when dropped.
pub struct Broker {
    child: Option<Child>,
    pub address: SocketAddr,
    log_lines: mpsc::Receiver<String>,
}

impl Broker {
    /// Starts `ringmq serve` on `data_dir` with `extra` flags (`--log-level info` unless they
    /// set one) and waits until it is ready.
    pub fn start(data_dir: &Path, extra: &[&str]) -> Broker {
        let log_level: &[&str] = if extra.contains(&"--log-level") { &[] } else { &["--log-level", "info"] };
        let mut child = Command::new(env!("CARGO_BIN_EXE_ringmq"))
            .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(data_dir)
            .args(log_level)
            .args(extra)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("starting ringmq serve");
        let stderr = child.stderr.take().unwrap();
        let (sender, log_lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if sender.send(line).is_err() {
                    break;
                }
            }
        });
        let deadline = Instant::now() + START_TIMEOUT;
        let mut seen = Vec::new();
        while Instant::now() < deadline {
            match log_lines.recv_timeout(Duration::from_millis(100)) {
                Ok(line) => {
                    if line.contains("ringmq ready") {
                        let address = line
                            .split_whitespace()
                            .find_map(|field| field.strip_prefix("listen="))
                            .and_then(|a| a.parse().ok())
                            .expect("the ready line names the address");
                        return Broker { child: Some(child), address, log_lines };
                    }
                    seen.push(line);
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
            }
        }
        let _ = child.kill();
        let _ = child.wait();
        panic!("the broker did not become ready; its log:\n{}", seen.join("\n"));
    }

    /// Log lines printed since the last call.
    pub fn log(&self) -> Vec<String> {
        self.log_lines.try_iter().collect()
    }

    /// SIGTERM, then waits (bounded) for the exit; returns the exit code.
    pub fn stop(mut self) -> Option<i32> {
        let mut child = self.child.take()?;
        // SAFETY: kill(2) on our own child's pid, which has not been reaped yet.
        unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = child.try_wait() {
                return status.code();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        let _ = child.wait();
        panic!("the broker did not stop within 30 s of SIGTERM");
    }

    /// SIGKILL: no flush, no clean-shutdown marker.
    pub fn kill(mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(Child::id).unwrap_or(0)
    }

    pub fn is_running(&mut self) -> bool {
        self.child.as_mut().is_some_and(|child| child.try_wait().ok().flatten().is_none())
    }

    pub fn client(&self) -> RawClient {
        RawClient::connect(self.address)
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A blocking client speaking the wire protocol directly.
pub struct RawClient {
    pub stream: TcpStream,
    next_correlation_id: u32,
    buffer: BytesMut,
}

/// A decoded response frame: the envelope and the payload section.
pub struct Response<T> {
    pub body: T,
    pub payload: Bytes,
}

impl RawClient {
    pub fn connect(address: SocketAddr) -> RawClient {
        let stream = TcpStream::connect_timeout(&address, IO_TIMEOUT).expect("connecting to the broker");
        stream.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
        stream.set_write_timeout(Some(IO_TIMEOUT)).unwrap();
        stream.set_nodelay(true).unwrap();
        RawClient { stream, next_correlation_id: 1, buffer: BytesMut::new() }
    }

    /// Sends a request without waiting for its response; returns its correlation id.
    pub fn send<T: Request>(&mut self, request: &T, payload: Vec<Bytes>) -> u32 {
        let id = self.next_correlation_id;
        self.next_correlation_id += 1;
        let frame = encode_request(id, request, payload).expect("encoding a request");
        self.stream.write_all(&frame.to_vec()).expect("sending a request");
        id
    }

    /// Reads the next response frame: (correlation id, api key, is error, envelope, payload).
    pub fn read_frame(&mut self) -> std::io::Result<(ringmq::protocol::FrameHeader, Bytes, Bytes)> {
        let decoder = FrameDecoder::new(FrameLimits { max_frame_bytes: u32::MAX / 2 });
        for _ in 0..100_000 {
            match decoder.status(&self.buffer) {
                Ok(FrameStatus::Ready(_)) => {
                    let frame = decoder.split_frame(&mut self.buffer).unwrap().unwrap();
                    let envelope = Bytes::copy_from_slice(frame.envelope.as_slice());
                    return Ok((frame.header, envelope, frame.payload));
                }
                Ok(FrameStatus::NeedMore(needed)) => {
                    let mut chunk = vec![0u8; needed.max(4096)];
                    let read = self.stream.read(&mut chunk)?;
                    if read == 0 {
                        return Err(std::io::ErrorKind::UnexpectedEof.into());
                    }
                    self.buffer.extend_from_slice(&chunk[..read]);
                }
                Err(error) => panic!("the broker sent a bad frame: {error}"),
            }
        }
        panic!("no frame after 100000 reads");
    }

    /// Reads the response to a request of type `T`; `Err` carries an `ErrorResponse`.
    pub fn receive<T: Request>(&mut self) -> Result<Response<T::Response>, ringmq::protocol::ErrorResponse> {
        self.try_receive::<T>().expect("reading a response")
    }

    /// As [`RawClient::receive`], with a lost connection as an I/O error.
    pub fn try_receive<T: Request>(
        &mut self,
    ) -> std::io::Result<Result<Response<T::Response>, ringmq::protocol::ErrorResponse>> {
        let (header, envelope, payload) = self.read_frame()?;
        let is_error = check_response_header(&header, T::API_KEY).expect("a valid response header");
        let aligned = ringmq::protocol::aligned_copy(&envelope);
        if is_error {
            return Ok(Err(
                decode_envelope_owned::<ringmq::protocol::ErrorResponse>(&aligned).expect("an error response")
            ));
        }
        Ok(Ok(Response { body: decode_envelope_owned::<T::Response>(&aligned).expect("a valid response"), payload }))
    }

    pub fn call<T: Request>(&mut self, request: &T, payload: Vec<Bytes>) -> Response<T::Response> {
        self.send(request, payload);
        match self.receive::<T>() {
            Ok(response) => response,
            Err(error) => panic!("{:?} failed: {} {}", T::API_KEY, error.error_code, error.message),
        }
    }
}

/// Shorthands for the common requests.
impl RawClient {
    pub fn create_topic(&mut self, name: &str, partitions: u32) -> ErrorCode {
        let request =
            CreateTopicRequest { name: name.into(), partitions, retention_ms: 0, retention_bytes: 0, segment_bytes: 0 };
        ErrorCode::from_u16(self.call(&request, Vec::new()).body.error_code)
    }

    /// Produces `batches` to one partition; returns the partition's error code and base offset.
    pub fn produce(&mut self, topic: &str, partition: u32, batches: &[Bytes], acks: i16) -> (ErrorCode, u64) {
        let length: usize = batches.iter().map(Bytes::len).sum();
        let request = ProduceRequest {
            acks,
            timeout_ms: 10_000,
            topics: vec![ProduceTopic {
                name: topic.into(),
                partitions: vec![ProducePartition { partition, payload_offset: 0, payload_length: length as u32 }],
            }],
        };
        let response = self.call(&request, batches.to_vec());
        let answer = &response.body.topics[0].partitions[0];
        (ErrorCode::from_u16(answer.error_code), answer.base_offset)
    }

    /// Fetches one partition; returns (error code, high watermark, batches).
    pub fn fetch(
        &mut self,
        topic: &str,
        partition: u32,
        offset: u64,
        max_wait_ms: u32,
        min_bytes: u32,
    ) -> (ErrorCode, u64, Vec<Bytes>) {
        let request = FetchRequest {
            max_wait_ms,
            min_bytes,
            max_bytes: 4 << 20,
            topics: vec![FetchTopic {
                name: topic.into(),
                partitions: vec![FetchPartition { partition, fetch_offset: offset, partition_max_bytes: 4 << 20 }],
            }],
        };
        let response = self.call(&request, Vec::new());
        let answer = &response.body.topics[0].partitions[0];
        let section = response
            .payload
            .slice(answer.payload_offset as usize..(answer.payload_offset + answer.payload_length) as usize);
        (ErrorCode::from_u16(answer.error_code), answer.high_watermark, split_batches(section))
    }
}

/// Splits a payload section into its batches.
pub fn split_batches(mut section: Bytes) -> Vec<Bytes> {
    let mut batches = Vec::new();
    while let Some(length) = ringmq::storage::batch::peek_batch_length(&section) {
        if length == 0 || length as usize > section.len() {
            break;
        }
        batches.push(section.split_to(length as usize));
    }
    batches
}

/// A batch of `count` records tagged `tag`, ready to send (no offsets stamped).
pub fn batch(tag: u64, count: usize) -> Bytes {
    ringmq::testing::make_batch(tag, count, 100, ringmq::model::TimestampMs::now()).freeze()
}
