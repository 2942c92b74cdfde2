//! glommio glue for the client side: the [`Sleeper`] implementation, TCP connect, the
//! producer's reconnection ([`tcp_connector`]), the shard-aware producer's connections
//! ([`shard_connector`]), and a runner that drives one client future on a
//! single `LocalExecutor` (what the CLI uses).
//!
//! This is the only client-side module that names glommio; `crate::client` is
//! runtime-agnostic.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::pin::Pin;
use std::rc::Rc;
use std::time::Duration;

use bytes::BytesMut;
use glommio::net::TcpStream;
use glommio::LocalExecutorBuilder;

use crate::client::{ClientError, Connect, Connection, ConnectionConfig, ShardConnect, Sleeper};
use crate::sys::socket_recv::{recv_into_spare, Recv};

/// Default bound on establishing a TCP connection.
pub const CONNECT_TIMEOUT_MS_DEFAULT: u64 = 5_000;
/// io_uring buffer memory for the client's executor: a client does no direct file I/O, so a
/// small pool keeps it within a default `RLIMIT_MEMLOCK`.
const CLIENT_IO_MEMORY_BYTES: usize = 1 << 20;

/// [`Sleeper`] on glommio's timer wheel. Must be used from a glommio executor.
#[derive(Clone, Copy, Debug, Default)]
pub struct GlommioSleeper;

impl Sleeper for GlommioSleeper {
    fn sleep(&self, duration: Duration) -> Pin<Box<dyn Future<Output = ()>>> {
        Box::pin(glommio::timer::sleep(duration))
    }
}

/// Connects to `addr` within `timeout`, with `TCP_NODELAY` set (requests are whole frames
/// written at once; Nagle would only add latency).
pub async fn connect(addr: SocketAddr, timeout: Duration) -> io::Result<TcpStream> {
    let stream = TcpStream::connect_timeout(addr, timeout).await.map_err(io::Error::from)?;
    stream.set_nodelay(true).map_err(io::Error::from)?;
    Ok(stream)
}

/// [`connect`], then a [`Connection`] with the glommio sleeper that receives large response
/// frames in place ([`receive_tcp_in_place`]).
pub async fn open_connection(addr: SocketAddr, config: ConnectionConfig) -> io::Result<Connection<TcpStream>> {
    let stream = connect(addr, Duration::from_millis(CONNECT_TIMEOUT_MS_DEFAULT)).await?;
    Ok(Connection::new(stream, config, Rc::new(GlommioSleeper)).with_receive_in_place(receive_tcp_in_place))
}

/// The client's [`crate::client::connection::ReceiveInPlace`] for glommio TCP streams: a
/// non-blocking `recv(2)` on the stream's socket into the buffer's spare capacity.
pub fn receive_tcp_in_place(stream: &mut TcpStream, buffer: &mut BytesMut, want: usize) -> io::Result<Recv> {
    recv_into_spare(stream.as_raw_fd(), buffer, want)
}

/// A [`Connect`] for [`crate::client::Producer::with_reconnect`]: each call opens a new TCP
/// connection to `addr` (within [`CONNECT_TIMEOUT_MS_DEFAULT`]) with `config`.
pub fn tcp_connector(addr: SocketAddr, config: ConnectionConfig) -> impl Connect<TcpStream> {
    move || async move { open_connection(addr, config).await.map_err(ClientError::from) }
}

/// A [`ShardConnect`] for [`crate::client::ShardAwareProducer`]: each call opens a new TCP
/// connection to the address asked for (a shard's port, within [`CONNECT_TIMEOUT_MS_DEFAULT`])
/// with `config`.
pub fn shard_connector(config: ConnectionConfig) -> impl ShardConnect<TcpStream> {
    move |address| async move { open_connection(address, config).await.map_err(ClientError::from) }
}

/// Runs `make()`'s future to completion on a new single `LocalExecutor` on this thread.
/// Fails only if the executor cannot be created (no io_uring, memlock limits).
pub fn run_local<F, T>(make: impl FnOnce() -> F) -> io::Result<T>
where
    F: Future<Output = T>,
{
    let executor = LocalExecutorBuilder::default()
        .name("ringmq-client")
        .io_memory(CLIENT_IO_MEMORY_BYTES)
        .make()
        .map_err(io::Error::from)?;
    Ok(executor.run(make()))
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};
    use std::net::TcpListener;
    use std::thread::JoinHandle;

    use bytes::BytesMut;

    use super::*;
    use crate::protocol::{encode_response, FrameDecoder, MetadataResponse, MetadataTopic, ResponseTo};

    /// A fake broker on a thread: accepts one connection, reads one request frame and answers
    /// it with the Metadata `response`, written in `pieces` with `pause` between them.
    fn answer_one_metadata_request(
        response: MetadataResponse,
        pieces: usize,
        pause: Duration,
    ) -> (SocketAddr, JoinHandle<usize>) {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("local addr");
        let broker = std::thread::spawn(move || {
            let (mut socket, _) = listener.accept().expect("accept");
            let decoder = FrameDecoder::default();
            let mut input = BytesMut::new();
            let mut chunk = [0u8; 4096];
            for _ in 0..1_000 {
                if let Some(frame) = decoder.split_frame(&mut input).expect("a valid frame") {
                    let bytes =
                        encode_response(ResponseTo::from(&frame.header), &response, vec![]).expect("encode").to_vec();
                    for piece in bytes.chunks(bytes.len().div_ceil(pieces.max(1))) {
                        socket.write_all(piece).expect("write");
                        std::thread::sleep(pause);
                    }
                    return bytes.len();
                }
                let got = socket.read(&mut chunk).expect("read");
                assert!(got > 0, "the client hung up before a whole request");
                input.extend_from_slice(&chunk[..got]);
            }
            panic!("no whole request in 1,000 reads");
        });
        (addr, broker)
    }

    fn topic(name: String) -> MetadataTopic {
        MetadataTopic {
            name,
            error_code: 0,
            partitions: Vec::new(),
            retention_ms: -1,
            retention_bytes: -1,
            segment_bytes: 0,
        }
    }

    /// Guards the glommio glue over a real socket: connect, one vectored request write,
    /// framed reads, and the sleeper-driven timeout racing a response that does come.
    #[test]
    fn glommio_connection_round_trip_over_tcp() {
        let response = MetadataResponse {
            shard_count: 4,
            topics: vec![topic("t".into())],
            shard_ports: vec![9300, 9301, 9302, 9303],
        };
        let (addr, broker) = answer_one_metadata_request(response, 1, Duration::ZERO);
        let shard_count = run_local(|| async move {
            let mut connection = open_connection(addr, ConnectionConfig::default()).await.expect("connect");
            connection.metadata(&[]).await.expect("metadata").shard_count
        })
        .expect("executor");
        assert_eq!(shard_count, 4);
        broker.join().expect("fake broker thread");
    }

    thread_local! {
        static IN_PLACE_BYTES: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
    }

    fn counting_receive(stream: &mut TcpStream, buffer: &mut BytesMut, want: usize) -> io::Result<Recv> {
        let received = receive_tcp_in_place(stream, buffer, want)?;
        if let Recv::Read(got) = received {
            IN_PLACE_BYTES.with(|bytes| bytes.set(bytes.get() + got));
        }
        Ok(received)
    }

    /// Guards the in-place receive of large responses: a ~200 KiB Metadata response written in
    /// pieces with pauses between them (so the client finds the socket empty mid-frame and
    /// waits through glommio, then goes on in place) arrives whole and decodes to every topic,
    /// and most of its bytes came through the in-place receive rather than the scratch copy
    /// (which takes the frame's first read, before its length is known, and whatever arrives
    /// between the in-place receive finding the socket empty and glommio's own read).
    #[test]
    fn large_responses_arriving_in_pieces_are_received_in_place() {
        const TOPICS: usize = 4_000;
        const SCRATCH_READ_BYTES: usize = 64 * 1024;
        let name = |i: usize| format!("topic-with-a-long-name-{i:08}");
        let response = MetadataResponse {
            shard_count: 1,
            topics: (0..TOPICS).map(|i| topic(name(i))).collect(),
            shard_ports: vec![],
        };
        let (addr, broker) = answer_one_metadata_request(response, 6, Duration::from_millis(5));
        let (names, in_place_bytes) = run_local(|| async move {
            let stream = connect(addr, Duration::from_secs(5)).await.expect("connect");
            let mut connection = Connection::new(stream, ConnectionConfig::default(), Rc::new(GlommioSleeper))
                .with_receive_in_place(counting_receive);
            let topics = connection.metadata(&[]).await.expect("metadata").topics;
            (topics.into_iter().map(|topic| topic.name).collect::<Vec<_>>(), IN_PLACE_BYTES.with(|b| b.get()))
        })
        .expect("executor");
        let frame_bytes = broker.join().expect("fake broker thread");
        assert!(frame_bytes > 3 * SCRATCH_READ_BYTES, "the frame is large: {frame_bytes} bytes");
        assert_eq!(names.len(), TOPICS);
        assert!(names.iter().enumerate().all(|(i, found)| *found == name(i)));
        assert!(
            in_place_bytes > frame_bytes / 2,
            "only {in_place_bytes} of {frame_bytes} bytes were received in place"
        );
    }

    /// Guards `vendor/glommio` patch 5: an executor that polls while idle (`spin_before_park`)
    /// lets another runnable thread of its CPU run between two polls, instead of holding the
    /// CPU until the scheduler takes it away. That is what lets a polling shard and a polling
    /// client share one CPU (PERF.md, "Polling executors that take turns"). The kernel's
    /// figures for both threads over 300 ms of idling: a polling loop that never yields gets
    /// its fair half of the CPU beside a busy thread (the two are never blocked), one that
    /// yields runs a sliver of it. Bounded: 300 ms of idling; the busy thread stops at a flag,
    /// or after 10 s.
    #[test]
    fn a_polling_executor_leaves_its_cpu_to_a_busy_thread() {
        use std::sync::atomic::{AtomicBool, Ordering};
        use std::sync::Arc;
        use std::time::Instant;

        use crate::sys::cpu_wait::SchedStat;

        if SchedStat::of_this_thread().is_err() {
            eprintln!("no /proc/thread-self/schedstat on this kernel (CONFIG_SCHED_INFO): skipped");
            return;
        }
        let Some(&cpu) = crate::server::startup::usable_cpus().first() else {
            eprintln!("no usable CPU reported: skipped");
            return;
        };
        let stop = Arc::new(AtomicBool::new(false));
        let (tid_sender, tid_receiver) = std::sync::mpsc::channel();
        let busy = {
            let stop = stop.clone();
            std::thread::spawn(move || {
                assert!(crate::testing::pin_this_thread_to(cpu), "pin the busy thread to CPU {cpu}");
                // SAFETY: gettid has no arguments and cannot fail.
                let _ = tid_sender.send(unsafe { libc::gettid() });
                let deadline = Instant::now() + Duration::from_secs(10);
                while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
                    std::hint::spin_loop();
                }
            })
        };
        let busy_stat = format!("/proc/self/task/{}/schedstat", tid_receiver.recv().expect("the busy thread's id"));
        let (executor_ran, busy_ran) = LocalExecutorBuilder::new(glommio::Placement::Fixed(cpu))
            .spin_before_park(Duration::from_secs(10))
            .io_memory(CLIENT_IO_MEMORY_BYTES)
            .spawn(move || async move {
                let read_both = || {
                    let busy = SchedStat::read(std::path::Path::new(&busy_stat)).expect("the busy thread's schedstat");
                    (SchedStat::of_this_thread().expect("own schedstat"), busy)
                };
                let (own_before, busy_before) = read_both();
                glommio::timer::sleep(Duration::from_millis(300)).await;
                let (own_after, busy_after) = read_both();
                (own_after.since(&own_before).run_ns, busy_after.since(&busy_before).run_ns)
            })
            .expect("start a pinned executor")
            .join()
            .expect("the executor thread");
        stop.store(true, Ordering::Relaxed);
        busy.join().expect("the busy thread");
        assert!(busy_ran > 0, "the busy thread ran on CPU {cpu}");
        assert!(
            executor_ran * 4 < busy_ran,
            "the idle polling executor ran {executor_ran} ns beside a busy thread that ran {busy_ran} ns"
        );
    }
}
