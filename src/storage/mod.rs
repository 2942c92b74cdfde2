//! The per-partition log.
