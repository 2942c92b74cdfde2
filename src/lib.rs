//! # ringmq
//!
//! A persistent, partitioned message broker for Linux NVMe servers, built thread-per-core on
//! io_uring (glommio). Producers append record batches to the partitions of a topic; consumers
//! fetch them back by offset; the data stays on disk for a retention period.
//!
//! ## How a produce travels
//!
//! `ringmq serve` starts one glommio executor per core — a *shard* — each listening on the same
//! port (SO_REUSEPORT). A client's connection lands on some shard, which reads frames (a fixed
//! header checked before any allocation, an rkyv envelope, a raw payload of record batches),
//! validates every batch (length, CRC, archive) and cuts the payload into per-partition batches
//! in place. Each partition belongs to one shard, chosen by a stable hash of topic and
//! partition; work for a partition owned elsewhere crosses cores over a bounded channel mesh,
//! one hop there and one back — unless the client connected to the owner's own *shard port*
//! (listed by Metadata; `client::ShardAwareProducer` and `client::ShardAwareConsumer` do).
//! The owner stamps offsets into the batch in place, copies it into its aligned write buffer,
//! and writes it with O_DIRECT; with
//! `--fsync always` the answer waits for an fdatasync that covers it, shared with every append
//! waiting at the same time. A fetch goes the same way and is answered with the stored batches,
//! unchanged, from the shard's in-memory tail cache or by aligned DMA reads; a fetch waiting for
//! data is woken by the append.
//!
//! ## Layout
//!
//! - [`model`]: offsets, epochs and ids as newtypes; plain data used by every layer.
//! - [`protocol`]: the wire protocol: frames, one module per API, stable error codes. No I/O.
//! - [`storage`]: the per-partition log. The record batch format, indexes and scans are plain
//!   Rust; segments, the write pipeline and recovery use glommio's `DmaFile`.
//! - [`shard`]: placement (partition → shard), the mesh and the work shards send each other,
//!   a shard's state, what the owner does (the idempotence check and append, producer-id
//!   blocks), and the consumer-group coordinator glue (with the snapshot compaction of the
//!   offsets topic).
//! - [`server`]: `ringmq serve`: start-up checks, listeners, connections, one handler per API.
//! - [`group`]: consumer groups' plain-Rust core: the KIP-848 group state machine, sticky
//!   assignors, committed offsets, their offsets-topic records and when to snapshot them,
//!   idempotent-producer state.
//! - [`client`]: the Rust client: a pipelined connection, admin calls (topics, groups), a
//!   batching producer (FNV-1a key partitioner, sticky null keys, retries, idempotence by
//!   default with acks=all, reconnection), a validating consumer and a consumer-group member
//!   (`client::GroupConsumer`). Runs over any `futures-io` stream; no runtime types.
//! - [`runtime`]: the client's glommio glue: TCP connect, the timer, a single-executor runner.
//! - [`sys`]: kernel-facing helpers both sides use, without a runtime: the non-blocking
//!   receive of large frames straight into a buffer's spare capacity, and each thread's wait
//!   for its CPU (every shard warns when other work on its core holds it up).
//! - [`cli`]: the `ringmq` subcommands (`serve`, `topic`, `produce`, `consume`, `group`).
//! - [`testing`]: helpers shared by tests and benchmarks.
//!
//! glommio types stay in the kernel-facing modules (`storage::segment`, `storage::log`,
//! `shard::mesh`, `shard::execute`, `server`, `runtime`); the protocol, the batch format, the
//! group logic and the client's batching are plain Rust, tested and fuzzed without a runtime.

pub mod cli;
pub mod client;
pub mod group;
pub mod model;
pub mod protocol;
pub mod runtime;
pub mod server;
pub mod shard;
pub mod storage;
pub mod sys;
pub mod testing;
