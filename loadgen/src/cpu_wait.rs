//! How long each thread of the load generator and of the embedded broker waited for its CPU
//! during the measured window: runnable, with another task on the CPU. On a shared or small
//! machine a few milliseconds of someone else's work on a shard's or a producer's CPU are a
//! few milliseconds in the latency tail; this line says whether that happened in the run
//! (PERF.md, "What else runs on the CPUs").
//!
//! Read from `/proc/<pid>/task/<tid>/schedstat` (`ringmq::sys::cpu_wait`) at the start and the
//! end of the window. Plain `std::fs`; a thread or file that cannot be read is left out.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Instant;

use ringmq::sys::cpu_wait::SchedStat;

use crate::cpu_steal::{self, CpuSteal};

/// Threads that neither ran nor waited this long in the window are left out of the report.
const THREAD_ACTIVE_MS_MIN: f64 = 1.0;

/// One thread's figures over the measured window.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct ThreadCpuWait {
    /// "broker" or "loadgen".
    pub process: &'static str,
    /// The thread's name (`comm`, at most 15 bytes).
    pub thread: String,
    pub ran_ms: f64,
    /// Runnable but not running: another task had the CPU.
    pub waited_ms: f64,
    /// `waited_ms` as a share of the window.
    pub waited_percent: f64,
}

/// Every thread of some processes, and the host's stolen time per CPU, read at one moment.
#[derive(Debug)]
pub struct ThreadsSnapshot {
    at: Instant,
    /// By (pid, tid).
    threads: BTreeMap<(u32, u32), SeenThread>,
    /// Cumulative, by CPU.
    stolen_ms: BTreeMap<usize, f64>,
}

#[derive(Debug)]
struct SeenThread {
    /// The process's label: "broker" or "loadgen".
    process: &'static str,
    name: String,
    stat: SchedStat,
}

impl ThreadsSnapshot {
    /// Reads every thread of each (label, pid).
    pub fn take(processes: &[(&'static str, u32)]) -> ThreadsSnapshot {
        let mut threads = BTreeMap::new();
        for &(label, pid) in processes {
            let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else { continue };
            for task in tasks.flatten() {
                let Some(tid) = task.file_name().to_str().and_then(|name| name.parse::<u32>().ok()) else { continue };
                let dir = task.path();
                let Ok(stat) = SchedStat::read(&dir.join("schedstat")) else { continue };
                threads.insert((pid, tid), SeenThread { process: label, name: thread_name(&dir), stat });
            }
        }
        ThreadsSnapshot { at: Instant::now(), threads, stolen_ms: cpu_steal::read_stolen_ms() }
    }
}

impl ThreadsSnapshot {
    /// For a thread seen at `before` that had ended by this reading: the figures it read on
    /// itself as it ended, under the name it had at `before`. A thread this reading saw keeps
    /// what it saw, the end of the window.
    pub fn record_exit(&mut self, before: &ThreadsSnapshot, key: (u32, u32), stat: SchedStat) {
        if let (Some(seen), false) = (before.threads.get(&key), self.threads.contains_key(&key)) {
            self.threads.insert(key, SeenThread { process: seen.process, name: seen.name.clone(), stat });
        }
    }
}

fn thread_name(task_dir: &Path) -> String {
    std::fs::read_to_string(task_dir.join("comm")).map(|name| name.trim_end().to_owned()).unwrap_or_default()
}

fn window_ms(before: &ThreadsSnapshot, after: &ThreadsSnapshot) -> f64 {
    after.at.saturating_duration_since(before.at).as_secs_f64() * 1e3
}

/// The CPUs the host took time from between the two readings, most first.
pub fn compare_steal(before: &ThreadsSnapshot, after: &ThreadsSnapshot) -> Vec<CpuSteal> {
    cpu_steal::compare(&before.stolen_ms, &after.stolen_ms, window_ms(before, after))
}

/// The threads present at both moments that ran or waited at least [`THREAD_ACTIVE_MS_MIN`],
/// longest wait first.
pub fn compare(before: &ThreadsSnapshot, after: &ThreadsSnapshot) -> Vec<ThreadCpuWait> {
    let window_ms = window_ms(before, after);
    let mut waits: Vec<ThreadCpuWait> = after
        .threads
        .iter()
        .filter_map(|(key, seen)| {
            let earlier = before.threads.get(key)?;
            let delta = seen.stat.since(&earlier.stat);
            let ran_ms = delta.run_ns as f64 / 1e6;
            let waited_ms = delta.wait_ns as f64 / 1e6;
            let waited_percent = if window_ms > 0.0 { waited_ms * 100.0 / window_ms } else { 0.0 };
            (ran_ms >= THREAD_ACTIVE_MS_MIN || waited_ms >= THREAD_ACTIVE_MS_MIN).then(|| ThreadCpuWait {
                process: seen.process,
                thread: seen.name.clone(),
                ran_ms,
                waited_ms,
                waited_percent,
            })
        })
        .collect();
    waits.sort_by(|a, b| b.waited_ms.total_cmp(&a.waited_ms));
    waits
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    /// A test row: (pid, tid), process, thread name, ran ms, waited ms.
    type Row = ((u32, u32), &'static str, &'static str, u64, u64);

    fn snapshot(at: Instant, rows: &[Row]) -> ThreadsSnapshot {
        ThreadsSnapshot {
            at,
            threads: rows
                .iter()
                .map(|&(key, process, name, run_ms, wait_ms)| {
                    let stat = SchedStat { run_ns: run_ms * 1_000_000, wait_ns: wait_ms * 1_000_000, timeslices: 0 };
                    (key, SeenThread { process, name: name.to_owned(), stat })
                })
                .collect(),
            stolen_ms: BTreeMap::new(),
        }
    }

    /// Guards what the report keeps: deltas over the window, only threads seen at both moments
    /// and active in between, the longest wait first.
    #[test]
    fn keeps_active_threads_seen_twice_longest_wait_first() {
        let start = Instant::now();
        let before = snapshot(
            start,
            &[
                ((1, 1), "loadgen", "producer-0", 100, 10),
                ((2, 5), "broker", "ringmq-shard-0", 200, 20),
                ((2, 6), "broker", "idle", 7, 7),
                ((2, 7), "broker", "gone", 7, 7),
            ],
        );
        let after = snapshot(
            start + Duration::from_secs(2),
            &[
                ((1, 1), "loadgen", "producer-0", 1_100, 30),
                ((2, 5), "broker", "ringmq-shard-0", 1_200, 60),
                ((2, 6), "broker", "idle", 7, 7),
                ((2, 8), "broker", "new", 500, 500),
            ],
        );
        let waits = compare(&before, &after);
        let rows: Vec<_> = waits.iter().map(|w| (w.process, w.thread.as_str(), w.ran_ms, w.waited_ms)).collect();
        assert_eq!(rows, [("broker", "ringmq-shard-0", 1_000.0, 40.0), ("loadgen", "producer-0", 1_000.0, 20.0)]);
        assert!((waits[0].waited_percent - 2.0).abs() < 0.01, "40 ms of 2 s: {}", waits[0].waited_percent);
    }

    /// An actor whose thread ended before the window's last reading counts with the figures it
    /// read on itself as it ended.
    #[test]
    fn an_ended_thread_counts_with_its_figures_at_exit() {
        let start = Instant::now();
        let before =
            snapshot(start, &[((1, 2), "loadgen", "producer-0", 100, 10), ((1, 4), "loadgen", "consumer-0", 100, 10)]);
        let mut after = snapshot(start + Duration::from_secs(1), &[((1, 4), "loadgen", "consumer-0", 300, 30)]);
        assert_eq!(compare(&before, &after).len(), 1, "only the consumer is still there");
        let at_exit = SchedStat { run_ns: 600_000_000, wait_ns: 60_000_000, timeslices: 0 };
        after.record_exit(&before, (1, 2), at_exit);
        after.record_exit(&before, (1, 3), at_exit); // never seen at the start: ignored
        after.record_exit(&before, (1, 4), at_exit); // seen at the end: keeps the end's figures
        let rows: Vec<_> = compare(&before, &after).iter().map(|w| (w.thread.clone(), w.ran_ms, w.waited_ms)).collect();
        assert_eq!(rows, [("producer-0".to_owned(), 500.0, 50.0), ("consumer-0".to_owned(), 200.0, 20.0)]);
    }

    /// The real files: this process's threads can be read, by name.
    #[test]
    fn reads_this_process_threads() {
        let snapshot = ThreadsSnapshot::take(&[("loadgen", std::process::id())]);
        if SchedStat::of_this_thread().is_err() {
            return; // No CONFIG_SCHED_INFO: nothing to read.
        }
        assert!(!snapshot.threads.is_empty());
        assert!(snapshot.threads.values().all(|seen| seen.process == "loadgen"));
    }
}
