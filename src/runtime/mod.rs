//! glommio glue for the client side: the [`Sleeper`] implementation, TCP connect, and a
//! runner that drives one client future on a single `LocalExecutor` (what the CLI uses).
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

use crate::client::{Connection, ConnectionConfig, Sleeper};

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
    let stream = TcpStream::connect_timeout(addr, timeout)
        .await
        .map_err(io::Error::from)?;
    stream.set_nodelay(true).map_err(io::Error::from)?;
    Ok(stream)
}

/// [`connect`], then a [`Connection`] with the glommio sleeper.
pub async fn open_connection(
    addr: SocketAddr,
    config: ConnectionConfig,
) -> io::Result<Connection<TcpStream>> {
    let stream = connect(addr, Duration::from_millis(CONNECT_TIMEOUT_MS_DEFAULT)).await?;
    Ok(Connection::new(stream, config, Rc::new(GlommioSleeper)))
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
