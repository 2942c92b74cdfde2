//! Consumer groups, client side: [`GroupConsumer`] joins a group, consumes the partitions the
//! coordinator assigns it and commits its progress with the chosen [`DeliveryMode`].
//!
//! - [`membership`]: the member's half of the KIP-848 heartbeat protocol, no I/O.
//! - [`consumer`]: [`GroupConsumer`], driving a [`crate::client::Consumer`] with it.

pub mod consumer;
pub mod membership;

pub use consumer::{
    DeliveryMode, GroupConsumer, GroupConsumerConfig, AUTO_COMMIT_INTERVAL_MS_DEFAULT, MAX_POLL_RECORDS_DEFAULT,
};
pub use membership::{AssignmentChange, HeartbeatFailure, Membership, TopicPartition};

#[cfg(test)]
mod tests;
