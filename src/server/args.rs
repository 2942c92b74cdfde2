//! `ringmq serve` flags. Plain data: parsed by clap in the CLI, read by the server.

use std::net::SocketAddr;
use std::path::PathBuf;

use crate::storage::Durability;

/// Flags of `ringmq serve`.
#[derive(Clone, Debug, clap::Args)]
pub struct ServeArgs {
    /// Directory holding the logs and the broker metadata; locked while the broker runs.
    #[arg(long, default_value = "./data", env = "RINGMQ_DATA_DIR")]
    pub data_dir: PathBuf,
    /// Address every shard listens on (SO_REUSEPORT spreads connections over the shards).
    #[arg(long, default_value = "127.0.0.1:9292", env = "RINGMQ_LISTEN")]
    pub listen: SocketAddr,
    /// First shard port: shard i also listens on PORT+i on the --listen IP, served by that shard
    /// alone, so that a shard-aware client skips the cross-core hop. 0: the kernel picks a free
    /// port per shard (logged at start, and listed by Metadata); set a base where a firewall
    /// must know the ports.
    #[arg(long, default_value_t = 0, env = "RINGMQ_SHARD_PORT_BASE")]
    pub shard_port_base: u16,
    /// Number of shards, one executor pinned per core [default: every CPU this process may use].
    #[arg(long)]
    pub cores: Option<usize>,
    /// When a produce counts as durable: always (fdatasync before the ack, group commit),
    /// interval:MS (milliseconds), or never.
    #[arg(long, default_value = "always")]
    pub fsync: Durability,
    /// Segment size of new topics that do not set their own.
    #[arg(long, default_value_t = crate::storage::config::SEGMENT_BYTES_DEFAULT)]
    pub segment_bytes: u64,
    /// Age at which the active segment rolls, for new topics.
    #[arg(long, default_value_t = 7 * 24 * 3600 * 1000)]
    pub segment_ms: u64,
    /// Retention by time of new topics that do not set their own; -1 keeps data forever.
    #[arg(long, default_value_t = 7 * 24 * 3600 * 1000, allow_negative_numbers = true)]
    pub retention_ms: i64,
    /// Retention by size (per partition) of new topics that do not set their own; -1: no limit.
    #[arg(long, default_value_t = -1, allow_negative_numbers = true)]
    pub retention_bytes: i64,
    /// Largest request frame accepted (envelope + record batches); larger ones are refused
    /// before any allocation.
    #[arg(long, default_value_t = crate::protocol::MAX_FRAME_BYTES_DEFAULT)]
    pub max_frame_bytes: u32,
    /// Per-shard memory for recently appended batches, served to tailing consumers.
    #[arg(long, default_value_t = 128 << 20)]
    pub tail_cache_bytes: usize,
    /// Requests one connection may have in flight before the broker stops reading from it.
    #[arg(long, default_value_t = 64)]
    pub max_inflight_requests: usize,
    /// Bytes of request frames a shard may hold in flight, over all its connections, before
    /// it stops reading from them.
    #[arg(long, default_value_t = 256 << 20)]
    pub shard_memory_bytes: usize,
    /// Microseconds an idle shard spins before it parks its thread. A parked shard takes tens of
    /// microseconds to wake for a request from another core; spinning trades CPU for that
    /// latency. A spinning shard yields its CPU to any other runnable thread between two
    /// polls, so it can share a CPU with a client that polls too; beside a busy process it gains
    /// little (0: park at once).
    #[arg(long, default_value_t = 0)]
    pub spin_before_park_us: u64,
    /// A consumer-group member that sends no heartbeat for this long is removed and its
    /// partitions reassigned.
    #[arg(long, default_value_t = crate::group::SESSION_TIMEOUT_MS_DEFAULT)]
    pub group_session_timeout_ms: u64,
    /// Log filter: error, warn, info, debug, trace, or a tracing directive list.
    #[arg(long, default_value = "info", env = "RINGMQ_LOG")]
    pub log_level: String,
}
