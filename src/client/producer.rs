//! The producer: partitions records, batches them per partition, sends batches in pipelined
//! Produce requests, retries retriable errors, and resolves one delivery future per record.
//!
//! The producer is *driven*: it does I/O only inside its own calls (`send*`, `poll`,
//! `flush`), with no background task, so it runs on any runtime. `send` appends the record,
//! sends every batch that is ready (full, or older than `linger`) and settles the responses
//! that have already arrived, without waiting for any. A [`DeliveryFuture`] therefore resolves
//! only while the producer is being driven: await it after [`Producer::flush`], or call
//! [`Producer::poll`] from a timer.
//!
//! Ordering: records of one partition are acknowledged in order unless a batch is retried while
//! a later batch of the same partition is in flight (no idempotence yet; a retried batch may
//! also be duplicated after `RequestTimedOut`).

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_lite::io::{AsyncRead, AsyncWrite};

use super::accumulator::{Accumulator, AccumulatorConfig, ClosedBatch};
use super::connection::{Connection, Pending, Response};
use super::error::{ClientError, ClientResult};
use super::partitioner::{partition_for_key, StickyPartitioner};
use super::retry::Backoff;
use crate::model::{Offset, PartitionId, TimestampMs};
use crate::protocol::apis::produce::{ACKS_ALL, ACKS_LEADER, ACKS_NONE};
use crate::protocol::{
    ErrorCode, PayloadBuilder, PayloadRange, ProducePartition, ProduceRequest, ProduceResponse, ProduceTopic,
    OFFSET_UNKNOWN,
};
use crate::storage::batch::BatchBuilderConfig;

/// Bound on the payload of one Produce request; more ready batches go in the next request.
/// Well under the broker's default frame limit (64 MiB).
pub const REQUEST_PAYLOAD_BYTES_MAX: usize = 16 * 1024 * 1024;
const _: () = assert!(REQUEST_PAYLOAD_BYTES_MAX < crate::protocol::MAX_FRAME_BYTES_DEFAULT as usize);

/// When the broker acknowledges a produce.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Acks {
    /// Once the request is accepted, before the append; offsets are unknown.
    None,
    /// After the leader appended (and met its durability policy).
    Leader,
    /// After every in-sync replica appended.
    All,
}

impl Acks {
    pub fn as_i16(self) -> i16 {
        match self {
            Acks::None => ACKS_NONE,
            Acks::Leader => ACKS_LEADER,
            Acks::All => ACKS_ALL,
        }
    }
}

/// Producer settings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProducerConfig {
    pub acks: Acks,
    /// Batch size target and linger.
    pub batching: AccumulatorConfig,
    /// Retries of a batch that failed with a retriable code, after the first attempt.
    pub retries_max: u32,
    pub backoff: Backoff,
    /// Produce requests in flight at once; must not exceed the connection's `max_in_flight`
    /// minus one (a slot stays free for Metadata).
    pub requests_in_flight_max: usize,
    /// The broker's time limit for acks, sent in every request.
    pub timeout_ms: u32,
}

impl Default for ProducerConfig {
    fn default() -> Self {
        ProducerConfig {
            acks: Acks::All,
            batching: AccumulatorConfig::default(),
            retries_max: 5,
            backoff: Backoff::default(),
            requests_in_flight_max: 5,
            timeout_ms: 30_000,
        }
    }
}

/// Where a record landed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Delivery {
    pub partition: PartitionId,
    /// `None` with `acks = 0`: the broker answers before it assigns offsets.
    pub offset: Option<Offset>,
}

/// One record to send.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ProducerRecord {
    pub topic: String,
    /// `None`: chosen by the partitioner (key hash, or sticky for null keys).
    pub partition: Option<PartitionId>,
    pub key: Option<Bytes>,
    pub value: Bytes,
    pub headers: Vec<(String, Bytes)>,
    /// `None`: now.
    pub timestamp: Option<TimestampMs>,
}

#[derive(Debug, Default)]
struct Slot {
    result: Option<ClientResult<Delivery>>,
    waker: Option<Waker>,
}

/// Resolves to the record's [`Delivery`] once its batch is acknowledged (or failed for good).
/// See the module doc: the producer must be driven for it to resolve.
#[derive(Debug)]
pub struct DeliveryFuture(Rc<RefCell<Slot>>);

impl DeliveryFuture {
    /// The outcome if it is known, without waiting.
    pub fn try_result(&self) -> Option<ClientResult<Delivery>> {
        self.0.borrow().result.clone()
    }
}

impl Future for DeliveryFuture {
    type Output = ClientResult<Delivery>;

    fn poll(self: Pin<&mut Self>, context: &mut Context<'_>) -> Poll<Self::Output> {
        let mut slot = self.0.borrow_mut();
        match slot.result.clone() {
            Some(result) => Poll::Ready(result),
            None => {
                slot.waker = Some(context.waker().clone());
                Poll::Pending
            }
        }
    }
}

/// The producer's end of a delivery future.
#[derive(Debug)]
struct DeliverySender(Rc<RefCell<Slot>>);

impl DeliverySender {
    fn pair() -> (DeliverySender, DeliveryFuture) {
        let slot = Rc::new(RefCell::new(Slot::default()));
        (DeliverySender(Rc::clone(&slot)), DeliveryFuture(slot))
    }

    fn complete(self, result: ClientResult<Delivery>) {
        let waker = {
            let mut slot = self.0.borrow_mut();
            slot.result = Some(result);
            slot.waker.take()
        };
        if let Some(waker) = waker {
            waker.wake();
        }
    }
}

impl Drop for DeliverySender {
    /// A sender dropped unsettled (a bug, or the producer dropped with records queued) fails
    /// its future instead of leaving it pending forever.
    fn drop(&mut self) {
        let waker = {
            let Ok(mut slot) = self.0.try_borrow_mut() else {
                return;
            };
            if slot.result.is_some() {
                return;
            }
            slot.result = Some(Err(ClientError::InvalidArgument(
                "the producer was dropped before the record was acknowledged".to_owned(),
            )));
            slot.waker.take()
        };
        if let Some(waker) = waker {
            waker.wake();
        }
    }
}

/// Groups parts by topic and lays their batches out in one payload section: each partition
/// gets one range holding its batches back to back.
fn produce_topics(
    parts: &[PartitionBatches],
) -> Result<(Vec<ProduceTopic>, Vec<Bytes>), crate::protocol::ProtocolError> {
    let mut payload = PayloadBuilder::new();
    let mut topics: Vec<ProduceTopic> = Vec::new();
    for part in parts {
        let mut range: Option<PayloadRange> = None;
        for batch in &part.batches {
            let pushed = payload.push(batch.clone())?;
            match range.as_mut() {
                None => range = Some(pushed),
                Some(range) => range.length += pushed.length,
            }
        }
        let Some(range) = range else { continue };
        let partition = ProducePartition {
            partition: part.partition.0,
            payload_offset: range.offset,
            payload_length: range.length,
        };
        match topics.iter_mut().find(|t| t.name == part.topic) {
            Some(topic) => topic.partitions.push(partition),
            None => topics.push(ProduceTopic { name: part.topic.clone(), partitions: vec![partition] }),
        }
    }
    Ok((topics, payload.finish()))
}

/// One partition's batches in one request, and the delivery senders of their records in
/// offset order.
#[derive(Debug)]
struct PartitionBatches {
    topic: String,
    partition: PartitionId,
    batches: Vec<Bytes>,
    senders: Vec<DeliverySender>,
    /// Attempts made so far (1 after the first send).
    attempts: u32,
}

impl PartitionBatches {
    fn bytes(&self) -> usize {
        self.batches.iter().map(Bytes::len).sum()
    }

    fn fail(self, error: &ClientError) {
        for sender in self.senders {
            sender.complete(Err(error.clone()));
        }
    }
}

#[derive(Debug)]
struct InFlight {
    pending: Pending<ProduceRequest>,
    parts: Vec<PartitionBatches>,
}

#[derive(Debug)]
struct Retry {
    not_before: Instant,
    part: PartitionBatches,
}

/// See the module doc. Owned by one task.
pub struct Producer<S> {
    connection: Connection<S>,
    config: ProducerConfig,
    partition_counts: HashMap<String, u32>,
    sticky: StickyPartitioner,
    accumulator: Accumulator<DeliverySender>,
    in_flight: VecDeque<InFlight>,
    retries: Vec<Retry>,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Producer<S> {
    pub fn new(connection: Connection<S>, config: ProducerConfig) -> Producer<S> {
        let mut config = config;
        config.requests_in_flight_max =
            config.requests_in_flight_max.clamp(1, connection.config().max_in_flight.saturating_sub(1).max(1));
        Producer {
            connection,
            accumulator: Accumulator::new(config.batching, BatchBuilderConfig::default()),
            config,
            partition_counts: HashMap::new(),
            sticky: StickyPartitioner::new(),
            in_flight: VecDeque::new(),
            retries: Vec::new(),
        }
    }

    pub fn config(&self) -> &ProducerConfig {
        &self.config
    }

    /// The partition count of `topic`, from Metadata on first use and cached after.
    pub async fn partition_count(&mut self, topic: &str) -> ClientResult<u32> {
        if let Some(&count) = self.partition_counts.get(topic) {
            return Ok(count);
        }
        while !self.connection.can_send() {
            self.receive_oldest().await?;
        }
        let metadata = self.connection.topic_metadata(topic).await?;
        let count = u32::try_from(metadata.partitions.len()).unwrap_or(u32::MAX);
        if count == 0 {
            return Err(ClientError::Topic {
                topic: topic.to_owned(),
                code: ErrorCode::UnknownTopicOrPartition,
                message: "the topic has no partitions".to_owned(),
            });
        }
        self.partition_counts.insert(topic.to_owned(), count);
        Ok(count)
    }

    /// Sends one record to `topic`, partitioned by key (FNV-1a) or sticky for a null key.
    pub async fn send(
        &mut self,
        topic: &str,
        key: Option<Bytes>,
        value: Bytes,
        headers: Vec<(String, Bytes)>,
    ) -> ClientResult<DeliveryFuture> {
        self.send_record(ProducerRecord {
            topic: topic.to_owned(),
            partition: None,
            key,
            value,
            headers,
            timestamp: None,
        })
        .await
    }

    /// Queues one record, sends whatever batches are ready, settles responses already
    /// arrived. Fails at once (without queueing) for an unknown topic, a partition out of
    /// range, or a broken connection; later failures come through the returned future.
    pub async fn send_record(&mut self, record: ProducerRecord) -> ClientResult<DeliveryFuture> {
        if let Some(reason) = self.connection.poisoned() {
            return Err(ClientError::Poisoned(reason.to_owned()));
        }
        let count = self.partition_count(&record.topic).await?;
        let (partition, sticky) = match (record.partition, &record.key) {
            (Some(partition), _) if partition.0 < count => (partition, false),
            (Some(partition), _) => {
                return Err(ClientError::InvalidArgument(format!(
                    "partition {partition} does not exist: topic '{}' has {count} partitions",
                    record.topic
                )))
            }
            (None, Some(key)) => (partition_for_key(key, count), false),
            (None, None) => (self.sticky.partition(&record.topic, count), true),
        };
        let (sender, future) = DeliverySender::pair();
        let headers: Vec<(&str, &[u8])> =
            record.headers.iter().map(|(key, value)| (key.as_str(), &value[..])).collect();
        let appended = self.accumulator.append(
            &record.topic,
            partition,
            Instant::now(),
            record.timestamp.unwrap_or_else(TimestampMs::now),
            record.key.as_deref(),
            &record.value,
            &headers,
            sender,
        );
        if sticky && appended.batch_closed {
            self.sticky.batch_closed(&record.topic, partition, count);
        }
        self.poll().await?;
        Ok(future)
    }

    /// Sends the batches that are ready (full, lingered, or due for retry) as far as the
    /// in-flight bound allows without waiting, and settles the responses that have arrived.
    pub async fn poll(&mut self) -> ClientResult<()> {
        self.settle_arrived()?;
        self.send_ready(false).await?;
        self.settle_arrived()
    }

    /// Sends everything queued, lingering or not, and waits until every record is
    /// acknowledged or failed for good (retries included). Per-record failures are reported
    /// through the delivery futures; an error here means the connection failed, and then every
    /// outstanding delivery has failed with it.
    pub async fn flush(&mut self) -> ClientResult<()> {
        loop {
            self.send_ready(true).await?;
            if !self.in_flight.is_empty() {
                self.receive_oldest().await?;
                continue;
            }
            if let Some(not_before) = self.retries.iter().map(|r| r.not_before).min() {
                let wait = not_before.saturating_duration_since(Instant::now());
                if !wait.is_zero() {
                    self.connection.sleeper().sleep(wait).await;
                }
                continue;
            }
            if self.accumulator.is_empty() {
                return Ok(());
            }
        }
    }

    /// Records queued or in flight, not yet settled.
    pub fn outstanding(&self) -> usize {
        self.accumulator.records()
            + self
                .in_flight
                .iter()
                .flat_map(|f| f.parts.iter())
                .chain(self.retries.iter().map(|r| &r.part))
                .map(|part| part.senders.len())
                .sum::<usize>()
    }

    /// Sends ready batches: due retries first, then closed and lingered (or all, when
    /// `force`) batches, in requests of at most [`REQUEST_PAYLOAD_BYTES_MAX`]. Waits for the
    /// oldest response when the in-flight bound is reached.
    async fn send_ready(&mut self, force: bool) -> ClientResult<()> {
        let now = Instant::now();
        let mut parts: Vec<PartitionBatches> = Vec::new();
        let (due, later): (Vec<Retry>, Vec<Retry>) =
            std::mem::take(&mut self.retries).into_iter().partition(|retry| retry.not_before <= now);
        self.retries = later;
        parts.extend(due.into_iter().map(|retry| retry.part));
        let closed = self.accumulator.drain_ready(now, force);
        parts.extend(self.build_batches(closed));
        let mut queue: VecDeque<PartitionBatches> = parts.into();
        while !queue.is_empty() {
            // Backpressure: with the in-flight bound reached, wait for the oldest answer.
            while self.in_flight.len() >= self.config.requests_in_flight_max {
                self.receive_oldest().await?;
            }
            let mut request_parts = Vec::new();
            let mut bytes = 0;
            while let Some(part) = queue.front() {
                if !request_parts.is_empty() && bytes + part.bytes() > REQUEST_PAYLOAD_BYTES_MAX {
                    break;
                }
                bytes += part.bytes();
                request_parts.extend(queue.pop_front());
            }
            self.send_request(request_parts).await?;
        }
        Ok(())
    }

    /// Serializes closed batches; merges batches of the same partition into one part, so that
    /// each partition appears once per request with its batches back to back.
    fn build_batches(&mut self, closed: Vec<ClosedBatch<DeliverySender>>) -> Vec<PartitionBatches> {
        let mut merged: BTreeMap<(String, PartitionId), PartitionBatches> = BTreeMap::new();
        for batch in closed {
            if let Some(&count) = self.partition_counts.get(&batch.topic) {
                self.sticky.batch_closed(&batch.topic, batch.partition, count);
            }
            let built = match batch.builder.build() {
                Ok(built) => built,
                Err(error) => {
                    let error = ClientError::from(error);
                    for sender in batch.tokens {
                        sender.complete(Err(error.clone()));
                    }
                    continue;
                }
            };
            let part = merged.entry((batch.topic.clone(), batch.partition)).or_insert_with(|| PartitionBatches {
                topic: batch.topic,
                partition: batch.partition,
                batches: Vec::new(),
                senders: Vec::new(),
                attempts: 0,
            });
            part.batches.push(built);
            part.senders.extend(batch.tokens);
        }
        merged.into_values().collect()
    }

    async fn send_request(&mut self, mut parts: Vec<PartitionBatches>) -> ClientResult<()> {
        for part in &mut parts {
            part.attempts += 1;
        }
        let (topics, payload) = match produce_topics(&parts) {
            Ok(built) => built,
            Err(error) => {
                let error = ClientError::from(error);
                for part in parts {
                    part.fail(&error);
                }
                return Err(error);
            }
        };
        let request = ProduceRequest { acks: self.config.acks.as_i16(), timeout_ms: self.config.timeout_ms, topics };
        match self.connection.send(&request, payload).await {
            Ok(pending) => {
                self.in_flight.push_back(InFlight { pending, parts });
                Ok(())
            }
            Err(error) => {
                for part in parts {
                    part.fail(&error);
                }
                Err(self.fail_everything(error))
            }
        }
    }

    /// Settles every response that has already arrived, oldest first, without waiting.
    fn settle_arrived(&mut self) -> ClientResult<()> {
        while self.settle_arrived_one()? {}
        Ok(())
    }

    /// Settles the oldest response if it has arrived; whether it had.
    fn settle_arrived_one(&mut self) -> ClientResult<bool> {
        let Some(oldest) = self.in_flight.front() else {
            return Ok(false);
        };
        match self.connection.is_ready(&oldest.pending) {
            Ok(true) => {}
            Ok(false) => return Ok(false),
            Err(error) => return Err(self.fail_everything(error)),
        }
        let Some(oldest) = self.in_flight.pop_front() else {
            return Ok(false);
        };
        // The frame is parked: this future completes on its first poll.
        let response = futures_lite::future::block_on(self.connection.receive(oldest.pending));
        self.settle(oldest.parts, response)?;
        Ok(true)
    }

    /// Waits for the oldest response and settles it.
    async fn receive_oldest(&mut self) -> ClientResult<()> {
        let Some(oldest) = self.in_flight.pop_front() else {
            return Ok(());
        };
        let response = self.connection.receive(oldest.pending).await;
        self.settle(oldest.parts, response)
    }

    /// Completes, retries or fails each part of one request from its response.
    fn settle(
        &mut self,
        parts: Vec<PartitionBatches>,
        response: ClientResult<Response<ProduceResponse>>,
    ) -> ClientResult<()> {
        let response = match response {
            Ok(response) => response.body,
            Err(error) if error.is_retriable() && self.connection.poisoned().is_none() => {
                // The whole request was refused with a retriable code (e.g. throttled_busy).
                for part in parts {
                    self.retry_or_fail(part, error.clone());
                }
                return Ok(());
            }
            Err(error) if self.connection.poisoned().is_none() => {
                for part in parts {
                    part.fail(&error);
                }
                return Ok(());
            }
            Err(error) => {
                for part in parts {
                    part.fail(&error);
                }
                return Err(self.fail_everything(error));
            }
        };
        for part in parts {
            let answer = response
                .topics
                .iter()
                .filter(|t| t.name == part.topic)
                .flat_map(|t| t.partitions.iter())
                .find(|p| p.partition == part.partition.0);
            let Some(answer) = answer else {
                let error = ClientError::Partition {
                    topic: part.topic.clone(),
                    partition: part.partition,
                    code: ErrorCode::Unknown,
                    message: "missing from the Produce response".to_owned(),
                };
                part.fail(&error);
                continue;
            };
            let code = ErrorCode::from_u16(answer.error_code);
            if code.is_ok() {
                let base = (answer.base_offset != OFFSET_UNKNOWN).then_some(answer.base_offset);
                let partition = part.partition;
                for (index, sender) in part.senders.into_iter().enumerate() {
                    let offset = base.map(|base| Offset(base.saturating_add(index as u64)));
                    sender.complete(Ok(Delivery { partition, offset }));
                }
                continue;
            }
            let error = ClientError::Partition {
                topic: part.topic.clone(),
                partition: part.partition,
                code,
                message: answer.error_message.clone(),
            };
            if code == ErrorCode::NotLeader || code == ErrorCode::UnknownTopicOrPartition {
                // Partition counts may have changed: ask again on next use.
                self.partition_counts.remove(&part.topic);
            }
            self.retry_or_fail(part, error);
        }
        Ok(())
    }

    fn retry_or_fail(&mut self, part: PartitionBatches, error: ClientError) {
        // attempts counts the first send: retries so far = attempts - 1.
        let retries_done = part.attempts.saturating_sub(1);
        if error.is_retriable() && retries_done < self.config.retries_max {
            let delay: Duration = self.config.backoff.delay(retries_done);
            self.retries.push(Retry { not_before: Instant::now() + delay, part });
        } else {
            part.fail(&error);
        }
    }

    /// The connection is gone: fail every record queued, in flight or waiting for a retry.
    fn fail_everything(&mut self, error: ClientError) -> ClientError {
        for in_flight in self.in_flight.drain(..) {
            for part in in_flight.parts {
                part.fail(&error);
            }
        }
        for retry in self.retries.drain(..) {
            retry.part.fail(&error);
        }
        for batch in self.accumulator.drain_ready(Instant::now(), true) {
            for sender in batch.tokens {
                sender.complete(Err(error.clone()));
            }
        }
        error
    }
}
