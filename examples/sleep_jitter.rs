//! How long a short glommio timer sleep really takes on this machine (PERF.md: the open-loop
//! producer waits at least `--pace-us` between sends, and every wait pays this overshoot).
//!
//! ```text
//! cargo run --release --example sleep_jitter            # 20 000 sleeps each of 20, 50 and 200 µs
//! ```

use std::error::Error;
use std::time::{Duration, Instant};

use glommio::LocalExecutorBuilder;
use hdrhistogram::Histogram;

const SLEEPS: usize = 20_000;
const SLEEP_US: [u64; 3] = [20, 50, 200];

type Result<T> = std::result::Result<T, Box<dyn Error>>;

fn main() -> Result<()> {
    let executor = LocalExecutorBuilder::default().spawn(|| async {
        for sleep_us in SLEEP_US {
            let mut slept_us = Histogram::<u64>::new(3)?;
            for _ in 0..SLEEPS {
                let start = Instant::now();
                glommio::timer::sleep(Duration::from_micros(sleep_us)).await;
                slept_us.saturating_record(start.elapsed().as_micros() as u64);
            }
            println!(
                "sleep {sleep_us} µs took: p50 {} µs, p99 {} µs, p99.9 {} µs, max {} µs",
                slept_us.value_at_quantile(0.5),
                slept_us.value_at_quantile(0.99),
                slept_us.value_at_quantile(0.999),
                slept_us.max()
            );
        }
        Ok::<(), hdrhistogram::CreationError>(())
    })?;
    executor.join().map_err(|error| format!("executor: {error:?}"))??;
    Ok(())
}
