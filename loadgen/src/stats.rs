//! What the actors measure, and how it is merged across threads.
//!
//! Each actor thread owns a [`Stats`] and records into it without locks; about every
//! [`MERGE_INTERVAL_MS`] it hands what it has to the run's [`SharedStats`] by swapping in an
//! empty spare, and the progress thread merges it ([`SharedStats::merge_handed_off`]): the
//! merge (three ~229 KB histograms copied, zeroed and added) never runs on an actor's thread,
//! where it would hold back the messages due meanwhile and show in the tail it measures. The
//! final report and the progress line read the merged copy. Histograms are hdrhistogram (3 significant digits,
//! nanoseconds, up to [`LATENCY_NS_MAX`]); merging two is adding their counts, so a merged
//! percentile is exact to the histogram's precision, not an average of percentiles.
//!
//! Plain Rust: no runtime, no clock.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};

use hdrhistogram::Histogram;

/// Largest latency a histogram holds; larger values are clamped to it.
pub const LATENCY_NS_MAX: u64 = 120 * 1_000_000_000;
/// Significant decimal digits of every histogram.
pub const LATENCY_SIGNIFICANT_DIGITS: u8 = 3;
/// How often an actor moves its local figures into the shared ones.
pub const MERGE_INTERVAL_MS: u64 = 250;

/// A latency histogram in nanoseconds.
pub fn new_histogram() -> Histogram<u64> {
    match Histogram::new_with_bounds(1, LATENCY_NS_MAX, LATENCY_SIGNIFICANT_DIGITS) {
        Ok(histogram) => histogram,
        // Bounds and precision are constants that hdrhistogram accepts.
        Err(error) => unreachable!("constant histogram bounds refused: {error}"),
    }
}

/// Latency of a message that was meant to go at `intended_ns` and completed at `done_ns`.
/// Measuring from the intended time, not the actual send, is the coordinated-omission
/// correction: a message held back by a stall is charged for the stall.
pub fn latency_ns(intended_ns: u64, done_ns: u64) -> u64 {
    done_ns.saturating_sub(intended_ns)
}

/// One actor's (or the whole run's) figures for the measured part of the run.
#[derive(Clone, Debug)]
pub struct Stats {
    /// Produce: from the intended send time to the acknowledgement.
    pub produce_ack: Histogram<u64>,
    /// Publish (intended send time, carried in the message) to receive by a consumer.
    pub end_to_end: Histogram<u64>,
    /// Open loop: how late each message was handed to the client after its intended send time
    /// (the load generator's own delay, already inside both latencies above).
    pub send_lag: Histogram<u64>,
    pub produced_messages: u64,
    pub produced_bytes: u64,
    pub consumed_messages: u64,
    pub consumed_bytes: u64,
    /// Failed messages (produce) or failed fetches (consume), by error code name.
    pub errors: BTreeMap<String, u64>,
    /// Open loop: messages intended for the measured window that a producer had not sent when
    /// the run ended (it fell behind `--rate`). They are in no latency above.
    pub unsent_due_messages: u64,
}

impl Default for Stats {
    fn default() -> Self {
        Stats {
            produce_ack: new_histogram(),
            end_to_end: new_histogram(),
            send_lag: new_histogram(),
            produced_messages: 0,
            produced_bytes: 0,
            consumed_messages: 0,
            consumed_bytes: 0,
            errors: BTreeMap::new(),
            unsent_due_messages: 0,
        }
    }
}

impl Stats {
    pub fn record_ack(&mut self, latency_ns: u64, bytes: u64) {
        self.produce_ack.saturating_record(latency_ns.max(1));
        self.produced_messages += 1;
        self.produced_bytes += bytes;
    }

    pub fn record_send_lag(&mut self, lag_ns: u64) {
        self.send_lag.saturating_record(lag_ns.max(1));
    }

    pub fn record_receive(&mut self, latency_ns: Option<u64>, bytes: u64) {
        if let Some(latency_ns) = latency_ns {
            self.end_to_end.saturating_record(latency_ns.max(1));
        }
        self.consumed_messages += 1;
        self.consumed_bytes += bytes;
    }

    pub fn record_error(&mut self, code: &str, count: u64) {
        *self.errors.entry(code.to_owned()).or_default() += count;
    }

    /// Adds `other` into `self`.
    pub fn merge(&mut self, other: &Stats) {
        // Both histograms come from `new_histogram`, so their bounds agree and `add` cannot
        // fail; a failure would only lose figures, never corrupt them.
        let _ = self.produce_ack.add(&other.produce_ack);
        let _ = self.end_to_end.add(&other.end_to_end);
        let _ = self.send_lag.add(&other.send_lag);
        self.produced_messages += other.produced_messages;
        self.produced_bytes += other.produced_bytes;
        self.consumed_messages += other.consumed_messages;
        self.consumed_bytes += other.consumed_bytes;
        for (code, count) in &other.errors {
            *self.errors.entry(code.clone()).or_default() += count;
        }
        self.unsent_due_messages += other.unsent_due_messages;
    }

    /// Empties `self` in place (histograms keep their allocation).
    pub fn clear(&mut self) {
        self.produce_ack.reset();
        self.end_to_end.reset();
        self.send_lag.reset();
        self.produced_messages = 0;
        self.produced_bytes = 0;
        self.consumed_messages = 0;
        self.consumed_bytes = 0;
        self.errors.clear();
        self.unsent_due_messages = 0;
    }

    #[cfg(test)]
    pub fn error_count(&self) -> u64 {
        self.errors.values().sum()
    }
}

/// The percentiles the report prints.
#[derive(Clone, Copy, Debug, Default, PartialEq, serde::Serialize)]
pub struct LatencySummary {
    pub count: u64,
    pub mean_us: f64,
    pub p50_us: f64,
    pub p90_us: f64,
    pub p99_us: f64,
    pub p99_9_us: f64,
    pub p99_99_us: f64,
    pub max_us: f64,
}

fn us(ns: u64) -> f64 {
    ns as f64 / 1_000.0
}

pub fn summarize(histogram: &Histogram<u64>) -> LatencySummary {
    if histogram.is_empty() {
        return LatencySummary::default();
    }
    LatencySummary {
        count: histogram.len(),
        mean_us: histogram.mean() / 1_000.0,
        p50_us: us(histogram.value_at_quantile(0.50)),
        p90_us: us(histogram.value_at_quantile(0.90)),
        p99_us: us(histogram.value_at_quantile(0.99)),
        p99_9_us: us(histogram.value_at_quantile(0.999)),
        p99_99_us: us(histogram.value_at_quantile(0.9999)),
        max_us: us(histogram.max()),
    }
}

/// One row of a percentile distribution.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize)]
pub struct PercentilePoint {
    pub percentile: f64,
    pub latency_us: f64,
}

/// The full distribution, as hdrhistogram's percentile table: 5 steps per halving of the
/// remaining tail, so the tail is as detailed as the body.
pub fn distribution(histogram: &Histogram<u64>) -> Vec<PercentilePoint> {
    if histogram.is_empty() {
        return Vec::new();
    }
    histogram
        .iter_quantiles(5)
        .map(|step| PercentilePoint {
            percentile: step.quantile_iterated_to() * 100.0,
            latency_us: us(step.value_iterated_to()),
        })
        .collect()
}

/// The run's shared figures: the merged [`Stats`] of the measured part, and running totals
/// of the whole run (warmup included) for the progress line. On every actor thread.
#[derive(Debug, Default)]
pub struct SharedStats {
    merged: Mutex<Stats>,
    /// Actors' figures handed off by [`SharedStats::absorb`], not merged yet.
    handed_off: Mutex<Vec<Stats>>,
    /// Empty figures an actor swaps in when it hands its own off: one per actor to start
    /// with, then the ones [`SharedStats::merge_handed_off`] has emptied.
    spares: Mutex<Vec<Stats>>,
    /// Messages acknowledged to producers, whole run.
    pub acked_total: AtomicU64,
    pub acked_bytes_total: AtomicU64,
    /// Messages received by consumers, whole run.
    pub consumed_total: AtomicU64,
    pub consumed_bytes_total: AtomicU64,
    /// Set by the first actor that lost its connection.
    pub failed: AtomicBool,
}

/// A poisoned lock only means another thread panicked while holding it; the figures are
/// still counts, so keep using them.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl SharedStats {
    /// Shared figures with one spare [`Stats`] per actor, allocated now rather than on an
    /// actor's first hand-off.
    pub fn with_spares(actors: usize) -> SharedStats {
        let shared = SharedStats::default();
        lock(&shared.spares).extend((0..actors).map(|_| Stats::default()));
        lock(&shared.handed_off).reserve(actors);
        shared
    }

    /// Takes an actor's figures (and leaves `local` empty). With a spare at hand this is a
    /// swap and a push, whatever the histograms hold; only when none is left (the progress
    /// thread is behind) does the actor merge them itself.
    pub fn absorb(&self, local: &mut Stats) {
        let spare = lock(&self.spares).pop();
        match spare {
            Some(spare) => {
                let full = std::mem::replace(local, spare);
                lock(&self.handed_off).push(full);
            }
            None => {
                lock(&self.merged).merge(local);
                local.clear();
            }
        }
    }

    /// Merges the figures actors handed off, then empties them into spares. On the progress
    /// thread, and before every [`SharedStats::snapshot`].
    pub fn merge_handed_off(&self) {
        let mut handed_off = std::mem::take(&mut *lock(&self.handed_off));
        if handed_off.is_empty() {
            return;
        }
        {
            let mut merged = lock(&self.merged);
            for figures in &handed_off {
                merged.merge(figures);
            }
        }
        for figures in &mut handed_off {
            figures.clear();
        }
        lock(&self.spares).append(&mut handed_off);
    }

    /// A copy of the merged figures so far, with everything handed off until now.
    pub fn snapshot(&self) -> Stats {
        self.merge_handed_off();
        lock(&self.merged).clone()
    }

    pub fn add_acked(&self, messages: u64, bytes: u64) {
        self.acked_total.fetch_add(messages, Ordering::Relaxed);
        self.acked_bytes_total.fetch_add(bytes, Ordering::Relaxed);
    }

    pub fn add_consumed(&self, messages: u64, bytes: u64) {
        self.consumed_total.fetch_add(messages, Ordering::Relaxed);
        self.consumed_bytes_total.fetch_add(bytes, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rate::Pacer;

    /// Guards merging across threads: the merged histogram is the one a single recorder of
    /// every value would have (same count, same percentiles), and counters and error codes add.
    #[test]
    fn merged_stats_equal_one_recorder_of_everything() {
        // Two spares for four threads and no merging thread: the first hand-offs swap, the
        // rest merge in place, so both paths run at once.
        let shared = SharedStats::with_spares(2);
        let mut all = Stats::default();
        let threads: Vec<Vec<u64>> =
            (0..4u64).map(|t| (1..=10_000u64).map(|i| (i * 37 + t * 1_000) % 5_000_000 + 1_000).collect()).collect();
        std::thread::scope(|scope| {
            for values in &threads {
                let shared = &shared;
                scope.spawn(move || {
                    let mut local = Stats::default();
                    for (i, &value) in values.iter().enumerate() {
                        local.record_ack(value, 100);
                        if i % 2_500 == 0 {
                            shared.absorb(&mut local); // periodic merge, as the actors do
                        }
                    }
                    local.record_error("throttled_busy", 1);
                    shared.absorb(&mut local);
                    assert_eq!(local.produced_messages, 0, "absorb empties the local figures");
                });
            }
        });
        for values in &threads {
            for &value in values {
                all.record_ack(value, 100);
            }
        }
        let merged = shared.snapshot();
        assert_eq!(merged.produced_messages, 40_000);
        assert_eq!(merged.produced_bytes, 4_000_000);
        assert_eq!(merged.errors.get("throttled_busy"), Some(&4));
        assert_eq!(merged.error_count(), 4);
        assert_eq!(summarize(&merged.produce_ack), summarize(&all.produce_ack));
    }

    /// Guards the hand-off: an actor's `absorb` swaps in a spare and leaves the merge to the
    /// progress thread (before it, a merge on the actor's thread held back, while it ran, the
    /// messages due meanwhile, every 250 ms), the figures arrive whole, and the emptied
    /// figures come back as the next spare.
    #[test]
    fn absorb_hands_figures_off_and_the_merge_happens_elsewhere() {
        let shared = SharedStats::with_spares(1);
        let mut local = Stats::default();
        for value in 1..=1_000u64 {
            local.record_ack(value * 1_000, 10);
        }
        shared.absorb(&mut local);
        assert_eq!(local.produced_messages, 0);
        assert!(local.produce_ack.is_empty(), "the actor now records into the empty spare");
        assert_eq!(lock(&shared.merged).produced_messages, 0, "nothing merged on the actor's thread");
        assert_eq!(lock(&shared.handed_off).len(), 1);
        assert!(lock(&shared.spares).is_empty());

        shared.merge_handed_off();
        assert_eq!(lock(&shared.merged).produced_messages, 1_000);
        assert_eq!(lock(&shared.merged).produce_ack.len(), 1_000);
        let spares = lock(&shared.spares);
        assert_eq!(spares.len(), 1, "the emptied figures are the next spare");
        assert!(spares[0].produce_ack.is_empty() && spares[0].produced_messages == 0);
        drop(spares);

        local.record_ack(5_000, 10);
        shared.absorb(&mut local);
        let merged = shared.snapshot();
        assert_eq!(merged.produced_messages, 1_001, "snapshot merges what was handed off since");
        assert!(lock(&shared.handed_off).is_empty());
    }

    /// Guards the coordinated-omission correction: with a 100 ms stall in a 1,000 msg/s open
    /// loop, latencies measured from the intended times charge the stall to the ~100 messages
    /// it held back, so p99 reflects it; measured from the actual (late) send times, as a
    /// closed-loop tool would, the stall all but disappears.
    #[test]
    fn intended_time_latency_charges_stalls_to_every_delayed_message() {
        let service_ns = 100_000; // 100 µs per message when the broker is healthy
        let stall_ns = 100_000_000; // one 100 ms stall
        let mut pacer = Pacer::new(0, 1_000.0);
        let mut corrected = new_histogram();
        let mut naive = new_histogram();
        let mut now = 0u64;
        let mut sent = 0;
        while sent < 10_000 {
            let Some(intended) = pacer.take_due(now) else {
                now = pacer.next_due_ns();
                continue;
            };
            let send = now;
            let done = if sent == 5_000 { send + stall_ns } else { send + service_ns };
            corrected.record(latency_ns(intended, done)).unwrap();
            naive.record(latency_ns(send, done)).unwrap();
            now = done;
            sent += 1;
        }
        let p99_corrected = corrected.value_at_quantile(0.99);
        let p99_naive = naive.value_at_quantile(0.99);
        assert!(p99_naive < 200_000, "naive p99 {p99_naive} ns hides the stall");
        assert!(p99_corrected > 10_000_000, "corrected p99 {p99_corrected} ns shows the stall");
        assert_eq!(corrected.max(), naive.max(), "the stalled message itself is the same");
        assert!(corrected.count_between(1_000_000, LATENCY_NS_MAX) >= 90, "~100 messages were held back");
    }

    #[test]
    fn summaries_and_distributions() {
        let mut histogram = new_histogram();
        assert_eq!(summarize(&histogram), LatencySummary::default());
        assert!(distribution(&histogram).is_empty());
        for value in 1..=1_000u64 {
            histogram.record(value * 1_000).unwrap();
        }
        let summary = summarize(&histogram);
        assert_eq!(summary.count, 1_000);
        assert!((summary.p50_us - 500.0).abs() < 1.0);
        assert!((summary.p99_us - 990.0).abs() < 1.0);
        assert!((summary.max_us - 1_000.0).abs() < 1.0);
        let table = distribution(&histogram);
        assert!(table.windows(2).all(|w| w[0].percentile <= w[1].percentile && w[0].latency_us <= w[1].latency_us));
        assert_eq!(table.last().map(|p| p.percentile), Some(100.0));
    }
}
