//! The in-memory tail of a partition's log: the most recently appended batches, so that a
//! consumer tailing the log is served from memory (O_DIRECT bypasses the page cache).
//!
//! Plain Rust. One [`TailCache`] per partition, all of a shard's caches drawing on one
//! [`TailCacheBudget`]. Invariant kept by the log: every batch not yet written to the segment
//! file is in the cache, so a batch leaves the cache only once it is readable from disk
//! (`evictable_below`).
//!
//! The budget counts batch bytes. A cached batch is a slice that keeps its whole buffer alive,
//! so the produce handler hands over small batches in allocations of their own
//! (`server::handlers::produce::detach_if_small`): the memory held stays within a small
//! multiple of the budget whatever the requests look like.

use std::cell::Cell;
use std::collections::VecDeque;
use std::rc::Rc;

use bytes::Bytes;

use crate::model::Offset;

/// A shard-wide byte budget shared by the tail caches of the partitions the shard owns.
/// Lives on one shard (`Rc`, not `Send`).
#[derive(Debug)]
pub struct TailCacheBudget {
    limit_bytes: usize,
    used_bytes: Cell<usize>,
}

impl TailCacheBudget {
    pub fn new(limit_bytes: usize) -> Rc<Self> {
        Rc::new(TailCacheBudget { limit_bytes, used_bytes: Cell::new(0) })
    }

    pub fn used_bytes(&self) -> usize {
        self.used_bytes.get()
    }

    pub fn limit_bytes(&self) -> usize {
        self.limit_bytes
    }

    fn over_budget(&self) -> bool {
        self.used_bytes.get() > self.limit_bytes
    }
}

#[derive(Debug)]
struct CachedBatch {
    base_offset: Offset,
    /// Offset after the batch's last record.
    next_offset: Offset,
    bytes: Bytes,
}

/// Recent batches of one partition, oldest first, contiguous in offsets.
#[derive(Debug)]
pub struct TailCache {
    budget: Rc<TailCacheBudget>,
    batches: VecDeque<CachedBatch>,
}

impl TailCache {
    pub fn new(budget: Rc<TailCacheBudget>) -> Self {
        TailCache { budget, batches: VecDeque::new() }
    }

    /// The first offset the cache can serve, if any.
    pub fn first_offset(&self) -> Option<Offset> {
        self.batches.front().map(|batch| batch.base_offset)
    }

    pub fn len(&self) -> usize {
        self.batches.len()
    }

    pub fn is_empty(&self) -> bool {
        self.batches.is_empty()
    }

    /// Adds the batch `[base_offset, next_offset)`, which must follow the cached ones.
    pub fn push(&mut self, base_offset: Offset, next_offset: Offset, bytes: Bytes) {
        debug_assert!(self.batches.back().is_none_or(|last| last.next_offset == base_offset));
        self.budget.used_bytes.set(self.budget.used_bytes.get() + bytes.len());
        self.batches.push_back(CachedBatch { base_offset, next_offset, bytes });
    }

    /// While the shard is over its budget, drops this partition's oldest batches that end at or
    /// before `written_offset` (they are on disk).
    pub fn evict(&mut self, written_offset: Offset) {
        while self.budget.over_budget() {
            match self.batches.front() {
                Some(front) if front.next_offset <= written_offset => self.pop_front(),
                _ => break,
            }
        }
    }

    /// Whole batches starting with the one that holds `offset`, up to `max_bytes` (but always at
    /// least one batch). `None` when the cache does not hold `offset`.
    pub fn read(&self, offset: Offset, max_bytes: usize) -> Option<Vec<Bytes>> {
        let first = self.first_offset()?;
        if offset < first {
            return None;
        }
        let start = self.batches.partition_point(|batch| batch.next_offset <= offset);
        if start == self.batches.len() {
            return None;
        }
        let mut taken_bytes = 0usize;
        let mut out = Vec::new();
        for batch in self.batches.range(start..) {
            if !out.is_empty() && taken_bytes + batch.bytes.len() > max_bytes {
                break;
            }
            taken_bytes += batch.bytes.len();
            out.push(batch.bytes.clone());
        }
        Some(out)
    }

    /// Drops every batch at or after `offset` (the log was truncated there). A batch that
    /// straddles `offset` is dropped too.
    pub fn truncate_from(&mut self, offset: Offset) {
        while self.batches.back().is_some_and(|batch| batch.next_offset > offset) {
            if let Some(batch) = self.batches.pop_back() {
                self.release(batch.bytes.len());
            }
        }
    }

    /// Drops every batch that ends at or before `offset` (retention moved the log start).
    pub fn drop_below(&mut self, offset: Offset) {
        while self.batches.front().is_some_and(|batch| batch.next_offset <= offset) {
            self.pop_front();
        }
    }

    fn pop_front(&mut self) {
        if let Some(batch) = self.batches.pop_front() {
            self.release(batch.bytes.len());
        }
    }

    fn release(&self, bytes: usize) {
        self.budget.used_bytes.set(self.budget.used_bytes.get().saturating_sub(bytes));
    }
}

impl Drop for TailCache {
    fn drop(&mut self) {
        let cached: usize = self.batches.iter().map(|batch| batch.bytes.len()).sum();
        self.release(cached);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch(len: usize) -> Bytes {
        Bytes::from(vec![0u8; len])
    }

    fn filled(budget: &Rc<TailCacheBudget>) -> TailCache {
        let mut cache = TailCache::new(budget.clone());
        cache.push(Offset(0), Offset(10), batch(100));
        cache.push(Offset(10), Offset(20), batch(100));
        cache.push(Offset(20), Offset(30), batch(100));
        cache
    }

    #[test]
    fn reads_whole_batches_from_the_one_holding_the_offset() {
        let budget = TailCacheBudget::new(1 << 20);
        let cache = filled(&budget);
        assert_eq!(cache.read(Offset(15), 1000).map(|b| b.len()), Some(2));
        assert_eq!(cache.read(Offset(0), 150).map(|b| b.len()), Some(1));
        assert_eq!(cache.read(Offset(0), 1).map(|b| b.len()), Some(1), "at least one batch");
        assert_eq!(cache.read(Offset(30), 1000), None);
    }

    #[test]
    fn evicts_only_written_batches_and_only_when_over_budget() {
        let budget = TailCacheBudget::new(150);
        let mut cache = filled(&budget);
        cache.evict(Offset(10));
        assert_eq!(cache.first_offset(), Some(Offset(10)), "only the written batch may go");
        cache.evict(Offset(30));
        assert_eq!(budget.used_bytes(), 100);
        assert_eq!(cache.first_offset(), Some(Offset(20)));
        drop(cache);
        assert_eq!(budget.used_bytes(), 0, "dropping a cache returns its bytes");
    }

    #[test]
    fn truncation_and_retention_release_bytes() {
        let budget = TailCacheBudget::new(1 << 20);
        let mut cache = filled(&budget);
        cache.truncate_from(Offset(15));
        assert_eq!(cache.len(), 1);
        cache.drop_below(Offset(10));
        assert!(cache.is_empty());
        assert_eq!(budget.used_bytes(), 0);
    }
}
