//! How long a thread waited for its CPU: runnable, with another thread or process running on
//! its core. A shard owns its core; when something else runs there, every request of the
//! shard's partitions waits, and a 4 ms burst of another process is a 4 ms stall in the
//! produce tail (PERF.md, "What else runs on the CPUs").
//!
//! The kernel counts it per thread in `/proc/<pid>/task/<tid>/schedstat` (CONFIG_SCHED_INFO):
//! nanoseconds on the CPU, nanoseconds waiting on a run queue, time slices. A shard reads its
//! own every [`CPU_WAIT_CHECK_INTERVAL`] and warns (at most every [`CPU_WAIT_WARNING_INTERVAL`])
//! when it waited [`CPU_WAIT_WARN_PERCENT`] or more of the interval; the load generator reads
//! every thread of its own and of the broker's around the measured window.
//!
//! Plain Rust: reading the file is a `std::fs` call; time is passed in.

use std::path::Path;
use std::time::{Duration, Instant};

/// How often a shard looks at its own wait.
pub const CPU_WAIT_CHECK_INTERVAL: Duration = Duration::from_secs(10);
/// A shard warns when it waited this share of an interval, or more, for its CPU.
pub const CPU_WAIT_WARN_PERCENT: u64 = 1;
/// At most one warning per shard this often, so that a shared core does not flood the log.
pub const CPU_WAIT_WARNING_INTERVAL: Duration = Duration::from_secs(60);

const _: () = assert!(CPU_WAIT_WARNING_INTERVAL.as_nanos() >= CPU_WAIT_CHECK_INTERVAL.as_nanos());
const _: () = assert!(CPU_WAIT_WARN_PERCENT > 0 && CPU_WAIT_WARN_PERCENT < 100);

/// One reading of a thread's `schedstat`: cumulative since the thread started.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SchedStat {
    /// Time on the CPU.
    pub run_ns: u64,
    /// Time runnable but waiting for the CPU (another task ran).
    pub wait_ns: u64,
    /// Time slices run.
    pub timeslices: u64,
}

impl SchedStat {
    /// Parses the three decimal fields of a `schedstat` file. `None` on anything else.
    pub fn parse(text: &str) -> Option<SchedStat> {
        let mut fields = text.split_ascii_whitespace().map(|field| field.parse::<u64>().ok());
        let stat = SchedStat { run_ns: fields.next()??, wait_ns: fields.next()??, timeslices: fields.next()?? };
        fields.next().is_none().then_some(stat)
    }

    /// Reads the calling thread's own figures.
    pub fn of_this_thread() -> std::io::Result<SchedStat> {
        Self::read(Path::new("/proc/thread-self/schedstat"))
    }

    /// Reads a `schedstat` file (`/proc/<pid>/task/<tid>/schedstat`).
    pub fn read(path: &Path) -> std::io::Result<SchedStat> {
        let text = std::fs::read_to_string(path)?;
        Self::parse(&text).ok_or_else(|| {
            std::io::Error::new(std::io::ErrorKind::InvalidData, format!("{}: not a schedstat line", path.display()))
        })
    }

    /// What happened between `earlier` and this reading (zero for a counter that went back).
    pub fn since(&self, earlier: &SchedStat) -> SchedStat {
        SchedStat {
            run_ns: self.run_ns.saturating_sub(earlier.run_ns),
            wait_ns: self.wait_ns.saturating_sub(earlier.wait_ns),
            timeslices: self.timeslices.saturating_sub(earlier.timeslices),
        }
    }
}

/// A shard's wait for its CPU over one interval, worth a warning.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CpuWaitReport {
    pub waited_ms: u64,
    pub interval_ms: u64,
    /// `waited_ms` as a share of `interval_ms`, in percent (rounded down).
    pub waited_percent: u64,
    /// Time the shard itself ran in the interval.
    pub ran_ms: u64,
}

/// Watches one thread's wait from one reading to the next. Owned by the thread it watches.
#[derive(Debug)]
pub struct CpuWaitWatch {
    previous: SchedStat,
    previous_at: Instant,
    last_warning_at: Option<Instant>,
}

impl CpuWaitWatch {
    pub fn new(first: SchedStat, now: Instant) -> CpuWaitWatch {
        CpuWaitWatch { previous: first, previous_at: now, last_warning_at: None }
    }

    /// Takes the reading `stat` made at `now`; returns a report when the thread waited
    /// [`CPU_WAIT_WARN_PERCENT`] or more since the previous reading and no warning was given in
    /// the last [`CPU_WAIT_WARNING_INTERVAL`].
    pub fn observe(&mut self, stat: SchedStat, now: Instant) -> Option<CpuWaitReport> {
        let delta = stat.since(&self.previous);
        let interval_ns = u64::try_from(now.saturating_duration_since(self.previous_at).as_nanos()).unwrap_or(u64::MAX);
        self.previous = stat;
        self.previous_at = now;
        if interval_ns == 0 || delta.wait_ns.saturating_mul(100) < interval_ns.saturating_mul(CPU_WAIT_WARN_PERCENT) {
            return None;
        }
        if self.last_warning_at.is_some_and(|at| now.saturating_duration_since(at) < CPU_WAIT_WARNING_INTERVAL) {
            return None;
        }
        self.last_warning_at = Some(now);
        Some(CpuWaitReport {
            waited_ms: delta.wait_ns / 1_000_000,
            interval_ms: interval_ns / 1_000_000,
            waited_percent: (u128::from(delta.wait_ns) * 100 / u128::from(interval_ns)) as u64,
            ran_ms: delta.run_ns / 1_000_000,
        })
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn parses_the_three_fields_and_nothing_else() {
        assert_eq!(
            SchedStat::parse("104045 72798 2\n"),
            Some(SchedStat { run_ns: 104045, wait_ns: 72798, timeslices: 2 })
        );
        assert_eq!(SchedStat::parse("1 2"), None);
        assert_eq!(SchedStat::parse("1 2 3 4"), None);
        assert_eq!(SchedStat::parse("1 -2 3"), None);
        assert_eq!(SchedStat::parse("1 2 99999999999999999999999"), None);
        assert_eq!(SchedStat::parse(""), None);
    }

    proptest! {
        /// Any text: a value or `None`, never a panic; three numbers always parse back.
        #[test]
        fn parse_never_panics(text in ".{0,64}", a in any::<u64>(), b in any::<u64>(), c in any::<u64>()) {
            let _ = SchedStat::parse(&text);
            prop_assert_eq!(
                SchedStat::parse(&format!("{a} {b} {c}\n")),
                Some(SchedStat { run_ns: a, wait_ns: b, timeslices: c })
            );
        }
    }

    fn stat(run_ms: u64, wait_ms: u64) -> SchedStat {
        SchedStat { run_ns: run_ms * 1_000_000, wait_ns: wait_ms * 1_000_000, timeslices: 0 }
    }

    /// Guards the threshold and the rate limit: under 1 % of the interval is silent, 1 % or more
    /// warns once, and the next warning waits for the warning interval.
    #[test]
    fn warns_at_the_threshold_and_not_again_within_the_warning_interval() {
        let start = Instant::now();
        let mut watch = CpuWaitWatch::new(stat(0, 0), start);
        let at = |s: u64| start + Duration::from_secs(s);
        assert_eq!(watch.observe(stat(5_000, 99), at(10)), None, "0.99 % of 10 s");
        assert_eq!(
            watch.observe(stat(9_000, 199), at(20)),
            Some(CpuWaitReport { waited_ms: 100, interval_ms: 10_000, waited_percent: 1, ran_ms: 4_000 })
        );
        assert_eq!(watch.observe(stat(9_000, 2_199), at(30)), None, "20 % but warned 10 s ago");
        assert_eq!(
            watch.observe(stat(9_000, 4_199), at(80)).map(|report| report.waited_percent),
            Some(4),
            "60 s after the first warning"
        );
    }

    /// A counter that goes back (it cannot, but the file is outside our control) reads as no wait.
    #[test]
    fn a_counter_going_back_reads_as_no_wait() {
        let start = Instant::now();
        let mut watch = CpuWaitWatch::new(stat(100, 500), start);
        assert_eq!(watch.observe(stat(50, 10), start + Duration::from_secs(10)), None);
    }

    /// The kernel's own figures: a thread that shares one CPU with a busy thread waits for it.
    /// Bounded: two threads spin for 300 ms of wall time each.
    #[test]
    fn a_thread_sharing_its_cpu_with_a_busy_one_is_seen_waiting() {
        let Ok(first) = SchedStat::of_this_thread() else {
            eprintln!("no /proc/thread-self/schedstat on this kernel (CONFIG_SCHED_INFO): skipped");
            return;
        };
        let cpu = crate::server::startup::usable_cpus()
            .first()
            .copied()
            .filter(|&cpu| crate::testing::pin_this_thread_to(cpu));
        let spin = || {
            let until = Instant::now() + Duration::from_millis(300);
            while Instant::now() < until {
                std::hint::spin_loop();
            }
        };
        let rival = std::thread::spawn(move || {
            if let Some(cpu) = cpu {
                crate::testing::pin_this_thread_to(cpu);
            }
            spin();
        });
        spin();
        rival.join().expect("the rival thread ends");
        let delta = SchedStat::of_this_thread().expect("readable once").since(&first);
        assert!(delta.run_ns > 0);
        if cpu.is_some() {
            assert!(delta.wait_ns > 0, "two spinning threads on one CPU: {delta:?}");
        }
    }
}
