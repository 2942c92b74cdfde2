//! Copying into a buffer that goes to the disk next, without pulling it into the cache.
//!
//! The write buffer is filled once and then read only by the device (O_DIRECT). Ordinary
//! stores first fetch every destination line (read-for-ownership) and leave 1 MiB of cache
//! lines that nobody reads; streaming (non-temporal) stores write whole lines past the cache.
//! Small copies are left to `copy_from_slice`: below a few KiB the fence costs more.

/// Copies below this go through `copy_from_slice`.
const STREAMING_BYTES_MIN: usize = 16 * 1024;

/// `dst.copy_from_slice(src)`, with streaming stores for large copies where the CPU has them.
/// Panics if the lengths differ, as `copy_from_slice` does (callers slice both to one length).
pub fn copy_for_device(dst: &mut [u8], src: &[u8]) {
    assert_eq!(dst.len(), src.len(), "copy_for_device: lengths differ");
    if src.len() < STREAMING_BYTES_MIN {
        dst.copy_from_slice(src);
        return;
    }
    copy_streaming(dst, src);
}

#[cfg(target_arch = "x86_64")]
fn copy_streaming(dst: &mut [u8], src: &[u8]) {
    use std::arch::x86_64::{__m128i, _mm_loadu_si128, _mm_sfence, _mm_stream_si128};
    const LINE: usize = 64;
    let len = src.len();
    // Ordinary copy up to the first cache-line boundary of the destination.
    let head = ((LINE - (dst.as_ptr() as usize % LINE)) % LINE).min(len);
    dst[..head].copy_from_slice(&src[..head]);
    let lines = (len - head) / LINE;
    let body_end = head + lines * LINE;
    for line in 0..lines {
        let at = head + line * LINE;
        let (from, to) = (&src[at..at + LINE], &mut dst[at..at + LINE]);
        // SAFETY: SSE2 is part of x86_64. `from` and `to` are 64 bytes long, so the four
        // 16-byte loads and stores stay inside them; loads are unaligned (`loadu`), and `to`
        // starts on a 64-byte boundary (after `head`), so each streaming store is 16-aligned as
        // `_mm_stream_si128` requires.
        unsafe {
            for quarter in 0..4 {
                let value = _mm_loadu_si128(from.as_ptr().add(quarter * 16).cast::<__m128i>());
                _mm_stream_si128(to.as_mut_ptr().add(quarter * 16).cast::<__m128i>(), value);
            }
        }
    }
    dst[body_end..].copy_from_slice(&src[body_end..]);
    // SAFETY: SSE is part of x86_64. The fence orders the streaming stores before any later
    // store, e.g. before the buffer is handed to the kernel for the write.
    unsafe { _mm_sfence() };
}

#[cfg(not(target_arch = "x86_64"))]
fn copy_streaming(dst: &mut [u8], src: &[u8]) {
    dst.copy_from_slice(src);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Guards the copy itself: every length around the threshold and every destination
    /// alignment within a cache line copies every byte, and nothing outside the range.
    #[test]
    fn copies_every_byte_at_every_alignment() {
        let source: Vec<u8> = (0..70_000u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
        for len in [0, 1, 63, STREAMING_BYTES_MIN - 1, STREAMING_BYTES_MIN, STREAMING_BYTES_MIN + 65, 65_537] {
            for offset in [0, 1, 8, 17, 63] {
                let mut destination = vec![0xEEu8; len + 128];
                copy_for_device(&mut destination[offset..offset + len], &source[3..3 + len]);
                assert_eq!(&destination[offset..offset + len], &source[3..3 + len], "len {len} offset {offset}");
                assert!(destination[..offset].iter().all(|&b| b == 0xEE));
                assert!(destination[offset + len..].iter().all(|&b| b == 0xEE));
            }
        }
    }
}
