//! The listening sockets: one per shard on the same address, with SO_REUSEPORT so that the
//! kernel spreads incoming connections over the shards. Bound on the main thread, in order,
//! so that an ephemeral port (`:0`) picked by the first socket is shared by all.

use std::net::SocketAddr;
use std::os::fd::{IntoRawFd, RawFd};

use socket2::{Domain, Protocol, Socket, Type};

/// Backlog of each listening socket.
pub const LISTEN_BACKLOG: i32 = 1024;

/// Binds `count` sockets to `address`; returns their raw descriptors (each to be owned by one
/// shard) and the address they are bound to.
pub fn bind_reuseport(
    address: SocketAddr,
    count: usize,
) -> std::io::Result<(Vec<RawFd>, SocketAddr)> {
    let mut bound = address;
    let mut fds = Vec::with_capacity(count);
    for _ in 0..count {
        let socket = Socket::new(
            Domain::for_address(bound),
            Type::STREAM,
            Some(Protocol::TCP),
        )?;
        socket.set_reuse_port(true)?;
        socket.set_reuse_address(true)?;
        socket.bind(&bound.into())?;
        socket.listen(LISTEN_BACKLOG)?;
        if let Some(local) = socket.local_addr()?.as_socket() {
            bound = local;
        }
        fds.push(socket.into_raw_fd());
    }
    Ok((fds, bound))
}
