//! How large a log's next write buffer is: about [`BUFFERED_TIME`] of the partition's recent
//! write rate, between [`WRITE_BUFFER_BYTES_MIN`] and the configured maximum.
//!
//! Every active log keeps a write buffer, plus up to a few spares while writes are in flight.
//! At the maximum (1 MiB) for every partition, 4,096 partitions that all receive a little data
//! hold 4–8 GiB of buffers, and every byte appended lands on a page never touched before (a
//! page fault and the kernel zeroing the page: 56 % of the broker's CPU in such a run). A hot
//! partition still wants large writes. So a log starts small and sizes each new buffer from
//! the bytes it wrote over the last [`RATE_WINDOW`]: a partition taking 500 MB/s reaches 1 MiB
//! buffers after its first window, one taking a few KiB a second stays at 64 KiB.
//!
//! Plain Rust: time is passed in.

use std::time::{Duration, Instant};

use super::segment::PAGE_BYTES;

/// The smallest write buffer (and the first one of every log).
pub const WRITE_BUFFER_BYTES_MIN: usize = 64 << 10;
/// The write rate is measured over windows of at least this long.
pub const RATE_WINDOW: Duration = Duration::from_millis(100);
/// A buffer holds about this much time of appends at the measured rate.
pub const BUFFERED_TIME: Duration = Duration::from_millis(20);
/// A window ends early once this many buffers' worth was written in it: a partition that
/// starts taking hundreds of MB/s gets large buffers within milliseconds, while a burst of a
/// few batches now and then does not make a quiet partition's buffers grow.
pub const EARLY_WINDOW_BUFFERS: u64 = 16;
/// Shortest window a rate is computed over.
const WINDOW_MIN: Duration = Duration::from_millis(1);

const _: () = assert!(WRITE_BUFFER_BYTES_MIN % PAGE_BYTES == 0);

/// The sizing state of one log. Owned by the log's shard.
#[derive(Debug)]
pub struct BufferSizing {
    min_bytes: usize,
    max_bytes: usize,
    current_bytes: usize,
    window_start: Instant,
    window_bytes: u64,
    /// File position after the last byte of the previous write (of any segment).
    last_end_position: u64,
}

impl BufferSizing {
    /// Starts at the smallest size (`max_bytes` if that is smaller).
    pub fn new(max_bytes: usize, end_position: u64, now: Instant) -> BufferSizing {
        let min_bytes = WRITE_BUFFER_BYTES_MIN.min(max_bytes);
        BufferSizing {
            min_bytes,
            max_bytes,
            current_bytes: min_bytes,
            window_start: now,
            window_bytes: 0,
            last_end_position: end_position,
        }
    }

    /// The size of the next buffer to allocate; a multiple of the page size.
    pub fn buffer_bytes(&self) -> usize {
        self.current_bytes
    }

    /// A write ending at `end_position` of the active segment went out at `now` (a roll
    /// starts a segment at 0: only the new segment's bytes count then).
    pub fn wrote(&mut self, end_position: u64, now: Instant) {
        let bytes =
            if end_position >= self.last_end_position { end_position - self.last_end_position } else { end_position };
        self.last_end_position = end_position;
        self.window_bytes = self.window_bytes.saturating_add(bytes);
        let elapsed = now.saturating_duration_since(self.window_start).max(WINDOW_MIN);
        let early = self.window_bytes >= EARLY_WINDOW_BUFFERS.saturating_mul(self.current_bytes as u64);
        if elapsed < RATE_WINDOW && !early {
            return;
        }
        let wanted = (self.window_bytes as f64 * BUFFERED_TIME.as_secs_f64() / elapsed.as_secs_f64()) as usize;
        let pages = wanted.div_ceil(PAGE_BYTES).max(1);
        self.current_bytes = pages.saturating_mul(PAGE_BYTES).clamp(self.min_bytes, self.max_bytes);
        self.window_start = now;
        self.window_bytes = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAX: usize = 1 << 20;

    /// Guards the memory bound and the large writes: a slow partition stays at the minimum, a
    /// fast one reaches the maximum after one window, and one that slows down shrinks again.
    #[test]
    fn buffers_follow_the_write_rate() {
        let start = Instant::now();
        let mut sizing = BufferSizing::new(MAX, 0, start);
        assert_eq!(sizing.buffer_bytes(), WRITE_BUFFER_BYTES_MIN);
        // 500 MB/s: 64 KiB writes every ~0.13 ms; nothing changes before the window ends.
        let mut position = 0;
        let mut at = start;
        for _ in 0..15 {
            position += 64 << 10;
            at += Duration::from_micros(131);
            sizing.wrote(position, at);
        }
        assert_eq!(sizing.buffer_bytes(), WRITE_BUFFER_BYTES_MIN, "not yet a window, nor 16 buffers");
        position += 64 << 10;
        at += Duration::from_micros(131);
        sizing.wrote(position, at);
        assert_eq!(sizing.buffer_bytes(), MAX, "16 buffers in 2 ms: 20 ms at 500 MB/s is more than 1 MiB");
        // A burst of four buffers (one 256 KiB batch) in a quiet window does not grow it.
        let mut bursty = BufferSizing::new(MAX, 0, start);
        bursty.wrote(256 << 10, start + Duration::from_millis(1));
        assert_eq!(bursty.buffer_bytes(), WRITE_BUFFER_BYTES_MIN);
        bursty.wrote(512 << 10, start + Duration::from_secs(1));
        assert_eq!(bursty.buffer_bytes(), WRITE_BUFFER_BYTES_MIN, "512 KiB a second is 10 KiB per 20 ms");
        // 1 MB/s for a window: 20 KB, below the minimum.
        position += 100_000;
        sizing.wrote(position, at + Duration::from_millis(100));
        assert_eq!(sizing.buffer_bytes(), WRITE_BUFFER_BYTES_MIN);
        // 25 MB/s: 500 KB per 20 ms, rounded up to pages, between the bounds.
        position += 2_500_000;
        sizing.wrote(position, at + Duration::from_millis(200));
        let expected = 500_000usize.div_ceil(PAGE_BYTES) * PAGE_BYTES;
        assert_eq!(sizing.buffer_bytes(), expected);
        // A roll restarts positions at 0: the new segment's bytes count, not a negative delta.
        sizing.wrote(4096, at + Duration::from_millis(250));
        sizing.wrote(8192, at + Duration::from_millis(300));
        assert_eq!(sizing.buffer_bytes(), WRITE_BUFFER_BYTES_MIN);
    }

    /// A configured maximum below the minimum wins (tests use 16 KiB buffers).
    #[test]
    fn a_small_maximum_is_respected() {
        let start = Instant::now();
        let mut sizing = BufferSizing::new(16 << 10, 0, start);
        assert_eq!(sizing.buffer_bytes(), 16 << 10);
        sizing.wrote(1 << 30, start + Duration::from_secs(1));
        assert_eq!(sizing.buffer_bytes(), 16 << 10);
    }
}
