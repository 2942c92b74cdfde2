//! Idempotent producers: per partition, the last batches of each producer id, to drop a retried
//! duplicate and refuse a gap; and the producer-id allocator behind InitProducerId.
//!
//! [`PartitionProducerState`] is owned by the partition's shard, next to its log. It is checked
//! before an idempotent batch is appended ([`PartitionProducerState::check`]) and updated after
//! ([`PartitionProducerState::record`]); at start-up it is rebuilt from the batch headers of the
//! log ([`PartitionProducerState::replay`]).

use std::collections::{BTreeMap, VecDeque};

use crate::model::{Offset, ProducerEpoch, ProducerId};
use crate::protocol::ErrorCode;

/// Batches remembered per producer and partition (Kafka's value): a producer has at most this
/// many batches in flight per partition, so a retry is always one of them.
pub const PRODUCER_BATCHES_REMEMBERED: usize = 5;

/// Producers remembered per partition. Producer ids cost the client nothing (InitProducerId,
/// or any id written into a batch header), so the state is bounded: past this many, the
/// producer whose newest batch is the oldest is forgotten, and it is then accepted at any
/// sequence, like a producer whose batches retention deleted. About 200 bytes per producer.
pub const PRODUCERS_PER_PARTITION_MAX: usize = 10_000;

/// What to do with an idempotent batch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SequenceCheck {
    /// The next batch: append it, then [`PartitionProducerState::record`] it.
    Accept,
    /// Already appended at this base offset: answer success with it, append nothing.
    Duplicate(Offset),
    /// Not the next sequence (a gap, or a new epoch not starting at 0): refuse.
    OutOfOrderSequence,
    /// An epoch older than the producer's latest: a zombie; refuse.
    ProducerFenced,
}

impl SequenceCheck {
    /// The wire code for the produce response (`None` for accepted and duplicate batches).
    pub fn error_code(self) -> ErrorCode {
        match self {
            SequenceCheck::Accept | SequenceCheck::Duplicate(_) => ErrorCode::None,
            SequenceCheck::OutOfOrderSequence => ErrorCode::OutOfOrderSequence,
            SequenceCheck::ProducerFenced => ErrorCode::ProducerFenced,
        }
    }
}

/// The producer fields of an appended batch's header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProducerBatch {
    pub producer_id: ProducerId,
    pub producer_epoch: ProducerEpoch,
    pub base_sequence: i32,
    pub record_count: u32,
    pub base_offset: Offset,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct BatchSequences {
    first: i32,
    last: i32,
    base_offset: Offset,
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct ProducerEntry {
    epoch: ProducerEpoch,
    /// Oldest first, at most [`PRODUCER_BATCHES_REMEMBERED`].
    batches: VecDeque<BatchSequences>,
}

/// The last sequence of a batch: sequences wrap from `i32::MAX` to 0, as in Kafka.
fn last_sequence(base_sequence: i32, record_count: u32) -> i32 {
    let span = i64::from(record_count.max(1)) - 1;
    ((i64::from(base_sequence) + span) % (i64::from(i32::MAX) + 1)) as i32
}

fn next_sequence(last: i32) -> i32 {
    if last == i32::MAX {
        0
    } else {
        last + 1
    }
}

/// Idempotence state of one partition. Owned by the partition's shard.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PartitionProducerState {
    producers: BTreeMap<ProducerId, ProducerEntry>,
}

impl PartitionProducerState {
    pub fn new() -> PartitionProducerState {
        PartitionProducerState::default()
    }

    /// Classifies a batch before it is appended. Pure: call [`Self::record`] after the append.
    ///
    /// A producer this partition has no state for is accepted at any sequence: its state may
    /// have gone with deleted segments (retention), and refusing would wedge it for good.
    pub fn check(
        &self,
        producer_id: ProducerId,
        epoch: ProducerEpoch,
        base_sequence: i32,
        record_count: u32,
    ) -> SequenceCheck {
        if base_sequence < 0 || record_count == 0 {
            return SequenceCheck::OutOfOrderSequence;
        }
        let Some(entry) = self.producers.get(&producer_id) else { return SequenceCheck::Accept };
        if epoch < entry.epoch {
            return SequenceCheck::ProducerFenced;
        }
        if epoch > entry.epoch {
            // A new epoch restarts the sequence.
            return if base_sequence == 0 { SequenceCheck::Accept } else { SequenceCheck::OutOfOrderSequence };
        }
        let last = last_sequence(base_sequence, record_count);
        if let Some(batch) = entry.batches.iter().find(|b| b.first == base_sequence && b.last == last) {
            return SequenceCheck::Duplicate(batch.base_offset);
        }
        match entry.batches.back() {
            Some(newest) if base_sequence == next_sequence(newest.last) => SequenceCheck::Accept,
            None => SequenceCheck::Accept,
            Some(_) => SequenceCheck::OutOfOrderSequence,
        }
    }

    /// Remembers an appended batch (after [`Self::check`] said `Accept`, or during replay).
    pub fn record(&mut self, batch: &ProducerBatch) {
        if batch.producer_id == ProducerId::NONE {
            return;
        }
        if !self.producers.contains_key(&batch.producer_id) && self.producers.len() >= PRODUCERS_PER_PARTITION_MAX {
            self.forget_least_recent();
        }
        let entry = self
            .producers
            .entry(batch.producer_id)
            .or_insert_with(|| ProducerEntry { epoch: batch.producer_epoch, batches: VecDeque::new() });
        if batch.producer_epoch > entry.epoch {
            entry.epoch = batch.producer_epoch;
            entry.batches.clear();
        }
        entry.batches.push_back(BatchSequences {
            first: batch.base_sequence,
            last: last_sequence(batch.base_sequence, batch.record_count),
            base_offset: batch.base_offset,
        });
        while entry.batches.len() > PRODUCER_BATCHES_REMEMBERED {
            entry.batches.pop_front();
        }
    }

    /// Forgets the producer whose newest batch has the lowest offset (linear: runs only when a
    /// new producer arrives at the bound).
    fn forget_least_recent(&mut self) {
        let oldest = self
            .producers
            .iter()
            .min_by_key(|(_, entry)| entry.batches.back().map(|batch| batch.base_offset))
            .map(|(id, _)| *id);
        if let Some(id) = oldest {
            self.producers.remove(&id);
        }
    }

    /// Producers remembered.
    pub fn producer_count(&self) -> usize {
        self.producers.len()
    }

    /// Rebuilds the state from the log's batch headers, oldest first. Batches without a
    /// producer id are skipped.
    pub fn replay<'a>(batches: impl IntoIterator<Item = &'a ProducerBatch>) -> PartitionProducerState {
        let mut state = PartitionProducerState::new();
        for batch in batches {
            state.record(batch);
        }
        state
    }

    /// The producer's current epoch here, if known.
    pub fn epoch_of(&self, producer_id: ProducerId) -> Option<ProducerEpoch> {
        self.producers.get(&producer_id).map(|entry| entry.epoch)
    }
}

/// Hands out producer ids and epochs (InitProducerId). One per broker (on shard 0), until the
/// cluster has a controller to hand out id blocks.
///
/// Ids must never be reused across restarts: the broker persists a bound above
/// [`Self::next_producer_id`] in blocks before handing out an id of the block, and restores
/// with [`ProducerIdManager::new`] from the persisted bound (`crate::shard::producer_ids`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ProducerIdManager {
    next_producer_id: i64,
    transactional: BTreeMap<String, (ProducerId, ProducerEpoch)>,
}

impl ProducerIdManager {
    pub fn new(next_producer_id: i64) -> ProducerIdManager {
        ProducerIdManager { next_producer_id: next_producer_id.max(0), transactional: BTreeMap::new() }
    }

    pub fn next_producer_id(&self) -> i64 {
        self.next_producer_id
    }

    /// A fresh id at epoch 0, or for a transactional id its id with the epoch bumped (which
    /// fences the producer that had it). An exhausted epoch moves to a fresh id.
    pub fn init(&mut self, transactional_id: Option<&str>) -> (ProducerId, ProducerEpoch) {
        let Some(tx) = transactional_id else { return (self.allocate(), ProducerEpoch(0)) };
        let next = match self.transactional.get(tx) {
            Some(&(id, epoch)) if epoch.0 < i16::MAX - 1 => (id, ProducerEpoch(epoch.0 + 1)),
            _ => (self.allocate(), ProducerEpoch(0)),
        };
        self.transactional.insert(tx.to_owned(), next);
        next
    }

    fn allocate(&mut self) -> ProducerId {
        let id = ProducerId(self.next_producer_id);
        self.next_producer_id += 1;
        id
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const P: ProducerId = ProducerId(7);
    const E0: ProducerEpoch = ProducerEpoch(0);

    fn batch(epoch: i16, base_sequence: i32, record_count: u32, base_offset: u64) -> ProducerBatch {
        ProducerBatch {
            producer_id: P,
            producer_epoch: ProducerEpoch(epoch),
            base_sequence,
            record_count,
            base_offset: Offset(base_offset),
        }
    }

    /// Guards the idempotence rules: the next sequence is accepted, a retry of any of the last
    /// five batches is a duplicate with its original offset, a gap or an older batch is out of
    /// order.
    #[test]
    fn duplicates_and_gaps() {
        let mut state = PartitionProducerState::new();
        assert_eq!(state.check(P, E0, 0, 10), SequenceCheck::Accept);
        state.record(&batch(0, 0, 10, 100));
        assert_eq!(state.check(P, E0, 0, 10), SequenceCheck::Duplicate(Offset(100)));
        assert_eq!(state.check(P, E0, 10, 5), SequenceCheck::Accept);
        assert_eq!(state.check(P, E0, 11, 5), SequenceCheck::OutOfOrderSequence);
        assert_eq!(state.check(P, E0, 0, 3), SequenceCheck::OutOfOrderSequence, "same start, other length");
        for i in 1..=6u32 {
            state.record(&batch(0, (i * 10) as i32, 10, 100 + u64::from(i) * 10));
        }
        // Only the last five batches are remembered: the first two retries are now unknown.
        assert_eq!(state.check(P, E0, 10, 10), SequenceCheck::OutOfOrderSequence);
        assert_eq!(state.check(P, E0, 20, 10), SequenceCheck::Duplicate(Offset(120)));
        assert_eq!(state.check(P, E0, 60, 10), SequenceCheck::Duplicate(Offset(160)));
        assert_eq!(state.check(P, E0, 70, 1), SequenceCheck::Accept);
        assert_eq!(state.check(P, E0, -1, 1), SequenceCheck::OutOfOrderSequence);
        assert_eq!(state.check(P, E0, 70, 0), SequenceCheck::OutOfOrderSequence);
        assert_eq!(SequenceCheck::Duplicate(Offset(1)).error_code(), ErrorCode::None);
        assert_eq!(SequenceCheck::OutOfOrderSequence.error_code(), ErrorCode::OutOfOrderSequence);
    }

    /// Guards epoch fencing: a new epoch starts at sequence 0 and fences the old one.
    #[test]
    fn epochs_fence() {
        let mut state = PartitionProducerState::new();
        state.record(&batch(0, 0, 5, 0));
        assert_eq!(state.check(P, ProducerEpoch(1), 5, 1), SequenceCheck::OutOfOrderSequence);
        assert_eq!(state.check(P, ProducerEpoch(1), 0, 1), SequenceCheck::Accept);
        state.record(&batch(1, 0, 1, 5));
        assert_eq!(state.epoch_of(P), Some(ProducerEpoch(1)));
        assert_eq!(state.check(P, E0, 5, 1), SequenceCheck::ProducerFenced);
        // Unknown producers are accepted at any sequence (their state may have been retained
        // away); non-idempotent batches are not tracked.
        assert_eq!(state.check(ProducerId(99), E0, 1234, 1), SequenceCheck::Accept);
        state.record(&ProducerBatch { producer_id: ProducerId::NONE, ..batch(0, 0, 1, 9) });
        assert_eq!(state.epoch_of(ProducerId::NONE), None);
    }

    /// Guards sequence wrap-around at i32::MAX, as Kafka does.
    #[test]
    fn sequences_wrap() {
        let mut state = PartitionProducerState::new();
        state.record(&batch(0, i32::MAX - 1, 2, 0));
        assert_eq!(state.check(P, E0, 0, 1), SequenceCheck::Accept);
        assert_eq!(state.check(P, E0, i32::MAX - 1, 2), SequenceCheck::Duplicate(Offset(0)));
    }

    /// Guards the rebuild after a restart: replaying the log's batch headers gives the same
    /// state as recording them live.
    #[test]
    fn replay_rebuilds() {
        let batches: Vec<ProducerBatch> =
            (0..8i32).map(|i| batch((i / 4) as i16, (i % 4) * 3, 3, i as u64 * 3)).collect();
        let mut live = PartitionProducerState::new();
        for b in &batches {
            assert_eq!(
                live.check(b.producer_id, b.producer_epoch, b.base_sequence, b.record_count),
                SequenceCheck::Accept
            );
            live.record(b);
        }
        let replayed = PartitionProducerState::replay(&batches);
        assert_eq!(replayed, live);
        assert_eq!(replayed.check(P, ProducerEpoch(1), 9, 3), SequenceCheck::Duplicate(Offset(21)));
    }

    /// Guards the memory bound: past the bound, the least recently appended producer is
    /// forgotten (and then accepted at any sequence); the others keep their state.
    #[test]
    fn producers_per_partition_are_bounded() {
        let mut state = PartitionProducerState::new();
        let max = PRODUCERS_PER_PARTITION_MAX as i64;
        for id in 0..=max {
            state.record(&ProducerBatch { producer_id: ProducerId(id), ..batch(0, 0, 1, id as u64) });
        }
        assert_eq!(state.producer_count(), PRODUCERS_PER_PARTITION_MAX);
        assert_eq!(state.epoch_of(ProducerId(0)), None, "the oldest was forgotten");
        assert_eq!(state.check(ProducerId(0), E0, 77, 1), SequenceCheck::Accept);
        assert_eq!(state.check(ProducerId(1), E0, 0, 1), SequenceCheck::Duplicate(Offset(1)));
        assert_eq!(state.check(ProducerId(max), E0, 0, 1), SequenceCheck::Duplicate(Offset(max as u64)));
    }

    #[test]
    fn producer_ids() {
        let mut ids = ProducerIdManager::new(1000);
        assert_eq!(ids.init(None), (ProducerId(1000), E0));
        assert_eq!(ids.init(None), (ProducerId(1001), E0));
        let first = ids.init(Some("tx"));
        assert_eq!(first, (ProducerId(1002), E0));
        assert_eq!(ids.init(Some("tx")), (ProducerId(1002), ProducerEpoch(1)));
        assert_eq!(ids.next_producer_id(), 1003);
    }
}
