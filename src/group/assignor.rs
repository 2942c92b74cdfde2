//! Server-side assignors: `uniform` (round-robin, the default) and `range`, both sticky.
//!
//! An assignor maps the members' subscriptions and the current *target* assignment to a new
//! target. It keeps every partition where it is when the balance rules allow, so that a
//! rebalance moves as few partitions as possible (each moved partition costs a revoke, a
//! commit and a fetch restart), and it is deterministic: the same input gives the same output
//! on every shard and after a restart.
//!
//! - **uniform**: every subscribed partition goes to one of its subscribers; with identical
//!   subscriptions, member counts differ by at most one. Adding a member moves only the
//!   ~P/(N+1) partitions it receives; removing one moves only its partitions.
//! - **range**: per topic, the subscribers each get a quota (`P / n`, the first `P % n` of them
//!   one more); members keep what they had up to their quota, and a fresh topic is split into
//!   contiguous ranges as Kafka's range assignor does.

use std::collections::{BTreeMap, BTreeSet};

use super::{Assignment, TopicPartitionCounts};

/// Which assignor a group uses. The wire names are [`AssignorKind::as_str`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum AssignorKind {
    #[default]
    Uniform,
    Range,
}

impl AssignorKind {
    pub const ALL: [AssignorKind; 2] = [AssignorKind::Uniform, AssignorKind::Range];

    pub const fn as_str(self) -> &'static str {
        match self {
            AssignorKind::Uniform => "uniform",
            AssignorKind::Range => "range",
        }
    }

    pub fn from_name(name: &str) -> Option<AssignorKind> {
        AssignorKind::ALL.into_iter().find(|kind| kind.as_str() == name)
    }

    /// Stable number for the group metadata record.
    pub const fn as_u8(self) -> u8 {
        match self {
            AssignorKind::Uniform => 0,
            AssignorKind::Range => 1,
        }
    }

    pub const fn from_u8(value: u8) -> Option<AssignorKind> {
        match value {
            0 => Some(AssignorKind::Uniform),
            1 => Some(AssignorKind::Range),
            _ => None,
        }
    }
}

/// One member's input to an assignor.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AssignmentMember {
    pub subscribed_topics: BTreeSet<String>,
    /// The member's share of the current target assignment (what stickiness preserves).
    pub current_target: Assignment,
}

/// Computes a new target assignment. The result has an entry (possibly empty) for every member;
/// topics missing from `topics` (unknown or deleted) are not assigned.
pub fn assign(
    kind: AssignorKind,
    members: &BTreeMap<String, AssignmentMember>,
    topics: &TopicPartitionCounts,
) -> BTreeMap<String, Assignment> {
    let input = Input::new(members, topics);
    let owned = match kind {
        AssignorKind::Uniform => input.uniform(),
        AssignorKind::Range => input.range(),
    };
    input.output(&owned)
}

/// A partition as (topic index, partition number): cheap to copy and order.
type Tp = (usize, u32);

/// The assignors' working form: members and topics as indexes, in id / name order.
struct Input<'a> {
    member_ids: Vec<&'a String>,
    members: Vec<&'a AssignmentMember>,
    /// Topics subscribed by at least one member and present in the metadata, with their
    /// partition counts.
    topics: Vec<(&'a String, u32)>,
    /// Per topic index: the indexes of its subscribers, ascending.
    subscribers: Vec<Vec<usize>>,
}

impl<'a> Input<'a> {
    fn new(members: &'a BTreeMap<String, AssignmentMember>, counts: &'a TopicPartitionCounts) -> Input<'a> {
        let member_ids: Vec<&String> = members.keys().collect();
        let members: Vec<&AssignmentMember> = members.values().collect();
        let topics: Vec<(&String, u32)> = counts
            .iter()
            .filter(|(name, count)| **count > 0 && members.iter().any(|m| m.subscribed_topics.contains(*name)))
            .map(|(name, count)| (name, *count))
            .collect();
        let subscribers = topics
            .iter()
            .map(|(name, _)| (0..members.len()).filter(|&m| members[m].subscribed_topics.contains(*name)).collect())
            .collect();
        Input { member_ids, members, topics, subscribers }
    }

    fn topic_index(&self, name: &str) -> Option<usize> {
        self.topics.binary_search_by(|(topic, _)| topic.as_str().cmp(name)).ok()
    }

    /// Each member's still-valid current partitions (subscribed topic, partition in range),
    /// a partition claimed twice going to the first member in id order.
    fn retained(&self) -> Vec<BTreeSet<Tp>> {
        let mut taken = BTreeSet::new();
        let mut retained = vec![BTreeSet::new(); self.members.len()];
        for (m, member) in self.members.iter().enumerate() {
            for (topic, partitions) in &member.current_target {
                let Some(t) = self.topic_index(topic) else { continue };
                if !member.subscribed_topics.contains(topic) {
                    continue;
                }
                for &p in partitions.range(..self.topics[t].1) {
                    if taken.insert((t, p)) {
                        retained[m].insert((t, p));
                    }
                }
            }
        }
        retained
    }

    fn all_partitions(&self) -> impl Iterator<Item = Tp> + '_ {
        self.topics.iter().enumerate().flat_map(|(t, (_, count))| (0..*count).map(move |p| (t, p)))
    }

    fn uniform(&self) -> Vec<BTreeSet<Tp>> {
        let mut owned = self.retained();
        let mut counts: Vec<usize> = owned.iter().map(BTreeSet::len).collect();
        let taken: BTreeSet<Tp> = owned.iter().flatten().copied().collect();
        // Orphans go to the least-loaded subscriber: round-robin on a fresh group.
        for tp in self.all_partitions().filter(|tp| !taken.contains(tp)).collect::<Vec<_>>() {
            let Some(&m) = self.subscribers[tp.0].iter().min_by_key(|&&m| (counts[m], m)) else { continue };
            owned[m].insert(tp);
            counts[m] += 1;
        }
        // Then move partitions from the most to the least loaded eligible member while that
        // narrows the gap by two or more. Each move lowers the sum of squared counts, so this
        // ends; with identical subscriptions it ends at max - min <= 1, having moved only
        // partitions above the final quota.
        loop {
            let least: Vec<Option<usize>> =
                self.subscribers.iter().map(|subs| subs.iter().copied().min_by_key(|&m| (counts[m], m))).collect();
            let mut donors: Vec<usize> = (0..owned.len()).collect();
            donors.sort_by_key(|&m| (std::cmp::Reverse(counts[m]), m));
            let found = donors.iter().find_map(|&donor| {
                owned[donor].iter().rev().find_map(|&tp| {
                    let receiver = least[tp.0]?;
                    (counts[receiver] + 1 < counts[donor]).then_some((donor, receiver, tp))
                })
            });
            let Some((donor, receiver, tp)) = found else { break };
            owned[donor].remove(&tp);
            owned[receiver].insert(tp);
            counts[donor] -= 1;
            counts[receiver] += 1;
        }
        owned
    }

    fn range(&self) -> Vec<BTreeSet<Tp>> {
        let retained = self.retained();
        let mut owned = vec![BTreeSet::new(); self.members.len()];
        for (t, (_, count)) in self.topics.iter().enumerate() {
            let subs = &self.subscribers[t];
            let count = *count as usize;
            let (quota_min, extra) = (count / subs.len(), count % subs.len());
            let kept = |m: usize| retained[m].iter().filter(|tp| tp.0 == t).count();
            // The members that already hold the most of this topic get the `extra` slots.
            let mut by_kept: Vec<usize> = subs.clone();
            by_kept.sort_by_key(|&m| (std::cmp::Reverse(kept(m)), m));
            let quota: BTreeMap<usize, usize> =
                by_kept.iter().enumerate().map(|(rank, &m)| (m, quota_min + usize::from(rank < extra))).collect();
            let mut taken = BTreeSet::new();
            for &m in subs {
                for &tp in retained[m].iter().filter(|tp| tp.0 == t).take(quota[&m]) {
                    owned[m].insert(tp);
                    taken.insert(tp.1);
                }
            }
            let mut free = (0..count as u32).filter(|p| !taken.contains(p));
            for &m in subs {
                let have = owned[m].iter().filter(|tp| tp.0 == t).count();
                for p in free.by_ref().take(quota[&m] - have) {
                    owned[m].insert((t, p));
                }
            }
        }
        owned
    }

    fn output(&self, owned: &[BTreeSet<Tp>]) -> BTreeMap<String, Assignment> {
        self.member_ids
            .iter()
            .zip(owned)
            .map(|(id, tps)| {
                let mut assignment = Assignment::new();
                for &(t, p) in tps {
                    assignment.entry(self.topics[t].0.clone()).or_default().insert(p);
                }
                ((*id).clone(), assignment)
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::group::assignment_len;

    fn members_with(
        ids: &[String],
        topics: &[&str],
        current: &BTreeMap<String, Assignment>,
    ) -> BTreeMap<String, AssignmentMember> {
        ids.iter()
            .map(|id| {
                let member = AssignmentMember {
                    subscribed_topics: topics.iter().map(|t| t.to_string()).collect(),
                    current_target: current.get(id).cloned().unwrap_or_default(),
                };
                (id.clone(), member)
            })
            .collect()
    }

    fn ids(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("m{i:02}")).collect()
    }

    fn counts(topics: &[(&str, u32)]) -> TopicPartitionCounts {
        topics.iter().map(|(t, n)| (t.to_string(), *n)).collect()
    }

    /// Every partition of a subscribed topic is assigned exactly once, to a subscriber.
    fn assert_exactly_once(
        result: &BTreeMap<String, Assignment>,
        members: &BTreeMap<String, AssignmentMember>,
        topics: &TopicPartitionCounts,
    ) {
        let mut seen = BTreeSet::new();
        for (id, assignment) in result {
            for (topic, parts) in assignment {
                assert!(members[id].subscribed_topics.contains(topic), "{id} got unsubscribed {topic}");
                for &p in parts {
                    assert!(p < topics[topic]);
                    assert!(seen.insert((topic.clone(), p)), "{topic}-{p} assigned twice");
                }
            }
        }
        let expected: usize = topics
            .iter()
            .filter(|(t, _)| members.values().any(|m| m.subscribed_topics.contains(*t)))
            .map(|(_, n)| *n as usize)
            .sum();
        assert_eq!(seen.len(), expected, "some subscribed partitions are unassigned");
    }

    fn spread(result: &BTreeMap<String, Assignment>) -> usize {
        let sizes: Vec<usize> = result.values().map(assignment_len).collect();
        sizes.iter().max().unwrap_or(&0) - sizes.iter().min().unwrap_or(&0)
    }

    fn moved(before: &BTreeMap<String, Assignment>, after: &BTreeMap<String, Assignment>) -> usize {
        before
            .iter()
            .map(|(id, a)| {
                let kept = after.get(id).cloned().unwrap_or_default();
                a.iter()
                    .map(|(t, ps)| ps.iter().filter(|p| !kept.get(t).is_some_and(|k| k.contains(p))).count())
                    .sum::<usize>()
            })
            .sum()
    }

    /// Guards the round-robin layout of a fresh uniform assignment and the contiguous ranges of
    /// a fresh range assignment (3 members, 6 partitions: 2 each).
    #[test]
    fn fresh_assignments() {
        let topics = counts(&[("t", 6)]);
        let members = members_with(&ids(3), &["t"], &BTreeMap::new());
        let uniform = assign(AssignorKind::Uniform, &members, &topics);
        assert_eq!(uniform["m00"]["t"], BTreeSet::from([0, 3]));
        assert_eq!(uniform["m01"]["t"], BTreeSet::from([1, 4]));
        let range = assign(AssignorKind::Range, &members, &topics);
        assert_eq!(range["m00"]["t"], BTreeSet::from([0, 1]));
        assert_eq!(range["m02"]["t"], BTreeSet::from([4, 5]));
        // Unknown topics and members without subscriptions get nothing, but an entry.
        let mut lonely = members_with(&ids(1), &["missing"], &BTreeMap::new());
        lonely.insert("idle".into(), AssignmentMember::default());
        let result = assign(AssignorKind::Uniform, &lonely, &topics);
        assert!(result["m00"].is_empty() && result["idle"].is_empty());
        assert_eq!(AssignorKind::from_name("range"), Some(AssignorKind::Range));
        assert_eq!(AssignorKind::from_name("sticky"), None);
    }

    proptest! {
        /// Guards uniform: exactly once, max - min <= 1 with common subscriptions, and
        /// stickiness: adding a member moves at most ceil(P / (N + 1)) partitions (all to it),
        /// removing one moves only its partitions.
        #[test]
        fn uniform_is_balanced_and_sticky(n in 1usize..12, parts in prop::collection::vec(1u32..40, 1..4)) {
            let topic_names = ["a", "b", "c"];
            let topics: TopicPartitionCounts =
                parts.iter().enumerate().map(|(i, &p)| (topic_names[i].to_string(), p)).collect();
            let subscribed: Vec<&str> = topic_names[..parts.len()].to_vec();
            let total: usize = parts.iter().map(|&p| p as usize).sum();
            let base_ids = ids(n);
            let members = members_with(&base_ids, &subscribed, &BTreeMap::new());
            let first = assign(AssignorKind::Uniform, &members, &topics);
            assert_exactly_once(&first, &members, &topics);
            prop_assert!(spread(&first) <= 1);
            // Same input, same output; and a stable target stays put.
            let members = members_with(&base_ids, &subscribed, &first);
            prop_assert_eq!(&assign(AssignorKind::Uniform, &members, &topics), &first);

            let grown_ids = ids(n + 1);
            let grown = members_with(&grown_ids, &subscribed, &first);
            let after_join = assign(AssignorKind::Uniform, &grown, &topics);
            assert_exactly_once(&after_join, &grown, &topics);
            prop_assert!(spread(&after_join) <= 1);
            prop_assert!(moved(&first, &after_join) <= total.div_ceil(n + 1));

            if n > 1 {
                let gone = &base_ids[n / 2];
                let shrunk_ids: Vec<String> = base_ids.iter().filter(|id| *id != gone).cloned().collect();
                let shrunk = members_with(&shrunk_ids, &subscribed, &first);
                let after_leave = assign(AssignorKind::Uniform, &shrunk, &topics);
                assert_exactly_once(&after_leave, &shrunk, &topics);
                prop_assert!(spread(&after_leave) <= 1);
                let mut survivors = first.clone();
                survivors.remove(gone);
                prop_assert_eq!(moved(&survivors, &after_leave), 0, "only the leaver's partitions move");
            }
        }

        /// Guards range: exactly once, per-topic balance (max - min <= 1 among a topic's
        /// subscribers), and stickiness on removal.
        #[test]
        fn range_is_balanced_per_topic_and_sticky(n in 1usize..10, parts in prop::collection::vec(1u32..30, 1..3)) {
            let topic_names = ["a", "b"];
            let topics: TopicPartitionCounts =
                parts.iter().enumerate().map(|(i, &p)| (topic_names[i].to_string(), p)).collect();
            let subscribed: Vec<&str> = topic_names[..parts.len()].to_vec();
            let base_ids = ids(n);
            let members = members_with(&base_ids, &subscribed, &BTreeMap::new());
            let first = assign(AssignorKind::Range, &members, &topics);
            assert_exactly_once(&first, &members, &topics);
            for topic in &subscribed {
                let sizes: Vec<usize> = first.values().map(|a| a.get(*topic).map_or(0, BTreeSet::len)).collect();
                prop_assert!(sizes.iter().max().unwrap() - sizes.iter().min().unwrap() <= 1);
            }
            let grown = members_with(&ids(n + 1), &subscribed, &first);
            let after_join = assign(AssignorKind::Range, &grown, &topics);
            assert_exactly_once(&after_join, &grown, &topics);
            if n > 1 {
                let gone = &base_ids[0];
                let shrunk_ids: Vec<String> = base_ids.iter().filter(|id| *id != gone).cloned().collect();
                let after_leave = assign(AssignorKind::Range, &members_with(&shrunk_ids, &subscribed, &first), &topics);
                let mut survivors = first.clone();
                survivors.remove(gone);
                // Survivors keep everything up to their (larger) quotas.
                prop_assert_eq!(moved(&survivors, &after_leave), 0);
            }
        }

        /// Guards both assignors with different subscriptions per member and arbitrary (even
        /// overlapping or stale) current targets: still exactly once, never to a non-subscriber.
        #[test]
        fn heterogeneous_subscriptions_stay_valid(
            subs in prop::collection::vec(prop::collection::btree_set(0usize..3, 0..3), 1..8),
            current in prop::collection::vec(prop::collection::vec((0usize..4, 0u32..20), 0..6), 8),
            range in any::<bool>(),
        ) {
            let names = ["a", "b", "c", "gone"];
            let topics = counts(&[("a", 7), ("b", 3), ("c", 11)]);
            let members: BTreeMap<String, AssignmentMember> = subs
                .iter()
                .enumerate()
                .map(|(i, s)| {
                    let mut target = Assignment::new();
                    for &(t, p) in &current[i] {
                        target.entry(names[t].to_string()).or_default().insert(p);
                    }
                    let subscribed_topics = s.iter().map(|&t| names[t].to_string()).collect();
                    (format!("m{i}"), AssignmentMember { subscribed_topics, current_target: target })
                })
                .collect();
            let kind = if range { AssignorKind::Range } else { AssignorKind::Uniform };
            let result = assign(kind, &members, &topics);
            prop_assert_eq!(result.len(), members.len());
            assert_exactly_once(&result, &members, &topics);
        }
    }
}
