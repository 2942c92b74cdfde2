//! Which client consumer a consumer actor drives (`--shard-aware`, `--shard-aware-consumers`):
//! the shard-aware one, one connection and one long poll per broker shard on the shard's own
//! port (no fetch spans two shards), or the plain one on a single connection to the bootstrap
//! address. Both offer the few calls the actor's loop makes, under the same names.

use std::net::SocketAddr;

use glommio::net::TcpStream;
use ringmq::client::{
    ClientResult, ConnectionConfig, Consumer, ConsumerConfig, ConsumerRecord, SeekTo, ShardAwareConsumer,
};
use ringmq::model::PartitionId;
use ringmq::runtime::{open_connection, shard_connector};

/// The consumer of one actor.
pub enum ConsumerClient {
    Plain(Box<Consumer<TcpStream>>),
    ShardAware(Box<ShardAwareConsumer<TcpStream>>),
}

impl ConsumerClient {
    /// Connects to the broker at `address` and builds the consumer `shard_aware` asks for.
    pub async fn connect(
        address: SocketAddr,
        config: ConsumerConfig,
        shard_aware: bool,
    ) -> std::io::Result<ConsumerClient> {
        let connection_config = ConnectionConfig::default();
        let connection = open_connection(address, connection_config).await?;
        Ok(if shard_aware {
            let connector = shard_connector(connection_config);
            ConsumerClient::ShardAware(Box::new(ShardAwareConsumer::new(connection, address, config, connector)))
        } else {
            ConsumerClient::Plain(Box::new(Consumer::new(connection, config)))
        })
    }

    pub async fn partition_count(&mut self, topic: &str) -> ClientResult<u32> {
        match self {
            ConsumerClient::Plain(consumer) => {
                let metadata = consumer.connection().topic_metadata(topic).await?;
                Ok(u32::try_from(metadata.partitions.len()).unwrap_or(u32::MAX))
            }
            ConsumerClient::ShardAware(consumer) => consumer.partition_count(topic).await,
        }
    }

    /// Assigns `partitions` of `topic` (shard-aware: opens their owner shards' connections).
    pub async fn assign(&mut self, topic: &str, partitions: &[PartitionId]) -> ClientResult<()> {
        let assignment: Vec<(&str, PartitionId)> = partitions.iter().map(|&partition| (topic, partition)).collect();
        match self {
            ConsumerClient::Plain(consumer) => {
                consumer.assign(&assignment);
                Ok(())
            }
            ConsumerClient::ShardAware(consumer) => consumer.assign(&assignment).await,
        }
    }

    pub async fn seek(&mut self, topic: &str, partition: PartitionId, to: SeekTo) -> ClientResult<()> {
        match self {
            ConsumerClient::Plain(consumer) => consumer.seek(topic, partition, to).await.map(drop),
            ConsumerClient::ShardAware(consumer) => consumer.seek(topic, partition, to).await.map(drop),
        }
    }

    pub async fn seek_all(&mut self, to: SeekTo) -> ClientResult<()> {
        match self {
            ConsumerClient::Plain(consumer) => consumer.seek_all(to).await,
            ConsumerClient::ShardAware(consumer) => consumer.seek_all(to).await,
        }
    }

    pub async fn poll(&mut self) -> ClientResult<Vec<ConsumerRecord>> {
        match self {
            ConsumerClient::Plain(consumer) => consumer.poll().await,
            ConsumerClient::ShardAware(consumer) => consumer.poll().await,
        }
    }
}
