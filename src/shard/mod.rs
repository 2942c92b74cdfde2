//! Thread-per-core plumbing: which shard owns which partition ([`placement`]), the work
//! shards send each other ([`ops`]) over the channel mesh ([`mesh`]), a shard's state
//! ([`state`]) and what the owner does with the work ([`execute`], with the idempotent append
//! in [`append`]); [`groups`] runs the group coordinator of the offsets-topic partitions a
//! shard owns, [`offsets_snapshot`] compacts them; [`producer_ids`] hands out producer ids on
//! shard 0.
//!
//! Kernel-facing: [`mesh`] and [`execute`] use glommio; [`placement`], [`ops`] are plain Rust.

pub mod append;
pub mod execute;
pub mod groups;
pub mod mesh;
pub mod metadata;
pub mod notify;
pub mod offsets_snapshot;
pub mod ops;
pub mod placement;
pub mod produce;
pub mod producer_ids;
pub mod state;
pub mod turns;
