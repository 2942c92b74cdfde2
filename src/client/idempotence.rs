//! The idempotent producer's bookkeeping, plain data: its producer id and epoch, and per
//! partition the next sequence to assign and the batches in flight.
//!
//! Rules (Kafka's): a sequence is assigned when a batch is sealed, and a batch keeps it (and its
//! bytes) through every retry; sequences of a partition count records and wrap from `i32::MAX`
//! to 0; at most [`BATCHES_IN_FLIGHT_PER_PARTITION_MAX`] batches of a partition are in flight,
//! because the broker remembers that many per producer to recognise a retried duplicate.

use rustc_hash::FxHashMap;

use crate::group::producer_state::PRODUCER_BATCHES_REMEMBERED;
use crate::model::{PartitionId, ProducerEpoch, ProducerId};

/// Batches of one partition in flight at once (sent, or waiting for a retry).
pub const BATCHES_IN_FLIGHT_PER_PARTITION_MAX: usize = PRODUCER_BATCHES_REMEMBERED;

/// The producer id and epoch from InitProducerId.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProducerIdentity {
    pub producer_id: ProducerId,
    pub producer_epoch: ProducerEpoch,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct PartitionSequence {
    next_sequence: i32,
    batches_in_flight: usize,
}

/// Per-partition sequences and in-flight counts of one idempotent producer. Looked up by
/// `&str` per batch: a topic name is allocated once, when the topic is first seen.
#[derive(Debug, Default)]
pub struct Sequences {
    /// Index into `partitions` of each topic.
    topics: FxHashMap<String, usize>,
    partitions: Vec<FxHashMap<PartitionId, PartitionSequence>>,
}

impl Sequences {
    fn entry(&mut self, topic: &str, partition: PartitionId) -> &mut PartitionSequence {
        let index = match self.topics.get(topic) {
            Some(&index) => index,
            None => {
                self.topics.insert(topic.to_owned(), self.partitions.len());
                self.partitions.push(FxHashMap::default());
                self.partitions.len() - 1
            }
        };
        // Every index in `topics` is a position in `partitions`: both grow together, above.
        self.partitions[index].entry(partition).or_default()
    }

    fn get_mut(&mut self, topic: &str, partition: PartitionId) -> Option<&mut PartitionSequence> {
        let &index = self.topics.get(topic)?;
        self.partitions.get_mut(index)?.get_mut(&partition)
    }

    /// The base sequence for a sealed batch of `record_count` records, advancing the
    /// partition's next sequence past it.
    pub fn assign(&mut self, topic: &str, partition: PartitionId, record_count: usize) -> i32 {
        let entry = self.entry(topic, partition);
        let base = entry.next_sequence;
        let count = i64::try_from(record_count).unwrap_or(i64::MAX);
        entry.next_sequence = ((i64::from(base) + count) % (i64::from(i32::MAX) + 1)) as i32;
        base
    }

    /// Batches of the partition sent and not yet settled.
    pub fn in_flight(&self, topic: &str, partition: PartitionId) -> usize {
        let index = self.topics.get(topic);
        let entry = index.and_then(|&index| self.partitions.get(index)?.get(&partition));
        entry.map_or(0, |entry| entry.batches_in_flight)
    }

    /// Whether `batches` more batches of the partition may be sent now.
    pub fn may_send(&self, topic: &str, partition: PartitionId, batches: usize) -> bool {
        let in_flight = self.in_flight(topic, partition);
        in_flight == 0 || in_flight + batches <= BATCHES_IN_FLIGHT_PER_PARTITION_MAX
    }

    pub fn sent(&mut self, topic: &str, partition: PartitionId, batches: usize) {
        self.entry(topic, partition).batches_in_flight += batches;
    }

    pub fn settled(&mut self, topic: &str, partition: PartitionId, batches: usize) {
        if let Some(entry) = self.get_mut(topic, partition) {
            entry.batches_in_flight = entry.batches_in_flight.saturating_sub(batches);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Guards sequence assignment: per partition, counting records, wrapping at i32::MAX.
    #[test]
    fn sequences_count_records_per_partition_and_wrap() {
        let mut sequences = Sequences::default();
        assert_eq!(sequences.assign("t", PartitionId(0), 3), 0);
        assert_eq!(sequences.assign("t", PartitionId(0), 2), 3);
        assert_eq!(sequences.assign("t", PartitionId(1), 1), 0);
        assert_eq!(sequences.assign("u", PartitionId(0), 1), 0);
        assert_eq!(sequences.assign("t", PartitionId(0), 1), 5);
        let mut wrapping = Sequences::default();
        *wrapping.entry("t", PartitionId(0)) = PartitionSequence { next_sequence: i32::MAX - 1, batches_in_flight: 0 };
        assert_eq!(wrapping.assign("t", PartitionId(0), 3), i32::MAX - 1);
        assert_eq!(wrapping.assign("t", PartitionId(0), 1), 1);
    }

    /// Guards the in-flight bound: at most five batches per partition, but one part is
    /// always allowed when nothing is in flight.
    #[test]
    fn at_most_five_batches_in_flight_per_partition() {
        let mut sequences = Sequences::default();
        let p = PartitionId(0);
        assert!(sequences.may_send("t", p, 5));
        sequences.sent("t", p, 4);
        assert!(sequences.may_send("t", p, 1));
        assert!(!sequences.may_send("t", p, 2));
        sequences.sent("t", p, 1);
        assert!(!sequences.may_send("t", p, 1));
        assert!(sequences.may_send("t", PartitionId(1), 1), "other partitions are independent");
        sequences.settled("t", p, 5);
        assert_eq!(sequences.in_flight("t", p), 0);
        assert!(sequences.may_send("t", p, 5));
    }
}
