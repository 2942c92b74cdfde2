//! The Rust client: a connection with pipelined requests, admin calls, a batching producer and
//! a fetching consumer.
//!
//! Runtime-agnostic: everything here works over any `futures-io` `AsyncRead + AsyncWrite +
//! Unpin` stream, and waits on timers only through the [`Sleeper`] trait. The glommio glue
//! (TCP connect, the sleeper, a single-executor runner for the CLI) is in
//! [`crate::runtime`]. Types here are owned by one task on one thread (`!Send` where they hold
//! an `Rc`), as everything is in a thread-per-core program.
//!
//! - [`connection`]: frames out and in, correlation ids, pipelining, timeouts.
//! - [`admin`]: ApiVersions, Metadata, CreateTopic, DeleteTopic, ListOffsets, and the group
//!   calls (ListGroups, DescribeGroup, OffsetFetch, OffsetCommit, LeaveGroup).
//! - [`partitioner`]: which partition a record goes to (FNV-1a for keys, sticky for null keys).
//! - [`accumulator`]: per-partition batches and the "send now?" decisions (size, linger).
//! - [`retry`]: exponential back-off.
//! - [`idempotence`]: the idempotent producer's sequences and in-flight bound.
//! - [`reconnect`]: [`Connect`], how a producer opens a new connection after a drop.
//! - [`producer`]: [`Producer`], built from the above.
//! - [`shard_aware`]: [`ShardAwareProducer`], one [`Producer`] per broker shard on the shard's
//!   own port, so that produces skip the broker's cross-core hop.
//! - [`consumer`]: [`Consumer`] and the decoding of fetched batches into records.
//! - [`shard_aware_consumer`]: [`ShardAwareConsumer`], one [`Consumer`] per broker shard on the
//!   shard's own port, each with its own long poll, so that no fetch spans two shards.
//! - [`group`]: [`GroupConsumer`], a consumer-group member on top of [`Consumer`].

pub mod accumulator;
pub mod admin;
mod batch_buffers;
pub mod connection;
pub mod consumer;
pub mod error;
pub mod group;
pub mod idempotence;
pub mod partitioner;
pub mod producer;
pub mod reconnect;
pub mod record_clock;
pub mod retry;
pub mod shard_aware;
pub mod shard_aware_consumer;

#[cfg(test)]
mod fake_broker;
#[cfg(test)]
mod shard_aware_tests;
#[cfg(test)]
mod tests;

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

pub use accumulator::{Accumulator, AccumulatorConfig, BatchToken};
pub use admin::{Committer, GroupOffset, TopicConfig, TopicPartitionOffset};
pub use connection::{Connection, ConnectionConfig, Pending, Response};
pub use consumer::{Consumer, ConsumerConfig, ConsumerRecord, SeekTo};
pub use error::{ClientError, ClientResult};
pub use group::{DeliveryMode, GroupConsumer, GroupConsumerConfig};
pub use partitioner::{partition_for_key, StickyPartitioner};
pub use producer::{Acks, Delivery, DeliveryFuture, Producer, ProducerConfig};
pub use reconnect::Connect;
pub use retry::Backoff;
pub use shard_aware::{ShardAwareProducer, ShardConnect};
pub use shard_aware_consumer::ShardAwareConsumer;

/// Timers, supplied by the runtime (`crate::runtime::GlommioSleeper` on glommio).
pub trait Sleeper {
    /// A future that completes after `duration`.
    fn sleep(&self, duration: Duration) -> Pin<Box<dyn Future<Output = ()>>>;
}
