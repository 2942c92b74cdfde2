//! A non-blocking `recv(2)` straight into a buffer's spare capacity. Kernel-facing.
//!
//! `futures-io` reads take an initialized `&mut [u8]`, so reading a large frame body through
//! them means zeroing the whole body first: a `memset` of every produced byte, 10–11 % of a
//! shard's samples in the 1 MiB-batch produce case (PERF.md). The kernel writes the bytes
//! anyway; this reads into the uninitialized tail of a `BytesMut` and extends its length by
//! what the kernel reported, so no byte is touched twice. It never waits: the caller waits for
//! readability through glommio when it returns [`Recv::WouldBlock`].

use std::io;
use std::os::fd::RawFd;

use bytes::BytesMut;

/// What one non-blocking receive did.
#[derive(Debug, PartialEq, Eq)]
pub enum Recv {
    /// This many bytes were appended to the buffer (at least one).
    Read(usize),
    /// No data now; wait for the socket to become readable.
    WouldBlock,
    /// The peer closed its side.
    Closed,
}

/// Receives at most `want` bytes from `fd` into `buffer`'s spare capacity (reserved here),
/// without blocking, and appends them. `fd` must be a socket that stays open for the call.
pub fn recv_into_spare(fd: RawFd, buffer: &mut BytesMut, want: usize) -> io::Result<Recv> {
    if want == 0 {
        return Ok(Recv::Read(0));
    }
    buffer.reserve(want);
    // Bounded: EINTR is retried, anything else returns.
    loop {
        let spare = buffer.spare_capacity_mut();
        let length = want.min(spare.len());
        // SAFETY: `spare` is `length` (or more) bytes of writable memory owned by `buffer`,
        // valid for the duration of the call; recv only writes into it, at most `length`
        // bytes, and never reads it. No reference to the uninitialized bytes is created.
        let got = unsafe { libc::recv(fd, spare.as_mut_ptr().cast(), length, libc::MSG_DONTWAIT) };
        if got > 0 {
            let got = got as usize;
            // SAFETY: the kernel initialized the first `got` bytes of the spare capacity
            // (`got <= length <= spare.len()`), directly after the current length.
            unsafe { buffer.set_len(buffer.len() + got) };
            return Ok(Recv::Read(got));
        }
        if got == 0 {
            return Ok(Recv::Closed);
        }
        let error = io::Error::last_os_error();
        match error.kind() {
            io::ErrorKind::WouldBlock => return Ok(Recv::WouldBlock),
            io::ErrorKind::Interrupted => continue,
            _ => return Err(error),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::os::fd::AsRawFd;
    use std::os::unix::net::UnixStream;

    use super::*;

    /// Guards the in-place receive: it appends exactly what arrived (capped by `want`), keeps
    /// what the buffer held, says when nothing is there without blocking, and reports the
    /// peer's close.
    #[test]
    fn receives_into_the_spare_capacity_and_never_blocks() {
        let (mut writer, reader) = UnixStream::pair().unwrap();
        let sent: Vec<u8> = (0..100u8).collect();
        writer.write_all(&sent).unwrap();
        let mut buffer = BytesMut::from(&b"head"[..]);
        assert_eq!(recv_into_spare(reader.as_raw_fd(), &mut buffer, 64).unwrap(), Recv::Read(64));
        assert_eq!(recv_into_spare(reader.as_raw_fd(), &mut buffer, 1 << 20).unwrap(), Recv::Read(36));
        assert_eq!(&buffer[..4], b"head");
        assert_eq!(&buffer[4..], &sent[..]);
        assert_eq!(recv_into_spare(reader.as_raw_fd(), &mut buffer, 64).unwrap(), Recv::WouldBlock);
        assert_eq!(buffer.len(), 104);
        drop(writer);
        assert_eq!(recv_into_spare(reader.as_raw_fd(), &mut buffer, 64).unwrap(), Recv::Closed);
        assert!(recv_into_spare(-1, &mut buffer, 64).is_err(), "a bad descriptor is an error, not a panic");
    }
}
