//! A shard's group coordinator: every group whose offsets-topic partition this shard owns, and
//! their committed offsets. Turns the wire requests (keys 11..=16) into wire responses plus
//! the records to append to the offsets topic.
//!
//! Owned by one shard (the owner of the offsets-topic partitions of its groups); plain Rust,
//! no I/O: the broker does the appends. The caller has already checked each request's archive
//! with its `validate()`.
//!
//! Durability, per call:
//! - [`GroupCoordinator::heartbeat`], [`GroupCoordinator::leave_group`],
//!   [`GroupCoordinator::expire`]: the group state changed in memory; append the returned
//!   records and wait until they are durable **before** sending the response. If the append
//!   fails, unload and reload the coordinator from the log (answer `NotCoordinator` meanwhile).
//! - [`GroupCoordinator::offset_commit`]: nothing changed yet; append the returned records,
//!   then call [`GroupCoordinator::apply`] with them, then send the response. If the append
//!   fails, answer every accepted partition with `StorageError` instead.

use std::collections::{BTreeMap, BTreeSet};

use crate::protocol::{
    ConsumerGroupHeartbeatRequest, ConsumerGroupHeartbeatResponse, DescribeGroupRequest, DescribeGroupResponse,
    DescribedMember, ErrorCode, LeaveGroupMemberResponse, LeaveGroupRequest, LeaveGroupResponse, ListGroupsRequest,
    ListGroupsResponse, ListedGroup, OffsetCommitPartitionResponse, OffsetCommitRequest, OffsetCommitResponse,
    OffsetCommitTopicResponse, OffsetFetchPartitionResponse, OffsetFetchRequest, OffsetFetchResponse,
    OffsetFetchTopicResponse, JOIN_EPOCH, LEAVE_EPOCH, OFFSET_UNKNOWN,
};

use super::consumer_group::{Group, GroupConfig, GroupState, HeartbeatRequest};
use super::offsets::{OffsetCommitEntry, OffsetStore};
use super::records::GroupRecord;
use super::{assignment_from_wire, assignment_to_wire, TopicPartitionCounts};

/// A response and the records to append for it (see the module doc for the order).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CoordinatorOutput<R> {
    pub response: R,
    pub records: Vec<GroupRecord>,
}

#[derive(Debug)]
pub struct GroupCoordinator {
    config: GroupConfig,
    groups: BTreeMap<String, Group>,
    offsets: OffsetStore,
    loaded: bool,
}

impl GroupCoordinator {
    /// A coordinator still loading: every request gets `CoordinatorLoadInProgress` until
    /// [`GroupCoordinator::load`].
    pub fn new(config: GroupConfig) -> GroupCoordinator {
        GroupCoordinator { config, groups: BTreeMap::new(), offsets: OffsetStore::new(), loaded: false }
    }

    /// Start-up: replays the records of this shard's offsets-topic partitions, oldest first,
    /// and restores every group Empty at its persisted epoch (members rejoin).
    pub fn load<'a>(&mut self, records: impl IntoIterator<Item = &'a GroupRecord>) {
        for record in records {
            self.offsets.apply(record);
        }
        self.groups = self
            .offsets
            .group_records()
            .map(|record| (record.group.clone(), Group::restore(record, self.config)))
            .collect();
        self.loaded = true;
    }

    pub fn is_loaded(&self) -> bool {
        self.loaded
    }

    pub fn group(&self, group_id: &str) -> Option<&Group> {
        self.groups.get(group_id)
    }

    pub fn offsets(&self) -> &OffsetStore {
        &self.offsets
    }

    /// Applies records once they are durable (a commit's records; metadata records are applied
    /// by the call that produced them).
    pub fn apply(&mut self, records: &[GroupRecord]) {
        for record in records {
            self.offsets.apply(record);
        }
    }

    fn ready(&self) -> Result<(), ErrorCode> {
        if self.loaded {
            Ok(())
        } else {
            Err(ErrorCode::CoordinatorLoadInProgress)
        }
    }

    /// The metadata record of `group_id` if its epoch moved, applied to the store at once.
    fn metadata_records(&mut self, group_id: &str) -> Vec<GroupRecord> {
        let Some(record) = self.groups.get_mut(group_id).and_then(Group::take_metadata_record) else {
            return Vec::new();
        };
        let record = GroupRecord::GroupMetadata(record);
        self.offsets.apply(&record);
        vec![record]
    }

    /// ConsumerGroupHeartbeat. `topics` is the partition count of every existing topic.
    pub fn heartbeat(
        &mut self,
        request: &ConsumerGroupHeartbeatRequest,
        topics: &TopicPartitionCounts,
        now_ms: u64,
    ) -> CoordinatorOutput<ConsumerGroupHeartbeatResponse> {
        let failed = |code: ErrorCode| CoordinatorOutput {
            response: ConsumerGroupHeartbeatResponse {
                error_code: code.as_u16(),
                error_message: String::new(),
                member_id: request.member_id.clone(),
                member_epoch: request.member_epoch,
                heartbeat_interval_ms: 0,
                assignment: None,
            },
            records: Vec::new(),
        };
        if let Err(code) = self.ready() {
            return failed(code);
        }
        if !self.groups.contains_key(&request.group_id) {
            if request.member_epoch != JOIN_EPOCH || !request.member_id.is_empty() {
                return failed(if request.member_epoch == LEAVE_EPOCH {
                    ErrorCode::UnknownMemberId
                } else {
                    ErrorCode::GroupIdNotFound
                });
            }
            self.groups.insert(request.group_id.clone(), Group::new(request.group_id.clone(), self.config));
        }
        let group = self.groups.get_mut(&request.group_id).expect("present or inserted above");
        let heartbeat = HeartbeatRequest {
            member_id: request.member_id.clone(),
            member_epoch: request.member_epoch,
            subscribed_topic_names: request.subscribed_topic_names.as_ref().map(|t| t.iter().cloned().collect()),
            server_assignor: request.server_assignor.clone(),
            owned_partitions: request.owned_partitions.as_deref().map(assignment_from_wire),
        };
        let result = group.heartbeat(&heartbeat, topics, now_ms);
        let records = self.metadata_records(&request.group_id);
        match result {
            Ok(response) => CoordinatorOutput {
                response: ConsumerGroupHeartbeatResponse {
                    error_code: ErrorCode::None.as_u16(),
                    error_message: String::new(),
                    member_id: response.member_id,
                    member_epoch: response.member_epoch,
                    heartbeat_interval_ms: response.heartbeat_interval_ms,
                    assignment: response.assignment.as_ref().map(assignment_to_wire),
                },
                records,
            },
            Err(code) => CoordinatorOutput { records, ..failed(code) },
        }
    }

    /// LeaveGroup: removes the listed members whatever their epoch.
    pub fn leave_group(&mut self, request: &LeaveGroupRequest) -> CoordinatorOutput<LeaveGroupResponse> {
        let failed = |code: ErrorCode| CoordinatorOutput {
            response: LeaveGroupResponse { error_code: code.as_u16(), members: Vec::new() },
            records: Vec::new(),
        };
        if let Err(code) = self.ready() {
            return failed(code);
        }
        let Some(group) = self.groups.get_mut(&request.group_id) else { return failed(ErrorCode::GroupIdNotFound) };
        let members = request
            .member_ids
            .iter()
            .map(|member_id| {
                let code = group.leave(member_id, LEAVE_EPOCH).err().unwrap_or(ErrorCode::None);
                LeaveGroupMemberResponse { member_id: member_id.clone(), error_code: code.as_u16() }
            })
            .collect();
        let records = self.metadata_records(&request.group_id);
        CoordinatorOutput { response: LeaveGroupResponse { error_code: ErrorCode::None.as_u16(), members }, records }
    }

    /// OffsetCommit: validates against the group; the records are applied only by
    /// [`GroupCoordinator::apply`] once durable. Whether each topic and partition exists is
    /// checked by the broker before (answer those with `UnknownTopicOrPartition`).
    pub fn offset_commit(&self, request: &OffsetCommitRequest, now_ms: i64) -> CoordinatorOutput<OffsetCommitResponse> {
        if let Err(code) = self.ready() {
            return CoordinatorOutput {
                response: OffsetCommitResponse { error_code: code.as_u16(), topics: Vec::new() },
                records: Vec::new(),
            };
        }
        let entries: Vec<OffsetCommitEntry> = request
            .topics
            .iter()
            .flat_map(|topic| {
                topic.partitions.iter().map(|p| OffsetCommitEntry {
                    topic: topic.name.clone(),
                    partition: p.partition,
                    offset: p.offset,
                    metadata: p.metadata.clone(),
                })
            })
            .collect();
        let group = self.groups.get(&request.group_id);
        let prepared = OffsetStore::prepare_commit(
            &request.group_id,
            group,
            &request.member_id,
            request.member_epoch,
            &entries,
            now_ms,
        );
        let mut results = prepared.results.into_iter();
        let topics = request
            .topics
            .iter()
            .map(|topic| OffsetCommitTopicResponse {
                name: topic.name.clone(),
                partitions: topic
                    .partitions
                    .iter()
                    .zip(results.by_ref())
                    .map(|(p, (_, _, code))| OffsetCommitPartitionResponse {
                        partition: p.partition,
                        error_code: code.as_u16(),
                    })
                    .collect(),
            })
            .collect();
        CoordinatorOutput {
            response: OffsetCommitResponse { error_code: ErrorCode::None.as_u16(), topics },
            records: prepared.records,
        }
    }

    /// OffsetFetch. An unknown group is not an error: its offsets read as `OFFSET_UNKNOWN`.
    pub fn offset_fetch(&self, request: &OffsetFetchRequest) -> OffsetFetchResponse {
        if let Err(code) = self.ready() {
            return OffsetFetchResponse { error_code: code.as_u16(), topics: Vec::new() };
        }
        let wanted: Vec<(String, Vec<u32>)> =
            request.topics.iter().map(|t| (t.name.clone(), t.partitions.clone())).collect();
        let topics = self
            .offsets
            .fetch(&request.group_id, &wanted)
            .into_iter()
            .map(|(name, partitions)| OffsetFetchTopicResponse {
                name,
                partitions: partitions
                    .into_iter()
                    .map(|(partition, committed)| OffsetFetchPartitionResponse {
                        partition,
                        error_code: ErrorCode::None.as_u16(),
                        offset: committed.map_or(OFFSET_UNKNOWN, |c| c.offset),
                        metadata: committed.map(|c| c.metadata.clone()).unwrap_or_default(),
                    })
                    .collect(),
            })
            .collect();
        OffsetFetchResponse { error_code: ErrorCode::None.as_u16(), topics }
    }

    /// DescribeGroup. Expires silent members first so the answer is current; append the
    /// returned records as for a heartbeat.
    pub fn describe_group(
        &mut self,
        request: &DescribeGroupRequest,
        now_ms: u64,
    ) -> CoordinatorOutput<DescribeGroupResponse> {
        let failed = |code: ErrorCode| CoordinatorOutput {
            response: DescribeGroupResponse {
                error_code: code.as_u16(),
                group_id: request.group_id.clone(),
                ..DescribeGroupResponse::default()
            },
            records: Vec::new(),
        };
        if let Err(code) = self.ready() {
            return failed(code);
        }
        let Some(group) = self.groups.get_mut(&request.group_id) else {
            // A group known only by its offsets (admin commits, or never joined since load).
            if self.offsets.group_ids().any(|id| *id == request.group_id) {
                let mut empty = failed(ErrorCode::None);
                empty.response.state = GroupState::Empty.as_str().to_owned();
                empty.response.assignor = self.config.default_assignor.as_str().to_owned();
                return empty;
            }
            return failed(ErrorCode::GroupIdNotFound);
        };
        group.expire(now_ms);
        let members = group
            .members()
            .values()
            .map(|m| DescribedMember {
                member_id: m.member_id.clone(),
                member_epoch: m.member_epoch,
                subscribed_topic_names: m.subscribed_topics.iter().cloned().collect(),
                assignment: assignment_to_wire(&m.assigned),
                target_assignment: assignment_to_wire(&group.target_of(&m.member_id)),
            })
            .collect();
        let response = DescribeGroupResponse {
            error_code: ErrorCode::None.as_u16(),
            group_id: request.group_id.clone(),
            state: group.state().as_str().to_owned(),
            assignor: group.assignor().as_str().to_owned(),
            group_epoch: group.group_epoch(),
            assignment_epoch: group.assignment_epoch(),
            members,
        };
        let records = self.metadata_records(&request.group_id);
        CoordinatorOutput { response, records }
    }

    /// ListGroups: this shard's groups (the broker concatenates every shard's answer).
    pub fn list_groups(&self, request: &ListGroupsRequest) -> ListGroupsResponse {
        if let Err(code) = self.ready() {
            return ListGroupsResponse { error_code: code.as_u16(), groups: Vec::new() };
        }
        let filter: BTreeSet<&str> = request.states_filter.iter().map(String::as_str).collect();
        let ids: BTreeSet<&String> = self.groups.keys().chain(self.offsets.group_ids()).collect();
        let groups = ids
            .into_iter()
            .map(|id| {
                let state = self.groups.get(id).map_or(GroupState::Empty, Group::state);
                ListedGroup { group_id: id.clone(), state: state.as_str().to_owned() }
            })
            .filter(|g| filter.is_empty() || filter.contains(g.state.as_str()))
            .collect();
        ListGroupsResponse { error_code: ErrorCode::None.as_u16(), groups }
    }

    /// Removes silent members of every group (call on a timer, e.g. every 250 ms); returns the
    /// metadata records to append for the groups whose epoch moved.
    pub fn expire(&mut self, now_ms: u64) -> Vec<GroupRecord> {
        let changed: Vec<String> = self
            .groups
            .iter_mut()
            .filter_map(|(id, group)| (!group.expire(now_ms).is_empty()).then(|| id.clone()))
            .collect();
        changed.iter().flat_map(|id| self.metadata_records(id)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::{OffsetCommitPartition, OffsetCommitTopic, OffsetFetchTopic, TopicPartitions};

    fn join(group_id: &str) -> ConsumerGroupHeartbeatRequest {
        ConsumerGroupHeartbeatRequest {
            group_id: group_id.into(),
            member_id: String::new(),
            member_epoch: JOIN_EPOCH,
            subscribed_topic_names: Some(vec!["t".into()]),
            server_assignor: None,
            owned_partitions: Some(vec![]),
        }
    }

    /// Guards the wire path through the coordinator: loading gate, join with its metadata
    /// record, commit → apply → fetch, describe and list, and a restart from the records.
    #[test]
    fn wire_requests_round_trip_through_the_coordinator() {
        let topics = TopicPartitionCounts::from([("t".to_string(), 2)]);
        let mut coordinator = GroupCoordinator::new(GroupConfig::default());
        let early = coordinator.heartbeat(&join("g"), &topics, 0);
        assert_eq!(early.response.error_code, ErrorCode::CoordinatorLoadInProgress.as_u16());
        coordinator.load(&[]);
        let mut log: Vec<GroupRecord> = Vec::new();

        let joined = coordinator.heartbeat(&join("g"), &topics, 0);
        assert_eq!(joined.response.error_code, 0);
        assert_eq!(joined.records.len(), 1, "the new epoch is persisted before the answer");
        log.extend(joined.records);
        let member_id = joined.response.member_id.clone();
        let epoch = joined.response.member_epoch;
        assert_eq!(
            joined.response.assignment,
            Some(vec![TopicPartitions { topic: "t".into(), partitions: vec![0, 1] }])
        );

        let commit = OffsetCommitRequest {
            group_id: "g".into(),
            member_id: member_id.clone(),
            member_epoch: epoch,
            topics: vec![OffsetCommitTopic {
                name: "t".into(),
                partitions: vec![
                    OffsetCommitPartition { partition: 0, offset: 42, metadata: "m".into() },
                    OffsetCommitPartition { partition: 1, offset: OFFSET_UNKNOWN, metadata: String::new() },
                ],
            }],
        };
        let committed = coordinator.offset_commit(&commit, 5);
        let codes: Vec<u16> = committed.response.topics[0].partitions.iter().map(|p| p.error_code).collect();
        assert_eq!(codes, vec![0, ErrorCode::InvalidCommitOffset.as_u16()]);
        let fetch = OffsetFetchRequest { group_id: "g".into(), topics: vec![] };
        assert!(coordinator.offset_fetch(&fetch).topics.is_empty(), "not visible before it is durable");
        coordinator.apply(&committed.records);
        log.extend(committed.records);
        let fetch = OffsetFetchRequest {
            group_id: "g".into(),
            topics: vec![OffsetFetchTopic { name: "t".into(), partitions: vec![0, 1] }],
        };
        let offsets: Vec<u64> =
            coordinator.offset_fetch(&fetch).topics[0].partitions.iter().map(|p| p.offset).collect();
        assert_eq!(offsets, vec![42, OFFSET_UNKNOWN]);

        let described = coordinator.describe_group(&DescribeGroupRequest { group_id: "g".into() }, 1).response;
        assert_eq!((described.state.as_str(), described.members.len()), ("Stable", 1));
        let missing = coordinator.describe_group(&DescribeGroupRequest { group_id: "nope".into() }, 1).response;
        assert_eq!(missing.error_code, ErrorCode::GroupIdNotFound.as_u16());
        let listed = coordinator.list_groups(&ListGroupsRequest { states_filter: vec!["Stable".into()] });
        assert_eq!(listed.groups, vec![ListedGroup { group_id: "g".into(), state: "Stable".into() }]);

        // Restart: the member is gone, the offsets and the epoch are not.
        let mut restarted = GroupCoordinator::new(GroupConfig::default());
        restarted.load(&log);
        let stale = ConsumerGroupHeartbeatRequest { member_id: member_id.clone(), member_epoch: epoch, ..join("g") };
        assert_eq!(restarted.heartbeat(&stale, &topics, 2).response.error_code, ErrorCode::UnknownMemberId.as_u16());
        let offsets: Vec<u64> = restarted.offset_fetch(&fetch).topics[0].partitions.iter().map(|p| p.offset).collect();
        assert_eq!(offsets, vec![42, OFFSET_UNKNOWN]);
        let rejoined = restarted.heartbeat(&join("g"), &topics, 3).response;
        assert!(rejoined.member_epoch > epoch);
        assert_ne!(rejoined.member_id, member_id);

        // Unknown group: heartbeat with an epoch and LeaveGroup are refused clearly.
        let unknown = ConsumerGroupHeartbeatRequest { member_id: "m".into(), member_epoch: 3, ..join("other") };
        assert_eq!(restarted.heartbeat(&unknown, &topics, 4).response.error_code, ErrorCode::GroupIdNotFound.as_u16());
        let leave = LeaveGroupRequest { group_id: "other".into(), member_ids: vec!["m".into()] };
        assert_eq!(restarted.leave_group(&leave).response.error_code, ErrorCode::GroupIdNotFound.as_u16());
        // An admin commit (offset reset) to a group with no members; it then describes Empty.
        let reset = OffsetCommitRequest {
            group_id: "reset".into(),
            member_id: String::new(),
            member_epoch: crate::protocol::ADMIN_COMMIT_EPOCH,
            ..commit.clone()
        };
        let committed = restarted.offset_commit(&reset, 6);
        assert_eq!(committed.records.len(), 1);
        restarted.apply(&committed.records);
        let described = restarted.describe_group(&DescribeGroupRequest { group_id: "reset".into() }, 6).response;
        assert_eq!((described.error_code, described.state.as_str()), (0, "Empty"));
        // Expiry produces the new epoch's record.
        assert_eq!(restarted.expire(10_000_000).len(), 1);
    }
}
