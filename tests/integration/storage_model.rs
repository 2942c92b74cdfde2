//! Model test of the partition log: random sequences of append, read, roll (small segments),
//! reopen (clean and unclean), retention and truncation, checked after every step against a
//! plain in-memory model of what the log must hold. Many seeds, bounded in steps and time.

use std::time::{Duration, Instant};

use ringmq::model::{LeaderEpoch, Offset, TimestampMs};
use ringmq::storage::{Durability, LogConfig};
use ringmq::testing::{make_batch, run_local};

use crate::support::{open_log, read_everything, small_log_config, Rng};

/// The model: the batches the log holds, as (base offset, next offset, tag).
#[derive(Default)]
struct Model {
    batches: Vec<(Offset, Offset, u64)>,
    log_end: Offset,
}

impl Model {
    fn from(&self, offset: Offset) -> Vec<(Offset, Offset, u64)> {
        self.batches.iter().copied().filter(|&(_, next, _)| next > offset).collect()
    }
}

const SEEDS: u64 = 24;
const STEPS_PER_SEED: usize = 150;
const TIME_LIMIT: Duration = Duration::from_secs(60);

#[test]
fn the_log_behaves_like_its_model_under_random_operations() {
    let started = Instant::now();
    for seed in 0..SEEDS {
        if started.elapsed() > TIME_LIMIT {
            eprintln!("model test: time limit reached after {seed} seeds");
            break;
        }
        run_local(move || run_seed(seed));
    }
}

async fn run_seed(seed: u64) {
    let mut rng = Rng::new(seed);
    let dir = tempfile::tempdir().unwrap();
    let config = LogConfig { durability: Durability::Always, ..small_log_config() };
    let (mut log, _) = open_log(dir.path(), config.clone()).await;
    let mut model = Model::default();
    let mut next_tag = 0u64;
    for step in 0..STEPS_PER_SEED {
        let context = format!("seed {seed} step {step}");
        match rng.range(0, 100) {
            0..=54 => {
                let records = rng.range(1, 6) as usize;
                let value_bytes = rng.range(0, 3000) as usize;
                let tag = next_tag;
                next_tag += 1;
                let batch = make_batch(tag, records, value_bytes, TimestampMs::now());
                let info = log.append(batch, LeaderEpoch(1)).await.unwrap();
                assert_eq!(info.base_offset, model.log_end, "{context}: offsets are contiguous");
                model.batches.push((info.base_offset, info.next_offset, tag));
                model.log_end = info.next_offset;
            }
            55..=74 => {
                let start = log.log_start_offset();
                let offset = Offset(rng.range(start.0, model.log_end.0 + 1));
                let expected = model.from(offset);
                let got = read_everything(&log, offset).await;
                assert_eq!(got, expected, "{context}: read from {offset}");
            }
            75..=84 => {
                if rng.chance(50) {
                    log.close().await.unwrap();
                } // else: dropped without a close, as in a crash (all appends were synced)
                drop(log);
                let (reopened, report) = open_log(dir.path(), config.clone()).await;
                assert!(report.truncation.is_none(), "{context}: recovery cut synced data: {:?}", report.truncation);
                log = reopened;
                assert_eq!(log.log_end_offset(), model.log_end, "{context}: log end after reopen");
            }
            85..=92 => {
                let limit = rng.range(0, 200 << 10);
                let before = log.log_start_offset();
                let retention = LogConfig { retention_bytes: Some(limit), ..config.clone() };
                // Retention reads its limits from the log's config: reopen with them.
                log.close().await.unwrap();
                drop(log);
                let (with_retention, _) = open_log(dir.path(), retention).await;
                with_retention.apply_retention(TimestampMs::now()).await.unwrap();
                let start = with_retention.log_start_offset();
                assert!(start >= before, "{context}: the log start never moves back");
                assert!(
                    start == model.log_end || model.batches.iter().any(|&(base, _, _)| base == start),
                    "{context}: the log start {start} is a batch boundary"
                );
                model.batches.retain(|&(base, _, _)| base >= start);
                with_retention.close().await.unwrap();
                drop(with_retention);
                log = open_log(dir.path(), config.clone()).await.0;
                assert_eq!(log.log_start_offset(), start, "{context}: the log start is persisted");
            }
            _ => {
                let start = log.log_start_offset();
                let offset = Offset(rng.range(start.0, model.log_end.0 + 1));
                let cut = log.truncate_to(offset).await.unwrap();
                model.batches.retain(|&(_, next, _)| next <= offset);
                let expected_end = model.batches.last().map(|&(_, next, _)| next).unwrap_or(start).max(start);
                assert_eq!(cut, expected_end.min(model.log_end), "{context}: truncate_to({offset})");
                model.log_end = cut;
            }
        }
        let expected = model.from(log.log_start_offset());
        if step % 10 == 0 {
            assert_eq!(read_everything(&log, log.log_start_offset()).await, expected, "{context}: full read");
        }
    }
    log.close().await.unwrap();
}
