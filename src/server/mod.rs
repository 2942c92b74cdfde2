//! The broker: thread-per-core shards, listeners, connections and the API handlers.
//!
//! [`run`] parses nothing (the CLI did), checks the environment, locks the data directory,
//! loads the topic table, binds one SO_REUSEPORT socket per shard on the shared port and one
//! socket per shard on its own port ([`listener`]), and starts one pinned glommio executor per
//! shard ([`shard_main`]). SIGINT or SIGTERM set a flag that every shard watches:
//! they stop accepting, finish in-flight requests, flush and fsync their logs, mark them clean
//! and exit; the process then exits 0.

pub mod args;
pub mod connection;
pub mod handlers;
pub mod listener;
pub mod routing;
pub mod shard_main;
pub mod startup;
pub mod topics;

use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

pub use args::ServeArgs;
use glommio::channels::channel_mesh::MeshBuilder;
use glommio::{LocalExecutorBuilder, Placement};

use crate::shard::mesh::MESH_CHANNEL_CAPACITY;
use crate::shard::state::BrokerSettings;
use crate::storage::DataDirLock;
use shard_main::{run_shard, ShardListeners, Shared};
use topics::TopicTable;

/// Runs the broker until SIGINT/SIGTERM. Returns the process exit code.
pub fn run(args: ServeArgs) -> ExitCode {
    if let Err(message) = startup::init_logging(&args.log_level) {
        eprintln!("ringmq: {message}");
        return ExitCode::from(2);
    }
    match serve(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            tracing::error!("{message}");
            eprintln!("ringmq: {message}");
            ExitCode::FAILURE
        }
    }
}

fn serve(args: ServeArgs) -> Result<(), String> {
    let cpus = startup::usable_cpus();
    let shard_count = args.cores.unwrap_or(cpus.len()).max(1);
    if args.group_session_timeout_ms == 0 {
        return Err("--group-session-timeout-ms must be at least 1".into());
    }
    if args.cores == Some(0) {
        return Err("--cores must be at least 1".into());
    }
    let io_mode = startup::check_environment(&args, shard_count)?;
    let _lock = DataDirLock::acquire(&args.data_dir).map_err(|e| e.to_string())?;
    let topics = TopicTable::load(&args.data_dir).map_err(|e| e.to_string())?;
    let (listener_fds, bound) = listener::bind_reuseport(args.listen, shard_count)
        .map_err(|e| format!("cannot listen on {}: {e}", args.listen))?;
    let shard_ports =
        listener::bind_shard_ports(bound.ip(), args.shard_port_base, shard_count).map_err(|e| e.to_string())?;
    let settings = Arc::new(BrokerSettings {
        data_dir: args.data_dir.clone(),
        durability: args.fsync,
        shard_count,
        shard_ports: shard_ports.ports.clone(),
        tail_cache_bytes: args.tail_cache_bytes,
        max_frame_bytes: args.max_frame_bytes,
        max_inflight_requests: args.max_inflight_requests,
        shard_memory_bytes: args.shard_memory_bytes,
        default_segment_bytes: args.segment_bytes,
        default_segment_ms: args.segment_ms,
        default_retention_ms: args.retention_ms,
        default_retention_bytes: args.retention_bytes,
        group_session_timeout_ms: args.group_session_timeout_ms,
    });
    let topics = Arc::new(with_offsets_topic(topics, &settings)?);
    let shutdown = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(signal, shutdown.clone()).map_err(|e| format!("cannot handle signals: {e}"))?;
    }
    tracing::info!(
        shards = shard_count,
        data_dir = %args.data_dir.display(),
        listen = %bound,
        shard_ports = ?shard_ports.ports,
        fsync = %args.fsync,
        topics = topics.len(),
        io_memory = %io_mode,
        "ringmq starting"
    );
    let mesh = MeshBuilder::full(shard_count, MESH_CHANNEL_CAPACITY);
    let drained = Arc::new(AtomicUsize::new(0));
    let started = Arc::new(AtomicUsize::new(0));
    let mut executors = Vec::with_capacity(shard_count);
    let listeners = listener_fds.into_iter().zip(shard_ports.fds).enumerate();
    for (index, (shared_fd, own_fd)) in listeners {
        let fds = ShardListeners { index, shared: shared_fd, own: own_fd };
        let placement = match cpus.get(index % cpus.len().max(1)) {
            Some(&cpu) if shard_count <= cpus.len() => Placement::Fixed(cpu),
            _ => Placement::Unbound,
        };
        let shared = Shared {
            settings: settings.clone(),
            topics: topics.clone(),
            mesh: mesh.clone(),
            shutdown: shutdown.clone(),
            drained: drained.clone(),
            started: started.clone(),
        };
        let mut builder = LocalExecutorBuilder::new(placement).name(&format!("ringmq-shard-{index}"));
        if args.spin_before_park_us > 0 {
            builder = builder.spin_before_park(std::time::Duration::from_micros(args.spin_before_park_us));
        }
        let executor = builder
            .spawn(move || run_shard(fds, shared))
            .map_err(|e| format!("cannot start executor {index}: {e} (is io_uring allowed? see tuning/README.md)"))?;
        executors.push(executor);
    }
    while started.load(Ordering::SeqCst) < shard_count && !shutdown.load(Ordering::SeqCst) {
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    if !shutdown.load(Ordering::SeqCst) {
        tracing::info!(listen = %bound, shards = shard_count, shard_ports = ?settings.shard_ports, "ringmq ready");
    }
    let mut failures = Vec::new();
    for (index, executor) in executors.into_iter().enumerate() {
        match executor.join() {
            Ok(Ok(())) => {}
            Ok(Err(message)) => failures.push(message),
            Err(error) => failures.push(format!("shard {index} stopped abnormally: {error:?}")),
        }
    }
    if failures.is_empty() {
        tracing::info!("ringmq stopped cleanly");
        Ok(())
    } else {
        Err(failures.join("; "))
    }
}

/// The topic table with the internal offsets topic, created (and persisted) if it is missing,
/// before any shard starts: every shard then opens its offsets partitions with the rest, and
/// its group coordinator can load before it serves. Creating it here rather than through
/// shard 0's create path avoids a second `ApplyTopics` racing with the shards' first one.
fn with_offsets_topic(topics: TopicTable, settings: &BrokerSettings) -> Result<TopicTable, String> {
    let Some(next) = topics.with_topic(crate::shard::groups::offsets_topic_config(settings)) else {
        return Ok(topics);
    };
    next.persist(&settings.data_dir).map_err(|e| format!("cannot create the offsets topic: {e}"))?;
    tracing::info!(topic = crate::group::OFFSETS_TOPIC, "topic created");
    Ok(next)
}
