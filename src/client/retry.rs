//! Exponential back-off between retries of a retriable error.

use std::time::Duration;

/// Delays `initial, 2·initial, 4·initial, ...`, capped at `max`. Deterministic (no jitter):
/// one producer per connection retries one request at a time, so there is no herd to spread.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Backoff {
    pub initial: Duration,
    pub max: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff { initial: Duration::from_millis(100), max: Duration::from_millis(2_000) }
    }
}

impl Backoff {
    /// The delay before retry number `retry` (0 for the first retry).
    pub fn delay(&self, retry: u32) -> Duration {
        let factor = 1u32.checked_shl(retry.min(31)).unwrap_or(u32::MAX);
        self.initial.checked_mul(factor).unwrap_or(self.max).min(self.max)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Guards the back-off bounds: doubling from `initial`, never above `max`, no overflow for
    /// absurd retry counts.
    #[test]
    fn backoff_doubles_and_is_capped() {
        let backoff = Backoff { initial: Duration::from_millis(100), max: Duration::from_millis(1_000) };
        let delays: Vec<u64> = (0..6).map(|retry| backoff.delay(retry).as_millis() as u64).collect();
        assert_eq!(delays, [100, 200, 400, 800, 1_000, 1_000]);
        for retry in [31, 32, 100, u32::MAX] {
            assert_eq!(backoff.delay(retry), backoff.max);
        }
        let mut previous = Duration::ZERO;
        for retry in 0..64 {
            let delay = backoff.delay(retry);
            assert!(delay >= previous && delay <= backoff.max);
            assert!(delay >= backoff.initial);
            previous = delay;
        }
    }
}
