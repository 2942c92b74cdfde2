//! Shared helpers: a seeded random generator and log helpers.

use std::rc::Rc;

use ringmq::model::Offset;
use ringmq::storage::batch::validate;
use ringmq::storage::{LogConfig, PartitionLog, TailCacheBudget};
use ringmq::testing::batch_tag;

/// SplitMix64: small, seedable and good enough to pick test actions.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed ^ 0x9E37_79B9_7F4A_7C15)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `[low, high)`.
    pub fn range(&mut self, low: u64, high: u64) -> u64 {
        low + self.next_u64() % (high - low).max(1)
    }

    pub fn chance(&mut self, percent: u64) -> bool {
        self.range(0, 100) < percent
    }
}

/// A log config with small segments and buffers, so that tests roll often.
pub fn small_log_config() -> LogConfig {
    LogConfig {
        segment_bytes: 64 << 10,
        write_buffer_bytes: 16 << 10,
        preallocate_bytes: 96 << 10,
        index_interval_bytes: 1024,
        retention_ms: None,
        ..LogConfig::default()
    }
}

pub async fn open_log(dir: &std::path::Path, config: LogConfig) -> (Rc<PartitionLog>, ringmq::storage::RecoveryReport) {
    PartitionLog::open(dir, config, TailCacheBudget::new(32 << 10)).await.expect("the log opens")
}

/// Every batch from `from` to the log end as (base offset, next offset, tag), each batch
/// fully validated (CRC and archive).
pub async fn read_everything(log: &PartitionLog, from: Offset) -> Vec<(Offset, Offset, u64)> {
    let mut out = Vec::new();
    let mut offset = from;
    for _ in 0..1_000_000 {
        let read = log.read(offset, 16 << 10).await.expect("reading the log");
        if read.batches.is_empty() {
            return out;
        }
        for batch in &read.batches {
            let header = validate(batch).expect("a batch read back is valid");
            assert!(header.next_offset() > offset, "reads move forward");
            out.push((header.base_offset, header.next_offset(), batch_tag(batch).expect("a tagged batch")));
            offset = header.next_offset();
        }
    }
    panic!("reading did not reach the log end");
}
