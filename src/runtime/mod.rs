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
use std::pin::Pin;
use std::rc::Rc;
use std::time::Duration;

use glommio::net::TcpStream;
use glommio::LocalExecutorBuilder;

use crate::client::{ClientError, Connect, Connection, ConnectionConfig, ShardConnect, Sleeper};

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

/// [`connect`], then a [`Connection`] with the glommio sleeper.
pub async fn open_connection(addr: SocketAddr, config: ConnectionConfig) -> io::Result<Connection<TcpStream>> {
    let stream = connect(addr, Duration::from_millis(CONNECT_TIMEOUT_MS_DEFAULT)).await?;
    Ok(Connection::new(stream, config, Rc::new(GlommioSleeper)))
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

    use bytes::BytesMut;

    use super::*;
    use crate::protocol::{encode_response, FrameDecoder, MetadataResponse, MetadataTopic, ResponseTo};

    /// Guards the glommio glue over a real socket: connect, one vectored request write,
    /// framed reads, and the sleeper-driven timeout racing a response that does come.
    #[test]
    fn glommio_connection_round_trip_over_tcp() {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("local addr");
        let broker = std::thread::spawn(move || {
            let (mut socket, _) = listener.accept().expect("accept");
            let decoder = FrameDecoder::default();
            let mut input = BytesMut::new();
            let mut chunk = [0u8; 4096];
            for _ in 0..1_000 {
                if let Some(frame) = decoder.split_frame(&mut input).expect("a valid frame") {
                    let response = MetadataResponse {
                        shard_count: 4,
                        topics: vec![MetadataTopic {
                            name: "t".into(),
                            error_code: 0,
                            partitions: Vec::new(),
                            retention_ms: -1,
                            retention_bytes: -1,
                            segment_bytes: 0,
                        }],
                        shard_ports: vec![9300, 9301, 9302, 9303],
                    };
                    let bytes =
                        encode_response(ResponseTo::from(&frame.header), &response, vec![]).expect("encode").to_vec();
                    socket.write_all(&bytes).expect("write");
                    return;
                }
                let got = socket.read(&mut chunk).expect("read");
                assert!(got > 0, "the client hung up before a whole request");
                input.extend_from_slice(&chunk[..got]);
            }
        });
        let shard_count = run_local(|| async move {
            let mut connection = open_connection(addr, ConnectionConfig::default()).await.expect("connect");
            connection.metadata(&[]).await.expect("metadata").shard_count
        })
        .expect("executor");
        assert_eq!(shard_count, 4);
        broker.join().expect("fake broker thread");
    }
}
