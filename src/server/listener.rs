//! The listening sockets, all bound on the main thread before any shard starts:
//!
//! - the **shared port**: one socket per shard on the same address, with SO_REUSEPORT so that
//!   the kernel spreads incoming connections over the shards. Bound in order, so that an
//!   ephemeral port (`:0`) picked by the first socket is shared by all.
//! - the **shard ports**: one socket per shard on a port of its own (no SO_REUSEPORT), served by
//!   that shard alone. A client that sends a shard only the partitions it owns (Metadata names
//!   each partition's shard and each shard's port) skips the cross-core hop.

use std::net::{IpAddr, SocketAddr};
use std::os::fd::{IntoRawFd, RawFd};

use socket2::{Domain, Protocol, Socket, Type};

/// Backlog of each listening socket.
pub const LISTEN_BACKLOG: i32 = 1024;

/// Binds `count` sockets to `address`; returns their raw descriptors (each to be owned by one
/// shard) and the address they are bound to.
pub fn bind_reuseport(address: SocketAddr, count: usize) -> std::io::Result<(Vec<RawFd>, SocketAddr)> {
    let mut bound = address;
    let mut fds = Vec::with_capacity(count);
    for _ in 0..count {
        let (fd, local) = listen_on(bound, true)?;
        bound = local;
        fds.push(fd);
    }
    Ok((fds, bound))
}

/// The sockets of the shard ports, bound: shard `i`'s descriptor and port at index `i`.
#[derive(Debug)]
pub struct ShardPorts {
    pub fds: Vec<RawFd>,
    pub ports: Vec<u16>,
}

/// Why the shard ports could not be bound.
#[derive(Debug, thiserror::Error)]
pub enum ShardPortError {
    #[error("--shard-port-base {base} with {count} shards needs ports up to {last}, above 65535")]
    OutOfRange { base: u16, count: usize, last: u64 },
    #[error("cannot listen on {address} (the port of shard {shard}): {source}")]
    Bind {
        shard: usize,
        address: SocketAddr,
        #[source]
        source: std::io::Error,
    },
}

/// Binds one socket per shard on `ip`: shard `i` on `base + i`, or on a port the kernel picks
/// when `base` is 0. On an error the sockets bound so far are closed.
pub fn bind_shard_ports(ip: IpAddr, base: u16, count: usize) -> Result<ShardPorts, ShardPortError> {
    let last = u64::from(base) + count.saturating_sub(1) as u64;
    if base != 0 && last > u64::from(u16::MAX) {
        return Err(ShardPortError::OutOfRange { base, count, last });
    }
    let mut bound = ShardPorts { fds: Vec::with_capacity(count), ports: Vec::with_capacity(count) };
    for shard in 0..count {
        // In range: checked above (and 0 stays 0, an ephemeral port per shard).
        let port = if base == 0 { 0 } else { base + shard as u16 };
        let address = SocketAddr::new(ip, port);
        match listen_on(address, false) {
            Ok((fd, local)) => {
                bound.fds.push(fd);
                bound.ports.push(local.port());
            }
            Err(source) => {
                close_all(&bound.fds);
                return Err(ShardPortError::Bind { shard, address, source });
            }
        }
    }
    Ok(bound)
}

/// Closes descriptors that no shard took over.
fn close_all(fds: &[RawFd]) {
    for &fd in fds {
        // SAFETY: `fd` is a socket this module opened and handed out with into_raw_fd; nothing
        // else owns it (the caller gives up on handing it to a shard).
        drop(unsafe { <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd) });
    }
}

/// One listening TCP socket on `address`; returns its descriptor and the address it got.
fn listen_on(address: SocketAddr, reuse_port: bool) -> std::io::Result<(RawFd, SocketAddr)> {
    let socket = Socket::new(Domain::for_address(address), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_port(reuse_port)?;
    // Lets a restarted broker bind while old connections sit in TIME_WAIT; it does not let two
    // live listeners share a port.
    socket.set_reuse_address(true)?;
    socket.bind(&address.into())?;
    socket.listen(LISTEN_BACKLOG)?;
    let local = socket.local_addr()?.as_socket().unwrap_or(address);
    Ok((socket.into_raw_fd(), local))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Guards the shard-port binding: with base 0 every shard gets its own kernel-picked port;
    /// a port already in use is one clear error naming the shard; a range past 65535 is refused
    /// before any bind.
    #[test]
    fn shard_ports_bind_one_port_per_shard_or_fail_clearly() {
        let localhost = IpAddr::from([127, 0, 0, 1]);
        let bound = bind_shard_ports(localhost, 0, 3).expect("ephemeral ports");
        assert_eq!(bound.fds.len(), 3);
        assert!(bound.ports.iter().all(|&port| port != 0));
        let mut distinct = bound.ports.clone();
        distinct.sort_unstable();
        distinct.dedup();
        assert_eq!(distinct.len(), 3, "{:?}", bound.ports);
        // Shard 0's port is taken (by shard 0 above): a fixed base starting there fails at shard 0.
        match bind_shard_ports(localhost, bound.ports[0], 2) {
            Err(ShardPortError::Bind { shard: 0, address, .. }) => assert_eq!(address.port(), bound.ports[0]),
            other => panic!("expected a bind error for shard 0, got {other:?}"),
        }
        close_all(&bound.fds);
        assert!(matches!(bind_shard_ports(localhost, 65_535, 2), Err(ShardPortError::OutOfRange { last: 65_536, .. })));
    }
}
