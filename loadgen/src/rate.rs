//! Open-loop pacing: the intended send time of every message is fixed in advance
//! (`start + k / rate`), whatever the broker does. A producer that falls behind sends the
//! messages that are due back to back and its latencies are measured from the *intended*
//! times, so a stall shows up in every message it delayed (no coordinated omission).
//!
//! Plain Rust on nanoseconds from the run's time base; no clock of its own.

/// Nanoseconds from the run's shared time base (`Instant` = CLOCK_MONOTONIC).
pub type Nanos = u64;

/// Paces one producer at a fixed rate.
#[derive(Clone, Debug)]
pub struct Pacer {
    start_ns: Nanos,
    /// Nanoseconds between intended sends, as a float so that rates that do not divide 1 s
    /// do not drift.
    interval_ns: f64,
    /// Messages handed out so far.
    issued: u64,
}

impl Pacer {
    /// `rate_per_s` messages per second from `start_ns`. The rate must be positive.
    pub fn new(start_ns: Nanos, rate_per_s: f64) -> Pacer {
        assert!(rate_per_s > 0.0 && rate_per_s.is_finite(), "a pacer needs a positive rate");
        Pacer { start_ns, interval_ns: 1e9 / rate_per_s, issued: 0 }
    }

    /// Intended send time of message number `index` (0-based).
    pub fn intended_ns(&self, index: u64) -> Nanos {
        self.start_ns + (index as f64 * self.interval_ns) as u64
    }

    /// Intended time of the next message.
    pub fn next_due_ns(&self) -> Nanos {
        self.intended_ns(self.issued)
    }

    /// Takes the next message if it is due at `now_ns`: its intended send time.
    pub fn take_due(&mut self, now_ns: Nanos) -> Option<Nanos> {
        let due = self.next_due_ns();
        if due > now_ns {
            return None;
        }
        self.issued += 1;
        Some(due)
    }

    /// How many messages are due at `now_ns` and not yet taken (the backlog).
    #[cfg(test)]
    pub fn backlog(&self, now_ns: Nanos) -> u64 {
        self.unsent_due(self.start_ns, now_ns)
    }

    /// How many messages intended for `[from_ns, now_ns]` are not yet taken: at the end of a
    /// run, what a producer that fell behind the rate never sent in the measured window.
    pub fn unsent_due(&self, from_ns: Nanos, now_ns: Nanos) -> u64 {
        if now_ns < self.start_ns || now_ns < from_ns {
            return 0;
        }
        // Messages with an intended time at or before `now_ns`, and the first one at or after `from_ns`.
        let due = ((now_ns - self.start_ns) as f64 / self.interval_ns).floor() as u64 + 1;
        let first_in_window = (from_ns.saturating_sub(self.start_ns) as f64 / self.interval_ns).ceil() as u64;
        due.saturating_sub(self.issued.max(first_in_window))
    }

    /// At a producer's stop (`stop_ns`: the end of the run, or the moment it was told to
    /// stop): the messages intended for the measured window from `from_ns` and never sent. The
    /// last `pace_ns` before the stop is left out: a producer on schedule sends at most once
    /// per pace, so what came due then was waiting for its next send, not behind the rate.
    pub fn unsent_at_stop(&self, from_ns: Nanos, stop_ns: Nanos, pace_ns: Nanos) -> u64 {
        self.unsent_due(from_ns, stop_ns.saturating_sub(pace_ns))
    }

    #[cfg(test)]
    pub fn issued(&self) -> u64 {
        self.issued
    }
}

/// Splits a total rate over `producers` producers.
pub fn per_producer_rate(total_per_s: f64, producers: usize) -> f64 {
    total_per_s / producers.max(1) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Guards the schedule: evenly spaced intended times, nothing handed out early, and a
    /// late caller gets the backlog one by one with their original (earlier) intended times.
    #[test]
    fn paces_at_the_rate_and_keeps_intended_times_when_late() {
        let mut pacer = Pacer::new(1_000, 1_000.0); // one per ms
        assert_eq!(pacer.take_due(999), None, "nothing before start");
        assert_eq!(pacer.take_due(1_000), Some(1_000));
        assert_eq!(pacer.take_due(1_000), None);
        assert_eq!(pacer.next_due_ns(), 1_001_000);
        // The caller stalls 10 ms: ten messages are due, each with its own intended time.
        let now = 1_000 + 10_000_000;
        assert_eq!(pacer.backlog(now), 10);
        let taken: Vec<Nanos> = std::iter::from_fn(|| pacer.take_due(now)).collect();
        assert_eq!(taken.len(), 10);
        assert_eq!(taken[0], 1_001_000);
        assert_eq!(taken[9], 1_000 + 10_000_000);
        assert!(taken.windows(2).all(|w| w[1] - w[0] == 1_000_000));
        assert_eq!(pacer.issued(), 11);
        assert_eq!(pacer.backlog(now), 0);
    }

    /// Guards the shortfall count of a producer that fell behind: only messages intended
    /// inside the measured window and not taken count, whatever happened in the warmup.
    #[test]
    fn unsent_due_counts_the_window_only() {
        let mut pacer = Pacer::new(0, 1_000.0); // one per ms, at 0, 1, 2, … ms
        let ms = 1_000_000;
        // Caught up until 3 ms (four taken), then stalled until 10 ms.
        while pacer.take_due(3 * ms).is_some() {}
        assert_eq!(pacer.issued(), 4);
        assert_eq!(pacer.unsent_due(0, 10 * ms), 7, "4 ms … 10 ms never sent");
        assert_eq!(pacer.unsent_due(5 * ms, 10 * ms), 6, "a window from 5 ms: 5 ms … 10 ms");
        assert_eq!(pacer.unsent_due(2 * ms, 10 * ms), 7, "taken ones before the window's end never count");
        assert_eq!(pacer.unsent_due(11 * ms, 10 * ms), 0, "an empty window");
        while pacer.take_due(10 * ms).is_some() {}
        assert_eq!(pacer.unsent_due(0, 10 * ms), 0, "caught up");
    }

    /// Guards the stop's count against a false alarm: a producer that kept its schedule up to
    /// its last pace is not behind, one that stalled before it is, by what it missed.
    #[test]
    fn unsent_at_stop_leaves_out_the_last_pace() {
        let mut pacer = Pacer::new(0, 1_000.0); // one per ms
        let ms = 1_000_000;
        // On schedule: the last send at 8 ms, the stop at 10 ms, a 3 ms pace.
        while pacer.take_due(8 * ms).is_some() {}
        assert_eq!(pacer.unsent_due(0, 10 * ms), 2, "9 and 10 ms were due");
        assert_eq!(pacer.unsent_at_stop(0, 10 * ms, 3 * ms), 0, "but within the last pace");
        // Stalled since 4 ms: 5, 6 and 7 ms were due before the last pace.
        let mut stalled = Pacer::new(0, 1_000.0);
        while stalled.take_due(4 * ms).is_some() {}
        assert_eq!(stalled.unsent_at_stop(0, 10 * ms, 3 * ms), 3);
        assert_eq!(stalled.unsent_at_stop(0, 2 * ms, 3 * ms), 0, "a stop within the first pace");
    }

    /// A rate that does not divide a second does not drift: 3 per second gives 3 per second
    /// over a long run.
    #[test]
    fn fractional_intervals_do_not_drift() {
        let mut pacer = Pacer::new(0, 3.0);
        let one_hour_ns = 3_600 * 1_000_000_000u64;
        let mut count = 0;
        while pacer.take_due(one_hour_ns - 1).is_some() {
            count += 1;
        }
        assert_eq!(count, 3 * 3_600);
        assert_eq!(per_producer_rate(1_000.0, 4), 250.0);
        assert_eq!(per_producer_rate(1_000.0, 0), 1_000.0);
    }
}
