//! [`GroupConsumer`]: a member of a consumer group. It joins the group, fetches the partitions
//! the coordinator assigns it, follows the incremental (KIP-848) rebalances and commits its
//! progress per its [`DeliveryMode`].
//!
//! Like the producer, it is *driven*: it does I/O only inside its own calls (`poll`, `commit*`,
//! `close`), with no background task, so it runs on any runtime. Heartbeats are sent from
//! `poll`, at the interval the coordinator asks for; `poll` shortens its fetch long-poll so the
//! next heartbeat is never late. Call `poll` at least once per heartbeat interval (a third of
//! the broker's session timeout), or the coordinator removes the member and gives its
//! partitions to others.
//!
//! Rebalances: partitions the member keeps are fetched without a pause. A revoked partition
//! is committed (at-least-once: the records handed out so far) and dropped, and the next
//! heartbeat, sent at once, reports it released. A new partition starts at the group's
//! committed offset, or at [`GroupConsumerConfig::start_from`] when the group has none. A
//! fenced member (`FencedMemberEpoch`, `UnknownMemberId`) drops its assignment and its
//! uncommitted positions and rejoins at epoch 0.
//!
//! Dropping a `GroupConsumer` without [`GroupConsumer::close`] is a crash as far as the group
//! knows: nothing is committed, and its partitions move only after the session timeout.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::rc::Rc;
use std::time::{Duration, Instant};

use futures_lite::io::{AsyncRead, AsyncWrite};

use super::membership::{classify, HeartbeatFailure, Membership, TopicPartition};
use crate::client::admin::{offset_commit_outcome, offset_commit_request, Committer};
use crate::client::connection::{Connection, Pending};
use crate::client::consumer::{Consumer, ConsumerConfig, ConsumerRecord, SeekTo};
use crate::client::error::{ClientError, ClientResult};
use crate::client::Sleeper;
use crate::model::{Offset, PartitionId};
use crate::protocol::{ErrorCode, OffsetCommitRequest};

/// Kafka's default auto-commit interval.
pub const AUTO_COMMIT_INTERVAL_MS_DEFAULT: u64 = 5_000;
/// Kafka's default `max.poll.records`.
pub const MAX_POLL_RECORDS_DEFAULT: usize = 500;
/// Heartbeats one `poll` sends at most (a revocation is confirmed, a fenced member rejoins).
const HEARTBEATS_PER_POLL_MAX: usize = 4;
/// Wait before retrying a heartbeat the coordinator could not take (loading, moving).
const HEARTBEAT_RETRY_MS: u64 = 200;

/// When a member commits, and so what a crash or a rebalance can do to the records.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum DeliveryMode {
    /// Commit after processing: the records a `poll` returned are committed by a later `poll`
    /// (auto-commit), `commit`, a revocation or `close`. A member that dies loses no record;
    /// the records it processed since its last commit are processed again by the next owner.
    #[default]
    AtLeastOnce,
    /// Commit before processing: `poll` commits the new positions and only then returns the
    /// records. No record is processed twice; the records a member was handed and did not
    /// finish before it died are never processed.
    AtMostOnce,
}

/// Group consumer settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GroupConsumerConfig {
    pub group_id: String,
    /// The topics the member subscribes to.
    pub topics: Vec<String>,
    pub delivery: DeliveryMode,
    /// Where a partition starts when the group has committed nothing for it (also where an
    /// out-of-range position is reset to; an offset or timestamp start resets to earliest).
    pub start_from: SeekTo,
    /// At-least-once only: commit the processed positions from `poll` every
    /// `auto_commit_interval_ms` (on by default, as in Kafka).
    pub auto_commit: bool,
    pub auto_commit_interval_ms: u64,
    /// Most records one `poll` returns.
    pub max_poll_records: usize,
    /// The server-side assignor to ask for (`uniform` or `range`; `None`: the group's).
    pub server_assignor: Option<String>,
    /// Fetch settings (`max_wait_ms` is further bounded by the heartbeat schedule; `start` is
    /// replaced by `start_from`).
    pub fetch: ConsumerConfig,
}

impl GroupConsumerConfig {
    /// At-least-once, auto-commit every 5 s, starting from the earliest offset.
    pub fn new(group_id: impl Into<String>, topics: Vec<String>) -> GroupConsumerConfig {
        GroupConsumerConfig {
            group_id: group_id.into(),
            topics,
            delivery: DeliveryMode::AtLeastOnce,
            start_from: SeekTo::Earliest,
            auto_commit: true,
            auto_commit_interval_ms: AUTO_COMMIT_INTERVAL_MS_DEFAULT,
            max_poll_records: MAX_POLL_RECORDS_DEFAULT,
            server_assignor: None,
            fetch: ConsumerConfig::default(),
        }
    }
}

/// A commit sent by `commit_async`, answered later.
struct InFlightCommit {
    pending: Pending<OffsetCommitRequest>,
    offsets: Vec<(TopicPartition, Offset)>,
}

/// See the module doc. Owned by one task.
pub struct GroupConsumer<S> {
    consumer: Consumer<S>,
    config: GroupConsumerConfig,
    membership: Membership,
    sleeper: Rc<dyn Sleeper>,
    /// Per owned partition, the offset after the last record handed to the caller.
    handed_out: BTreeMap<TopicPartition, Offset>,
    /// Per owned partition, the offset the group has committed (as far as this member knows).
    committed: BTreeMap<TopicPartition, Offset>,
    /// Records fetched and not handed out yet, in fetch order.
    fetched: VecDeque<ConsumerRecord>,
    /// Owned partitions not positioned yet (their committed offset is looked up first).
    unpositioned: BTreeSet<TopicPartition>,
    next_heartbeat_at: Instant,
    next_auto_commit_at: Instant,
    in_flight_commit: Option<InFlightCommit>,
    commit_error: Option<ClientError>,
}

impl<S: AsyncRead + AsyncWrite + Unpin> GroupConsumer<S> {
    /// A member-to-be: it joins at its first [`GroupConsumer::poll`].
    pub fn new(connection: Connection<S>, config: GroupConsumerConfig) -> GroupConsumer<S> {
        let sleeper = connection.sleeper();
        let fetch = ConsumerConfig { start: config.start_from, ..config.fetch };
        let membership =
            Membership::new(config.group_id.clone(), config.topics.clone(), config.server_assignor.clone());
        let now = Instant::now();
        GroupConsumer {
            consumer: Consumer::new(connection, fetch),
            next_auto_commit_at: now + Duration::from_millis(config.auto_commit_interval_ms),
            config,
            membership,
            sleeper,
            handed_out: BTreeMap::new(),
            committed: BTreeMap::new(),
            fetched: VecDeque::new(),
            unpositioned: BTreeSet::new(),
            next_heartbeat_at: now,
            in_flight_commit: None,
            commit_error: None,
        }
    }

    pub fn group_id(&self) -> &str {
        self.membership.group_id()
    }

    /// Empty until the first join is answered.
    pub fn member_id(&self) -> &str {
        self.membership.member_id()
    }

    /// 0 while not a member.
    pub fn member_epoch(&self) -> i32 {
        self.membership.member_epoch()
    }

    pub fn delivery(&self) -> DeliveryMode {
        self.config.delivery
    }

    /// The partitions this member owns now, sorted.
    pub fn assignment(&self) -> Vec<TopicPartition> {
        self.membership.owned().iter().cloned().collect()
    }

    /// The connection, for admin calls between polls.
    pub fn connection(&mut self) -> &mut Connection<S> {
        self.consumer.connection()
    }

    /// The error of the last background commit (`commit_async`, auto-commit, a revocation's
    /// commit) that failed since the previous call.
    pub fn take_commit_error(&mut self) -> Option<ClientError> {
        self.commit_error.take()
    }

    /// Heartbeats when due, commits per the delivery mode, and returns the next records of
    /// the owned partitions (empty when none arrived within the fetch wait). Joins the group
    /// on the first call, and again after being fenced.
    ///
    /// An error from the connection (I/O, timeout) leaves it unusable: drop the consumer (its
    /// partitions move after the session timeout) and start a new one.
    pub async fn poll(&mut self) -> ClientResult<Vec<ConsumerRecord>> {
        self.poll_at_most(self.config.max_poll_records).await
    }

    /// [`GroupConsumer::poll`], returning at most `max_records` records (at least one); the
    /// rest wait for the next call. Only the records returned count as handed out.
    pub async fn poll_at_most(&mut self, max_records: usize) -> ClientResult<Vec<ConsumerRecord>> {
        let max_records = max_records.max(1);
        self.collect_async_commit().await;
        let auto_commit = self.config.delivery == DeliveryMode::AtLeastOnce && self.config.auto_commit;
        if auto_commit && Instant::now() >= self.next_auto_commit_at {
            self.next_auto_commit_at = Instant::now() + Duration::from_millis(self.config.auto_commit_interval_ms);
            let offsets = self.uncommitted(|_| true);
            if let Err(error) = self.commit_offsets(offsets).await {
                self.commit_error = Some(error);
            }
        }
        for _ in 0..HEARTBEATS_PER_POLL_MAX {
            if Instant::now() < self.next_heartbeat_at {
                break;
            }
            self.heartbeat().await?;
        }
        if self.fetched.is_empty() {
            self.fetch(auto_commit).await?;
        }
        let count = max_records.min(self.fetched.len());
        let records: Vec<ConsumerRecord> = self.fetched.drain(..count).collect();
        if records.is_empty() {
            return Ok(records);
        }
        let mut positions: BTreeMap<TopicPartition, Offset> = BTreeMap::new();
        for record in &records {
            positions.insert((record.topic.to_string(), record.partition), Offset(record.offset.0.saturating_add(1)));
        }
        if self.config.delivery == DeliveryMode::AtMostOnce {
            let offsets: Vec<(TopicPartition, Offset)> = positions.iter().map(|(tp, &o)| (tp.clone(), o)).collect();
            if let Err(error) = self.commit_offsets(offsets).await {
                if !self.membership.is_member() {
                    // Fenced: the records go to the partitions' next owner.
                    return Ok(Vec::new());
                }
                // Hand them out only once committed.
                for record in records.into_iter().rev() {
                    self.fetched.push_front(record);
                }
                return Err(error);
            }
        }
        self.handed_out.extend(positions);
        Ok(records)
    }

    /// Fetches the owned partitions into `fetched` (waits at most until the next heartbeat or
    /// auto-commit is due).
    async fn fetch(&mut self, auto_commit: bool) -> ClientResult<()> {
        let wait = self.fetch_wait(auto_commit);
        match self.position_new_partitions().await {
            Ok(()) => {}
            Err(error) if error.is_retriable() => {
                // The coordinator is loading or moving: no fetch until every partition has
                // its committed offset (fetching from `start_from` instead would skip or
                // repeat records).
                self.sleeper.sleep(wait.min(Duration::from_millis(HEARTBEAT_RETRY_MS))).await;
                return Ok(());
            }
            Err(error) => return Err(error),
        }
        if self.membership.owned().is_empty() {
            self.sleeper.sleep(wait).await;
            return Ok(());
        }
        self.consumer.set_max_wait_ms(u32::try_from(wait.as_millis()).unwrap_or(u32::MAX));
        match self.consumer.poll().await {
            Ok(records) => {
                self.fetched.extend(records);
                Ok(())
            }
            Err(ClientError::OffsetOutOfRange { topic, partition, .. }) => {
                let reset = match self.config.start_from {
                    SeekTo::Latest => SeekTo::Latest,
                    _ => SeekTo::Earliest,
                };
                self.consumer.seek(&topic, partition, reset).await?;
                Ok(())
            }
            Err(error) => Err(error),
        }
    }

    /// Commits the positions of every record handed out so far, and waits for the answer.
    pub async fn commit(&mut self) -> ClientResult<()> {
        self.collect_async_commit().await;
        let offsets = self.uncommitted(|_| true);
        self.commit_offsets(offsets).await
    }

    /// Sends a commit of the positions of every record handed out so far without waiting; a
    /// later `poll` (or commit) collects the answer, and a failure shows in
    /// [`GroupConsumer::take_commit_error`]. One at a time: a previous one is collected first.
    pub async fn commit_async(&mut self) -> ClientResult<()> {
        self.collect_async_commit().await;
        let offsets = self.uncommitted(|_| true);
        if offsets.is_empty() || !self.membership.is_member() {
            return Ok(());
        }
        let request = self.commit_request(&offsets);
        let pending = self.consumer.connection().send(&request, Vec::new()).await?;
        self.in_flight_commit = Some(InFlightCommit { pending, offsets });
        Ok(())
    }

    /// Leaves the group: commits the records handed out (at-least-once), then LeaveGroup so the
    /// partitions move at once. The consumer may `poll` again afterwards (it joins anew).
    pub async fn leave(&mut self) -> ClientResult<()> {
        self.collect_async_commit().await;
        let mut outcome = Ok(());
        if self.membership.is_member() {
            if self.config.delivery == DeliveryMode::AtLeastOnce {
                outcome = self.commit().await;
            }
            if self.membership.is_member() {
                let left = self
                    .consumer
                    .connection()
                    .leave_group(self.membership.group_id(), self.membership.member_id())
                    .await;
                outcome = outcome.and(left);
            }
        }
        self.membership.left();
        self.forget_positions();
        outcome
    }

    /// [`GroupConsumer::leave`], then drops the consumer.
    pub async fn close(mut self) -> ClientResult<()> {
        self.leave().await
    }

    /// One heartbeat; applies the assignment change or the fencing it brings.
    async fn heartbeat(&mut self) -> ClientResult<()> {
        let request = self.membership.heartbeat_request();
        let response = match self.consumer.connection().call(&request).await {
            Ok(response) => response,
            Err(error) if error.is_retriable() => {
                self.next_heartbeat_at = Instant::now() + Duration::from_millis(HEARTBEAT_RETRY_MS);
                return Ok(());
            }
            Err(error) => return Err(error),
        };
        let now = Instant::now();
        match self.membership.absorb(&response) {
            Ok(change) => {
                let interval = u64::from(self.membership.heartbeat_interval_ms().max(1));
                self.next_heartbeat_at = now + Duration::from_millis(interval);
                if !change.revoked.is_empty() {
                    self.release(&change.revoked).await;
                    // Confirm the release at once: the new owner is waiting for it.
                    self.next_heartbeat_at = now;
                    if !self.membership.is_member() {
                        // The revocation's commit found the member fenced: it rejoins.
                        return Ok(());
                    }
                }
                if !change.added.is_empty() || !change.revoked.is_empty() {
                    self.unpositioned.extend(change.added);
                    self.assign_owned();
                }
                Ok(())
            }
            Err(HeartbeatFailure::Fenced) => {
                self.forget_positions();
                self.next_heartbeat_at = now;
                Ok(())
            }
            Err(HeartbeatFailure::Retry) => {
                self.next_heartbeat_at = now + Duration::from_millis(HEARTBEAT_RETRY_MS);
                Ok(())
            }
            Err(HeartbeatFailure::Fatal) => Err(ClientError::Broker {
                code: ErrorCode::from_u16(response.error_code),
                message: format!("group '{}' heartbeat: {}", self.membership.group_id(), response.error_message),
            }),
        }
    }

    /// Revoked partitions: commit what was processed (at-least-once), then forget them.
    async fn release(&mut self, revoked: &[TopicPartition]) {
        if self.config.delivery == DeliveryMode::AtLeastOnce {
            let offsets = self.uncommitted(|tp| revoked.contains(tp));
            if let Err(error) = self.commit_offsets(offsets).await {
                self.commit_error = Some(error);
            }
        }
        self.fetched.retain(|r| !revoked.iter().any(|(t, p)| *t == *r.topic && *p == r.partition));
        for tp in revoked {
            self.handed_out.remove(tp);
            self.committed.remove(tp);
            self.unpositioned.remove(tp);
        }
    }

    /// Tells the fetcher the owned partitions (positions of kept partitions stay).
    fn assign_owned(&mut self) {
        let owned: Vec<(&str, PartitionId)> = self.membership.owned().iter().map(|(t, p)| (t.as_str(), *p)).collect();
        self.consumer.assign(&owned);
    }

    /// Positions new partitions at the group's committed offset, else at `start_from`.
    async fn position_new_partitions(&mut self) -> ClientResult<()> {
        if self.unpositioned.is_empty() {
            return Ok(());
        }
        let mut by_topic: BTreeMap<&str, Vec<PartitionId>> = BTreeMap::new();
        for (topic, partition) in &self.unpositioned {
            by_topic.entry(topic.as_str()).or_default().push(*partition);
        }
        let lookups: Vec<(&str, &[PartitionId])> = by_topic.iter().map(|(t, p)| (*t, p.as_slice())).collect();
        let found = self.consumer.connection().offset_fetch(self.membership.group_id(), &lookups).await?;
        let wanted: Vec<TopicPartition> = self.unpositioned.iter().cloned().collect();
        for (topic, partition) in wanted {
            let committed = found.iter().find(|f| f.topic == topic && f.partition == partition).and_then(|f| f.offset);
            let start = committed.map_or(self.config.start_from, SeekTo::Offset);
            self.consumer.seek(&topic, partition, start).await?;
            if let Some(offset) = committed {
                self.committed.insert((topic.clone(), partition), offset);
            }
            self.unpositioned.remove(&(topic, partition));
        }
        Ok(())
    }

    /// The fetch wait: the configured long poll, cut short by the next heartbeat and the next
    /// auto-commit.
    fn fetch_wait(&self, auto_commit: bool) -> Duration {
        let now = Instant::now();
        let mut wait = Duration::from_millis(u64::from(self.config.fetch.max_wait_ms));
        wait = wait.min(self.next_heartbeat_at.saturating_duration_since(now));
        if auto_commit {
            wait = wait.min(self.next_auto_commit_at.saturating_duration_since(now));
        }
        wait
    }

    /// Handed-out positions of the partitions `wanted` selects that the group has not
    /// committed yet.
    fn uncommitted(&self, wanted: impl Fn(&TopicPartition) -> bool) -> Vec<(TopicPartition, Offset)> {
        self.handed_out
            .iter()
            .filter(|&(tp, offset)| wanted(tp) && self.committed.get(tp) != Some(offset))
            .map(|(tp, offset)| (tp.clone(), *offset))
            .collect()
    }

    /// Commits `offsets` and waits; a fencing answer resets the member to rejoin.
    async fn commit_offsets(&mut self, offsets: Vec<(TopicPartition, Offset)>) -> ClientResult<()> {
        if offsets.is_empty() || !self.membership.is_member() {
            return Ok(());
        }
        let request = self.commit_request(&offsets);
        let result = match self.consumer.connection().call(&request).await {
            Ok(response) => offset_commit_outcome(self.membership.group_id(), response),
            Err(error) => Err(error),
        };
        self.settle_commit(offsets, result)
    }

    /// The member's OffsetCommit of `offsets`, at its current epoch.
    fn commit_request(&self, offsets: &[(TopicPartition, Offset)]) -> OffsetCommitRequest {
        let list: Vec<(&str, PartitionId, Offset)> =
            offsets.iter().map(|((topic, partition), offset)| (topic.as_str(), *partition, *offset)).collect();
        let committer =
            Committer::Member { member_id: self.membership.member_id(), member_epoch: self.membership.member_epoch() };
        offset_commit_request(self.membership.group_id(), committer, &list)
    }

    /// Waits for the answer to a `commit_async`, if one is in flight.
    async fn collect_async_commit(&mut self) {
        let Some(in_flight) = self.in_flight_commit.take() else { return };
        let result = match self.consumer.connection().receive(in_flight.pending).await {
            Ok(response) => offset_commit_outcome(self.membership.group_id(), response.body),
            Err(error) => Err(error),
        };
        if let Err(error) = self.settle_commit(in_flight.offsets, result) {
            self.commit_error = Some(error);
        }
    }

    fn settle_commit(&mut self, offsets: Vec<(TopicPartition, Offset)>, result: ClientResult<()>) -> ClientResult<()> {
        match &result {
            Ok(()) => {
                for (tp, offset) in offsets {
                    if self.membership.owned().contains(&tp) {
                        self.committed.insert(tp, offset);
                    }
                }
            }
            Err(error) => {
                if let Some(code) = error.error_code().filter(|&code| classify(code) == HeartbeatFailure::Fenced) {
                    self.membership.fence(code);
                    self.forget_positions();
                    self.next_heartbeat_at = Instant::now();
                }
            }
        }
        result
    }

    /// Drops every position (after fencing or leaving): the uncommitted work is the next
    /// owner's.
    fn forget_positions(&mut self) {
        self.fetched.clear();
        self.handed_out.clear();
        self.committed.clear();
        self.unpositioned.clear();
        self.consumer.assign(&[]);
    }
}
