//! API keys and the versions this build supports.
//!
//! Like error codes, API key numbers are part of the wire format and are never renumbered.
//! Numbers reserved for the next APIs (do not use them for anything else):
//!
//! | key | API                         |
//! |-----|-----------------------------|
//! | 10  | FindCoordinator             |
//! | 11  | ConsumerGroupHeartbeat      |
//! | 12  | LeaveGroup                  |
//! | 13  | OffsetCommit                |
//! | 14  | OffsetFetch                 |
//! | 15  | DescribeGroup               |
//! | 16  | ListGroups                  |
//! | 17  | InitProducerId              |
//!
//! 7..=9 are free; replication APIs will take numbers from 20 on.

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
    pub const ALL: [ApiKey; 7] = [
        ApiKey::ApiVersions,
        ApiKey::Metadata,
        ApiKey::CreateTopic,
        ApiKey::DeleteTopic,
        ApiKey::Produce,
        ApiKey::Fetch,
        ApiKey::ListOffsets,
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
            _ => None,
        }
    }

    /// The versions of this API the build can read and write. All v0 for now.
    pub const fn supported_versions(self) -> VersionRange {
        match self {
            ApiKey::ApiVersions
            | ApiKey::Metadata
            | ApiKey::CreateTopic
            | ApiKey::DeleteTopic
            | ApiKey::Produce
            | ApiKey::Fetch
            | ApiKey::ListOffsets => VersionRange { min: 0, max: 0 },
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
        for (i, key) in ApiKey::ALL.iter().enumerate() {
            assert_eq!(key.as_u16() as usize, i);
            assert_eq!(ApiKey::from_u16(key.as_u16()), Some(*key));
            assert!(key.supported_versions().contains(0));
        }
        for reserved in 7..=20u16 {
            assert_eq!(ApiKey::from_u16(reserved), None);
        }
    }
}
