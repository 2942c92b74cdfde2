//! The final report: a text summary on stdout and the full JSON (`--json`).

use std::collections::BTreeMap;
use std::fmt::Write as _;

use crate::actors::rebalance::RebalancePause;
use crate::args::{Args, KeyMode};
use crate::cpu_steal::CpuSteal;
use crate::cpu_wait::ThreadCpuWait;
use crate::host::Host;
use crate::stats::{distribution, summarize, LatencySummary, PercentilePoint, Stats};

/// The flags of the run, as the JSON records them.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Parameters {
    pub bootstrap: String,
    pub embedded: bool,
    pub broker_flags: Vec<String>,
    pub topic: String,
    pub partitions: u32,
    pub message_bytes: usize,
    pub key_mode: String,
    pub batch_bytes: usize,
    pub linger_ms: u64,
    pub acks: String,
    pub in_flight: usize,
    pub shard_aware: bool,
    pub shard_aware_consumers: bool,
    pub rate_msgs_per_s: Option<f64>,
    pub duration_s: Option<f64>,
    pub messages: Option<u64>,
    pub warmup_s: f64,
    pub producers: usize,
    pub consumers: usize,
    pub cpus: Option<Vec<usize>>,
    pub pace_us: u64,
    pub spin_before_park_us: u64,
    /// Consumers are members of this group (`None`: partitions dealt round-robin).
    pub group: Option<String>,
    pub delivery: Option<&'static str>,
    pub kill_consumer_after_s: Option<f64>,
}

impl Parameters {
    pub fn from_args(args: &Args, bootstrap: &str) -> Parameters {
        Parameters {
            bootstrap: bootstrap.to_owned(),
            embedded: args.embedded,
            broker_flags: if args.embedded { args.broker_flags() } else { Vec::new() },
            topic: args.topic.clone(),
            partitions: args.partitions,
            message_bytes: args.message_bytes,
            key_mode: match args.key_mode {
                KeyMode::None => "none".to_owned(),
                KeyMode::Random => "random".to_owned(),
                KeyMode::Distinct(count) => format!("distinct:{count}"),
            },
            batch_bytes: args.batch_bytes,
            linger_ms: args.linger_ms,
            acks: args.acks.as_str().to_owned(),
            in_flight: args.in_flight,
            shard_aware: args.shard_aware,
            shard_aware_consumers: args.consumers_shard_aware(),
            rate_msgs_per_s: args.rate,
            duration_s: args.measured_duration().map(|d| d.as_secs_f64()),
            messages: args.messages,
            warmup_s: args.warmup.as_secs_f64(),
            producers: args.producers,
            consumers: args.consumers,
            cpus: args.cpus.as_ref().map(|cpus| cpus.0.clone()),
            pace_us: args.pace_us,
            spin_before_park_us: args.spin_before_park_us,
            group: args.group.clone(),
            delivery: args.group.as_ref().map(|_| args.delivery.as_str()),
            kill_consumer_after_s: args.kill_consumer_after.map(|d| d.as_secs_f64()),
        }
    }
}

/// Messages and bytes over a measured window.
#[derive(Clone, Copy, Debug, Default, PartialEq, serde::Serialize)]
pub struct Throughput {
    pub messages: u64,
    pub bytes: u64,
    pub seconds: f64,
    pub msgs_per_s: f64,
    /// Decimal: 10^6 bytes of message values per second.
    pub mb_per_s: f64,
}

impl Throughput {
    pub fn new(messages: u64, bytes: u64, seconds: f64) -> Throughput {
        let per_s = |n: u64| if seconds > 0.0 { n as f64 / seconds } else { 0.0 };
        Throughput { messages, bytes, seconds, msgs_per_s: per_s(messages), mb_per_s: per_s(bytes) / 1e6 }
    }
}

/// One second of the run, for the throughput-over-time plot.
#[derive(Clone, Copy, Debug, Default, PartialEq, serde::Serialize)]
pub struct TimelinePoint {
    pub t_s: f64,
    pub produced_msgs_per_s: f64,
    pub produced_mb_per_s: f64,
    pub consumed_msgs_per_s: f64,
    pub consumed_mb_per_s: f64,
    /// Produce-ack p99 so far (measured part only), µs.
    pub produce_p99_us: Option<f64>,
}

/// The embedded broker's memory, to get idle memory per partition.
#[derive(Clone, Copy, Debug, Default, PartialEq, serde::Serialize)]
pub struct BrokerMemory {
    pub rss_kib_before_topic: u64,
    /// After the topic exists and the broker sat idle for a moment.
    pub rss_kib_after_topic: u64,
    pub partitions_created: u32,
    pub rss_kib_per_partition: f64,
    pub rss_kib_after_run: Option<u64>,
}

#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct Results {
    pub produce: Option<Throughput>,
    pub consume: Option<Throughput>,
    pub produce_ack_latency: Option<LatencySummary>,
    pub end_to_end_latency: Option<LatencySummary>,
    /// Open loop only: send time minus intended send time, per message.
    pub send_lag: Option<LatencySummary>,
    /// Open loop only: messages intended for the measured window and never sent, because the
    /// producers fell behind `--rate` (0 when they kept up).
    pub open_loop_unsent_messages: Option<u64>,
    pub errors: BTreeMap<String, u64>,
    pub broker_memory: Option<BrokerMemory>,
    /// `--kill-consumer-after`: how long the killed member's partitions went unconsumed.
    pub rebalance: Option<RebalancePause>,
    /// Each active thread of the load generator and of the embedded broker: how long it
    /// waited for its CPU in the measured window, longest first.
    pub cpu_wait: Vec<ThreadCpuWait>,
    /// Each CPU of the machine the host (hypervisor) kept from the guest in the measured
    /// window, most first; empty on bare metal or when none was taken.
    pub cpu_steal: Vec<CpuSteal>,
    /// "broker connection lost after …", when the run failed.
    pub failure: Option<String>,
}

#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct Distributions {
    pub produce_ack: Vec<PercentilePoint>,
    pub end_to_end: Vec<PercentilePoint>,
}

#[derive(Clone, Debug, serde::Serialize)]
pub struct Report {
    pub tool: &'static str,
    pub version: &'static str,
    pub parameters: Parameters,
    pub host: Host,
    pub results: Results,
    pub timeline: Vec<TimelinePoint>,
    pub distributions: Distributions,
}

/// Windows (seconds) of the measured part, per side.
#[derive(Clone, Copy, Debug, Default)]
pub struct Windows {
    pub produce_s: f64,
    pub consume_s: f64,
}

/// Results from the merged stats.
pub fn results(stats: &Stats, windows: Windows, producers: usize, consumers: usize) -> (Results, Distributions) {
    let produce =
        (producers > 0).then(|| Throughput::new(stats.produced_messages, stats.produced_bytes, windows.produce_s));
    let consume =
        (consumers > 0).then(|| Throughput::new(stats.consumed_messages, stats.consumed_bytes, windows.consume_s));
    let results = Results {
        produce,
        consume,
        produce_ack_latency: (producers > 0).then(|| summarize(&stats.produce_ack)),
        end_to_end_latency: (producers > 0 && consumers > 0).then(|| summarize(&stats.end_to_end)),
        send_lag: (!stats.send_lag.is_empty()).then(|| summarize(&stats.send_lag)),
        open_loop_unsent_messages: None,
        errors: stats.errors.clone(),
        broker_memory: None,
        rebalance: None,
        cpu_wait: Vec::new(),
        cpu_steal: Vec::new(),
        failure: None,
    };
    let distributions =
        Distributions { produce_ack: distribution(&stats.produce_ack), end_to_end: distribution(&stats.end_to_end) };
    (results, distributions)
}

fn latency_line(out: &mut String, name: &str, latency: &LatencySummary) {
    let _ = writeln!(
        out,
        "{name:<22} p50 {} | p90 {} | p99 {} | p99.9 {} | p99.99 {} | max {}  ({} samples)",
        fmt_us(latency.p50_us),
        fmt_us(latency.p90_us),
        fmt_us(latency.p99_us),
        fmt_us(latency.p99_9_us),
        fmt_us(latency.p99_99_us),
        fmt_us(latency.max_us),
        latency.count
    );
}

/// A latency with a unit that keeps 3 significant digits: `87.3 µs`, `1.25 ms`, `2.00 s`.
pub fn fmt_us(us: f64) -> String {
    if us < 1_000.0 {
        format!("{us:.1} µs")
    } else if us < 1_000_000.0 {
        format!("{:.2} ms", us / 1_000.0)
    } else {
        format!("{:.2} s", us / 1_000_000.0)
    }
}

fn throughput_line(out: &mut String, name: &str, throughput: &Throughput) {
    let _ = writeln!(
        out,
        "{name:<22} {:.0} msgs/s, {:.1} MB/s ({} messages, {:.1} MB in {:.2} s)",
        throughput.msgs_per_s,
        throughput.mb_per_s,
        throughput.messages,
        throughput.bytes as f64 / 1e6,
        throughput.seconds
    );
}

fn rebalance_line(out: &mut String, pause: &RebalancePause) {
    let per_partition: Vec<String> = pause.pause_ms.iter().map(|(p, ms)| format!("p{p} {ms:.0} ms")).collect();
    let _ = write!(
        out,
        "{:<22} consumer 0 killed at {:.1}s owning {} partitions; consumed again after: {}",
        "rebalance pause",
        pause.killed_at_s,
        pause.partitions.len(),
        if per_partition.is_empty() { "-".to_owned() } else { per_partition.join(", ") }
    );
    match pause.pause_ms_max {
        Some(max) => {
            let _ = writeln!(out, " (max {max:.0} ms)");
        }
        None => {
            let never: Vec<String> = pause.never_resumed.iter().map(|p| format!("p{p}")).collect();
            let _ = writeln!(out, "; never consumed again: {}", never.join(", "));
        }
    }
}

/// At most this many CPUs in the text report's steal line (the JSON has them all).
const CPU_STEAL_CPUS_SHOWN_MAX: usize = 8;

/// One line: the CPUs the host took time from, most first; "none" when the window was read
/// and no CPU lost time.
fn cpu_steal_line(out: &mut String, steals: &[CpuSteal]) {
    let shown: Vec<String> = steals
        .iter()
        .take(CPU_STEAL_CPUS_SHOWN_MAX)
        .map(|steal| {
            format!("cpu {}: {:.0} ms ({:.2} % of the window)", steal.cpu, steal.stolen_ms, steal.stolen_percent)
        })
        .collect();
    let text = if shown.is_empty() { "none".to_owned() } else { shown.join(", ") };
    let _ = writeln!(out, "{:<22} {text}", "cpu steal (host)");
}

/// At most this many threads in the text report's CPU-wait lines (the JSON has them all).
const CPU_WAIT_THREADS_SHOWN_MAX: usize = 6;

/// One line per busiest-waiting thread: the threads whose CPU was taken by something else.
fn cpu_wait_lines(out: &mut String, waits: &[ThreadCpuWait]) {
    for (index, wait) in waits.iter().take(CPU_WAIT_THREADS_SHOWN_MAX).enumerate() {
        let _ = writeln!(
            out,
            "{:<22} {} {}: waited {:.1} ms ({:.2} % of the window), ran {:.0} ms",
            if index == 0 { "cpu wait (runnable)" } else { "" },
            wait.process,
            wait.thread,
            wait.waited_ms,
            wait.waited_percent,
            wait.ran_ms
        );
    }
}

/// Messages the open loop still owed at its stop are worth a warning from
/// [`FELL_BEHIND_MS_MIN`] of the rate on: less is the lag of one late wake-up, which the
/// send-lag line already shows (the JSON keeps every count).
const FELL_BEHIND_MS_MIN: f64 = 1.0;

fn fell_behind(unsent_messages: u64, rate_msgs_per_s: Option<f64>) -> bool {
    match rate_msgs_per_s {
        Some(rate) if rate > 0.0 => unsent_messages as f64 * 1_000.0 / rate >= FELL_BEHIND_MS_MIN,
        _ => unsent_messages > 0,
    }
}

/// The text report for stdout.
pub fn format_text(report: &Report) -> String {
    let mut out = String::new();
    let p = &report.parameters;
    let mode = match p.rate_msgs_per_s {
        Some(rate) => format!("open loop at {rate:.0} msgs/s"),
        None => "closed loop".to_owned(),
    };
    let _ = writeln!(
        out,
        "ringmq-loadgen: {} producers, {} consumers, topic '{}' ({} partitions), {} B messages, batch {} B, linger {} ms, acks {}, {mode}",
        p.producers, p.consumers, p.topic, p.partitions, p.message_bytes, p.batch_bytes, p.linger_ms, p.acks
    );
    let r = &report.results;
    if let Some(produce) = &r.produce {
        throughput_line(&mut out, "produce throughput", produce);
    }
    if let Some(consume) = &r.consume {
        throughput_line(&mut out, "consume throughput", consume);
    }
    if let Some(latency) = &r.produce_ack_latency {
        latency_line(&mut out, "produce-ack latency", latency);
    }
    if let Some(latency) = &r.end_to_end_latency {
        latency_line(&mut out, "end-to-end latency", latency);
    }
    if let Some(lag) = &r.send_lag {
        latency_line(&mut out, "loadgen send lag", lag);
    }
    if let Some(unsent) = r.open_loop_unsent_messages.filter(|&unsent| fell_behind(unsent, p.rate_msgs_per_s)) {
        let _ = writeln!(
            out,
            "{:<22} {unsent} messages came due in the measured window and were never sent: the producers \
             fell behind --rate, and the figures above cover only the messages sent (lower the rate)",
            "OPEN LOOP FELL BEHIND"
        );
    }
    if r.errors.is_empty() {
        let _ = writeln!(out, "{:<22} none", "errors");
    } else {
        let list: Vec<String> = r.errors.iter().map(|(code, count)| format!("{code} × {count}")).collect();
        let _ = writeln!(out, "{:<22} {}", "errors", list.join(", "));
    }
    if let Some(memory) = &r.broker_memory {
        let _ = writeln!(
            out,
            "{:<22} {} KiB before the topic, {} KiB idle with it: {:.1} KiB per partition ({} partitions)",
            "broker RSS",
            memory.rss_kib_before_topic,
            memory.rss_kib_after_topic,
            memory.rss_kib_per_partition,
            memory.partitions_created
        );
    }
    if let Some(pause) = &r.rebalance {
        rebalance_line(&mut out, pause);
    }
    cpu_wait_lines(&mut out, &r.cpu_wait);
    if !r.cpu_wait.is_empty() {
        cpu_steal_line(&mut out, &r.cpu_steal);
    }
    if let Some(failure) = &r.failure {
        let _ = writeln!(out, "{:<22} {failure}", "FAILED");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    fn report() -> Report {
        let args = Args::try_parse_from(["ringmq-loadgen", "--producers", "2", "--consumers", "1"]).unwrap();
        let mut stats = Stats::default();
        for i in 1..=1_000u64 {
            stats.record_ack(i * 1_000, 1_024);
            stats.record_receive(Some(i * 2_000), 1_024);
        }
        stats.record_error("throttled_busy", 3);
        let (results, distributions) = results(&stats, Windows { produce_s: 2.0, consume_s: 4.0 }, 2, 1);
        Report {
            tool: "ringmq-loadgen",
            version: "0",
            parameters: Parameters::from_args(&args, "127.0.0.1:9292"),
            host: Host::default(),
            results,
            timeline: vec![TimelinePoint { t_s: 1.0, produced_msgs_per_s: 500.0, ..TimelinePoint::default() }],
            distributions,
        }
    }

    /// Guards the text report: throughput per side over its own window, every percentile
    /// with a unit, errors by code.
    #[test]
    fn text_report_has_throughput_percentiles_and_errors() {
        let text = format_text(&report());
        assert!(text.contains("2 producers, 1 consumers"), "{text}");
        assert!(text.contains("produce throughput     500 msgs/s, 0.5 MB/s (1000 messages"), "{text}");
        assert!(text.contains("consume throughput     250 msgs/s"), "{text}");
        assert!(text.contains("produce-ack latency    p50 500.2 µs | p90 900.1 µs | p99 990.2 µs"), "{text}");
        assert!(text.contains("max 1.00 ms"), "{text}");
        assert!(text.contains("end-to-end latency     p50 1.00 ms"), "{text}");
        assert!(text.contains("errors                 throttled_busy × 3"), "{text}");
        assert!(!text.contains("send lag"), "a closed loop records no send lag: {text}");
    }

    /// Guards the shortfall line: an open loop that fell behind its rate says so, with the
    /// count, even when no message of the measured window was sent (0 samples); one that kept
    /// up, or owed less than a millisecond of its rate at the stop, and a closed loop, print
    /// nothing.
    #[test]
    fn text_report_says_when_an_open_loop_fell_behind() {
        let report_with = |unsent: Option<u64>| {
            let (mut results, distributions) =
                results(&Stats::default(), Windows { produce_s: 3.0, consume_s: 0.0 }, 1, 0);
            results.open_loop_unsent_messages = unsent;
            let mut report = Report { results, distributions, ..report() };
            report.parameters.rate_msgs_per_s = Some(200_000.0);
            report
        };
        assert!(format_text(&report_with(Some(200))).contains("OPEN LOOP FELL BEHIND  200 messages"));
        assert!(!format_text(&report_with(Some(199))).contains("FELL BEHIND"), "under 1 ms of the rate");
        let text = format_text(&report_with(Some(1_234)));
        assert!(text.contains("OPEN LOOP FELL BEHIND  1234 messages came due"), "{text}");
        assert!(!format_text(&report_with(Some(0))).contains("FELL BEHIND"));
        assert!(!format_text(&report_with(None)).contains("FELL BEHIND"));
        let json = serde_json::to_value(report_with(Some(1_234))).unwrap();
        assert_eq!(json["results"]["open_loop_unsent_messages"], 1_234);
    }

    /// Guards the open loop's send-lag line: shown when lags were recorded, with percentiles.
    #[test]
    fn text_report_shows_the_send_lag_of_an_open_loop() {
        let mut stats = Stats::default();
        for i in 1..=1_000u64 {
            stats.record_ack(i * 1_000, 1_024);
            stats.record_send_lag(i * 100);
        }
        let (results, distributions) = results(&stats, Windows { produce_s: 1.0, consume_s: 0.0 }, 1, 0);
        let text = format_text(&Report { results, distributions, ..report() });
        assert!(text.contains("loadgen send lag       p50 50.0 µs | p90 90.0 µs | p99 99.0 µs"), "{text}");
    }

    /// Guards the JSON shape the integration test and PERF.md scripts read.
    #[test]
    fn json_report_has_parameters_results_and_distributions() {
        let json = serde_json::to_value(report()).unwrap();
        assert_eq!(json["parameters"]["producers"], 2);
        assert_eq!(json["results"]["produce"]["messages"], 1_000);
        assert_eq!(json["results"]["errors"]["throttled_busy"], 3);
        assert!(json["results"]["produce_ack_latency"]["p99_9_us"].as_f64().unwrap() > 0.0);
        assert!(json["distributions"]["end_to_end"].as_array().unwrap().len() > 10);
        assert_eq!(json["timeline"][0]["produced_msgs_per_s"], 500.0);
    }

    /// Guards the steal line: shown with the CPU-wait lines (the window was read), the CPUs
    /// that lost time to the host with their share, or "none"; the JSON keeps the list.
    #[test]
    fn text_report_says_which_cpus_the_host_took() {
        let wait = ThreadCpuWait {
            process: "broker",
            thread: "ringmq-shard-0-".to_owned(),
            ran_ms: 3_000.0,
            waited_ms: 10.0,
            waited_percent: 0.17,
        };
        let with = |waits: Vec<ThreadCpuWait>, steals: Vec<CpuSteal>| {
            let mut report = report();
            report.results.cpu_wait = waits;
            report.results.cpu_steal = steals;
            report
        };
        let stolen = CpuSteal { cpu: 1, stolen_ms: 20.0, stolen_percent: 0.33 };
        let text = format_text(&with(vec![wait.clone()], vec![stolen.clone()]));
        assert!(text.contains("cpu steal (host)       cpu 1: 20 ms (0.33 % of the window)"), "{text}");
        let text = format_text(&with(vec![wait], Vec::new()));
        assert!(text.contains("cpu steal (host)       none"), "{text}");
        assert!(!format_text(&with(Vec::new(), Vec::new())).contains("cpu steal"), "no window read");
        let json = serde_json::to_value(with(Vec::new(), vec![stolen])).unwrap();
        assert_eq!(json["results"]["cpu_steal"][0]["cpu"], 1);
        assert_eq!(json["results"]["cpu_steal"][0]["stolen_ms"], 20.0);
    }

    #[test]
    fn latency_units() {
        assert_eq!(fmt_us(87.34), "87.3 µs");
        assert_eq!(fmt_us(1_250.0), "1.25 ms");
        assert_eq!(fmt_us(2_000_000.0), "2.00 s");
        assert_eq!(Throughput::new(10, 10, 0.0).msgs_per_s, 0.0);
    }
}
