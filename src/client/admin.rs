//! Admin calls: one request, one response, broker and per-item error codes turned into
//! [`ClientError`]s. Topics (create, delete, metadata, list offsets) and consumer groups (list,
//! describe, committed offsets, offset commits and leaving).

use futures_lite::io::{AsyncRead, AsyncWrite};

use super::connection::Connection;
use super::error::{ClientError, ClientResult};
use crate::model::{Offset, PartitionId, TimestampMs};
use crate::protocol::{
    ApiVersionsRequest, ApiVersionsResponse, CreateTopicRequest, DeleteTopicRequest, DescribeGroupRequest,
    DescribeGroupResponse, ErrorCode, LeaveGroupRequest, ListGroupsRequest, ListOffsetsPartition, ListOffsetsRequest,
    ListOffsetsTopic, ListedGroup, MetadataRequest, MetadataResponse, MetadataTopic, OffsetCommitPartition,
    OffsetCommitRequest, OffsetCommitResponse, OffsetCommitTopic, OffsetFetchRequest, OffsetFetchTopic, OffsetSpec,
    ADMIN_COMMIT_EPOCH, OFFSET_UNKNOWN,
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

/// One partition's committed offset in a group.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GroupOffset {
    pub topic: String,
    pub partition: PartitionId,
    /// `None`: the group committed nothing for this partition.
    pub offset: Option<Offset>,
}

/// Who commits: a group member at its epoch, or an admin (only while the group has no members).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Committer<'a> {
    Member { member_id: &'a str, member_epoch: i32 },
    Admin,
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

impl<S: AsyncRead + AsyncWrite + Unpin> Connection<S> {
    /// ListGroups: every group the broker coordinates (`states` empty), or those in one of
    /// `states` (`Empty`, `Assigning`, `Reconciling`, `Stable`, `Dead`).
    pub async fn list_groups(&mut self, states: &[&str]) -> ClientResult<Vec<ListedGroup>> {
        let response = self
            .call(&ListGroupsRequest { states_filter: states.iter().map(|state| (*state).to_owned()).collect() })
            .await?;
        broker_code(response.error_code, String::new())?;
        Ok(response.groups)
    }

    /// DescribeGroup: state, epochs and members. An unknown group is [`ClientError::Broker`]
    /// with `GroupIdNotFound`.
    pub async fn describe_group(&mut self, group_id: &str) -> ClientResult<DescribeGroupResponse> {
        let response = self.call(&DescribeGroupRequest { group_id: group_id.to_owned() }).await?;
        broker_code(response.error_code, format!("group '{group_id}'"))?;
        Ok(response)
    }

    /// OffsetFetch: the committed offset of each listed partition. `topics` empty: every
    /// partition the group committed; a topic with no partitions listed: all of its committed.
    pub async fn offset_fetch(
        &mut self,
        group_id: &str,
        topics: &[(&str, &[PartitionId])],
    ) -> ClientResult<Vec<GroupOffset>> {
        let request = OffsetFetchRequest {
            group_id: group_id.to_owned(),
            topics: topics
                .iter()
                .map(|(topic, partitions)| OffsetFetchTopic {
                    name: (*topic).to_owned(),
                    partitions: partitions.iter().map(|p| p.0).collect(),
                })
                .collect(),
        };
        let response = self.call(&request).await?;
        broker_code(response.error_code, format!("group '{group_id}'"))?;
        let mut out = Vec::new();
        for topic in response.topics {
            for partition in topic.partitions {
                partition_code(&topic.name, partition.partition, partition.error_code, || {
                    format!("committed offset of group '{group_id}'")
                })?;
                out.push(GroupOffset {
                    topic: topic.name.clone(),
                    partition: PartitionId(partition.partition),
                    offset: (partition.offset != OFFSET_UNKNOWN).then_some(Offset(partition.offset)),
                });
            }
        }
        Ok(out)
    }

    /// OffsetCommit of `offsets` (topic, partition, next offset to consume). Any partition the
    /// broker refuses fails the call with [`ClientError::Partition`] carrying its code
    /// (`FencedMemberEpoch`, `UnknownMemberId`, `StaleMemberEpoch` for a member; `NonEmptyGroup`
    /// for an admin commit while the group has members).
    pub async fn commit_offsets(
        &mut self,
        group_id: &str,
        committer: Committer<'_>,
        offsets: &[(&str, PartitionId, Offset)],
    ) -> ClientResult<()> {
        let response = self.call(&offset_commit_request(group_id, committer, offsets)).await?;
        offset_commit_outcome(group_id, response)
    }

    /// LeaveGroup for one member: its partitions are reassigned at once.
    pub async fn leave_group(&mut self, group_id: &str, member_id: &str) -> ClientResult<()> {
        let response = self
            .call(&LeaveGroupRequest { group_id: group_id.to_owned(), member_ids: vec![member_id.to_owned()] })
            .await?;
        broker_code(response.error_code, format!("group '{group_id}'"))?;
        let refused = response.members.iter().find(|m| !ErrorCode::from_u16(m.error_code).is_ok());
        match refused {
            Some(member) => {
                broker_code(member.error_code, format!("member '{}' of group '{group_id}'", member.member_id))
            }
            None => Ok(()),
        }
    }
}

/// The OffsetCommit request for `offsets` (topic, partition, next offset to consume).
pub(crate) fn offset_commit_request(
    group_id: &str,
    committer: Committer<'_>,
    offsets: &[(&str, PartitionId, Offset)],
) -> OffsetCommitRequest {
    let (member_id, member_epoch) = match committer {
        Committer::Member { member_id, member_epoch } => (member_id.to_owned(), member_epoch),
        Committer::Admin => (String::new(), ADMIN_COMMIT_EPOCH),
    };
    let mut topics: Vec<OffsetCommitTopic> = Vec::new();
    for &(topic, partition, offset) in offsets {
        let entry = OffsetCommitPartition { partition: partition.0, offset: offset.0, metadata: String::new() };
        match topics.iter_mut().find(|t| t.name == topic) {
            Some(found) => found.partitions.push(entry),
            None => topics.push(OffsetCommitTopic { name: topic.to_owned(), partitions: vec![entry] }),
        }
    }
    OffsetCommitRequest { group_id: group_id.to_owned(), member_id, member_epoch, topics }
}

/// An OffsetCommit response as a result: the first refused partition is the error.
pub(crate) fn offset_commit_outcome(group_id: &str, response: OffsetCommitResponse) -> ClientResult<()> {
    broker_code(response.error_code, format!("group '{group_id}'"))?;
    for topic in response.topics {
        for partition in topic.partitions {
            partition_code(&topic.name, partition.partition, partition.error_code, || {
                format!("offset commit of group '{group_id}'")
            })?;
        }
    }
    Ok(())
}

/// A per-partition code of a group response as a result.
fn partition_code(topic: &str, partition: u32, code: u16, message: impl FnOnce() -> String) -> ClientResult<()> {
    let code = ErrorCode::from_u16(code);
    if code.is_ok() {
        return Ok(());
    }
    Err(ClientError::Partition { topic: topic.to_owned(), partition: PartitionId(partition), code, message: message() })
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
