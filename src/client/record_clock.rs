//! Record timestamps without a second clock read per record.
//!
//! The producer reads the monotonic clock for every record anyway (linger). The wall-clock
//! timestamp a record carries is derived from that reading and an anchor — a pair of wall and
//! monotonic readings taken together — renewed every [`REANCHOR_INTERVAL_MS`]. A step of the
//! wall clock (NTP, an operator) therefore shows in timestamps within that interval; a slew
//! drifts them by at most a fraction of a millisecond. On the development VM a clock read cost
//! about 30 ns and the producer made five per record (PERF.md).

use std::time::{Duration, Instant};

use crate::model::TimestampMs;

/// How long one anchor is used before the wall clock is read again.
pub const REANCHOR_INTERVAL_MS: u64 = 1_000;

/// Wall-clock milliseconds from monotonic instants.
#[derive(Clone, Copy, Debug)]
pub struct RecordClock {
    anchor_instant: Instant,
    anchor_wall: TimestampMs,
    /// The last millisecond computed, valid for instants in `[from, until)`: records come
    /// hundreds per millisecond, and comparing two instants is cheaper than subtracting them.
    current: Option<CurrentMillisecond>,
}

#[derive(Clone, Copy, Debug)]
struct CurrentMillisecond {
    from: Instant,
    until: Instant,
    timestamp: TimestampMs,
}

impl RecordClock {
    pub fn new() -> RecordClock {
        RecordClock { anchor_instant: Instant::now(), anchor_wall: TimestampMs::now(), current: None }
    }

    /// The wall-clock time at `now` (a reading of the monotonic clock taken by the caller).
    pub fn timestamp_at(&mut self, now: Instant) -> TimestampMs {
        if let Some(current) = self.current.filter(|current| current.from <= now && now < current.until) {
            return current.timestamp;
        }
        let timestamp = self.compute_at(now);
        // The millisecond of `now` since the anchor, as an instant range.
        let since_anchor = now.saturating_duration_since(self.anchor_instant);
        let millisecond_start = self.anchor_instant + Duration::from_millis(since_anchor.as_millis() as u64);
        self.current = (now >= self.anchor_instant).then(|| CurrentMillisecond {
            from: millisecond_start,
            until: millisecond_start + Duration::from_millis(1),
            timestamp,
        });
        timestamp
    }

    fn compute_at(&mut self, now: Instant) -> TimestampMs {
        let since_anchor = now.saturating_duration_since(self.anchor_instant);
        if since_anchor >= Duration::from_millis(REANCHOR_INTERVAL_MS) {
            self.anchor_instant = now;
            self.anchor_wall = TimestampMs::now();
            return self.anchor_wall;
        }
        // Under the re-anchor interval, so the milliseconds fit an i64.
        TimestampMs(self.anchor_wall.0.saturating_add(since_anchor.as_millis() as i64))
    }
}

impl Default for RecordClock {
    fn default() -> Self {
        RecordClock::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Guards the derivation: timestamps follow the monotonic clock from the anchor, and the
    /// anchor is renewed from the wall clock once the interval has passed.
    #[test]
    fn timestamps_follow_the_anchor_and_are_renewed() {
        let start = Instant::now();
        let mut clock = RecordClock { anchor_instant: start, anchor_wall: TimestampMs(1_000_000), current: None };
        assert_eq!(clock.timestamp_at(start), TimestampMs(1_000_000));
        assert_eq!(clock.timestamp_at(start + Duration::from_micros(2_500)), TimestampMs(1_000_002));
        // Within the same millisecond the cached value serves, up to its last nanosecond.
        assert_eq!(clock.timestamp_at(start + Duration::from_micros(2_999)), TimestampMs(1_000_002));
        assert_eq!(clock.timestamp_at(start + Duration::from_micros(2_000)), TimestampMs(1_000_002));
        assert_eq!(clock.timestamp_at(start + Duration::from_micros(3_000)), TimestampMs(1_000_003));
        assert_eq!(clock.timestamp_at(start + Duration::from_micros(1_999)), TimestampMs(1_000_001), "back in time");
        assert_eq!(clock.timestamp_at(start + Duration::from_millis(999)), TimestampMs(1_000_999));
        // An instant before the anchor (another caller's older reading) does not go negative.
        let mut later = RecordClock { anchor_instant: start + Duration::from_secs(1), ..clock };
        assert_eq!(later.timestamp_at(start), TimestampMs(1_000_000));
        // Past the interval the wall clock is read again: today's time, not the fake anchor's.
        let renewed = clock.timestamp_at(start + Duration::from_millis(REANCHOR_INTERVAL_MS));
        let wall = TimestampMs::now();
        assert!((wall.0 - renewed.0).abs() < 60_000, "{renewed:?} vs {wall:?}");
        assert_eq!(clock.timestamp_at(start + Duration::from_millis(REANCHOR_INTERVAL_MS + 5)).0, renewed.0 + 5);
    }
}
