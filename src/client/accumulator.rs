//! Per-partition batching for the producer: records go into an open batch per
//! (topic, partition); a batch is *closed* when the next record would push it past
//! `batch_bytes`, and *ready* when closed or older than `linger`. No I/O and no clock of its
//! own: the caller passes `now`, so every decision is a plain function of its inputs.
//!
//! `T` is what the caller attaches to each batch (the producer's delivery outcome, shared by
//! the batch's records, see [`BatchToken`]): made when the batch opens, shared with every
//! record appended to it, and handed back with the closed batch. Per batch, not per record: a
//! 1 MiB batch of 1 KiB records costs one token, not a thousand.

use bytes::Bytes;
use std::collections::hash_map::Entry;
use std::collections::VecDeque;
use std::rc::Rc;

use rustc_hash::FxHashMap;
use std::time::{Duration, Instant};

use crate::model::{PartitionId, TimestampMs};
use crate::storage::batch::{BatchBuilder, BatchBuilderConfig};

/// Fixed bytes a record adds to a batch beyond its key, value and header bytes, as an upper
/// bound (its archived struct and alignment; `BatchBuilder::estimated_bytes` is exact-ish).
const RECORD_OVERHEAD_BYTES: usize = 64;
/// Fixed bytes a header adds beyond its key and value.
const HEADER_OVERHEAD_BYTES: usize = 16;

/// Batching settings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AccumulatorConfig {
    /// Target batch size: a batch is closed before a record would take it past this. A single
    /// record larger than this gets a batch of its own.
    pub batch_bytes: usize,
    /// How long an open batch may wait for more records before it is ready anyway.
    pub linger: Duration,
}

impl Default for AccumulatorConfig {
    fn default() -> Self {
        AccumulatorConfig { batch_bytes: 256 * 1024, linger: Duration::from_millis(5) }
    }
}

/// What the accumulator needs of the token it keeps per batch.
pub trait BatchToken: Default {
    /// What each record appended to the batch gets (the producer: a handle on the outcome).
    type Share;
    fn share(&self) -> Self::Share;
}

/// No token (tests, or a caller that only wants the batching).
impl BatchToken for () {
    type Share = ();
    fn share(&self) {}
}

/// A batch ready to send: its records (not yet serialized) and the caller's token.
#[derive(Debug)]
pub struct ClosedBatch<T> {
    /// Shared with every batch of the topic: no name allocated per batch.
    pub topic: Rc<str>,
    pub partition: PartitionId,
    pub builder: BatchBuilder,
    pub token: T,
}

#[derive(Debug)]
struct OpenBatch<T> {
    builder: BatchBuilder,
    token: T,
    /// Tells this batch's entry in `Accumulator::by_age` from a closed predecessor's.
    id: u64,
}

/// A topic's index in [`Accumulator::topics`]: slots are compared and hashed as integers, and
/// appending a record allocates no topic name.
type TopicIndex = u32;

/// An open batch's topic and partition.
type Slot = (TopicIndex, PartitionId);

/// An open batch's place in the linger order.
#[derive(Debug)]
struct AgeEntry {
    opened_at: Instant,
    /// `opened_at + linger`, checked per record, so computed once per batch; `None`: a linger
    /// too long for the clock, never reached.
    lingers_until: Option<Instant>,
    slot: Slot,
    id: u64,
}

impl AgeEntry {
    /// Whether the batch has waited `linger` at `now`: a comparison, no arithmetic.
    fn lingered(&self, now: Instant) -> bool {
        self.lingers_until.is_some_and(|until| now >= until)
    }
}

/// What [`Accumulator::append`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Appended {
    /// A batch of this partition was closed by this append (the previous one, to make room, or
    /// the new one, because it reached `batch_bytes`): a sticky partitioner moves on.
    pub batch_closed: bool,
    /// The record's position in its batch: its offset is the batch's base offset plus this.
    pub record_index: u32,
}

/// What one more record finds in its partition's open batch ([`Accumulator::close_if_full`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OpenBatchRoom {
    /// No open batch: the record would open one.
    NoBatch,
    /// The open batch takes the record.
    Fits,
    /// The open batch could not take the record, and has been closed (ready to send).
    ClosedFull,
}

/// Open and closed batches of one producer.
#[derive(Debug)]
pub struct Accumulator<T> {
    config: AccumulatorConfig,
    batch_config: BatchBuilderConfig,
    /// Fx-hashed: the slot is a pair of small integers chosen by this process, looked up per record.
    open: FxHashMap<Slot, OpenBatch<T>>,
    /// Every topic appended to, by index; `topic_indexes` is the reverse map.
    topics: Vec<Rc<str>>,
    topic_indexes: FxHashMap<String, TopicIndex>,
    /// Open batches oldest first, so that the linger checks look at the front only, not at
    /// every partition (4,096 open batches made them the producer's hottest loop). Entries of
    /// batches closed by size stay until they reach the front, then are dropped.
    by_age: VecDeque<AgeEntry>,
    next_id: u64,
    closed: VecDeque<ClosedBatch<T>>,
    records: usize,
    /// The builders' estimated bytes, summed over every open and closed batch held.
    held_bytes: usize,
}

impl<T: BatchToken> Accumulator<T> {
    pub fn new(config: AccumulatorConfig, batch_config: BatchBuilderConfig) -> Accumulator<T> {
        Accumulator {
            config,
            batch_config,
            open: FxHashMap::default(),
            topics: Vec::new(),
            topic_indexes: FxHashMap::default(),
            by_age: VecDeque::new(),
            next_id: 0,
            closed: VecDeque::new(),
            records: 0,
            held_bytes: 0,
        }
    }

    pub fn config(&self) -> &AccumulatorConfig {
        &self.config
    }

    /// Records held, in open and closed batches.
    pub fn records(&self) -> usize {
        self.records
    }

    /// Estimated bytes of every batch held, open and closed (what the batches will take once
    /// built).
    pub fn held_bytes(&self) -> usize {
        self.held_bytes
    }

    pub fn is_empty(&self) -> bool {
        self.records == 0
    }

    /// Adds one record to the open batch of `topic`/`partition`, closing batches as needed.
    /// Returns what happened and the record's share of its batch's token.
    #[allow(clippy::too_many_arguments)]
    pub fn append(
        &mut self,
        topic: &str,
        partition: PartitionId,
        now: Instant,
        timestamp: TimestampMs,
        key: Option<Bytes>,
        value: Bytes,
        headers: &[(&str, &[u8])],
    ) -> (Appended, T::Share) {
        let record_bytes = record_bytes_estimate(key.as_deref(), &value, headers);
        let slot = (self.topic_index(topic), partition);
        let mut batch_closed = false;
        if self.open.get(&slot).is_some_and(|open| !self.fits(open, record_bytes)) {
            self.close(&slot);
            batch_closed = true;
        }
        let open = match self.open.entry(slot) {
            Entry::Occupied(open) => open.into_mut(),
            Entry::Vacant(vacant) => {
                let id = self.next_id;
                self.next_id += 1;
                // Callers pass a monotonic clock, so this is a push at the back.
                let at = self.by_age.partition_point(|entry| entry.opened_at <= now);
                let lingers_until = now.checked_add(self.config.linger);
                self.by_age.insert(at, AgeEntry { opened_at: now, lingers_until, slot, id });
                let builder = BatchBuilder::new(self.batch_config);
                self.held_bytes += builder.estimated_bytes();
                vacant.insert(OpenBatch { builder, token: T::default(), id })
            }
        };
        let record_index = u32::try_from(open.builder.record_count()).unwrap_or(u32::MAX);
        let bytes_before = open.builder.estimated_bytes();
        open.builder.push_shared(timestamp, key, value, headers);
        self.held_bytes += open.builder.estimated_bytes().saturating_sub(bytes_before);
        let share = open.token.share();
        self.records += 1;
        if open.builder.estimated_bytes() >= self.config.batch_bytes {
            self.close(&slot);
            batch_closed = true;
        }
        if batch_closed {
            self.drop_closed_front();
        }
        (Appended { batch_closed, record_index }, share)
    }

    /// Whether `open` takes one more record of `record_bytes` (an empty batch takes any record:
    /// one larger than `batch_bytes` gets a batch of its own).
    fn fits(&self, open: &OpenBatch<T>, record_bytes: usize) -> bool {
        open.builder.is_empty()
            || open.builder.estimated_bytes().saturating_add(record_bytes) <= self.config.batch_bytes
    }

    /// Closes the open batch of `topic`/`partition` if a record of `record_bytes`
    /// ([`record_bytes_estimate`]) would not fit it, and says what the record would find.
    ///
    /// A sticky partitioner asks before it appends, as Kafka's does (`abortOnNewBatch`,
    /// KIP-480): when the batch was full it moves on first, and the record opens a batch on the
    /// next partition. Appending instead would close the full batch and open a new one here for
    /// this one record, which then waits out its linger alone once the partitioner has moved
    /// on: a straggler batch per switch.
    pub fn close_if_full(&mut self, topic: &str, partition: PartitionId, record_bytes: usize) -> OpenBatchRoom {
        let slot = (self.topic_index(topic), partition);
        let room = match self.open.get(&slot) {
            None => OpenBatchRoom::NoBatch,
            Some(open) if self.fits(open, record_bytes) => OpenBatchRoom::Fits,
            Some(_) => OpenBatchRoom::ClosedFull,
        };
        if room == OpenBatchRoom::ClosedFull {
            self.close(&slot);
            self.drop_closed_front();
        }
        room
    }

    /// The index of `topic`, added on first use. Most producers append to one topic: the most
    /// recently added one is compared before the map is looked up.
    fn topic_index(&mut self, topic: &str) -> TopicIndex {
        if self.topics.last().is_some_and(|last| &**last == topic) {
            return (self.topics.len() - 1) as TopicIndex;
        }
        if let Some(&index) = self.topic_indexes.get(topic) {
            return index;
        }
        let index = self.topics.len() as TopicIndex;
        self.topics.push(Rc::from(topic));
        self.topic_indexes.insert(topic.to_owned(), index);
        index
    }

    fn close(&mut self, slot: &Slot) {
        if let Some(open) = self.open.remove(slot) {
            self.closed.push_back(ClosedBatch {
                topic: self.topics.get(slot.0 as usize).cloned().unwrap_or_else(|| Rc::from("")),
                partition: slot.1,
                builder: open.builder,
                token: open.token,
            });
        }
    }

    /// Whether some batch is ready at `now` (closed, or open for at least `linger`).
    /// Checked once per record: while the oldest entry has not lingered (entries are in opening
    /// order, so no batch has), it looks nothing up.
    pub fn has_ready(&self, now: Instant) -> bool {
        if !self.closed.is_empty() {
            return true;
        }
        let front_lingered = self.by_age.front().is_some_and(|front| front.lingered(now));
        front_lingered && self.oldest_open().is_some_and(|entry| entry.lingered(now))
    }

    /// Whether some batch is closed (full, or closed to make room) and waits to be drained.
    pub fn has_closed(&self) -> bool {
        !self.closed.is_empty()
    }

    /// When the oldest open batch's linger runs out (`None` when no batch is open).
    pub fn next_linger_deadline(&self) -> Option<Instant> {
        self.oldest_open().and_then(|entry| entry.lingers_until)
    }

    /// Takes every ready batch: the closed ones in the order they closed, then the open ones
    /// whose linger ran out, oldest first (all open ones when `force`, as `flush` does).
    pub fn drain_ready(&mut self, now: Instant, force: bool) -> Vec<ClosedBatch<T>> {
        while let Some(entry) = self.by_age.front() {
            if self.is_open(entry) && !force && !entry.lingered(now) {
                break;
            }
            if let Some(entry) = self.by_age.pop_front() {
                if self.is_open(&entry) {
                    self.close(&entry.slot);
                }
            }
        }
        let drained: Vec<ClosedBatch<T>> = self.closed.drain(..).collect();
        self.records -= drained.iter().map(|b| b.builder.record_count()).sum::<usize>();
        let drained_bytes: usize = drained.iter().map(|b| b.builder.estimated_bytes()).sum();
        self.held_bytes = self.held_bytes.saturating_sub(drained_bytes);
        drained
    }

    /// Whether `entry` is the age entry of a batch still open (not of one closed by size).
    fn is_open(&self, entry: &AgeEntry) -> bool {
        self.open.get(&entry.slot).is_some_and(|open| open.id == entry.id)
    }

    /// The oldest open batch's entry. Entries of closed batches before it are skipped here and
    /// dropped by [`Self::drop_closed_front`], so the skip is short.
    fn oldest_open(&self) -> Option<&AgeEntry> {
        self.by_age.iter().find(|entry| self.is_open(entry))
    }

    fn drop_closed_front(&mut self) {
        while self.by_age.front().is_some_and(|entry| !self.is_open(entry)) {
            self.by_age.pop_front();
        }
    }
}

/// An upper bound of what one record adds to a batch.
pub fn record_bytes_estimate(key: Option<&[u8]>, value: &[u8], headers: &[(&str, &[u8])]) -> usize {
    let headers_bytes: usize = headers.iter().map(|(k, v)| k.len() + v.len() + HEADER_OVERHEAD_BYTES).sum();
    RECORD_OVERHEAD_BYTES + key.map_or(0, <[u8]>::len) + value.len() + headers_bytes
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;

    use super::*;

    /// A token numbering batches in the order they open, so that tests can tell them apart.
    #[derive(Debug, PartialEq, Eq)]
    struct Opened(u32);

    thread_local! {
        static NEXT_OPENED: Cell<u32> = const { Cell::new(0) };
    }

    impl Default for Opened {
        fn default() -> Opened {
            Opened(NEXT_OPENED.with(|next| next.replace(next.get() + 1)))
        }
    }

    impl BatchToken for Opened {
        type Share = u32;
        fn share(&self) -> u32 {
            self.0
        }
    }

    fn accumulator(batch_bytes: usize, linger_ms: u64) -> Accumulator<Opened> {
        Accumulator::new(
            AccumulatorConfig { batch_bytes, linger: Duration::from_millis(linger_ms) },
            BatchBuilderConfig::default(),
        )
    }

    /// Appends a 100-byte record; what happened and the number of the record's batch.
    fn push(acc: &mut Accumulator<Opened>, partition: u32, now: Instant) -> (Appended, u32) {
        acc.append("t", PartitionId(partition), now, TimestampMs(1_000), None, Bytes::from_static(&[7u8; 100]), &[])
    }

    /// Guards the size rule and the per-batch token: a batch is closed before a record would
    /// take it past `batch_bytes`; every record shares its batch's token, at consecutive
    /// positions from 0; batches come back in order with their own token; every built batch
    /// stays under the target.
    #[test]
    fn batches_close_at_the_size_target() {
        let now = Instant::now();
        let mut acc = accumulator(1_024, 1_000);
        let mut closes = 0;
        // (batch number, records so far) per batch, in append order.
        let mut batches: Vec<(u32, usize)> = Vec::new();
        for _ in 0..20 {
            let (appended, batch) = push(&mut acc, 0, now);
            match batches.last_mut() {
                Some((last, records)) if *last == batch => {
                    assert_eq!(appended.record_index as usize, *records, "positions are consecutive");
                    *records += 1;
                }
                _ => {
                    assert_eq!(appended.record_index, 0, "a new batch starts at position 0");
                    batches.push((batch, 1));
                }
            }
            if appended.batch_closed {
                closes += 1;
            }
        }
        assert!(closes >= 2, "20 records of ~100 bytes close a 1 KiB batch");
        assert_eq!(acc.records(), 20);
        assert!(acc.has_ready(now), "closed batches are ready before linger");
        let ready = acc.drain_ready(now, false);
        assert_eq!(ready.len(), closes);
        for (batch, &(number, records)) in ready.into_iter().zip(&batches) {
            assert_eq!(batch.token, Opened(number), "batches come back in order with their token");
            assert_eq!(batch.builder.record_count(), records);
            assert!(batch.builder.estimated_bytes() <= 1_024);
            let built = batch.builder.build().unwrap();
            crate::storage::batch::validate(&built).unwrap();
        }
        // The rest stays open until linger or force.
        assert!(!acc.is_empty());
        assert!(!acc.has_ready(now));
        let rest = acc.drain_ready(now, true);
        assert_eq!(rest.len(), 1);
        let (number, records) = batches[closes];
        assert_eq!((rest[0].token.0, rest[0].builder.record_count()), (number, records));
        assert_eq!(batches.len(), closes + 1);
        assert!(acc.is_empty());
    }

    /// Guards the question a sticky partitioner asks before it appends: no open batch, an open
    /// batch with room (left open), and a full one (closed and ready, with no batch opened for
    /// the record, and no effect on another partition's batch).
    #[test]
    fn close_if_full_closes_only_a_batch_the_record_does_not_fit() {
        let now = Instant::now();
        let mut acc = accumulator(1_024, 1_000);
        let record_bytes = record_bytes_estimate(None, &[7u8; 100], &[]);
        assert_eq!(acc.close_if_full("t", PartitionId(0), record_bytes), OpenBatchRoom::NoBatch);
        push(&mut acc, 0, now);
        push(&mut acc, 1, now);
        assert_eq!(acc.close_if_full("t", PartitionId(0), record_bytes), OpenBatchRoom::Fits);
        assert!(!acc.has_ready(now), "a batch with room stays open");
        assert_eq!(acc.close_if_full("t", PartitionId(0), 1_024), OpenBatchRoom::ClosedFull);
        assert!(acc.has_closed());
        assert_eq!(acc.close_if_full("t", PartitionId(0), record_bytes), OpenBatchRoom::NoBatch);
        assert_eq!(acc.records(), 2, "closing takes no record and opens no batch");
        let ready = acc.drain_ready(now, false);
        assert_eq!(ready.iter().map(|batch| batch.partition).collect::<Vec<_>>(), [PartitionId(0)]);
        assert_eq!(acc.close_if_full("t", PartitionId(1), record_bytes), OpenBatchRoom::Fits);
    }

    /// Guards the linger rule: an open batch is not ready before `linger`, is at `linger`, and
    /// the deadline reported is the oldest batch's.
    #[test]
    fn open_batches_are_ready_after_linger() {
        let start = Instant::now();
        let mut acc = accumulator(1 << 20, 10);
        assert_eq!(acc.next_linger_deadline(), None);
        push(&mut acc, 0, start);
        push(&mut acc, 1, start + Duration::from_millis(4));
        assert_eq!(acc.next_linger_deadline(), Some(start + Duration::from_millis(10)));
        assert!(!acc.has_ready(start + Duration::from_millis(9)));
        assert!(acc.drain_ready(start + Duration::from_millis(9), false).is_empty());
        let ready = acc.drain_ready(start + Duration::from_millis(10), false);
        assert_eq!(ready.len(), 1);
        assert_eq!(ready[0].partition, PartitionId(0));
        let ready = acc.drain_ready(start + Duration::from_millis(14), false);
        assert_eq!(ready.len(), 1);
        assert_eq!(ready[0].partition, PartitionId(1));
        assert!(acc.is_empty());
    }

    /// The linger order survives batches closed by size: partition 0's first batch (opened at
    /// 0 ms) closes full at 4 ms, so its age entry goes stale; partition 1's batch, opened at 2 ms,
    /// is then the oldest open one, and what partition 0 still holds lingers from 4 ms.
    #[test]
    fn linger_counts_from_each_batch_opening_across_size_closes() {
        let start = Instant::now();
        let mut acc = accumulator(1_000, 10);
        let at = |ms: u64| start + Duration::from_millis(ms);
        push(&mut acc, 0, at(0));
        push(&mut acc, 1, at(2));
        let closed_by_size = (2..100).any(|_| push(&mut acc, 0, at(4)).0.batch_closed);
        assert!(closed_by_size, "100-byte records fill a 1,000-byte batch");
        let full = acc.drain_ready(at(5), false);
        assert!(!full.is_empty() && full.iter().all(|b| b.partition == PartitionId(0)), "only full batches");
        assert_eq!(acc.next_linger_deadline(), Some(at(12)), "partition 1 opened at 2 ms");
        assert!(!acc.has_ready(at(11)));
        let ready = acc.drain_ready(at(12), false);
        assert_eq!(ready.iter().map(|b| b.partition).collect::<Vec<_>>(), [PartitionId(1)]);
        if !acc.is_empty() {
            assert_eq!(acc.next_linger_deadline(), Some(at(14)), "partition 0's open batch opened at 4 ms");
            assert!(acc.drain_ready(at(13), false).is_empty());
            let ready = acc.drain_ready(at(14), false);
            assert_eq!(ready.iter().map(|b| b.partition).collect::<Vec<_>>(), [PartitionId(0)]);
        }
        assert!(acc.is_empty());
        assert_eq!(acc.next_linger_deadline(), None);
    }

    /// A record bigger than the target gets a batch of its own instead of being refused.
    #[test]
    fn oversized_record_gets_its_own_batch() {
        let now = Instant::now();
        let mut acc = accumulator(256, 1_000);
        let (_, first) = push(&mut acc, 0, now);
        let (appended, second) = acc.append(
            "t",
            PartitionId(0),
            now,
            TimestampMs(1),
            Some(Bytes::from_static(b"k")),
            Bytes::from_static(&[1u8; 4096]),
            &[("h", b"v")],
        );
        assert!(appended.batch_closed);
        assert_eq!(appended.record_index, 0);
        assert_ne!(first, second);
        let ready = acc.drain_ready(now, false);
        assert_eq!(ready.len(), 2);
        assert_eq!((&ready[0].token, ready[0].builder.record_count()), (&Opened(first), 1));
        assert_eq!((&ready[1].token, ready[1].builder.record_count()), (&Opened(second), 1));
    }

    /// Guards the topic indexes: the same partition number of two topics is two batches, each
    /// closed batch names its own topic, and going back to an earlier topic finds its batch.
    #[test]
    fn topics_keep_their_own_batches() {
        let now = Instant::now();
        let mut acc = accumulator(1 << 20, 60_000);
        let mut batch_of: Vec<(&str, u32, u32)> = Vec::new();
        for topic in ["a", "b", "a", "c", "b", "a"] {
            let (appended, batch) =
                acc.append(topic, PartitionId(0), now, TimestampMs(1), None, Bytes::from_static(b"v"), &[]);
            batch_of.push((topic, batch, appended.record_index));
        }
        let same_batch = |x: usize, y: usize| batch_of[x].1 == batch_of[y].1;
        assert!(same_batch(0, 2) && same_batch(2, 5) && same_batch(1, 4) && !same_batch(0, 1) && !same_batch(3, 0));
        assert_eq!(batch_of.iter().map(|b| b.2).collect::<Vec<_>>(), [0, 0, 1, 0, 1, 2]);
        let drained = acc.drain_ready(now, true);
        let mut by_topic: Vec<(String, usize)> =
            drained.into_iter().map(|batch| (batch.topic.to_string(), batch.builder.record_count())).collect();
        by_topic.sort();
        assert_eq!(by_topic, vec![("a".to_owned(), 3), ("b".to_owned(), 2), ("c".to_owned(), 1)]);
        assert!(acc.is_empty());
    }
}
