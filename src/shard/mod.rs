//! Thread-per-core plumbing: which shard owns which partition ([`placement`]), the work
//! shards send each other ([`ops`]) over the channel mesh ([`mesh`]), a shard's state
//! ([`state`]) and what the owner does with the work ([`execute`]); [`groups`] runs the group
//! coordinator of the offsets-topic partitions a shard owns.
//!
//! Kernel-facing: [`mesh`] and [`execute`] use glommio; [`placement`], [`ops`] are plain Rust.

pub mod execute;
pub mod groups;
pub mod mesh;
pub mod metadata;
pub mod notify;
pub mod ops;
pub mod placement;
pub mod producer_ids;
pub mod state;
