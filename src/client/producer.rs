//! The producer: partitions records, batches them per partition, sends batches in pipelined
//! Produce requests, retries retriable errors, and resolves one delivery future per record.
//!
//! The producer is *driven*: it does I/O only inside its own calls (`send*`, `poll`,
//! `flush`), with no background task, so it runs on any runtime. `send` appends the record,
//! sends every batch that is ready (full, or older than `linger`) and settles the responses
//! that have already arrived, without waiting for any. While every request slot is taken, a
//! batch older than `linger` stays open and keeps taking records (natural batching, as Kafka's
//! sender does), up to one batch of bytes held; past that, or with a full batch to send,
//! `send` waits for a slot — the producer's backpressure. A [`DeliveryFuture`] therefore resolves
//! only while the producer is being driven: await it after [`Producer::flush`], or call
//! [`Producer::poll`] from a timer.
//!
//! Idempotence (Kafka's rules, on by default with `acks = all`; see
//! [`ProducerConfig::idempotence`]): on first use the producer asks the broker for a producer
//! id and epoch (InitProducerId); every batch gets the next sequence of its partition when it
//! is sealed, and keeps its bytes and sequence through every retry; at most five batches per
//! partition are in flight. The broker appends each sequence once: a retried batch that was
//! already appended is answered with its original offset. `OutOfOrderSequence` (records lost
//! between producer and broker) and `ProducerFenced` (a newer producer with the same id) are
//! fatal for the deliveries they concern; `ProducerFenced` also ends the producer.
//!
//! Reconnection: with [`Producer::with_reconnect`], a dropped or poisoned connection is
//! replaced by a new one (up to `retries_max` attempts, with back-off), and the requests that
//! were in flight on it are sent again, in the order their batches were sealed. Without it, a
//! broken connection fails every outstanding delivery.
//!
//! Ordering: records of one partition are acknowledged in order. With idempotence this holds
//! through retries and reconnections, and a retry is never appended twice. Without it, a batch
//! retried while a later batch of the same partition is in flight may land after it, and a
//! batch whose answer was lost (timeout, dropped connection) may be appended twice.

use std::cell::RefCell;
use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_lite::io::{AsyncRead, AsyncWrite};
use rustc_hash::{FxHashMap, FxHashSet};

use super::accumulator::{
    record_bytes_estimate, Accumulator, AccumulatorConfig, BatchToken, ClosedBatch, OpenBatchRoom,
};
use super::batch_buffers::BatchBuffers;
use super::connection::{Connection, Pending, Response};
use super::error::{ClientError, ClientResult};
use super::idempotence::{ProducerIdentity, Sequences};
use super::partitioner::{choose_partition, StickyPartitioner};
use super::reconnect::Connect;
use super::record_clock::RecordClock;
use super::retry::Backoff;
use crate::model::{Offset, PartitionId, ProducerEpoch, ProducerId, TimestampMs};
use crate::protocol::apis::produce::{ACKS_ALL, ACKS_LEADER, ACKS_NONE};
use crate::protocol::{
    ErrorCode, InitProducerIdRequest, PayloadBuilder, PayloadRange, ProducePartition, ProducePartitionResponse,
    ProduceRequest, ProduceResponse, ProduceTopic, OFFSET_UNKNOWN,
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
    /// Retries of a batch that failed with a retriable code or lost its connection, after the
    /// first attempt; also the bound on connection attempts after a drop (with a connector).
    pub retries_max: u32,
    pub backoff: Backoff,
    /// Produce requests in flight at once; must not exceed the connection's `max_in_flight`
    /// minus one (a slot stays free for Metadata).
    pub requests_in_flight_max: usize,
    /// The broker's time limit for acks, sent in every request.
    pub timeout_ms: u32,
    /// Idempotent produce (see the module doc). `None`: Kafka's default, on with
    /// `acks = All` and off otherwise. `Some(true)` needs `acks = All`: with other acks the
    /// producer refuses every send with a configuration error.
    pub idempotence: Option<bool>,
}

impl ProducerConfig {
    /// Whether this configuration produces idempotently, or why it is invalid.
    pub fn is_idempotent(&self) -> ClientResult<bool> {
        match (self.idempotence, self.acks) {
            (None, acks) => Ok(acks == Acks::All),
            (Some(true), Acks::All) => Ok(true),
            (Some(true), acks) => Err(ClientError::InvalidArgument(format!(
                "idempotence needs acks = all (-1), but acks is {}: set acks to all or turn idempotence off",
                acks.as_i16()
            ))),
            (Some(false), _) => Ok(false),
        }
    }
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
            idempotence: None,
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

/// The outcome of one batch, shared by the delivery futures of its records: one allocation
/// and one completion per batch, not per record.
#[derive(Debug, Default)]
struct BatchOutcome {
    /// The batch's partition and base offset (`None` with `acks = 0`), or why it failed.
    result: Option<ClientResult<(PartitionId, Option<Offset>)>>,
    /// Tasks awaiting a record of the batch; at most one per task.
    wakers: Vec<Waker>,
}

/// Resolves to the record's [`Delivery`] once its batch is acknowledged (or failed for good).
/// See the module doc: the producer must be driven for it to resolve.
#[derive(Debug)]
pub struct DeliveryFuture {
    batch: Rc<RefCell<BatchOutcome>>,
    /// The record's position in its batch.
    record_index: u32,
}

impl DeliveryFuture {
    /// The outcome if it is known, without waiting.
    pub fn try_result(&self) -> Option<ClientResult<Delivery>> {
        let batch = self.batch.borrow();
        let result = batch.result.as_ref()?;
        Some(match result {
            Ok((partition, base)) => Ok(Delivery {
                partition: *partition,
                offset: base.map(|base| Offset(base.0.saturating_add(u64::from(self.record_index)))),
            }),
            Err(error) => Err(error.clone()),
        })
    }
}

impl Future for DeliveryFuture {
    type Output = ClientResult<Delivery>;

    fn poll(self: Pin<&mut Self>, context: &mut Context<'_>) -> Poll<Self::Output> {
        if let Some(result) = self.try_result() {
            return Poll::Ready(result);
        }
        let mut batch = self.batch.borrow_mut();
        if !batch.wakers.iter().any(|waker| waker.will_wake(context.waker())) {
            batch.wakers.push(context.waker().clone());
        }
        Poll::Pending
    }
}

/// The producer's end of a batch's delivery futures: the accumulator's token per batch.
#[derive(Debug, Default)]
struct DeliverySender(Rc<RefCell<BatchOutcome>>);

impl BatchToken for DeliverySender {
    type Share = Rc<RefCell<BatchOutcome>>;
    fn share(&self) -> Rc<RefCell<BatchOutcome>> {
        Rc::clone(&self.0)
    }
}

impl DeliverySender {
    /// Resolves every record of the batch: offsets from `base` in record order, or the error.
    fn complete(self, result: ClientResult<(PartitionId, Option<Offset>)>) {
        self.resolve(result);
    }

    fn resolve(&self, result: ClientResult<(PartitionId, Option<Offset>)>) {
        let wakers = {
            let Ok(mut batch) = self.0.try_borrow_mut() else { return };
            if batch.result.is_some() {
                return;
            }
            batch.result = Some(result);
            std::mem::take(&mut batch.wakers)
        };
        for waker in wakers {
            waker.wake();
        }
    }
}

impl Drop for DeliverySender {
    /// A sender dropped unsettled (a bug, or the producer dropped with records queued) fails
    /// its futures instead of leaving them pending forever.
    fn drop(&mut self) {
        // Settled batches (nearly all) drop without building the error.
        if self.0.try_borrow().is_ok_and(|batch| batch.result.is_some()) {
            return;
        }
        self.resolve(Err(ClientError::InvalidArgument(
            "the producer was dropped before the record was acknowledged".to_owned(),
        )));
    }
}

/// Groups parts by topic and lays their batches out in one payload section: each partition
/// gets the range of its batch.
fn produce_topics(
    parts: &[PartitionBatches],
) -> Result<(Vec<ProduceTopic>, Vec<Bytes>), crate::protocol::ProtocolError> {
    let mut payload = PayloadBuilder::new();
    let mut topics: Vec<ProduceTopic> = Vec::new();
    for part in parts {
        let range: PayloadRange = payload.push(part.batch.clone())?;
        let partition = ProducePartition {
            partition: part.partition.0,
            payload_offset: range.offset,
            payload_length: range.length,
        };
        match topics.iter_mut().find(|t| *t.name == *part.topic) {
            Some(topic) => topic.partitions.push(partition),
            None => topics.push(ProduceTopic { name: part.topic.to_string(), partitions: vec![partition] }),
        }
    }
    Ok((topics, payload.finish()))
}

/// How often sending records reads the stream for responses: a read attempt per record was
/// 6 % of a producer thread sending 1 KiB records (PERF.md); acks wait at most this much longer
/// to be seen. Explicit polls and waits read at once.
const RESPONSE_READ_INTERVAL: Duration = Duration::from_micros(5);

/// Batches of a partition in one [`PartitionBatches`], as the idempotence bookkeeping counts them.
const BATCHES_PER_PART: usize = 1;

/// One partition's batch in one request (one batch per partition per request, as in Kafka:
/// see [`Producer::build_batches`]), and the delivery sender of its records.
#[derive(Debug)]
struct PartitionBatches {
    topic: Rc<str>,
    partition: PartitionId,
    batch: Bytes,
    sender: DeliverySender,
    records: usize,
    /// Attempts made so far (1 after the first send).
    attempts: u32,
    /// When the part's first batch was sealed, across the producer: parts of a partition are
    /// sent in this order.
    seal_index: u64,
}

impl PartitionBatches {
    fn bytes(&self) -> usize {
        self.batch.len()
    }

    fn fail(self, error: &ClientError) {
        self.sender.complete(Err(error.clone()));
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
    connector: Option<Box<dyn Connect<S>>>,
    config: ProducerConfig,
    /// Set when the configuration is invalid: every send fails with it.
    config_error: Option<ClientError>,
    idempotent: bool,
    /// From InitProducerId, on first use (idempotent producers only).
    identity: Option<ProducerIdentity>,
    sequences: Sequences,
    /// A fatal error (`ProducerFenced`): every later send fails with it.
    fatal: Option<ClientError>,
    partition_counts: FxHashMap<String, u32>,
    record_clock: RecordClock,
    sticky: StickyPartitioner,
    accumulator: Accumulator<DeliverySender>,
    /// Where batches are built: buffers of settled batches are reused.
    batch_buffers: BatchBuffers,
    /// When the per-record path reads the stream for responses next.
    next_response_read: Instant,
    /// Built parts not sent yet, in seal order: their partition is at its in-flight bound, or
    /// waits for an earlier part's retry.
    waiting: VecDeque<PartitionBatches>,
    next_seal_index: u64,
    in_flight: VecDeque<InFlight>,
    retries: Vec<Retry>,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Producer<S> {
    pub fn new(connection: Connection<S>, config: ProducerConfig) -> Producer<S> {
        let mut config = config;
        config.requests_in_flight_max =
            config.requests_in_flight_max.clamp(1, connection.config().max_in_flight.saturating_sub(1).max(1));
        let (idempotent, config_error) = match config.is_idempotent() {
            Ok(idempotent) => (idempotent, None),
            Err(error) => (false, Some(error)),
        };
        Producer {
            connection,
            connector: None,
            accumulator: Accumulator::new(config.batching, BatchBuilderConfig::default()),
            // A request in flight holds its batches; one more is being built.
            batch_buffers: BatchBuffers::new(config.requests_in_flight_max + 1),
            next_response_read: Instant::now(),
            config,
            config_error,
            idempotent,
            identity: None,
            sequences: Sequences::default(),
            fatal: None,
            partition_counts: FxHashMap::default(),
            record_clock: RecordClock::new(),
            sticky: StickyPartitioner::new(),
            waiting: VecDeque::new(),
            next_seal_index: 0,
            in_flight: VecDeque::new(),
            retries: Vec::new(),
        }
    }

    /// Replaces a broken connection with one from `connector` instead of failing every
    /// outstanding delivery (see the module doc).
    pub fn with_reconnect(mut self, connector: impl Connect<S> + 'static) -> Producer<S> {
        self.connector = Some(Box::new(connector));
        self
    }

    pub fn config(&self) -> &ProducerConfig {
        &self.config
    }

    pub fn is_idempotent(&self) -> bool {
        self.idempotent
    }

    /// The producer id and epoch, once an idempotent producer has one.
    pub fn producer_identity(&self) -> Option<(ProducerId, ProducerEpoch)> {
        self.identity.map(|identity| (identity.producer_id, identity.producer_epoch))
    }

    /// The partition count of `topic`, from Metadata on first use and cached after.
    pub async fn partition_count(&mut self, topic: &str) -> ClientResult<u32> {
        if let Some(&count) = self.partition_counts.get(topic) {
            return Ok(count);
        }
        self.ensure_connected().await?;
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
        self.send_at(Instant::now(), topic, key, value, headers).await
    }

    /// [`Producer::send`] with the caller's reading of the clock, for a caller that has just
    /// read it (a load generator timing each record): it serves the linger, the record's
    /// timestamp and the ready check.
    pub async fn send_at(
        &mut self,
        now: Instant,
        topic: &str,
        key: Option<Bytes>,
        value: Bytes,
        headers: Vec<(String, Bytes)>,
    ) -> ClientResult<DeliveryFuture> {
        self.queue_and_poll(topic, None, key, value, &headers, None, now).await
    }

    /// Queues one record, sends whatever batches are ready, settles responses already
    /// arrived. Fails at once (without queueing) for an invalid configuration, an unknown
    /// topic, a partition out of range, a broken connection that cannot be replaced, or a
    /// fenced producer; later failures come through the returned future.
    pub async fn send_record(&mut self, record: ProducerRecord) -> ClientResult<DeliveryFuture> {
        let ProducerRecord { topic, partition, key, value, headers, timestamp } = record;
        self.queue_and_poll(&topic, partition, key, value, &headers, timestamp, Instant::now()).await
    }

    /// [`Producer::send_record`] on borrowed parts, with the caller's reading of the clock
    /// (`now`): one reading serves the linger, the record's timestamp and the ready check.
    ///
    /// Called once per record. What may wait on the network (reconnecting, Metadata, a
    /// producer id, sending a request) is a boxed future awaited only when it has work: the
    /// future of this call, made and moved per record, stays small.
    #[allow(clippy::too_many_arguments)]
    pub(crate) async fn queue_and_poll(
        &mut self,
        topic: &str,
        partition: Option<PartitionId>,
        key: Option<Bytes>,
        value: Bytes,
        headers: &[(String, Bytes)],
        timestamp: Option<TimestampMs>,
        now: Instant,
    ) -> ClientResult<DeliveryFuture> {
        if let Some(error) = self.config_error.as_ref().or(self.fatal.as_ref()) {
            return Err(error.clone());
        }
        if self.connection.poisoned().is_some() {
            Box::pin(self.ensure_connected()).await?;
        }
        let count = match self.partition_counts.get(topic) {
            Some(&count) => count,
            None => Box::pin(self.partition_count(topic)).await?,
        };
        let sticky_partitioner = &mut self.sticky;
        let (mut partition, sticky) =
            choose_partition(topic, partition, key.as_deref(), count, || sticky_partitioner.partition(topic, count))?;
        if self.idempotent && self.identity.is_none() {
            Box::pin(self.init_producer_id()).await?;
        }
        let headers: Vec<(&str, &[u8])> = headers.iter().map(|(key, value)| (key.as_str(), &value[..])).collect();
        if sticky {
            // A record the sticky partition's batch cannot take goes to the next partition, not
            // to a one-record batch here (`Accumulator::close_if_full`).
            let record_bytes = record_bytes_estimate(key.as_deref(), &value, &headers);
            if self.accumulator.close_if_full(topic, partition, record_bytes) == OpenBatchRoom::ClosedFull {
                self.sticky.batch_closed(topic, partition, count);
                partition = self.sticky.partition(topic, count);
            }
        }
        let timestamp = timestamp.unwrap_or_else(|| self.record_clock.timestamp_at(now));
        let (appended, batch) = self.accumulator.append(topic, partition, now, timestamp, key, value, &headers);
        if sticky && appended.batch_closed {
            self.sticky.batch_closed(topic, partition, count);
        }
        self.poll_between_sends(now).await?;
        Ok(DeliveryFuture { batch, record_index: appended.record_index })
    }

    /// [`Accumulator::close_if_full`] on this producer's batches: for a partitioner outside it
    /// (the shard-aware producer's) that must move on before a record opens a straggler batch.
    pub(crate) fn close_batch_if_full(
        &mut self,
        topic: &str,
        partition: PartitionId,
        record_bytes: usize,
    ) -> OpenBatchRoom {
        self.accumulator.close_if_full(topic, partition, record_bytes)
    }

    /// Sends the batches that are ready (full, lingered, or due for retry) as far as the
    /// in-flight bounds allow without waiting, and settles the responses that have arrived.
    pub async fn poll(&mut self) -> ClientResult<()> {
        self.poll_at(Instant::now()).await
    }

    /// [`Producer::poll`] with the caller's reading of the clock. Settles again after sending
    /// only when something was sent. Called once per record: with nothing to send it returns
    /// without awaiting anything (the sending future is boxed, made only when needed).
    pub(crate) async fn poll_at(&mut self, now: Instant) -> ClientResult<()> {
        self.poll_reading(now, true).await
    }

    /// [`Producer::poll_at`] on the per-record path: reads the stream for responses at most
    /// every [`RESPONSE_READ_INTERVAL`]; responses already parked (by a wait) are settled at once.
    pub(crate) async fn poll_between_sends(&mut self, now: Instant) -> ClientResult<()> {
        let read = now >= self.next_response_read;
        self.poll_reading(now, read).await
    }

    async fn poll_reading(&mut self, now: Instant, read: bool) -> ClientResult<()> {
        if read {
            self.next_response_read = now.checked_add(RESPONSE_READ_INTERVAL).unwrap_or(now);
            self.settle_arrived()?;
        } else {
            self.settle_parked()?;
        }
        if self.nothing_to_send(now) {
            return Ok(());
        }
        if Box::pin(self.send_ready(now, false)).await? {
            self.settle_arrived()?;
        }
        Ok(())
    }

    /// Nothing ready, nothing waiting, no retry, and a usable connection: the common case,
    /// checked once per record without an allocation or a clock read.
    ///
    /// Also true while the producer holds lingered batches for a request slot (see
    /// [`Self::holding_for_a_slot`]).
    fn nothing_to_send(&self, now: Instant) -> bool {
        self.waiting.is_empty()
            && self.retries.is_empty()
            && self.connection.poisoned().is_none()
            && (!self.accumulator.has_ready(now) || self.holding_for_a_slot())
    }

    /// Natural batching: while every request slot is taken, open batches whose linger ran out
    /// stay open and keep taking records until an ack frees a slot (Kafka's sender does the
    /// same). Closing them at once sent one-record batches behind a full pipeline: with
    /// `linger_ms = 0`, a round trip per record. Bounded: only while no batch is closed and
    /// everything held fits in one batch (`batch_bytes`); past that the sender waits for a
    /// slot as before, and that wait is what holds the caller back. (Without the byte bound, a
    /// sticky partitioner that moves on just before a batch fills leaves every batch open,
    /// and a closed-loop caller was never held back: seconds of records piled up.)
    fn holding_for_a_slot(&self) -> bool {
        self.request_slots_full()
            && !self.accumulator.has_closed()
            && self.accumulator.held_bytes() <= self.config.batching.batch_bytes
    }

    /// Whether the in-flight bound is reached: the next request waits for an answer.
    fn request_slots_full(&self) -> bool {
        self.in_flight.len() >= self.config.requests_in_flight_max
    }

    /// [`Producer::poll`], then waits until something changes — a response arrives, a
    /// lingering batch or a retry comes due, or `deadline` passes, whichever is first — and
    /// polls again. For a caller with nothing to send before `deadline` (an open-loop sender
    /// between two records): its deliveries resolve as soon as their acks arrive, without
    /// polling on a timer. Returns after that one wait.
    pub async fn poll_until(&mut self, deadline: Instant) -> ClientResult<()> {
        self.poll().await?;
        self.wait_for_change(deadline).await?;
        self.poll().await
    }

    /// Sends everything queued, lingering or not, and waits until every record is
    /// acknowledged or failed for good (retries included). Per-record failures are reported
    /// through the delivery futures; an error here means the connection failed (and could not
    /// be replaced), and then every outstanding delivery has failed with it.
    pub async fn flush(&mut self) -> ClientResult<()> {
        // Bounded: every round sends, receives, sleeps until a retry is due, or returns; each
        // part is sent at most `retries_max + 1` times.
        loop {
            self.send_ready(Instant::now(), true).await?;
            if !self.in_flight.is_empty() {
                self.receive_oldest().await?;
                continue;
            }
            if let Some(not_before) = self.next_retry_due() {
                let wait = not_before.saturating_duration_since(Instant::now());
                if !wait.is_zero() {
                    self.connection.sleeper().sleep(wait).await;
                }
                continue;
            }
            if self.accumulator.is_empty() && self.waiting.is_empty() {
                return Ok(());
            }
        }
    }

    /// Whether nothing is queued, waiting, in flight or due for retry (cheaper than
    /// [`Producer::outstanding`], which counts).
    pub fn is_idle(&self) -> bool {
        self.accumulator.is_empty() && self.waiting.is_empty() && self.in_flight.is_empty() && self.retries.is_empty()
    }

    /// Records queued or in flight, not yet settled.
    pub fn outstanding(&self) -> usize {
        self.accumulator.records()
            + self
                .in_flight
                .iter()
                .flat_map(|f| f.parts.iter())
                .chain(self.retries.iter().map(|r| &r.part))
                .chain(self.waiting.iter())
                .map(|part| part.records)
                .sum::<usize>()
    }

    /// Gets a producer id and epoch from the broker, retrying retriable errors and (with a
    /// connector) broken connections.
    async fn init_producer_id(&mut self) -> ClientResult<()> {
        let request = InitProducerIdRequest { transactional_id: None, transaction_timeout_ms: 0 };
        let mut attempt = 0;
        // Bounded: at most `retries_max + 1` attempts.
        loop {
            self.ensure_connected().await?;
            while !self.connection.can_send() {
                self.receive_oldest().await?;
            }
            let error = match self.connection.call(&request).await {
                Ok(response) => {
                    let code = ErrorCode::from_u16(response.error_code);
                    if code.is_ok() {
                        self.identity = Some(ProducerIdentity {
                            producer_id: ProducerId(response.producer_id),
                            producer_epoch: ProducerEpoch(response.producer_epoch),
                        });
                        return Ok(());
                    }
                    ClientError::Broker { code, message: "InitProducerId refused".to_owned() }
                }
                Err(error) => error,
            };
            let reconnectable = self.connector.is_some() && self.connection.poisoned().is_some();
            if attempt >= self.config.retries_max || !(error.is_retriable() || reconnectable) {
                return Err(error);
            }
            self.connection.sleeper().sleep(self.config.backoff.delay(attempt)).await;
            attempt += 1;
        }
    }

    /// With a broken connection: without a connector, its error; with one, requeues what was
    /// in flight on it and connects again (up to `retries_max + 1` attempts, with back-off),
    /// failing everything outstanding if that does not work.
    async fn ensure_connected(&mut self) -> ClientResult<()> {
        let Some(reason) = self.connection.poisoned() else {
            return Ok(());
        };
        let mut error = ClientError::Poisoned(reason.to_owned());
        if self.connector.is_none() {
            return Err(self.fail_everything(error));
        }
        for in_flight in std::mem::take(&mut self.in_flight) {
            for part in in_flight.parts {
                self.requeue(part, &error);
            }
        }
        for attempt in 0..=self.config.retries_max {
            if attempt > 0 {
                self.connection.sleeper().sleep(self.config.backoff.delay(attempt - 1)).await;
            }
            let Some(connecting) = self.connector.as_ref().map(|connector| connector.connect()) else {
                break;
            };
            match connecting.await {
                Ok(connection) => {
                    tracing::debug!(attempt, "producer reconnected");
                    self.connection = connection;
                    return Ok(());
                }
                Err(connect_error) => error = connect_error,
            }
        }
        Err(self.fail_everything(error))
    }

    /// A part whose request died with its connection: sent again (in seal order, after the
    /// back-off of its retry count) on the next connection unless it has used up its attempts.
    fn requeue(&mut self, part: PartitionBatches, error: &ClientError) {
        self.sequences.settled(&part.topic, part.partition, BATCHES_PER_PART);
        let retries_done = part.attempts.saturating_sub(1);
        if retries_done < self.config.retries_max {
            let not_before = Instant::now() + self.config.backoff.delay(retries_done);
            self.retries.push(Retry { not_before, part });
        } else {
            part.fail(error);
        }
    }

    /// Sends ready parts: built ones and due retries, in seal order, in requests of at most
    /// [`REQUEST_PAYLOAD_BYTES_MAX`]. Waits for the oldest response when the in-flight bound is
    /// reached; leaves a part waiting while its partition is at its in-flight bound. `now`
    /// decides which open batches have lingered; whether a request was sent.
    ///
    /// With nothing to send (see [`Self::nothing_to_send`]) it returns before anything else.
    async fn send_ready(&mut self, now: Instant, force: bool) -> ClientResult<bool> {
        if !force && self.nothing_to_send(now) {
            return Ok(false);
        }
        let closed = self.accumulator.drain_ready(now, force);
        let built = self.build_batches(closed);
        self.waiting.extend(built);
        let mut sent = false;
        // Bounded: every round sends one request or returns.
        loop {
            self.ensure_connected().await?;
            if !self.retries.is_empty() {
                self.promote_due_retries(Instant::now());
            }
            if self.sendable().is_empty() {
                return Ok(sent);
            }
            // Backpressure: with the in-flight bound reached, wait for the oldest answer.
            while self.request_slots_full() {
                self.receive_oldest().await?;
            }
            if self.connection.poisoned().is_some() {
                continue;
            }
            let chosen = self.sendable();
            if chosen.is_empty() {
                return Ok(sent);
            }
            let mut parts = Vec::with_capacity(chosen.len());
            for index in chosen.into_iter().rev() {
                parts.extend(self.waiting.remove(index));
            }
            parts.reverse();
            self.send_request(parts).await?;
            sent = true;
        }
    }

    /// When the earliest retry may be sent.
    fn next_retry_due(&self) -> Option<Instant> {
        self.retries.iter().map(|retry| retry.not_before).min()
    }

    /// Moves the retries that are due into `waiting`, which stays in seal order.
    fn promote_due_retries(&mut self, now: Instant) {
        let (due, later): (Vec<Retry>, Vec<Retry>) =
            std::mem::take(&mut self.retries).into_iter().partition(|retry| retry.not_before <= now);
        self.retries = later;
        if due.is_empty() {
            return;
        }
        self.waiting.extend(due.into_iter().map(|retry| retry.part));
        self.waiting.make_contiguous().sort_by_key(|part| part.seal_index);
    }

    /// Indexes into `waiting` (ascending) of the parts the next request takes: each partition
    /// at most once, in seal order; with idempotence, not past a partition's in-flight bound nor
    /// ahead of an earlier part of the partition that waits for its retry.
    fn sendable(&self) -> Vec<usize> {
        let mut chosen = Vec::new();
        // Fx-hashed: the parts are this producer's own.
        let mut seen: FxHashSet<(&str, PartitionId)> = FxHashSet::default();
        let mut bytes = 0;
        for (index, part) in self.waiting.iter().enumerate() {
            if !seen.insert((&*part.topic, part.partition)) {
                continue;
            }
            if self.idempotent {
                let retry_pending = self.retries.iter().any(|retry| {
                    retry.part.topic == part.topic
                        && retry.part.partition == part.partition
                        && retry.part.seal_index < part.seal_index
                });
                if retry_pending || !self.sequences.may_send(&part.topic, part.partition, BATCHES_PER_PART) {
                    continue;
                }
            }
            if !chosen.is_empty() && bytes + part.bytes() > REQUEST_PAYLOAD_BYTES_MAX {
                break;
            }
            bytes += part.bytes();
            chosen.push(index);
        }
        chosen
    }

    /// Serializes closed batches, stamping each with its partition's next sequence when
    /// idempotent, into parts of one batch each, in seal order.
    ///
    /// One batch per partition per request, as in Kafka: the broker answers one base offset per
    /// partition, and the records' offsets are read from it. Two batches of a partition in one
    /// request need not land back to back (another producer's batch may come between them),
    /// and a duplicate first batch answers its original offset while the next is new.
    fn build_batches(&mut self, closed: Vec<ClosedBatch<DeliverySender>>) -> Vec<PartitionBatches> {
        let mut parts: Vec<PartitionBatches> = Vec::new();
        for batch in closed {
            if let Some(&count) = self.partition_counts.get(&*batch.topic) {
                self.sticky.batch_closed(&batch.topic, batch.partition, count);
            }
            let mut builder = batch.builder;
            if self.idempotent {
                let Some(identity) = self.identity else {
                    let error = ClientError::InvalidArgument("idempotent batch without a producer id".to_owned());
                    batch.token.complete(Err(error));
                    continue;
                };
                let sequence = self.sequences.assign(&batch.topic, batch.partition, builder.record_count());
                builder.set_producer(identity.producer_id, identity.producer_epoch, sequence);
            }
            let records = builder.record_count();
            let buffer = self.batch_buffers.take(builder.buffer_bytes());
            let built = match builder.build_into(buffer) {
                Ok(built) => self.batch_buffers.share(built),
                Err(error) => {
                    batch.token.complete(Err(ClientError::from(error)));
                    continue;
                }
            };
            let seal_index = self.next_seal_index;
            self.next_seal_index += 1;
            parts.push(PartitionBatches {
                topic: batch.topic,
                partition: batch.partition,
                batch: built,
                sender: batch.token,
                records,
                attempts: 0,
                seal_index,
            });
        }
        parts
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
                for part in &parts {
                    self.sequences.sent(&part.topic, part.partition, BATCHES_PER_PART);
                }
                self.in_flight.push_back(InFlight { pending, parts });
                Ok(())
            }
            Err(error) if self.connector.is_some() && self.connection.poisoned().is_some() => {
                for part in parts {
                    self.sequences.sent(&part.topic, part.partition, BATCHES_PER_PART);
                    self.requeue(part, &error);
                }
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

    /// Settles, oldest first, the responses already parked, without reading the stream.
    fn settle_parked(&mut self) -> ClientResult<()> {
        while self.in_flight.front().is_some_and(|oldest| self.connection.is_parked(&oldest.pending)) {
            self.settle_arrived_one()?;
        }
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
            // The next send reconnects and requeues what was in flight.
            Err(_) if self.connector.is_some() => return Ok(false),
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
            Err(error) if self.connection.poisoned().is_some() && self.connector.is_some() => {
                for part in parts {
                    self.requeue(part, &error);
                }
                return Ok(());
            }
            Err(error) => {
                for part in &parts {
                    self.sequences.settled(&part.topic, part.partition, BATCHES_PER_PART);
                }
                if self.connection.poisoned().is_some() {
                    for part in parts {
                        part.fail(&error);
                    }
                    return Err(self.fail_everything(error));
                }
                // The whole request was refused; retry it if the code says so (e.g. throttled_busy).
                let retriable = error.is_retriable();
                for part in parts {
                    self.retry_or_fail(part, error.clone(), retriable);
                }
                return Ok(());
            }
        };
        // One lookup per part: a request to many partitions has hundreds of parts.
        let answers: HashMap<(&str, u32), &ProducePartitionResponse> = response
            .topics
            .iter()
            .flat_map(|topic| {
                topic.partitions.iter().map(move |answer| ((topic.name.as_str(), answer.partition), answer))
            })
            .collect();
        for part in parts {
            self.sequences.settled(&part.topic, part.partition, BATCHES_PER_PART);
            let answer = answers.get(&(&*part.topic, part.partition.0)).copied();
            let Some(answer) = answer else {
                let error = ClientError::Partition {
                    topic: part.topic.to_string(),
                    partition: part.partition,
                    code: ErrorCode::Unknown,
                    message: "missing from the Produce response".to_owned(),
                };
                part.fail(&error);
                continue;
            };
            let code = ErrorCode::from_u16(answer.error_code);
            if code.is_ok() {
                let base = (answer.base_offset != OFFSET_UNKNOWN).then_some(Offset(answer.base_offset));
                part.sender.complete(Ok((part.partition, base)));
                continue;
            }
            if code == ErrorCode::NotLeader || code == ErrorCode::UnknownTopicOrPartition {
                // Partition counts may have changed: ask again on next use.
                self.partition_counts.remove(&*part.topic);
            }
            // A gap behind an earlier batch of the partition that is being retried is not lost
            // data: this batch goes again after it.
            let retriable =
                code.is_retriable() || (code == ErrorCode::OutOfOrderSequence && self.earlier_part_pending(&part));
            let message = match code {
                ErrorCode::OutOfOrderSequence | ErrorCode::ProducerFenced => format!(
                    "idempotent producer {:?}: {} (records of this batch are not appended; {})",
                    self.identity.map(|identity| (identity.producer_id.0, identity.producer_epoch.0)),
                    answer.error_message,
                    if code == ErrorCode::ProducerFenced {
                        "a newer producer has this id: this one stops"
                    } else {
                        "the broker lost track of this producer's sequence"
                    }
                ),
                _ => answer.error_message.clone(),
            };
            let error =
                ClientError::Partition { topic: part.topic.to_string(), partition: part.partition, code, message };
            if code == ErrorCode::ProducerFenced {
                self.fatal = Some(error.clone());
            }
            self.retry_or_fail(part, error, retriable);
        }
        Ok(())
    }

    /// Whether a part of the same partition sealed before `part` is still unsettled.
    fn earlier_part_pending(&self, part: &PartitionBatches) -> bool {
        let earlier = |other: &PartitionBatches| {
            other.topic == part.topic && other.partition == part.partition && other.seal_index < part.seal_index
        };
        self.retries.iter().any(|retry| earlier(&retry.part))
            || self.waiting.iter().any(earlier)
            || self.in_flight.iter().flat_map(|f| f.parts.iter()).any(earlier)
    }

    fn retry_or_fail(&mut self, part: PartitionBatches, error: ClientError, retriable: bool) {
        // attempts counts the first send: retries so far = attempts - 1.
        let retries_done = part.attempts.saturating_sub(1);
        if retriable && retries_done < self.config.retries_max {
            let delay: Duration = self.config.backoff.delay(retries_done);
            self.retries.push(Retry { not_before: Instant::now() + delay, part });
        } else {
            part.fail(&error);
        }
    }

    /// The connection is gone for good: fail every record queued, waiting, in flight or waiting
    /// for a retry.
    fn fail_everything(&mut self, error: ClientError) -> ClientError {
        for in_flight in self.in_flight.drain(..) {
            for part in in_flight.parts {
                self.sequences.settled(&part.topic, part.partition, BATCHES_PER_PART);
                part.fail(&error);
            }
        }
        for retry in self.retries.drain(..) {
            retry.part.fail(&error);
        }
        for part in self.waiting.drain(..) {
            part.fail(&error);
        }
        for batch in self.accumulator.drain_ready(Instant::now(), true) {
            batch.token.complete(Err(error.clone()));
        }
        error
    }

    /// The wait of [`Producer::poll_until`], without its polls: returns when a response has
    /// arrived (parked, not settled), a lingering batch or a retry comes due, or `deadline`
    /// passes. Sends and settles nothing, so it is **cancellation-safe**: a caller may race it
    /// against other waits (one per connection of a shard-aware producer) and drop it; then
    /// [`Producer::poll`] settles what arrived. A broken connection without a connector fails
    /// everything outstanding and is returned.
    pub async fn wait_for_change(&mut self, deadline: Instant) -> ClientResult<()> {
        let now = Instant::now();
        // A lingered batch held for a slot leaves only once an answer frees one: then only an
        // answer, a retry or the deadline is worth waking for.
        let linger = if self.holding_for_a_slot() { None } else { self.accumulator.next_linger_deadline() };
        let wake = [Some(deadline), linger, self.next_retry_due()].into_iter().flatten().min().unwrap_or(deadline);
        if wake <= now {
            return Ok(());
        }
        let sleep = self.connection.sleeper().sleep(wake - now);
        if self.in_flight.is_empty() {
            sleep.await;
            return Ok(());
        }
        let arrived = async { Some(self.connection.wait_for_response().await) };
        let timer = async {
            sleep.await;
            None
        };
        if let Some(Err(error)) = futures_lite::future::or(arrived, timer).await {
            if self.connector.is_none() {
                return Err(self.fail_everything(error));
            }
            // The next poll reconnects and requeues what was in flight.
        }
        Ok(())
    }
}
