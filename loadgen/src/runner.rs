//! One run, start to end: broker (embedded or not), topic, actors, progress line, report.

use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use ringmq::client::{ClientError, Committer, ConnectionConfig, TopicConfig};
use ringmq::model::{Offset, PartitionId};
use ringmq::protocol::ErrorCode;
use ringmq::protocol::OffsetSpec;
use ringmq::runtime::{open_connection, run_local};

use crate::actors::consumer::{self, ConsumerSettings};
use crate::actors::group_consumer::{self, GroupSettings};
use crate::actors::producer::{self, ProducerSettings};
use crate::actors::{spawn_actor, ActorEnv, ActorPlacement, Clock, Run};
use crate::args::{Args, ConsumeFrom};
use crate::cpu_wait::{self, ThreadsSnapshot};
use crate::embedded::{broker_binary, Broker};
use crate::report::{self, BrokerMemory, Parameters, Report, TimelinePoint, Windows};
use crate::stats::summarize;

/// How long actors may take to connect and take their positions.
const READY_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a newly created topic may take to show all its partitions in Metadata.
const TOPIC_READY_TIMEOUT: Duration = Duration::from_secs(60);
/// Idle time before the broker's memory is read after creating the topic.
const RSS_SETTLE: Duration = Duration::from_millis(1_000);
const PROGRESS_INTERVAL: Duration = Duration::from_secs(1);

/// The report, and the failure if the run failed (the report then holds what was measured).
pub struct Outcome {
    pub report: Report,
    pub failure: Option<String>,
}

pub fn run(args: &Args) -> Result<Outcome, String> {
    let broker = if args.embedded {
        let binary = broker_binary(args.broker_bin.as_deref())?;
        let target = std::env::current_dir().map_err(|error| format!("no current dir: {error}"))?.join("target");
        let broker = Broker::start(&binary, &args.broker_flags(), &target)?;
        eprintln!(
            "ringmq-loadgen: embedded broker {} ready on {} (data in {})",
            binary.display(),
            broker.addr,
            broker.data_dir.display()
        );
        Some(broker)
    } else {
        None
    };
    let addr = match &broker {
        Some(broker) => broker.addr,
        None => resolve(&args.bootstrap)?,
    };
    let rss_before = broker.as_ref().and_then(Broker::rss_kib);
    let created = ensure_topic(addr, &args.topic, args.partitions)?;
    let broker_memory = match (&broker, rss_before) {
        (Some(broker), Some(before)) => {
            std::thread::sleep(RSS_SETTLE);
            broker.rss_kib().map(|after| BrokerMemory {
                rss_kib_before_topic: before,
                rss_kib_after_topic: after,
                partitions_created: if created { args.partitions } else { 0 },
                rss_kib_per_partition: if created {
                    after.saturating_sub(before) as f64 / f64::from(args.partitions)
                } else {
                    0.0
                },
                rss_kib_after_run: None,
            })
        }
        _ => None,
    };
    if let Some(group_id) = &args.group {
        let start = match args.consume_from() {
            ConsumeFrom::Earliest => OffsetSpec::Earliest,
            ConsumeFrom::Latest => OffsetSpec::Latest,
        };
        set_group_offsets(addr, group_id, &args.topic, start)?;
    }
    let broker_pid = broker.as_ref().and_then(Broker::pid);
    let (mut report, failure) = run_actors(args, addr, broker_pid)?;
    report.results.broker_memory = broker_memory.map(|mut memory| {
        memory.rss_kib_after_run = broker.as_ref().and_then(Broker::rss_kib);
        memory
    });
    report.host = crate::host::probe(broker.as_ref().map(|b| b.data_dir.as_path()));
    if let Some(broker) = broker {
        if let Err(error) = broker.stop() {
            eprintln!("ringmq-loadgen: {error}");
        }
    }
    report.results.failure = failure.clone();
    Ok(Outcome { report, failure })
}

/// Group mode: commits `start` (the log end with producers, so that members start where the
/// producers will; `--from` without) on every partition for the group — an admin commit,
/// refused while the group has members — so that every run of a case measures the same work.
fn set_group_offsets(addr: SocketAddr, group_id: &str, topic: &str, start: OffsetSpec) -> Result<(), String> {
    let outcome = run_local(|| async move {
        let mut connection = open_connection(addr, ConnectionConfig::default())
            .await
            .map_err(|error| format!("cannot connect to the broker at {addr}: {error}"))?;
        let partitions = connection
            .topic_metadata(topic)
            .await
            .map_err(|error| format!("cannot describe topic '{topic}': {error}"))?
            .partitions
            .len();
        let lookups: Vec<(PartitionId, OffsetSpec)> =
            (0..u32::try_from(partitions).unwrap_or(u32::MAX)).map(|p| (PartitionId(p), start)).collect();
        let ends = connection
            .list_offsets(topic, &lookups)
            .await
            .map_err(|error| format!("cannot read the offsets of '{topic}': {error}"))?;
        let offsets: Vec<(&str, PartitionId, Offset)> =
            ends.iter().filter_map(|end| Some((topic, end.partition, end.offset?))).collect();
        connection.commit_offsets(group_id, Committer::Admin, &offsets).await.map_err(|error| {
            format!(
                "cannot set group '{group_id}' to the log end (it must have no members; pick another --group): {error}"
            )
        })
    });
    outcome.map_err(|error| format!("cannot start the I/O runtime: {error}"))?
}

fn resolve(bootstrap: &str) -> Result<SocketAddr, String> {
    bootstrap
        .to_socket_addrs()
        .map_err(|error| format!("bad broker address '{bootstrap}': {error}"))?
        .next()
        .ok_or_else(|| format!("broker address '{bootstrap}' resolves to nothing"))
}

/// Creates the topic if it is missing and waits until Metadata shows its partitions.
/// Returns whether this run created it.
fn ensure_topic(addr: SocketAddr, topic: &str, partitions: u32) -> Result<bool, String> {
    let outcome = run_local(|| async move {
        let mut connection = open_connection(addr, ConnectionConfig::default())
            .await
            .map_err(|error| format!("cannot connect to the broker at {addr}: {error}"))?;
        let mut created = false;
        match connection.topic_metadata(topic).await {
            Ok(metadata) => {
                if metadata.partitions.len() != partitions as usize {
                    eprintln!(
                        "ringmq-loadgen: topic '{topic}' exists with {} partitions; using them (not {partitions})",
                        metadata.partitions.len()
                    );
                }
                return Ok(false);
            }
            Err(ClientError::Topic { code: ErrorCode::UnknownTopicOrPartition, .. }) => {
                let config = TopicConfig { partitions, retention_ms: 0, retention_bytes: 0, segment_bytes: 0 };
                match connection.create_topic(topic, &config).await {
                    Ok(()) => created = true,
                    Err(ClientError::Topic { code: ErrorCode::TopicAlreadyExists, .. }) => {}
                    Err(error) => return Err(format!("cannot create topic '{topic}': {error}")),
                }
            }
            Err(error) => return Err(format!("cannot describe topic '{topic}': {error}")),
        }
        let deadline = std::time::Instant::now() + TOPIC_READY_TIMEOUT;
        loop {
            if let Ok(metadata) = connection.topic_metadata(topic).await {
                if !metadata.partitions.is_empty() {
                    return Ok(created);
                }
            }
            if std::time::Instant::now() >= deadline {
                return Err(format!("topic '{topic}' has no partitions {TOPIC_READY_TIMEOUT:?} after creation"));
            }
            glommio::timer::sleep(Duration::from_millis(20)).await;
        }
    });
    outcome.map_err(|error| format!("cannot start the I/O runtime: {error}"))?
}

fn placement_of(args: &Args, actor: usize) -> ActorPlacement {
    ActorPlacement {
        cpu: args.cpus.as_ref().and_then(|cpus| cpus.0.get(actor % cpus.0.len().max(1)).copied()),
        spin_before_park: (args.spin_before_park_us > 0).then(|| Duration::from_micros(args.spin_before_park_us)),
    }
}

/// Starts the actors, prints the progress line each second, joins them, builds the report.
fn run_actors(args: &Args, addr: SocketAddr, broker_pid: Option<u32>) -> Result<(Report, Option<String>), String> {
    let run = Arc::new(Run::new(Clock::new(), args.messages, args.producers + args.consumers));
    let warmup_ns = u64::try_from(args.warmup.as_nanos()).unwrap_or(u64::MAX);
    let stop_after_ns =
        args.measured_duration().map(|d| warmup_ns.saturating_add(u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)));
    let env = |index: usize| ActorEnv { run: Arc::clone(&run), addr, topic: args.topic.clone(), index };
    let mut handles = Vec::new();
    for index in 0..args.consumers {
        let settings = ConsumerSettings {
            consumers: args.consumers,
            from: args.consume_from(),
            producers: args.producers,
            stop_after_ns,
            messages: args.messages,
            warmup_ns,
            shard_aware: args.consumers_shard_aware(),
        };
        let env = env(index);
        let placement = placement_of(args, args.producers + index);
        let group = args.group.as_ref().map(|group_id| GroupSettings {
            group_id: group_id.clone(),
            delivery: args.delivery.mode(),
            kill_after_ns: args.kill_consumer_after.map(|d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)),
        });
        let spawned = match group {
            Some(group) => {
                spawn_actor(format!("consumer-{index}"), placement, move || group_consumer::run(env, settings, group))
            }
            None => spawn_actor(format!("consumer-{index}"), placement, move || consumer::run(env, settings)),
        };
        match spawned {
            Ok(handle) => handles.push(handle),
            Err(error) => {
                run.fail(error.clone());
                return Err(error);
            }
        }
    }
    let rate_per_s = args.rate.map(|rate| crate::rate::per_producer_rate(rate, args.producers));
    for index in 0..args.producers {
        let settings = ProducerSettings {
            message_bytes: args.message_bytes,
            key_mode: args.key_mode,
            batch_bytes: args.batch_bytes,
            linger: Duration::from_millis(args.linger_ms),
            acks: args.acks,
            in_flight: args.in_flight,
            rate_per_s,
            pace: Duration::from_micros(args.pace_us),
            stop_after_ns,
            warmup_ns,
            shard_aware: args.shard_aware,
            stamp_values: args.consumers > 0,
        };
        let env = env(index);
        let placement = placement_of(args, index);
        match spawn_actor(format!("producer-{index}"), placement, move || producer::run(env, settings)) {
            Ok(handle) => handles.push(handle),
            Err(error) => {
                run.fail(error.clone());
                return Err(error);
            }
        }
    }
    let actors = args.producers + args.consumers;
    let ready_deadline = std::time::Instant::now() + READY_TIMEOUT;
    while run.ready.load(Ordering::SeqCst) < actors && run.fatal().is_none() {
        if std::time::Instant::now() >= ready_deadline {
            run.fail(format!("the actors were not connected within {READY_TIMEOUT:?}"));
            break;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    let start_ns = run.go();
    let mut processes = vec![("loadgen", std::process::id())];
    processes.extend(broker_pid.map(|pid| ("broker", pid)));
    let (timeline, window_threads) = progress(args, &run, start_ns, &processes, &handles);
    let mut actors_at_exit = Vec::new();
    for handle in handles {
        match handle.join() {
            Ok(exit) => actors_at_exit.extend(exit.cpu),
            Err(_) => run.fail("an actor thread panicked".to_owned()),
        }
    }
    let (cpu_wait, cpu_steal) = match window_threads {
        Some((before, mut after)) => {
            for actor in actors_at_exit {
                after.record_exit(&before, (std::process::id(), actor.tid), actor.stat);
            }
            (cpu_wait::compare(&before, &after), cpu_wait::compare_steal(&before, &after))
        }
        None => (Vec::new(), Vec::new()),
    };
    let stats = run.stats.snapshot();
    let measure_from = start_ns.saturating_add(warmup_ns);
    let window = |end_ns: u64| end_ns.saturating_sub(measure_from) as f64 / 1e9;
    let windows = Windows {
        produce_s: window(run.producers_end_ns.load(Ordering::SeqCst)),
        consume_s: window(run.consumers_end_ns.load(Ordering::SeqCst)),
    };
    let (mut results, distributions) = report::results(&stats, windows, args.producers, args.consumers);
    results.rebalance = run.rebalance.summary(start_ns);
    results.open_loop_unsent_messages = args.rate.map(|_| stats.unsent_due_messages);
    results.cpu_wait = cpu_wait;
    results.cpu_steal = cpu_steal;
    let report = Report {
        tool: "ringmq-loadgen",
        version: env!("CARGO_PKG_VERSION"),
        parameters: Parameters::from_args(args, &addr.to_string()),
        host: crate::host::Host::default(),
        results,
        timeline,
        distributions,
    };
    Ok((report, run.fatal()))
}

/// Where `progress` is with the threads' CPU-wait readings.
enum WindowThreads {
    NotStarted,
    Started(ThreadsSnapshot),
    Read(ThreadsSnapshot, ThreadsSnapshot),
}

/// Each second until every actor is done: one line on stderr and one timeline point. Every
/// 10 ms: merges the figures the actors handed off. Reads the CPU wait of every thread of
/// `processes` when the measured window starts (after `--warmup`) and when it ends (the
/// `--duration` is over or a first actor is done); an actor whose thread ended before that
/// reading counts with the figures it read on itself as it ended (`ActorExit`).
fn progress<T>(
    args: &Args,
    run: &Run,
    start_ns: u64,
    processes: &[(&'static str, u32)],
    handles: &[std::thread::JoinHandle<T>],
) -> (Vec<TimelinePoint>, Option<(ThreadsSnapshot, ThreadsSnapshot)>) {
    let measure_from_ns = start_ns.saturating_add(u64::try_from(args.warmup.as_nanos()).unwrap_or(u64::MAX));
    let window_end_ns = args
        .measured_duration()
        .map(|duration| measure_from_ns.saturating_add(u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX)));
    let mut window_threads = WindowThreads::NotStarted;
    let mut timeline = Vec::new();
    let mut last = (start_ns, 0u64, 0u64, 0u64, 0u64);
    let mut next_tick = start_ns + PROGRESS_INTERVAL.as_nanos() as u64;
    loop {
        let done = handles.iter().all(std::thread::JoinHandle::is_finished);
        // Actors hand their figures off every 250 ms and merge nothing themselves; merging
        // here returns each its spare well before its next hand-off.
        run.stats.merge_handed_off();
        let now = run.clock.now_ns();
        window_threads = match window_threads {
            WindowThreads::NotStarted if now >= measure_from_ns && !done => {
                WindowThreads::Started(ThreadsSnapshot::take(processes))
            }
            WindowThreads::Started(before)
                if window_end_ns.is_some_and(|end| now >= end)
                    || handles.iter().any(std::thread::JoinHandle::is_finished) =>
            {
                WindowThreads::Read(before, ThreadsSnapshot::take(processes))
            }
            unchanged => unchanged,
        };
        if now < next_tick && !done {
            std::thread::sleep(Duration::from_millis(10));
            continue;
        }
        next_tick += PROGRESS_INTERVAL.as_nanos() as u64;
        let stats = &run.stats;
        let acked = stats.acked_total.load(Ordering::Relaxed);
        let acked_bytes = stats.acked_bytes_total.load(Ordering::Relaxed);
        let consumed = stats.consumed_total.load(Ordering::Relaxed);
        let consumed_bytes = stats.consumed_bytes_total.load(Ordering::Relaxed);
        let seconds = now.saturating_sub(last.0) as f64 / 1e9;
        if seconds > 0.05 {
            let per_s = |delta: u64| delta as f64 / seconds;
            let merged = stats.snapshot();
            let p99 = (!merged.produce_ack.is_empty()).then(|| summarize(&merged.produce_ack).p99_us);
            let e2e_p99 = (!merged.end_to_end.is_empty()).then(|| summarize(&merged.end_to_end).p99_us);
            let point = TimelinePoint {
                t_s: now.saturating_sub(start_ns) as f64 / 1e9,
                produced_msgs_per_s: per_s(acked - last.1),
                produced_mb_per_s: per_s(acked_bytes - last.2) / 1e6,
                consumed_msgs_per_s: per_s(consumed - last.3),
                consumed_mb_per_s: per_s(consumed_bytes - last.4) / 1e6,
                produce_p99_us: p99,
            };
            if !args.quiet {
                let mut line = format!("[{:6.1}s]", point.t_s);
                if args.producers > 0 {
                    line.push_str(&format!(
                        " produce {:>9.0} msgs/s {:>8.1} MB/s",
                        point.produced_msgs_per_s, point.produced_mb_per_s
                    ));
                    if let Some(p99) = p99 {
                        line.push_str(&format!(" ack p99 {}", report::fmt_us(p99)));
                    }
                }
                if args.consumers > 0 {
                    line.push_str(&format!(
                        " | consume {:>9.0} msgs/s {:>8.1} MB/s",
                        point.consumed_msgs_per_s, point.consumed_mb_per_s
                    ));
                    if let Some(p99) = e2e_p99 {
                        line.push_str(&format!(" e2e p99 {}", report::fmt_us(p99)));
                    }
                }
                eprintln!("{line}");
            }
            timeline.push(point);
            last = (now, acked, acked_bytes, consumed, consumed_bytes);
        }
        if done {
            let readings = match window_threads {
                WindowThreads::Read(before, after) => Some((before, after)),
                _ => None,
            };
            return (timeline, readings);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    fn args(flags: &[&str]) -> Args {
        Args::try_parse_from(std::iter::once("ringmq-loadgen").chain(flags.iter().copied())).expect("valid flags")
    }

    /// Actors take CPUs round-robin from --cpus, and spin only when asked: an actor that spins
    /// by default would take a CPU from the broker it measures.
    #[test]
    fn actors_are_placed_round_robin_and_spin_only_when_asked() {
        let pinned = args(&["--cpus", "1,3", "--spin-before-park-us", "500"]);
        let cpus: Vec<_> = (0..3).map(|actor| placement_of(&pinned, actor).cpu).collect();
        assert_eq!(cpus, [Some(1), Some(3), Some(1)]);
        assert_eq!(placement_of(&pinned, 2).spin_before_park, Some(Duration::from_micros(500)));
        let default = placement_of(&args(&[]), 0);
        assert_eq!((default.cpu, default.spin_before_park), (None, None));
    }
}
