//! The shard-aware consumer: one [`Consumer`] per broker shard that owns assigned partitions,
//! each on a connection to that shard's own port, each with its own long-poll fetch in flight
//! (PROTOCOL.md, "Shard ports").
//!
//! Why: a fetch for partitions of two shards, on one connection, is split by the broker into a
//! long poll on each shard; data on one side answers the fetch, but the reply crosses cores
//! twice (request and answer over the mesh), and the other shard's long poll must be cancelled.
//! Here every fetch stays on the shard that owns its partitions: socket → owner → socket, no
//! cross-core hop, and a shard with data answers its own connection while the others keep
//! waiting.
//!
//! A poll sends a fetch on every shard connection that has none in flight, waits for the first
//! answer (the waits are cancellation-safe, so the losers stay in flight for the next poll),
//! then takes every answer that has arrived by then. Records of one partition come in offset
//! order; records of partitions on different shards are not ordered with each other (they
//! never are, in Kafka's model).
//!
//! Connections: the bootstrap connection asks Metadata (the shard ports and each partition's
//! owner); a shard's connection opens when a partition of that shard is first assigned, to the
//! bootstrap host at that shard's port, or to the bootstrap address when that port cannot be
//! reached. A broker that lists no shard ports gets every partition on one connection to the
//! bootstrap address. Owners are read once per topic, as in [`super::ShardAwareProducer`].
//!
//! Not handled yet: reconnection. A shard connection that breaks (a restarted broker) fails
//! the poll with the connection's error, as [`Consumer`] does; the caller makes a new consumer
//! and seeks it to the positions it had.

use std::collections::VecDeque;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::rc::Rc;

use futures_lite::io::{AsyncRead, AsyncWrite};
use rustc_hash::FxHashMap;

use super::connection::Connection;
use super::consumer::{records_or_first_error, Consumer, ConsumerConfig, ConsumerRecord, SeekTo};
use super::error::{ClientError, ClientResult};
use super::shard_aware::{connect_shard, partition_owners, ShardConnect};
use crate::model::{Offset, PartitionId};

/// See the module doc. Owned by one task.
pub struct ShardAwareConsumer<S> {
    metadata_connection: Connection<S>,
    bootstrap_address: SocketAddr,
    connector: Rc<dyn ShardConnect<S>>,
    config: ConsumerConfig,
    /// The broker's shard ports (index = shard id), from its first Metadata; empty: it has
    /// none, and `consumers[0]` on the bootstrap address serves every partition.
    shard_ports: Option<Vec<u16>>,
    /// Owner shard of each partition (index = partition), per topic.
    owners: FxHashMap<String, Vec<u32>>,
    /// One consumer per shard, opened when a partition of it is first assigned.
    consumers: Vec<Option<Consumer<S>>>,
    /// Records taken by a poll that also reported an error; returned by the next poll.
    buffered: VecDeque<ConsumerRecord>,
}

impl<S: AsyncRead + AsyncWrite + Unpin + 'static> ShardAwareConsumer<S> {
    /// A consumer that asks Metadata on `bootstrap` (connected to `bootstrap_address`) and opens
    /// the shard connections with `connector`; each shard's fetches use `config`.
    pub fn new(
        bootstrap: Connection<S>,
        bootstrap_address: SocketAddr,
        config: ConsumerConfig,
        connector: impl ShardConnect<S> + 'static,
    ) -> ShardAwareConsumer<S> {
        ShardAwareConsumer {
            metadata_connection: bootstrap,
            bootstrap_address,
            connector: Rc::new(connector),
            config,
            shard_ports: None,
            owners: FxHashMap::default(),
            consumers: Vec::new(),
            buffered: VecDeque::new(),
        }
    }

    /// The shard ports the broker listed (index = shard id); empty before the first Metadata
    /// or when the broker has none.
    pub fn shard_ports(&self) -> &[u16] {
        self.shard_ports.as_deref().unwrap_or_default()
    }

    /// The connections open to shards (at most one per shard).
    pub fn shard_connections(&self) -> usize {
        self.consumers.iter().flatten().count()
    }

    /// The partition count of `topic`, from Metadata on first use and cached after.
    pub async fn partition_count(&mut self, topic: &str) -> ClientResult<u32> {
        if let Some(owners) = self.owners.get(topic) {
            return Ok(owners.len() as u32);
        }
        if self.metadata_connection.poisoned().is_some() {
            self.metadata_connection = self.connector.connect(self.bootstrap_address).await?;
        }
        let mut metadata = self.metadata_connection.metadata(&[topic]).await?;
        if self.shard_ports.is_none() {
            let ports = std::mem::take(&mut metadata.shard_ports);
            self.consumers = (0..ports.len().max(1)).map(|_| None).collect();
            self.shard_ports = Some(ports);
        }
        let owners = partition_owners(topic, metadata)?;
        let count = owners.len() as u32;
        self.owners.insert(topic.to_owned(), owners);
        Ok(count)
    }

    /// Replaces the assignment: each partition goes to its owner shard's consumer. Positions
    /// are kept for partitions that stay assigned (owners are read once per topic, so a
    /// partition always goes to the same shard's consumer, which keeps its position). Fails
    /// when a topic is unknown or a shard's connection (and the bootstrap fallback) cannot be
    /// opened.
    pub async fn assign(&mut self, partitions: &[(&str, PartitionId)]) -> ClientResult<()> {
        let mut per_shard: Vec<Vec<(&str, PartitionId)>> = Vec::new();
        for &(topic, partition) in partitions {
            self.partition_count(topic).await?;
            let index = self.consumer_index(topic, partition);
            if per_shard.len() <= index {
                per_shard.resize_with(index + 1, Vec::new);
            }
            per_shard[index].push((topic, partition));
        }
        self.buffered.clear();
        for index in 0..self.consumers.len().max(per_shard.len()) {
            let assigned = per_shard.get(index).map(Vec::as_slice).unwrap_or_default();
            if assigned.is_empty() {
                if let Some(Some(consumer)) = self.consumers.get_mut(index) {
                    consumer.assign(&[]);
                }
                continue;
            }
            self.consumer_for(index).await?.assign(assigned);
        }
        Ok(())
    }

    /// The next offset to fetch for an assigned partition (`None`: not positioned yet).
    pub fn position(&self, topic: &str, partition: PartitionId) -> Option<Offset> {
        self.consumers.iter().flatten().find_map(|consumer| consumer.position(topic, partition))
    }

    /// Positions one assigned partition (see [`Consumer::seek`]); returns the offset it will
    /// fetch next.
    pub async fn seek(&mut self, topic: &str, partition: PartitionId, to: SeekTo) -> ClientResult<Offset> {
        self.buffered.retain(|record| !(&*record.topic == topic && record.partition == partition));
        let Some(consumer) =
            self.consumers.iter_mut().flatten().find(|consumer| consumer.is_assigned(topic, partition))
        else {
            return Err(ClientError::InvalidArgument(format!("topic '{topic}' partition {partition} is not assigned")));
        };
        consumer.seek(topic, partition, to).await
    }

    /// Positions every assigned partition.
    pub async fn seek_all(&mut self, to: SeekTo) -> ClientResult<()> {
        self.buffered.clear();
        for consumer in self.consumers.iter_mut().flatten() {
            consumer.seek_all(to).await?;
        }
        Ok(())
    }

    /// Returns the records of the first shard(s) to answer, as [`Consumer::poll`] does for one
    /// connection: every shard with assigned partitions has a long-poll fetch in flight; the
    /// poll waits for the first answer, then takes every other answer already there. Empty when
    /// `max_wait_ms` passed with no data on the first shard to answer.
    ///
    /// A partition error is returned after the records taken with it are kept for the next
    /// poll. Cancellation-safe once the fetches are sent.
    pub async fn poll(&mut self) -> ClientResult<Vec<ConsumerRecord>> {
        if !self.buffered.is_empty() {
            return Ok(self.buffered.drain(..).collect());
        }
        let mut active: Vec<&mut Consumer<S>> =
            self.consumers.iter_mut().flatten().filter(|consumer| consumer.has_assignment()).collect();
        if active.is_empty() {
            return Err(ClientError::InvalidArgument("poll with no partitions assigned".to_owned()));
        }
        if let Some(consumer) = active.iter_mut().find(|consumer| consumer.has_buffered()) {
            return consumer.poll().await;
        }
        for consumer in active.iter_mut() {
            consumer.send_fetch().await?;
        }
        {
            let waits: Vec<Pin<Box<dyn Future<Output = ClientResult<()>> + '_>>> = active
                .iter_mut()
                .map(|consumer| Box::pin(consumer.wait_for_fetch()) as Pin<Box<dyn Future<Output = _>>>)
                .collect();
            futures::future::select_all(waits).await.0?;
        }
        let mut records = Vec::new();
        let mut first_error = None;
        for consumer in active {
            let taken = match consumer.fetch_arrived() {
                Ok(true) => consumer.receive_fetch().await,
                Ok(false) => continue,
                Err(error) => Err(error),
            };
            match taken {
                Ok(taken) => records.extend(taken),
                Err(error) => {
                    first_error.get_or_insert(error);
                }
            }
        }
        records_or_first_error(records, first_error, &mut self.buffered)
    }

    /// Which consumer serves `partition` of a known topic: its owner shard's (0 when the broker
    /// has no shard ports). An owner past the listed ports (an inconsistent answer) goes to
    /// shard 0's port; the broker routes it on.
    fn consumer_index(&self, topic: &str, partition: PartitionId) -> usize {
        let owner = self.owners.get(topic).and_then(|owners| owners.get(partition.0 as usize)).copied();
        owner.map(|owner| owner as usize).filter(|&owner| owner < self.shard_ports().len()).unwrap_or(0)
    }

    /// The consumer at `index`, connecting it on first use: to its shard's port, or to the
    /// bootstrap address when the broker has none.
    async fn consumer_for(&mut self, index: usize) -> ClientResult<&mut Consumer<S>> {
        if self.consumers.len() <= index {
            self.consumers.resize_with(index + 1, || None);
        }
        if self.consumers[index].is_none() {
            let connection = match self.shard_ports().get(index).copied() {
                Some(port) => connect_shard(&*self.connector, self.bootstrap_address, index, port).await?,
                None => self.connector.connect(self.bootstrap_address).await?,
            };
            self.consumers[index] = Some(Consumer::new(connection, self.config));
        }
        self.consumers[index]
            .as_mut()
            .ok_or_else(|| ClientError::InvalidArgument(format!("the broker has no shard {index}")))
    }
}
