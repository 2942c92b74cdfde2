//! Bounds and name rules shared by the consumer-group and producer-id APIs (keys 10..=17).
//!
//! Every list a client sends has a named bound here; a request over a bound is answered with
//! `GroupListTooLong`, never by allocating more. The coordinator (`crate::group`) uses the same
//! constants for its own limits.

use crate::protocol::apis::create_topic::validate_topic_name;
use crate::protocol::ErrorCode;

/// Longest group id, in bytes (Kafka has no limit; ours keeps records and keys small).
pub const GROUP_ID_BYTES_MAX: usize = 255;
/// Longest member id, in bytes. The coordinator hands out much shorter ones.
pub const MEMBER_ID_BYTES_MAX: usize = 64;
/// Longest transactional id, in bytes.
pub const TRANSACTIONAL_ID_BYTES_MAX: usize = 255;
/// Longest assignor name, in bytes.
pub const ASSIGNOR_NAME_BYTES_MAX: usize = 32;
/// Longest metadata string of one committed offset, in bytes (Kafka's default is 4096).
pub const OFFSET_METADATA_BYTES_MAX: usize = 4096;
/// Members per group, and member ids per LeaveGroup request.
pub const GROUP_MEMBERS_MAX: usize = 1_000;
/// Topics per request list: a subscription, owned partitions, a commit, a fetch.
pub const GROUP_TOPICS_MAX: usize = 1_000;
/// Partitions per topic in a group request (the same bound as a topic's partition count).
pub const GROUP_PARTITIONS_PER_TOPIC_MAX: usize = crate::protocol::apis::create_topic::PARTITIONS_MAX as usize;
/// Partitions in one request, all topics together: keeps a request's work bounded.
pub const GROUP_PARTITIONS_MAX: usize = 100_000;
/// Group ids per ListGroups state filter.
pub const GROUP_STATES_FILTER_MAX: usize = 8;

const _: () = assert!(GROUP_PARTITIONS_PER_TOPIC_MAX <= GROUP_PARTITIONS_MAX);
const _: () = assert!(MEMBER_ID_BYTES_MAX <= GROUP_ID_BYTES_MAX);

/// A group id is 1..=[`GROUP_ID_BYTES_MAX`] bytes of UTF-8 with no control characters (it ends
/// up in logs and in offsets-topic record keys).
pub fn validate_group_id(group_id: &str) -> Result<(), ErrorCode> {
    if group_id.is_empty() || group_id.len() > GROUP_ID_BYTES_MAX || group_id.chars().any(char::is_control) {
        return Err(ErrorCode::InvalidGroupId);
    }
    Ok(())
}

/// A member id is empty (joining, or an admin request) or up to [`MEMBER_ID_BYTES_MAX`] bytes
/// with no control characters.
pub fn validate_member_id(member_id: &str) -> Result<(), ErrorCode> {
    if member_id.len() > MEMBER_ID_BYTES_MAX || member_id.chars().any(char::is_control) {
        return Err(ErrorCode::InvalidMemberId);
    }
    Ok(())
}

/// Checks a list of `(topic, partition count)` against the topic and partition bounds and the
/// topic naming rules. `topics` yields each topic's name and its number of partitions.
pub fn validate_topic_lists<'a>(topics: impl ExactSizeIterator<Item = (&'a str, usize)>) -> Result<(), ErrorCode> {
    if topics.len() > GROUP_TOPICS_MAX {
        return Err(ErrorCode::GroupListTooLong);
    }
    let mut partitions_total = 0usize;
    for (name, partitions) in topics {
        validate_topic_name(name)?;
        if partitions > GROUP_PARTITIONS_PER_TOPIC_MAX {
            return Err(ErrorCode::GroupListTooLong);
        }
        partitions_total += partitions;
        if partitions_total > GROUP_PARTITIONS_MAX {
            return Err(ErrorCode::GroupListTooLong);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn group_and_member_ids() {
        for ok in ["g", "orders-consumers", "ünïcode", &"g".repeat(GROUP_ID_BYTES_MAX)] {
            assert_eq!(validate_group_id(ok), Ok(()), "{ok}");
        }
        let too_long = "g".repeat(GROUP_ID_BYTES_MAX + 1);
        for bad in ["", "a\nb", "\0", &too_long] {
            assert_eq!(validate_group_id(bad), Err(ErrorCode::InvalidGroupId), "{bad:?}");
        }
        assert_eq!(validate_member_id(""), Ok(()));
        assert_eq!(validate_member_id(&"m".repeat(MEMBER_ID_BYTES_MAX + 1)), Err(ErrorCode::InvalidMemberId));
    }

    #[test]
    fn topic_list_bounds() {
        assert_eq!(validate_topic_lists([("t", 3)].into_iter()), Ok(()));
        assert_eq!(validate_topic_lists([("", 3)].into_iter()), Err(ErrorCode::InvalidTopicName));
        let many: Vec<(&str, usize)> = vec![("t", 0); GROUP_TOPICS_MAX + 1];
        assert_eq!(validate_topic_lists(many.into_iter()), Err(ErrorCode::GroupListTooLong));
        let wide = [("t", GROUP_PARTITIONS_PER_TOPIC_MAX + 1)];
        assert_eq!(validate_topic_lists(wide.into_iter()), Err(ErrorCode::GroupListTooLong));
        let total: Vec<(&str, usize)> = vec![("t", GROUP_PARTITIONS_PER_TOPIC_MAX); 11];
        assert_eq!(validate_topic_lists(total.into_iter()), Err(ErrorCode::GroupListTooLong));
    }
}
