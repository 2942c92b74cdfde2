//! How long the hypervisor kept each CPU of the machine from running the guest during the
//! measured window ("steal"). A stall of the host is invisible to the guest's scheduler: no
//! thread waits on a run queue for it (`cpu wait` stays flat), the whole vCPU just stops. On a
//! VM this line tells such a stall from one inside the guest (PERF.md, "Polling executors that
//! take turns").
//!
//! Read from the per-CPU lines of `/proc/stat`, whose eighth value is the stolen time in
//! clock ticks (`USER_HZ`, usually 100 per second, so a 10 ms resolution). Zero on bare metal
//! and on hypervisors that do not report it. Plain `std::fs`; an unreadable file reads as none.

use std::collections::BTreeMap;

/// One CPU's stolen time over the measured window.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct CpuSteal {
    pub cpu: usize,
    pub stolen_ms: f64,
    /// `stolen_ms` as a share of the window.
    pub stolen_percent: f64,
}

/// Cumulative stolen time per CPU, in ms, now.
pub fn read_stolen_ms() -> BTreeMap<usize, f64> {
    let Ok(text) = std::fs::read_to_string("/proc/stat") else { return BTreeMap::new() };
    let ms_per_tick = 1_000.0 / clock_ticks_per_s();
    parse_steal_ticks(&text).into_iter().map(|(cpu, ticks)| (cpu, ticks as f64 * ms_per_tick)).collect()
}

fn clock_ticks_per_s() -> f64 {
    // SAFETY: sysconf only reads a system constant; it has no memory arguments.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if ticks > 0 {
        ticks as f64
    } else {
        100.0
    }
}

/// The steal field of every `cpuN` line of a `/proc/stat` text, by N. Lines that are not a
/// numbered CPU's, or that have no steal field, are left out.
pub fn parse_steal_ticks(text: &str) -> BTreeMap<usize, u64> {
    const STEAL_FIELD: usize = 8; // cpuN user nice system idle iowait irq softirq steal …
    text.lines()
        .filter_map(|line| {
            let mut fields = line.split_ascii_whitespace();
            let cpu = fields.next()?.strip_prefix("cpu")?.parse::<usize>().ok()?;
            let steal = fields.nth(STEAL_FIELD - 1)?.parse::<u64>().ok()?;
            Some((cpu, steal))
        })
        .collect()
}

/// The CPUs that lost time to the host between the two readings, most first.
pub fn compare(before: &BTreeMap<usize, f64>, after: &BTreeMap<usize, f64>, window_ms: f64) -> Vec<CpuSteal> {
    let mut steals: Vec<CpuSteal> = after
        .iter()
        .filter_map(|(&cpu, &stolen)| {
            let stolen_ms = (stolen - before.get(&cpu)?).max(0.0);
            let stolen_percent = if window_ms > 0.0 { stolen_ms * 100.0 / window_ms } else { 0.0 };
            (stolen_ms > 0.0).then_some(CpuSteal { cpu, stolen_ms, stolen_percent })
        })
        .collect();
    steals.sort_by(|a, b| b.stolen_ms.total_cmp(&a.stolen_ms).then(a.cpu.cmp(&b.cpu)));
    steals
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Guards the field: the steal column of each numbered CPU, not the machine's total line,
    /// and nothing from a short or foreign line.
    #[test]
    fn parses_the_steal_field_of_each_cpu() {
        let text = "cpu  4973431 0 1144573 3151241 1478220 0 171473 16817 0 0\n\
                    cpu0 2448366 0 561533 1656202 716802 0 74126 8149 0 0\n\
                    cpu1 2525064 0 583039 1495038 761418 0 97347 8667 0 0\n\
                    cpu2 1 2 3\n\
                    cpux 1 2 3 4 5 6 7 8 9 10\n\
                    intr 123 0 0\n\
                    ctxt 99\n";
        let steal = parse_steal_ticks(text);
        assert_eq!(steal, BTreeMap::from([(0, 8149), (1, 8667)]));
        assert!(parse_steal_ticks("").is_empty());
        assert!(parse_steal_ticks("cpu0 a b c d e f g h\n").is_empty());
    }

    /// Guards the window: deltas only for CPUs read twice, none for a CPU that lost nothing,
    /// and never negative.
    #[test]
    fn compares_two_readings() {
        let before = BTreeMap::from([(0, 100.0), (1, 50.0), (2, 10.0)]);
        let after = BTreeMap::from([(0, 100.0), (1, 70.0), (2, 5.0), (3, 40.0)]);
        assert_eq!(compare(&before, &after, 2_000.0), [CpuSteal { cpu: 1, stolen_ms: 20.0, stolen_percent: 1.0 }]);
    }

    /// The real file parses on Linux: one entry per CPU this process may see.
    #[test]
    fn reads_this_machine() {
        if std::fs::metadata("/proc/stat").is_err() {
            return;
        }
        assert!(!read_stolen_ms().is_empty());
    }
}
