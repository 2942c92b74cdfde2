//! Writing an [`EncodedFrame`] to a socket: the one I/O function of the protocol module, over
//! any `futures-io` writer (no runtime named), shared by the broker's responses and the
//! client's requests.
//!
//! A frame is a head (header + envelope) and payload batches. Writing each as its own `send`
//! costs a syscall and a TCP segment per batch, and glommio's streams have no vectored write
//! (its `poll_write_vectored` is the default: one buffer per call). So small parts are copied
//! into one buffer with their neighbours — a request or response of many small batches costs
//! one write per [`COALESCE_BUFFER_BYTES`] — and large parts are written as they are, never
//! copied.

use futures::io::{AsyncWrite, AsyncWriteExt};

use super::codec::EncodedFrame;

/// Parts up to this size are copied next to their neighbours; larger ones are written alone.
pub const COALESCE_PART_BYTES_MAX: usize = 16 << 10;
/// Size of the buffer small parts are gathered in.
pub const COALESCE_BUFFER_BYTES: usize = 64 << 10;

/// One write of a frame: a run of small parts gathered in the buffer, or one large part.
#[derive(Debug, PartialEq, Eq)]
enum Write<'a> {
    Gathered(Vec<&'a [u8]>),
    Alone(&'a [u8]),
}

/// The writes of `frame`, in order: consecutive parts of at most [`COALESCE_PART_BYTES_MAX`]
/// gathered up to [`COALESCE_BUFFER_BYTES`], larger parts alone.
fn plan(frame: &EncodedFrame) -> Vec<Write<'_>> {
    let mut writes = Vec::new();
    let mut gathered: Vec<&[u8]> = Vec::new();
    let mut gathered_bytes = 0;
    let parts = std::iter::once(frame.head()).chain(frame.payload().iter().map(|part| &part[..]));
    for part in parts.filter(|part| !part.is_empty()) {
        let small = part.len() <= COALESCE_PART_BYTES_MAX;
        if !gathered.is_empty() && (!small || gathered_bytes + part.len() > COALESCE_BUFFER_BYTES) {
            writes.push(Write::Gathered(std::mem::take(&mut gathered)));
            gathered_bytes = 0;
        }
        if small {
            gathered_bytes += part.len();
            gathered.push(part);
        } else {
            writes.push(Write::Alone(part));
        }
    }
    if !gathered.is_empty() {
        writes.push(Write::Gathered(gathered));
    }
    writes
}

/// Writes all of `frame`, then flushes. `scratch` is the gathering buffer, kept by the caller
/// across frames so that it is allocated once per connection.
pub async fn write_frame<W: AsyncWrite + Unpin>(
    writer: &mut W,
    frame: &EncodedFrame,
    scratch: &mut Vec<u8>,
) -> std::io::Result<()> {
    for write in plan(frame) {
        match write {
            Write::Alone(part) => writer.write_all(part).await?,
            Write::Gathered(parts) if parts.len() == 1 => writer.write_all(parts[0]).await?,
            Write::Gathered(parts) => {
                scratch.clear();
                for part in parts {
                    scratch.extend_from_slice(part);
                }
                writer.write_all(scratch).await?;
            }
        }
    }
    writer.flush().await
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;
    use crate::protocol::{encode_response, MetadataResponse, ResponseTo};

    fn frame_with(parts: &[usize]) -> EncodedFrame {
        let to = ResponseTo { correlation_id: 7, api_key: 3, api_version: 0 };
        let payload = parts.iter().enumerate().map(|(i, &len)| Bytes::from(vec![i as u8; len])).collect();
        match encode_response(
            to,
            &MetadataResponse { shard_count: 1, topics: Vec::new(), shard_ports: Vec::new() },
            payload,
        ) {
            Ok(frame) => frame,
            Err(error) => panic!("encoding a test frame: {error}"),
        }
    }

    fn sizes(writes: &[Write<'_>]) -> Vec<usize> {
        writes
            .iter()
            .map(|write| match write {
                Write::Gathered(parts) => parts.iter().map(|part| part.len()).sum(),
                Write::Alone(part) => part.len(),
            })
            .collect()
    }

    /// Guards the syscall count: a head and small batches are one write; many small batches
    /// are one write per buffer; a large batch is never copied.
    #[test]
    fn small_parts_are_gathered_and_large_ones_written_alone() {
        let small = frame_with(&[1024; 10]);
        assert_eq!(plan(&small).len(), 1, "head + ten 1 KiB batches: one write");
        let many = frame_with(&[1024; 200]);
        let writes = plan(&many);
        assert_eq!(writes.len(), 4, "{:?}", sizes(&writes));
        assert!(sizes(&writes).iter().all(|&bytes| bytes <= COALESCE_BUFFER_BYTES));
        let large = frame_with(&[100, 1 << 20, 100]);
        let writes = plan(&large);
        assert_eq!(writes.len(), 3);
        assert!(matches!(writes[1], Write::Alone(part) if part.len() == 1 << 20));
    }

    /// Whatever the plan, the bytes on the wire are the frame's bytes, in order.
    #[test]
    fn the_written_bytes_are_the_frame() {
        for parts in [&[][..], &[5, 70_000, 3, 16_384, 16_385, 900][..], &[1024; 150][..]] {
            let frame = frame_with(parts);
            let mut written = futures::io::Cursor::new(Vec::new());
            let mut scratch = Vec::new();
            futures_lite::future::block_on(write_frame(&mut written, &frame, &mut scratch))
                .unwrap_or_else(|error| panic!("writing to memory: {error}"));
            assert_eq!(written.into_inner(), frame.to_vec(), "parts {parts:?}");
        }
    }
}
