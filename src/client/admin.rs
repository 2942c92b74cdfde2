//! Admin calls: one request, one response, broker and per-item error codes turned into
//! [`ClientError`]s.

use futures_lite::io::{AsyncRead, AsyncWrite};

use super::connection::Connection;
use super::error::{ClientError, ClientResult};
use crate::model::{Offset, PartitionId, TimestampMs};
use crate::protocol::{
    ApiVersionsRequest, ApiVersionsResponse, CreateTopicRequest, DeleteTopicRequest, ErrorCode, ListOffsetsPartition,
    ListOffsetsRequest, ListOffsetsTopic, MetadataRequest, MetadataResponse, MetadataTopic, OffsetSpec, OFFSET_UNKNOWN,
};

/// Name the client reports in ApiVersions.
pub const CLIENT_SOFTWARE_NAME: &str = "ringmq-rust";

/// A new topic's settings. For each setting `0` asks for the broker default; for the retention
/// settings `-1` means no limit.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TopicConfig {
    pub partitions: u32,
    pub retention_ms: i64,
    pub retention_bytes: i64,
    pub segment_bytes: u64,
}

impl Default for TopicConfig {
    fn default() -> Self {
        TopicConfig { partitions: 1, retention_ms: 0, retention_bytes: 0, segment_bytes: 0 }
    }
}

/// One partition's answer to a ListOffsets lookup.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TopicPartitionOffset {
    pub partition: PartitionId,
    /// `None` for a timestamp later than every record.
    pub offset: Option<Offset>,
    /// The found record's timestamp, for timestamp lookups.
    pub timestamp: Option<TimestampMs>,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Connection<S> {
    /// ApiVersions: which APIs and versions the broker serves.
    pub async fn api_versions(&mut self) -> ClientResult<ApiVersionsResponse> {
        let response = self
            .call(&ApiVersionsRequest {
                client_software_name: CLIENT_SOFTWARE_NAME.to_owned(),
                client_software_version: env!("CARGO_PKG_VERSION").to_owned(),
            })
            .await?;
        broker_code(response.error_code, String::new())?;
        Ok(response)
    }

    /// Metadata for `topics` (empty: every topic). Per-topic error codes are left in the
    /// response; [`Connection::topic_metadata`] turns them into errors.
    pub async fn metadata(&mut self, topics: &[&str]) -> ClientResult<MetadataResponse> {
        self.call(&MetadataRequest { topics: topics.iter().map(|topic| (*topic).to_owned()).collect() }).await
    }

    /// Metadata of one topic; an unknown topic is [`ClientError::Topic`] with
    /// `UnknownTopicOrPartition`.
    pub async fn topic_metadata(&mut self, topic: &str) -> ClientResult<MetadataTopic> {
        let response = self.metadata(&[topic]).await?;
        let found = response.topics.into_iter().find(|t| t.name == topic);
        let Some(metadata) = found else {
            return Err(ClientError::Topic {
                topic: topic.to_owned(),
                code: ErrorCode::UnknownTopicOrPartition,
                message: "the broker did not describe it".to_owned(),
            });
        };
        let code = ErrorCode::from_u16(metadata.error_code);
        if !code.is_ok() {
            return Err(ClientError::Topic { topic: topic.to_owned(), code, message: String::new() });
        }
        Ok(metadata)
    }

    pub async fn create_topic(&mut self, name: &str, config: &TopicConfig) -> ClientResult<()> {
        let response = self
            .call(&CreateTopicRequest {
                name: name.to_owned(),
                partitions: config.partitions,
                retention_ms: config.retention_ms,
                retention_bytes: config.retention_bytes,
                segment_bytes: config.segment_bytes,
            })
            .await?;
        topic_code(name, response.error_code, response.error_message)
    }

    pub async fn delete_topic(&mut self, name: &str) -> ClientResult<()> {
        let response = self.call(&DeleteTopicRequest { name: name.to_owned() }).await?;
        topic_code(name, response.error_code, response.error_message)
    }

    /// Looks up one offset per listed partition of `topic`. Any per-partition error fails
    /// the whole call with [`ClientError::Partition`].
    pub async fn list_offsets(
        &mut self,
        topic: &str,
        lookups: &[(PartitionId, OffsetSpec)],
    ) -> ClientResult<Vec<TopicPartitionOffset>> {
        let response = self
            .call(&ListOffsetsRequest {
                topics: vec![ListOffsetsTopic {
                    name: topic.to_owned(),
                    partitions: lookups
                        .iter()
                        .map(|&(partition, spec)| ListOffsetsPartition { partition: partition.0, spec })
                        .collect(),
                }],
            })
            .await?;
        let mut out = Vec::with_capacity(lookups.len());
        for &(partition, _) in lookups {
            let answer = response
                .topics
                .iter()
                .filter(|t| t.name == topic)
                .flat_map(|t| t.partitions.iter())
                .find(|p| p.partition == partition.0);
            let Some(answer) = answer else {
                return Err(ClientError::Partition {
                    topic: topic.to_owned(),
                    partition,
                    code: ErrorCode::Unknown,
                    message: "missing from the ListOffsets response".to_owned(),
                });
            };
            let code = ErrorCode::from_u16(answer.error_code);
            if !code.is_ok() {
                return Err(ClientError::Partition {
                    topic: topic.to_owned(),
                    partition,
                    code,
                    message: String::new(),
                });
            }
            out.push(TopicPartitionOffset {
                partition,
                offset: (answer.offset != OFFSET_UNKNOWN).then_some(Offset(answer.offset)),
                timestamp: (answer.timestamp_ms >= 0).then_some(TimestampMs(answer.timestamp_ms)),
            });
        }
        Ok(out)
    }
}

fn broker_code(code: u16, message: String) -> ClientResult<()> {
    let code = ErrorCode::from_u16(code);
    if code.is_ok() {
        Ok(())
    } else {
        Err(ClientError::Broker { code, message })
    }
}

fn topic_code(topic: &str, code: u16, message: String) -> ClientResult<()> {
    let code = ErrorCode::from_u16(code);
    if code.is_ok() {
        Ok(())
    } else {
        Err(ClientError::Topic { topic: topic.to_owned(), code, message })
    }
}
