//! Which client producer a producer actor drives (`--shard-aware`): the shard-aware one, one
//! connection per broker shard on the shard's own port (no cross-core hop on the broker), or
//! the plain one on a single connection to the bootstrap address. Both offer the few calls
//! the actor's loop makes, under the same names.

use std::net::SocketAddr;
use std::time::Instant;

use bytes::Bytes;
use glommio::net::TcpStream;
use ringmq::client::{ClientResult, ConnectionConfig, DeliveryFuture, Producer, ProducerConfig, ShardAwareProducer};
use ringmq::runtime::{open_connection, shard_connector};

/// The producer of one actor.
pub enum ProducerClient {
    Plain(Box<Producer<TcpStream>>),
    ShardAware(Box<ShardAwareProducer<TcpStream>>),
}

impl ProducerClient {
    /// Connects to the broker at `address` and builds the producer `shard_aware` asks for.
    pub async fn connect(
        address: SocketAddr,
        connection_config: ConnectionConfig,
        config: ProducerConfig,
        shard_aware: bool,
    ) -> std::io::Result<ProducerClient> {
        let connection = open_connection(address, connection_config).await?;
        Ok(if shard_aware {
            let connector = shard_connector(connection_config);
            ProducerClient::ShardAware(Box::new(ShardAwareProducer::new(connection, address, config, connector)))
        } else {
            ProducerClient::Plain(Box::new(Producer::new(connection, config)))
        })
    }

    /// Learns the topic (and, shard-aware, opens every owner shard's connection) before the run
    /// starts, so that the first sends are not slowed by it.
    pub async fn partition_count(&mut self, topic: &str) -> ClientResult<u32> {
        match self {
            ProducerClient::Plain(producer) => producer.partition_count(topic).await,
            ProducerClient::ShardAware(producer) => producer.prepare(topic).await,
        }
    }

    /// Sends one record; `now` is the caller's reading of the clock (see `Producer::send_at`).
    pub async fn send_at(
        &mut self,
        now: Instant,
        topic: &str,
        key: Option<Bytes>,
        value: Bytes,
        headers: Vec<(String, Bytes)>,
    ) -> ClientResult<DeliveryFuture> {
        match self {
            ProducerClient::Plain(producer) => producer.send_at(now, topic, key, value, headers).await,
            ProducerClient::ShardAware(producer) => producer.send_at(now, topic, key, value, headers).await,
        }
    }

    pub async fn poll_until(&mut self, deadline: Instant) -> ClientResult<()> {
        match self {
            ProducerClient::Plain(producer) => producer.poll_until(deadline).await,
            ProducerClient::ShardAware(producer) => producer.poll_until(deadline).await,
        }
    }

    pub async fn flush(&mut self) -> ClientResult<()> {
        match self {
            ProducerClient::Plain(producer) => producer.flush().await,
            ProducerClient::ShardAware(producer) => producer.flush().await,
        }
    }
}
