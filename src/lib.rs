//! # ringmq
//!
//! A persistent, partitioned message broker for Linux NVMe servers, built thread-per-core on
//! io_uring (glommio). Producers append record batches to the partitions of a topic; consumers
//! fetch them back by offset; the data stays on disk for a retention period.
//!
//! ## Layout
//!
//! - [`model`]: offsets, epochs and ids as newtypes; plain data used by every layer.
//! - [`protocol`]: the native wire protocol: a fixed 24-byte frame header, an rkyv-archived
//!   envelope per API, and a raw payload section for record batches. Plain Rust, no I/O.
//! - [`storage`]: the per-partition log. The record batch format and its validator are plain
//!   Rust; segments, the write path and recovery use glommio's `DmaFile` (O_DIRECT on
//!   io_uring) and run on the shard that owns the partition.
//!
//! - [`group`]: consumer groups' plain-Rust core: the KIP-848 group state machine, sticky
//!   assignors, committed offsets and their offsets-topic records, idempotent-producer state.
//! - [`client`]: the Rust client: a pipelined connection, admin calls, a batching producer
//!   (FNV-1a key partitioner, sticky null keys, retries) and a validating consumer. Runs over
//!   any `futures-io` stream; no runtime types.
//! - [`runtime`]: the client's glommio glue: TCP connect, the timer, a single-executor runner.
//! - [`cli`]: the `ringmq` subcommands (`serve`, `topic`, `produce`, `consume`).
//!
//! Not built yet (see the open issues): the thread-per-core server and the load generator.

pub mod cli;
pub mod client;
pub mod group;
pub mod model;
pub mod protocol;
pub mod runtime;
pub mod server;
pub mod shard;
pub mod storage;
pub mod testing;
