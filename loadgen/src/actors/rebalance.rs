//! The rebalance pause of a consumer group (`--kill-consumer-after`): consumer 0 stops at a
//! set time without leaving the group, as a crashed process would; the watch records which
//! partitions it owned then and when another member first received a record of each. The
//! pause of a partition is that time minus the kill: the session timeout (the broker notices
//! the silent member), the reassignment, and the new owner's first fetch.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

/// What the report says about the pause.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize)]
pub struct RebalancePause {
    /// When consumer 0 was stopped, seconds after the start.
    pub killed_at_s: f64,
    /// The partitions it owned then.
    pub partitions: Vec<u32>,
    /// Per partition consumed again, ms from the kill to its first record at another member.
    pub pause_ms: BTreeMap<u32, f64>,
    /// The longest pause, when every partition was consumed again.
    pub pause_ms_max: Option<f64>,
    /// Partitions not consumed again before the run ended.
    pub never_resumed: Vec<u32>,
}

#[derive(Debug, Default)]
struct Watched {
    killed_at_ns: u64,
    orphaned: BTreeSet<u32>,
    resumed_ns: BTreeMap<u32, u64>,
}

/// Shared by the consumers of a run.
#[derive(Debug, Default)]
pub struct RebalanceWatch {
    armed: AtomicBool,
    watched: Mutex<Watched>,
}

impl RebalanceWatch {
    /// The killed member's last act: the partitions it leaves behind, at `now_ns`.
    pub fn kill(&self, now_ns: u64, partitions: impl IntoIterator<Item = u32>) {
        if let Ok(mut watched) = self.watched.lock() {
            watched.killed_at_ns = now_ns;
            watched.orphaned = partitions.into_iter().collect();
        }
        self.armed.store(true, Ordering::SeqCst);
    }

    /// Whether a kill happened: until then, receivers skip the lock.
    pub fn is_armed(&self) -> bool {
        self.armed.load(Ordering::Relaxed)
    }

    /// A surviving member received a record of `partition` at `now_ns`, after the kill. Only
    /// its first receive of each partition matters: the caller reports each partition once.
    pub fn record_receive(&self, partition: u32, now_ns: u64) {
        if let Ok(mut watched) = self.watched.lock() {
            if watched.orphaned.contains(&partition) {
                watched.resumed_ns.entry(partition).or_insert(now_ns);
            }
        }
    }

    /// The pause, if a member was killed.
    pub fn summary(&self, start_ns: u64) -> Option<RebalancePause> {
        if !self.is_armed() {
            return None;
        }
        let watched = self.watched.lock().ok()?;
        let ms = |ns: u64| ns.saturating_sub(watched.killed_at_ns) as f64 / 1e6;
        let pause_ms: BTreeMap<u32, f64> = watched.resumed_ns.iter().map(|(&p, &at)| (p, ms(at))).collect();
        let never_resumed: Vec<u32> =
            watched.orphaned.iter().copied().filter(|p| !watched.resumed_ns.contains_key(p)).collect();
        let pause_ms_max = never_resumed.is_empty().then(|| pause_ms.values().copied().fold(0.0, f64::max));
        Some(RebalancePause {
            killed_at_s: watched.killed_at_ns.saturating_sub(start_ns) as f64 / 1e9,
            partitions: watched.orphaned.iter().copied().collect(),
            pause_ms,
            pause_ms_max,
            never_resumed,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nothing_to_report_without_a_kill() {
        let watch = RebalanceWatch::default();
        assert!(!watch.is_armed());
        assert_eq!(watch.summary(0), None);
    }

    #[test]
    fn pause_is_the_first_receive_of_each_orphaned_partition() {
        let watch = RebalanceWatch::default();
        watch.kill(5_000_000_000, [1, 3]);
        assert!(watch.is_armed());
        watch.record_receive(0, 5_001_000_000); // never orphaned: ignored
        watch.record_receive(1, 5_200_000_000);
        watch.record_receive(1, 5_900_000_000); // later receives do not move the first one
        let partial = watch.summary(1_000_000_000).unwrap();
        assert_eq!(partial.killed_at_s, 4.0);
        assert_eq!(partial.partitions, [1, 3]);
        assert_eq!(partial.never_resumed, [3]);
        assert_eq!(partial.pause_ms_max, None, "no maximum while a partition is still paused");
        watch.record_receive(3, 5_450_000_000);
        let full = watch.summary(1_000_000_000).unwrap();
        assert_eq!(full.pause_ms.get(&1), Some(&200.0));
        assert_eq!(full.pause_ms.get(&3), Some(&450.0));
        assert_eq!(full.pause_ms_max, Some(450.0));
        assert!(full.never_resumed.is_empty());
    }
}
