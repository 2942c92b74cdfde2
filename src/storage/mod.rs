//! The per-partition log.

pub mod batch;
