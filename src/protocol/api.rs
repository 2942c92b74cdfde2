//! API keys and the versions this build supports.
//!
//! Like error codes, API key numbers are part of the wire format and are never renumbered.
//! 0..=6 are the first set; 10..=17 the consumer-group and producer-id APIs. 7..=9 and 18..=19
//! are free; replication APIs will take numbers from 20 on.

use std::fmt;

/// Identifies the request/response pair a frame carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u16)]
pub enum ApiKey {
    ApiVersions = 0,
    Metadata = 1,
    CreateTopic = 2,
    DeleteTopic = 3,
    Produce = 4,
    Fetch = 5,
    ListOffsets = 6,
    FindCoordinator = 10,
    ConsumerGroupHeartbeat = 11,
    LeaveGroup = 12,
    OffsetCommit = 13,
    OffsetFetch = 14,
    DescribeGroup = 15,
    ListGroups = 16,
    InitProducerId = 17,
}

/// An inclusive range of API versions.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct VersionRange {
    pub min: u16,
    pub max: u16,
}

impl VersionRange {
    pub const fn contains(self, version: u16) -> bool {
        self.min <= version && version <= self.max
    }
}

impl ApiKey {
    /// Every API this build serves, in key order.
    pub const ALL: [ApiKey; 15] = [
        ApiKey::ApiVersions,
        ApiKey::Metadata,
        ApiKey::CreateTopic,
        ApiKey::DeleteTopic,
        ApiKey::Produce,
        ApiKey::Fetch,
        ApiKey::ListOffsets,
        ApiKey::FindCoordinator,
        ApiKey::ConsumerGroupHeartbeat,
        ApiKey::LeaveGroup,
        ApiKey::OffsetCommit,
        ApiKey::OffsetFetch,
        ApiKey::DescribeGroup,
        ApiKey::ListGroups,
        ApiKey::InitProducerId,
    ];

    pub const fn as_u16(self) -> u16 {
        self as u16
    }

    /// The API for a wire number, or `None` for a key this build does not know.
    pub const fn from_u16(key: u16) -> Option<ApiKey> {
        match key {
            0 => Some(ApiKey::ApiVersions),
            1 => Some(ApiKey::Metadata),
            2 => Some(ApiKey::CreateTopic),
            3 => Some(ApiKey::DeleteTopic),
            4 => Some(ApiKey::Produce),
            5 => Some(ApiKey::Fetch),
            6 => Some(ApiKey::ListOffsets),
            10 => Some(ApiKey::FindCoordinator),
            11 => Some(ApiKey::ConsumerGroupHeartbeat),
            12 => Some(ApiKey::LeaveGroup),
            13 => Some(ApiKey::OffsetCommit),
            14 => Some(ApiKey::OffsetFetch),
            15 => Some(ApiKey::DescribeGroup),
            16 => Some(ApiKey::ListGroups),
            17 => Some(ApiKey::InitProducerId),
            _ => None,
        }
    }

    /// The versions of this API the build can read and write: v0, and v1 of Metadata (shard
    /// ports).
    pub const fn supported_versions(self) -> VersionRange {
        match self {
            ApiKey::Metadata => VersionRange { min: 0, max: 1 },
            ApiKey::ApiVersions
            | ApiKey::CreateTopic
            | ApiKey::DeleteTopic
            | ApiKey::Produce
            | ApiKey::Fetch
            | ApiKey::ListOffsets
            | ApiKey::FindCoordinator
            | ApiKey::ConsumerGroupHeartbeat
            | ApiKey::LeaveGroup
            | ApiKey::OffsetCommit
            | ApiKey::OffsetFetch
            | ApiKey::DescribeGroup
            | ApiKey::ListGroups
            | ApiKey::InitProducerId => VersionRange { min: 0, max: 0 },
        }
    }

    /// Stable snake_case name, for logs and metrics labels.
    pub const fn as_str(self) -> &'static str {
        match self {
            ApiKey::ApiVersions => "api_versions",
            ApiKey::Metadata => "metadata",
            ApiKey::CreateTopic => "create_topic",
            ApiKey::DeleteTopic => "delete_topic",
            ApiKey::Produce => "produce",
            ApiKey::Fetch => "fetch",
            ApiKey::ListOffsets => "list_offsets",
            ApiKey::FindCoordinator => "find_coordinator",
            ApiKey::ConsumerGroupHeartbeat => "consumer_group_heartbeat",
            ApiKey::LeaveGroup => "leave_group",
            ApiKey::OffsetCommit => "offset_commit",
            ApiKey::OffsetFetch => "offset_fetch",
            ApiKey::DescribeGroup => "describe_group",
            ApiKey::ListGroups => "list_groups",
            ApiKey::InitProducerId => "init_producer_id",
        }
    }
}

impl fmt::Display for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Guards the "never renumbered" rule for API keys.
    #[test]
    fn keys_are_stable_and_round_trip() {
        let expected: [u16; 15] = [0, 1, 2, 3, 4, 5, 6, 10, 11, 12, 13, 14, 15, 16, 17];
        for (key, number) in ApiKey::ALL.iter().zip(expected) {
            assert_eq!(key.as_u16(), number, "{key}");
            assert_eq!(ApiKey::from_u16(number), Some(*key));
            assert!(key.supported_versions().contains(0));
        }
        for free in [7u16, 8, 9, 18, 19, 20, u16::MAX] {
            assert_eq!(ApiKey::from_u16(free), None);
        }
    }
}
