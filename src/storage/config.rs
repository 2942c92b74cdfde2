//! Per-partition log configuration and the durability policy.

use std::fmt;
use std::str::FromStr;

/// When an append counts as durable. The contract each policy gives is on
/// [`PartitionLog::append`](super::PartitionLog::append).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Durability {
    /// An append resolves only after an `fdatasync` that covers it. Concurrent appends share
    /// one `fdatasync` (group commit). The default.
    #[default]
    Always,
    /// An append resolves once it is in the write buffer; the log is written and synced at
    /// least every `interval_ms` by a background task of the owning shard. A crash loses at
    /// most the last interval.
    IntervalMs(u64),
    /// An append resolves once it is in the write buffer; data reaches the disk when the
    /// buffer fills, the segment rolls or the log closes, and is never synced except at a
    /// roll or a clean close. A crash may lose everything not yet written.
    Never,
}

impl fmt::Display for Durability {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Durability::Always => f.write_str("always"),
            Durability::IntervalMs(ms) => write!(f, "interval:{ms}"),
            Durability::Never => f.write_str("never"),
        }
    }
}

impl FromStr for Durability {
    type Err = String;

    /// Parses `always`, `never` or `interval:<ms>` (with `ms` ≥ 1).
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text {
            "always" => Ok(Durability::Always),
            "never" => Ok(Durability::Never),
            _ => match text.strip_prefix("interval:").map(str::parse::<u64>) {
                Some(Ok(ms)) if ms >= 1 => Ok(Durability::IntervalMs(ms)),
                _ => Err(format!("invalid durability {text:?}: expected always, never or interval:<ms> with ms >= 1")),
            },
        }
    }
}

/// Default size at which the active segment rolls: 1 GiB, as Kafka and Redpanda.
pub const SEGMENT_BYTES_DEFAULT: u64 = 1 << 30;
/// Smallest accepted `segment_bytes`: a segment must hold at least one maximal batch header
/// and several pages.
pub const SEGMENT_BYTES_MIN: u64 = 64 << 10;
/// Segment position offsets are stored as `u32` in the index.
pub const SEGMENT_BYTES_MAX: u64 = u32::MAX as u64;
/// An index entry is added after this many bytes of batches (Kafka's `index.interval.bytes`).
pub const INDEX_INTERVAL_BYTES_DEFAULT: u32 = 4096;
/// Size of the aligned buffer that batches are copied into before an O_DIRECT write.
pub const WRITE_BUFFER_BYTES_DEFAULT: usize = 1 << 20;
/// Segment files grow by fallocate, so that an `fdatasync` after an append seldom has a file
/// size to update: first by this much, then doubling up to `preallocate_bytes` a step. Starting
/// small keeps thousands of quiet partitions from reserving gigabytes of disk.
pub const PREALLOCATE_BYTES_MIN: u64 = 1 << 20;
/// The largest pre-allocation step.
pub const PREALLOCATE_BYTES_DEFAULT: u64 = 32 << 20;

const _: () = assert!(SEGMENT_BYTES_MIN <= SEGMENT_BYTES_DEFAULT);
const _: () = assert!(SEGMENT_BYTES_DEFAULT <= SEGMENT_BYTES_MAX);
const _: () = assert!(WRITE_BUFFER_BYTES_DEFAULT % super::segment::PAGE_BYTES == 0);

/// How one partition's log behaves. Owned by the partition's shard.
#[derive(Clone, Debug)]
pub struct LogConfig {
    /// Roll the active segment when an append would take it past this size.
    pub segment_bytes: u64,
    /// Roll the active segment when its first append is older than this (None: never by age).
    pub segment_ms: Option<u64>,
    /// Delete closed segments whose newest record is older than this (None: keep forever).
    pub retention_ms: Option<u64>,
    /// Delete the oldest closed segments while the log stays above this size (None: no limit).
    pub retention_bytes: Option<u64>,
    pub durability: Durability,
    pub index_interval_bytes: u32,
    /// Capacity of the aligned write buffer; a multiple of 4096.
    pub write_buffer_bytes: usize,
    pub preallocate_bytes: u64,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            segment_bytes: SEGMENT_BYTES_DEFAULT,
            segment_ms: Some(7 * 24 * 3600 * 1000),
            retention_ms: Some(7 * 24 * 3600 * 1000),
            retention_bytes: None,
            durability: Durability::Always,
            index_interval_bytes: INDEX_INTERVAL_BYTES_DEFAULT,
            write_buffer_bytes: WRITE_BUFFER_BYTES_DEFAULT,
            preallocate_bytes: PREALLOCATE_BYTES_DEFAULT,
        }
    }
}

impl LogConfig {
    /// The file length to fallocate so that `needed` bytes fit in a file `allocated` bytes long:
    /// the step doubles with the file (from [`PREALLOCATE_BYTES_MIN`] to `preallocate_bytes`),
    /// and the file is never reserved past the segment size, unless one batch needs it.
    pub fn preallocation_target(&self, allocated: u64, needed: u64) -> u64 {
        let page = super::segment::PAGE_BYTES as u64;
        let largest_step = self.preallocate_bytes.max(page);
        let step = allocated.clamp(PREALLOCATE_BYTES_MIN.min(largest_step), largest_step);
        let target = needed.div_ceil(step) * step;
        let segment_end = self.segment_bytes.div_ceil(page) * page;
        target.min(segment_end).max(needed)
    }

    /// Checks the relations between the settings; a bad config is refused before any file is
    /// touched.
    pub fn validate(&self) -> Result<(), String> {
        if !(SEGMENT_BYTES_MIN..=SEGMENT_BYTES_MAX).contains(&self.segment_bytes) {
            return Err(format!(
                "segment_bytes {} is outside {SEGMENT_BYTES_MIN}..={SEGMENT_BYTES_MAX}",
                self.segment_bytes
            ));
        }
        let page = super::segment::PAGE_BYTES;
        if self.write_buffer_bytes < 2 * page || self.write_buffer_bytes % page != 0 {
            return Err(format!(
                "write_buffer_bytes {} must be a multiple of {page} and at least {}",
                self.write_buffer_bytes,
                2 * page
            ));
        }
        if self.index_interval_bytes == 0 {
            return Err("index_interval_bytes must be at least 1".into());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durability_parses_and_prints_round_trip() {
        for text in ["always", "never", "interval:5", "interval:1000"] {
            let parsed: Durability = text.parse().unwrap();
            assert_eq!(parsed.to_string(), text);
        }
    }

    #[test]
    fn durability_rejects_bad_text() {
        for text in ["", "Always", "interval:", "interval:0", "interval:-1", "interval:x", "sometimes"] {
            assert!(text.parse::<Durability>().is_err(), "{text:?} was accepted");
        }
    }

    #[test]
    fn preallocation_starts_small_doubles_and_stops_at_the_segment_size() {
        let config = LogConfig { segment_bytes: 100 << 20, ..LogConfig::default() };
        assert_eq!(config.preallocation_target(0, 1), 1 << 20);
        assert_eq!(config.preallocation_target(1 << 20, (1 << 20) + 1), 2 << 20);
        assert_eq!(config.preallocation_target(8 << 20, (8 << 20) + 1), 16 << 20);
        assert_eq!(config.preallocation_target(64 << 20, (64 << 20) + 1), 96 << 20, "steps stop at 32 MiB");
        assert_eq!(config.preallocation_target(96 << 20, (96 << 20) + 1), 100 << 20, "never past the segment");
        assert_eq!(config.preallocation_target(96 << 20, 200 << 20), 200 << 20, "a batch that needs more gets it");
    }

    #[test]
    fn default_config_is_valid_and_bad_ones_are_refused() {
        assert!(LogConfig::default().validate().is_ok());
        let tiny = LogConfig { segment_bytes: 10, ..LogConfig::default() };
        assert!(tiny.validate().is_err());
        let odd_buffer = LogConfig { write_buffer_bytes: 5000, ..LogConfig::default() };
        assert!(odd_buffer.validate().is_err());
    }
}
