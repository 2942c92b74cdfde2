//! The shard-aware producer: one [`Producer`] per broker shard, each on a connection to that
//! shard's own port, so that a produce goes socket → owning shard → disk → ack with no
//! cross-core hop on the broker (PROTOCOL.md, "Shard ports").
//!
//! It partitions records itself: an explicit partition as given; a key by
//! [`super::partition_for_key`], as [`Producer`] does (so keyed records land where they always
//! did); a null key *uniform sticky* (KIP-794, where [`Producer`] moves on at every batch it
//! closes or sends): one partition until `batch_bytes` worth of records went to it, then the
//! next one round-robin (starting at `fnv1a_32(topic) % partitions`, as
//! [`super::StickyPartitioner`] does), switching at a batch boundary: the record that finds the
//! partition's batch full opens the next partition's batch, never a one-record straggler.
//! Then it hands the record, with its partition, to the producer of the partition's owner shard
//! (Metadata's `partitions[].shard`). Each inner producer batches, retries and (with
//! `acks = all`) is idempotent on its own: it gets its own producer id, which is sound because
//! a partition is only ever sent through one of them.
//!
//! Connections: the bootstrap connection asks Metadata (which lists the shard ports); a shard's
//! connection opens on first use (or all at once with [`ShardAwareProducer::prepare`]), to the
//! bootstrap host at that shard's port, through a [`ShardConnect`] (on glommio:
//! [`crate::runtime::shard_connector`]). A broker that lists no shard ports gets everything on
//! the bootstrap connection, through a single inner producer. A shard port that cannot be
//! reached (a firewall that lets only the main port through) is replaced by a connection to
//! the bootstrap address, which serves every partition with the hop. With
//! [`ShardAwareProducer::with_reconnect`], a shard connection that broke is opened again at the
//! same port, or at the bootstrap address when that port no longer answers (a restarted broker
//! with `--shard-port-base 0` has new ports).
//!
//! Driven like [`Producer`] (no background task): `send*`, `poll`, `poll_until`, `flush`.
//!
//! Not handled yet: placement that changes while the producer runs (a broker restarted with
//! another `--cores`). Records still arrive — any shard routes a request for another shard's
//! partition over the mesh — but they pay the hop until the producer is recreated. Partition
//! counts and owners are read once per topic.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::rc::Rc;
use std::time::Instant;

use bytes::Bytes;
use futures_lite::io::{AsyncRead, AsyncWrite};
use rustc_hash::FxHashMap;

use super::accumulator::{record_bytes_estimate, OpenBatchRoom};
use super::connection::Connection;
use super::error::{ClientError, ClientResult};
use super::partitioner::{choose_partition, fnv1a_32};
use super::producer::{DeliveryFuture, Producer, ProducerConfig, ProducerRecord};
use super::Sleeper;
use crate::model::{PartitionId, TimestampMs};
use crate::protocol::{ErrorCode, MetadataResponse};

/// Opens a connection to a given broker address (a shard's port). Runtime-agnostic: any async
/// closure taking a [`SocketAddr`] will do.
pub trait ShardConnect<S> {
    fn connect(&self, address: SocketAddr) -> Pin<Box<dyn Future<Output = ClientResult<Connection<S>>>>>;
}

impl<S, F, Fut> ShardConnect<S> for F
where
    F: Fn(SocketAddr) -> Fut,
    Fut: Future<Output = ClientResult<Connection<S>>> + 'static,
{
    fn connect(&self, address: SocketAddr) -> Pin<Box<dyn Future<Output = ClientResult<Connection<S>>>>> {
        Box::pin(self(address))
    }
}

/// A topic's partitions and their owner shards, from Metadata, and where its null-key
/// records go: one map lookup per record finds both.
#[derive(Debug)]
struct TopicRoute {
    /// Owner shard of each partition, index = partition.
    owners: Vec<u32>,
    sticky: Sticky,
}

impl TopicRoute {
    fn new(topic: &str, owners: Vec<u32>) -> TopicRoute {
        let count = (owners.len() as u32).max(1);
        TopicRoute { owners, sticky: Sticky { partition: fnv1a_32(topic.as_bytes()) % count, bytes: 0 } }
    }

    /// The index of `partition`'s owner among `shard_count` producers (0 when unknown).
    fn owner_index(&self, partition: PartitionId, shard_count: usize) -> usize {
        let owner = self.owners.get(partition.0 as usize).map(|&owner| owner as usize);
        owner.filter(|&owner| owner < shard_count).unwrap_or(0)
    }

    /// The current uniform-sticky partition of null-key records (within range if the topic
    /// shrank).
    fn sticky_partition(&mut self) -> PartitionId {
        let count = (self.owners.len() as u32).max(1);
        if self.sticky.partition >= count {
            self.sticky = Sticky { partition: self.sticky.partition % count, bytes: 0 };
        }
        PartitionId(self.sticky.partition)
    }

    /// Where a null-key record of `record_bytes` goes, given what the current sticky partition's
    /// open batch made of it (`room`, from its producer's [`Producer::close_batch_if_full`]),
    /// and counts it there. The sticky partition moves on at a batch boundary once
    /// `batch_bytes` went to it, as Kafka's built-in partitioner does (KIP-794): when its batch
    /// was full for this record (the record opens a batch on the next partition, not a
    /// straggler here), or when it has no open batch (batches went out by linger); and after
    /// twice `batch_bytes` whatever its batch holds.
    fn place_sticky(&mut self, room: OpenBatchRoom, record_bytes: usize, batch_bytes: usize) -> PartitionId {
        let count = (self.owners.len() as u32).max(1);
        let current = self.sticky_partition();
        let batch_bytes = batch_bytes.max(1);
        let move_on = match room {
            OpenBatchRoom::ClosedFull => true,
            OpenBatchRoom::NoBatch => self.sticky.bytes >= batch_bytes,
            OpenBatchRoom::Fits => self.sticky.bytes >= batch_bytes.saturating_mul(2),
        };
        if move_on {
            self.sticky = Sticky { partition: (current.0 + 1) % count, bytes: 0 };
        }
        self.sticky.bytes = self.sticky.bytes.saturating_add(record_bytes);
        PartitionId(self.sticky.partition)
    }
}

/// The uniform-sticky state of one topic's null-key records.
#[derive(Debug, Clone, Copy)]
struct Sticky {
    partition: u32,
    /// Estimated bytes of the records sent to `partition` since it became sticky.
    bytes: usize,
}

/// See the module doc. Owned by one task.
pub struct ShardAwareProducer<S> {
    /// Asks Metadata; `None` once it became the single producer's connection.
    metadata_connection: Option<Connection<S>>,
    bootstrap_address: SocketAddr,
    connector: Rc<dyn ShardConnect<S>>,
    config: ProducerConfig,
    reconnect: bool,
    sleeper: Rc<dyn Sleeper>,
    /// The broker's shard ports (index = shard id), from its first Metadata; empty: it has
    /// none, and `producers` holds one producer on the bootstrap connection.
    shard_ports: Option<Vec<u16>>,
    /// One producer per shard port, opened on first use, index = shard id.
    producers: Vec<Option<Producer<S>>>,
    topics: FxHashMap<String, TopicRoute>,
}

impl<S: AsyncRead + AsyncWrite + Unpin + 'static> ShardAwareProducer<S> {
    /// A producer that asks Metadata on `bootstrap` (connected to `bootstrap_address`) and
    /// opens the shard connections with `connector`, each with `config`. Nothing is sent yet.
    pub fn new(
        bootstrap: Connection<S>,
        bootstrap_address: SocketAddr,
        config: ProducerConfig,
        connector: impl ShardConnect<S> + 'static,
    ) -> ShardAwareProducer<S> {
        ShardAwareProducer {
            sleeper: bootstrap.sleeper(),
            metadata_connection: Some(bootstrap),
            bootstrap_address,
            connector: Rc::new(connector),
            config,
            reconnect: false,
            shard_ports: None,
            producers: Vec::new(),
            topics: FxHashMap::default(),
        }
    }

    /// Each inner producer replaces a broken connection through the connector (see
    /// [`Producer::with_reconnect`]) instead of failing its outstanding deliveries.
    pub fn with_reconnect(mut self) -> ShardAwareProducer<S> {
        self.reconnect = true;
        self
    }

    pub fn config(&self) -> &ProducerConfig {
        &self.config
    }

    /// The shard ports the broker listed (index = shard id); empty before the first Metadata
    /// or when the broker has none.
    pub fn shard_ports(&self) -> &[u16] {
        self.shard_ports.as_deref().unwrap_or_default()
    }

    /// The partition count of `topic`, from Metadata on first use and cached after.
    pub async fn partition_count(&mut self, topic: &str) -> ClientResult<u32> {
        if let Some(route) = self.topics.get(topic) {
            return Ok(route.owners.len() as u32);
        }
        let Some(connection) = self.metadata_connection.as_mut() else {
            // Everything goes through the bootstrap connection's producer: one owner.
            let count = self.producer_for(0).await?.partition_count(topic).await?;
            self.topics.insert(topic.to_owned(), TopicRoute::new(topic, vec![0; count as usize]));
            return Ok(count);
        };
        if connection.poisoned().is_some() {
            *connection = self.connector.connect(self.bootstrap_address).await?;
        }
        let mut metadata = connection.metadata(&[topic]).await?;
        if self.shard_ports.is_none() {
            self.use_shard_ports(std::mem::take(&mut metadata.shard_ports));
        }
        let owners = partition_owners(topic, metadata)?;
        let count = owners.len() as u32;
        self.topics.insert(topic.to_owned(), TopicRoute::new(topic, owners));
        Ok(count)
    }

    /// Gets ready to send to `topic` without a first-record delay: Metadata, then a connection
    /// to every shard that owns one of its partitions, each with the topic's Metadata. Returns
    /// the partition count. Optional: `send` does the same on first use.
    pub async fn prepare(&mut self, topic: &str) -> ClientResult<u32> {
        let count = self.partition_count(topic).await?;
        let mut shards: Vec<usize> =
            (0..count).map(|partition| self.owner_index(topic, PartitionId(partition))).collect();
        shards.sort_unstable();
        shards.dedup();
        for shard in shards {
            self.producer_for(shard).await?.partition_count(topic).await?;
        }
        Ok(count)
    }

    /// Sends one record to `topic`, partitioned by key (FNV-1a) or uniform-sticky for a null key.
    pub async fn send(
        &mut self,
        topic: &str,
        key: Option<Bytes>,
        value: Bytes,
        headers: Vec<(String, Bytes)>,
    ) -> ClientResult<DeliveryFuture> {
        self.send_at(Instant::now(), topic, key, value, headers).await
    }

    /// [`ShardAwareProducer::send`] with the caller's reading of the clock (see
    /// [`Producer::send_at`]).
    pub async fn send_at(
        &mut self,
        now: Instant,
        topic: &str,
        key: Option<Bytes>,
        value: Bytes,
        headers: Vec<(String, Bytes)>,
    ) -> ClientResult<DeliveryFuture> {
        self.route_and_queue(topic, None, key, value, &headers, None, now).await
    }

    /// Picks the record's partition, hands it to the owner shard's producer (which queues it and
    /// sends what is ready), then polls the other shards' producers that have work outstanding.
    /// Fails at once as [`Producer::send_record`] does, or when a shard's connection cannot open.
    pub async fn send_record(&mut self, record: ProducerRecord) -> ClientResult<DeliveryFuture> {
        let ProducerRecord { topic, partition, key, value, headers, timestamp } = record;
        self.route_and_queue(&topic, partition, key, value, &headers, timestamp, Instant::now()).await
    }

    /// [`ShardAwareProducer::send_record`] on borrowed parts: no allocation per record here.
    /// One clock reading, `now`, serves the owner's producer and the polls of the others.
    #[allow(clippy::too_many_arguments)]
    async fn route_and_queue(
        &mut self,
        topic: &str,
        partition: Option<PartitionId>,
        key: Option<Bytes>,
        value: Bytes,
        headers: &[(String, Bytes)],
        timestamp: Option<TimestampMs>,
        now: Instant,
    ) -> ClientResult<DeliveryFuture> {
        // Per record: one map lookup, and no future awaited unless the topic or the shard's
        // connection is new (boxed, so that this call's own future stays small).
        if !self.topics.contains_key(topic) {
            Box::pin(self.partition_count(topic)).await?;
        }
        let batch_bytes = self.config.batching.batch_bytes;
        let shard_count = self.producers.len();
        let Some(route) = self.topics.get_mut(topic) else {
            return Err(ClientError::InvalidArgument(format!("topic '{topic}' has no route")));
        };
        let count = route.owners.len() as u32;
        let (mut partition, sticky) =
            choose_partition(topic, partition, key.as_deref(), count, || route.sticky_partition())?;
        let mut shard = route.owner_index(partition, shard_count);
        self.open_producer(shard).await?;
        if sticky {
            let header_refs: Vec<(&str, &[u8])> =
                headers.iter().map(|(key, value)| (key.as_str(), &value[..])).collect();
            let record_bytes = record_bytes_estimate(None, &value, &header_refs);
            let room = self.producer_mut(shard)?.close_batch_if_full(topic, partition, record_bytes);
            let Some(route) = self.topics.get_mut(topic) else {
                return Err(ClientError::InvalidArgument(format!("topic '{topic}' has no route")));
            };
            let placed = route.place_sticky(room, record_bytes, batch_bytes);
            if placed != partition {
                partition = placed;
                shard = route.owner_index(partition, shard_count);
                self.open_producer(shard).await?;
            }
        }
        let producer = self.producer_mut(shard)?;
        let future = producer.queue_and_poll(topic, Some(partition), key, value, headers, timestamp, now).await?;
        for (index, producer) in self.producers_mut() {
            if index != shard && !producer.is_idle() {
                producer.poll_between_sends(now).await?;
            }
        }
        Ok(future)
    }

    /// Opens shard `shard`'s producer if it is not open yet (boxed: rare, and it keeps the
    /// per-record future small).
    async fn open_producer(&mut self, shard: usize) -> ClientResult<()> {
        if !matches!(self.producers.get(shard), Some(Some(_))) {
            Box::pin(self.producer_for(shard)).await?;
        }
        Ok(())
    }

    fn producer_mut(&mut self, shard: usize) -> ClientResult<&mut Producer<S>> {
        match self.producers.get_mut(shard) {
            Some(Some(producer)) => Ok(producer),
            _ => Err(ClientError::InvalidArgument(format!("the broker has no shard {shard}"))),
        }
    }

    /// [`Producer::poll`] on every shard's producer, one after the other.
    pub async fn poll(&mut self) -> ClientResult<()> {
        for (_, producer) in self.producers_mut() {
            producer.poll().await?;
        }
        Ok(())
    }

    /// Polls every shard's producer, then waits until something changes on any of them — a
    /// response arrives on any shard's connection, a lingering batch or a retry comes due, or
    /// `deadline` passes — and polls them all again. Only cancellation-safe waits
    /// ([`Producer::wait_for_change`]) are raced: the one that loses is dropped, never a
    /// write half done.
    pub async fn poll_until(&mut self, deadline: Instant) -> ClientResult<()> {
        self.poll().await?;
        let sleeper = Rc::clone(&self.sleeper);
        let waits: Vec<Pin<Box<dyn Future<Output = ClientResult<()>> + '_>>> = self
            .producers_mut()
            .filter(|(_, producer)| producer.outstanding() > 0)
            .map(|(_, producer)| Box::pin(producer.wait_for_change(deadline)) as Pin<Box<dyn Future<Output = _>>>)
            .collect();
        if waits.is_empty() {
            drop(waits);
            let now = Instant::now();
            if deadline > now {
                sleeper.sleep(deadline - now).await;
            }
        } else {
            futures::future::select_all(waits).await.0?;
        }
        self.poll().await
    }

    /// Sends everything queued on every shard's connection and waits until every record is
    /// acknowledged or failed for good (see [`Producer::flush`]). The shards flush concurrently;
    /// the first connection error is returned after all have finished.
    pub async fn flush(&mut self) -> ClientResult<()> {
        let flushes = self.producers_mut().map(|(_, producer)| producer.flush());
        futures::future::join_all(flushes).await.into_iter().collect()
    }

    /// Records queued or in flight on every shard, not yet settled.
    pub fn outstanding(&self) -> usize {
        self.producers.iter().flatten().map(Producer::outstanding).sum()
    }

    /// Takes the broker's first Metadata answer: one (unopened) producer per shard port, or,
    /// when it lists none, one producer on the bootstrap connection for everything.
    fn use_shard_ports(&mut self, ports: Vec<u16>) {
        self.producers = ports.iter().map(|_| None).collect();
        if ports.is_empty() {
            if let Some(connection) = self.metadata_connection.take() {
                self.producers = vec![Some(self.inner_producer(connection, self.bootstrap_address))];
            }
        }
        self.shard_ports = Some(ports);
    }

    fn inner_producer(&self, connection: Connection<S>, address: SocketAddr) -> Producer<S> {
        let producer = Producer::new(connection, self.config);
        if !self.reconnect {
            return producer;
        }
        let connector = Rc::clone(&self.connector);
        let bootstrap = self.bootstrap_address;
        producer.with_reconnect(move || {
            let connector = Rc::clone(&connector);
            async move {
                match connector.connect(address).await {
                    Ok(connection) => Ok(connection),
                    // A restarted broker may listen on other shard ports (kernel-picked ones
                    // change): the bootstrap address still serves every partition, with the hop.
                    Err(error) if address != bootstrap => {
                        tracing::warn!(%address, %error, %bootstrap, "shard port unreachable; reconnecting to the bootstrap address");
                        connector.connect(bootstrap).await
                    }
                    Err(error) => Err(error),
                }
            }
        })
    }

    /// Which inner producer serves `partition` of a known topic: its owner shard's (0 when
    /// everything goes through the bootstrap connection). An owner past the listed ports (an
    /// inconsistent answer) goes to shard 0's port; the broker routes it on.
    fn owner_index(&self, topic: &str, partition: PartitionId) -> usize {
        self.topics.get(topic).map_or(0, |route| route.owner_index(partition, self.producers.len()))
    }

    /// The producer at `index`, connecting it to its shard's port on first use.
    async fn producer_for(&mut self, index: usize) -> ClientResult<&mut Producer<S>> {
        let port = self.shard_ports().get(index).copied();
        let slot = self.producers.get(index);
        if let (Some(port), Some(None)) = (port, slot) {
            let address = SocketAddr::new(self.bootstrap_address.ip(), port);
            let connection = connect_shard(&*self.connector, self.bootstrap_address, index, port).await?;
            self.producers[index] = Some(self.inner_producer(connection, address));
        }
        self.producers
            .get_mut(index)
            .and_then(Option::as_mut)
            .ok_or_else(|| ClientError::InvalidArgument(format!("the broker has no shard {index}")))
    }

    /// Every open inner producer with its index.
    fn producers_mut(&mut self) -> impl Iterator<Item = (usize, &mut Producer<S>)> {
        self.producers.iter_mut().enumerate().filter_map(|(index, producer)| producer.as_mut().map(|p| (index, p)))
    }
}

/// The owner shard of each partition of `topic` (index = partition), from a Metadata answer.
pub(super) fn partition_owners(topic: &str, metadata: MetadataResponse) -> ClientResult<Vec<u32>> {
    let Some(found) = metadata.topics.into_iter().find(|t| t.name == topic) else {
        return Err(topic_error(topic, ErrorCode::UnknownTopicOrPartition, "the broker did not describe it"));
    };
    let code = ErrorCode::from_u16(found.error_code);
    if !code.is_ok() {
        return Err(topic_error(topic, code, ""));
    }
    if found.partitions.is_empty() {
        return Err(topic_error(topic, ErrorCode::UnknownTopicOrPartition, "the topic has no partitions"));
    }
    let mut owners = vec![0; found.partitions.len()];
    for partition in &found.partitions {
        if let Some(owner) = owners.get_mut(partition.partition as usize) {
            *owner = partition.shard;
        }
    }
    Ok(owners)
}

/// A connection to shard `shard`'s own `port` on the bootstrap host, or to the bootstrap
/// address when that port cannot be reached (a firewall that lets only the main port through:
/// every partition is still served there, one cross-core hop slower).
pub(super) async fn connect_shard<S>(
    connector: &dyn ShardConnect<S>,
    bootstrap: SocketAddr,
    shard: usize,
    port: u16,
) -> ClientResult<Connection<S>> {
    let address = SocketAddr::new(bootstrap.ip(), port);
    let connection = match connector.connect(address).await {
        Ok(connection) => connection,
        Err(error) => {
            tracing::warn!(shard, %address, %error, %bootstrap, "shard port unreachable; using the bootstrap address");
            connector.connect(bootstrap).await?
        }
    };
    tracing::debug!(shard, %address, "shard connection opened");
    Ok(connection)
}

fn topic_error(topic: &str, code: ErrorCode, message: &str) -> ClientError {
    ClientError::Topic { topic: topic.to_owned(), code, message: message.to_owned() }
}
