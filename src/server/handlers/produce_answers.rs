//! The produce handler's answer per partition, kept by the partition's position in the request
//! (no map keyed by topic name), and the rule for a partition named twice in one request.

use std::collections::HashMap;

use crate::protocol::{ErrorCode, OFFSET_UNKNOWN};

pub type Outcome = Result<u64, (ErrorCode, String)>;

/// What is known of one partition of the request.
#[derive(Clone, Debug)]
pub enum Answer {
    /// Sent to its owner, no answer (yet): acks=0, or the owner did not answer.
    Pending,
    /// Refused before it reached its owner.
    Early((ErrorCode, String)),
    /// The owner's answer.
    Owner(Outcome),
}

impl Answer {
    /// Which answer a partition named several times gives for all its positions: the last
    /// owner's answer, else the last early refusal, else none.
    fn rank(&self) -> u8 {
        match self {
            Answer::Pending => 0,
            Answer::Early(_) => 1,
            Answer::Owner(_) => 2,
        }
    }

    /// The wire answer: error code, base offset and message. A pending partition is accepted
    /// with acks=0 and unanswered otherwise.
    pub fn into_wire(self, acks: i16) -> (ErrorCode, u64, String) {
        match self {
            Answer::Owner(Ok(base_offset)) => (ErrorCode::None, base_offset, String::new()),
            Answer::Owner(Err((code, message))) | Answer::Early((code, message)) => (code, OFFSET_UNKNOWN, message),
            Answer::Pending if acks == 0 => (ErrorCode::None, OFFSET_UNKNOWN, String::new()),
            Answer::Pending => {
                (ErrorCode::BrokerShuttingDown, OFFSET_UNKNOWN, "the owning shard did not answer".into())
            }
        }
    }
}

/// Gives every position of a partition named more than once in the request (`keys`: topic
/// and partition of each position, in request order) the same answer: the last owner answer
/// among them, else the last early refusal. (Every position's batches were appended or
/// refused on their own; the answer is the one a map keyed by partition kept, as before.)
pub fn settle_duplicates<'a>(answers: &mut [Answer], keys: impl Iterator<Item = (&'a str, u32)>) {
    let keys: Vec<(&str, u32)> = keys.collect();
    let mut winners: HashMap<(&str, u32), usize> = HashMap::with_capacity(keys.len());
    for (position, key) in keys.iter().enumerate() {
        let winner = winners.entry(*key).or_insert(position);
        if answers[position].rank() >= answers[*winner].rank() {
            *winner = position;
        }
    }
    for (position, key) in keys.iter().enumerate() {
        let winner = winners[key];
        if winner != position {
            answers[position] = answers[winner].clone();
        }
    }
}

/// Notices a known partition named twice in a request, with one bit per partition of each
/// topic (allocated once per topic and request, at most `PARTITIONS_MAX` bits).
#[derive(Default)]
pub struct DuplicateCheck<'a> {
    seen: HashMap<&'a str, Vec<u64>>,
    pub found: bool,
}

impl<'a> DuplicateCheck<'a> {
    /// The marker for the partitions of `topic`, which has `partition_count` of them.
    pub fn topic(&mut self, topic: &'a str, partition_count: u32) -> TopicMarks<'_> {
        let words = (partition_count as usize).div_ceil(64);
        let bits = self.seen.entry(topic).or_insert_with(|| vec![0; words]);
        TopicMarks { bits, found: &mut self.found }
    }
}

pub struct TopicMarks<'c> {
    bits: &'c mut Vec<u64>,
    found: &'c mut bool,
}

impl TopicMarks<'_> {
    /// Marks `partition` (below the topic's count; others are ignored) as named.
    pub fn mark(&mut self, partition: u32) {
        let (word, bit) = ((partition / 64) as usize, 1u64 << (partition % 64));
        if let Some(word) = self.bits.get_mut(word) {
            *self.found |= *word & bit != 0;
            *word |= bit;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wire(answers: Vec<Answer>, acks: i16) -> Vec<(ErrorCode, u64)> {
        answers.into_iter().map(|answer| answer.into_wire(acks)).map(|(code, base, _)| (code, base)).collect()
    }

    /// Guards the answer to a partition named twice: the last owner answer wins for every
    /// position, over an earlier or later early refusal; without an owner answer, the last
    /// refusal; other partitions keep their own answers.
    #[test]
    fn a_partition_named_twice_gets_one_answer_for_both_positions() {
        let corrupt = || Answer::Early((ErrorCode::CorruptMessage, "bad".into()));
        let invalid = || Answer::Early((ErrorCode::InvalidRequest, "range".into()));
        let mut answers = vec![
            Answer::Owner(Ok(10)), // t/0
            corrupt(),             // t/0 again: the owner's answer wins
            Answer::Owner(Ok(11)), // t/1
            corrupt(),             // u/0
            invalid(),             // u/0 again: the last refusal
            Answer::Owner(Ok(12)), // t/0 a third time: the last owner answer
        ];
        let keys = [("t", 0), ("t", 0), ("t", 1), ("u", 0), ("u", 0), ("t", 0)];
        settle_duplicates(&mut answers, keys.into_iter());
        assert_eq!(
            wire(answers, 1),
            vec![
                (ErrorCode::None, 12),
                (ErrorCode::None, 12),
                (ErrorCode::None, 11),
                (ErrorCode::InvalidRequest, OFFSET_UNKNOWN),
                (ErrorCode::InvalidRequest, OFFSET_UNKNOWN),
                (ErrorCode::None, 12),
            ]
        );
    }

    /// With acks=0 a refusal of one position is the answer of every position of the partition;
    /// accepted ones answer no error and no offset.
    #[test]
    fn with_acks_0_a_refused_duplicate_answers_for_all_positions() {
        let mut answers =
            vec![Answer::Pending, Answer::Early((ErrorCode::CorruptMessage, "bad".into())), Answer::Pending];
        settle_duplicates(&mut answers, [("t", 0), ("t", 0), ("t", 1)].into_iter());
        assert_eq!(
            wire(answers, 0),
            vec![
                (ErrorCode::CorruptMessage, OFFSET_UNKNOWN),
                (ErrorCode::CorruptMessage, OFFSET_UNKNOWN),
                (ErrorCode::None, OFFSET_UNKNOWN),
            ]
        );
    }

    #[test]
    fn duplicate_check_notices_a_known_partition_named_twice() {
        let mut check = DuplicateCheck::default();
        check.topic("t", 100).mark(3);
        check.topic("u", 100).mark(3);
        check.topic("t", 100).mark(99);
        check.topic("t", 100).mark(500); // not a partition of t: ignored
        assert!(!check.found);
        check.topic("t", 100).mark(3);
        assert!(check.found);
    }
}
