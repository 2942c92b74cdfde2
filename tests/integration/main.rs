//! ringmq's integration tests: one binary, one module per scenario family.
//!
//! Every test uses temp directories, bounds its loops in count and time, and stops every
//! process it starts.

mod bad_input;
mod broker_basic;
mod broker_order;
mod broker_support;
mod cli;
mod group_scenarios;
mod groups;
mod idempotence;
mod offsets_compaction;
mod produce_request;
mod shard_ports;
mod startup;
mod storage_corruption;
mod storage_crash;
mod storage_model;
mod support;
