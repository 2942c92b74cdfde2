//! CreateTopic (key 2): create a topic with its partition count and settings.

use rkyv::{Archive, Deserialize, Serialize};

use crate::protocol::{ApiKey, ErrorCode, Request};

/// Longest topic name, as in Kafka (a name is also a directory name).
pub const TOPIC_NAME_BYTES_MAX: usize = 249;
/// Partitions per topic, upper bound.
pub const PARTITIONS_MAX: u32 = 10_000;
/// Bounds on an explicit `segment_bytes` (0 asks for the broker default). The broker may apply
/// narrower bounds of its own.
pub const SEGMENT_BYTES_MIN: u64 = 1024 * 1024;
pub const SEGMENT_BYTES_MAX: u64 = i32::MAX as u64;
/// `retention_ms` / `retention_bytes` value meaning "no limit".
pub const RETENTION_UNLIMITED: i64 = -1;
/// `retention_ms` / `retention_bytes` / `segment_bytes` value meaning "use the broker default".
pub const USE_BROKER_DEFAULT: i64 = 0;

const _: () = assert!(SEGMENT_BYTES_MIN <= SEGMENT_BYTES_MAX);

#[derive(Archive, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[rkyv(derive(Debug), compare(PartialEq))]
pub struct CreateTopicRequest {
    pub name: String,
    /// 1..=[`PARTITIONS_MAX`].
    pub partitions: u32,
    /// -1 = forever, 0 = broker default, else milliseconds.
    pub retention_ms: i64,
    /// -1 = no size limit, 0 = broker default, else bytes per partition.
    pub retention_bytes: i64,
    /// 0 = broker default, else [`SEGMENT_BYTES_MIN`]..=[`SEGMENT_BYTES_MAX`].
    pub segment_bytes: u64,
}

#[derive(Archive, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[rkyv(derive(Debug), compare(PartialEq))]
pub struct CreateTopicResponse {
    pub error_code: u16,
    /// For humans; may be empty.
    pub error_message: String,
}

impl ArchivedCreateTopicResponse {
    pub fn error_code(&self) -> ErrorCode {
        ErrorCode::from_u16(self.error_code.to_native())
    }
}

impl ArchivedCreateTopicRequest {
    /// Checks every field against the protocol's rules (not against existing topics).
    pub fn validate(&self) -> Result<(), ErrorCode> {
        validate_topic_name(self.name.as_str())?;
        let partitions = self.partitions.to_native();
        if partitions == 0 || partitions > PARTITIONS_MAX {
            return Err(ErrorCode::InvalidPartitions);
        }
        if self.retention_ms.to_native() < RETENTION_UNLIMITED || self.retention_bytes.to_native() < RETENTION_UNLIMITED
        {
            return Err(ErrorCode::InvalidConfig);
        }
        let segment_bytes = self.segment_bytes.to_native();
        if segment_bytes != 0 && !(SEGMENT_BYTES_MIN..=SEGMENT_BYTES_MAX).contains(&segment_bytes) {
            return Err(ErrorCode::InvalidConfig);
        }
        Ok(())
    }
}

/// Kafka's topic name rules: 1..=249 characters of `[a-zA-Z0-9._-]`, and not `.` or `..`
/// (the name becomes a directory).
pub fn validate_topic_name(name: &str) -> Result<(), ErrorCode> {
    let legal = |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-');
    if name.is_empty() || name.len() > TOPIC_NAME_BYTES_MAX || name == "." || name == ".." || !name.bytes().all(legal) {
        return Err(ErrorCode::InvalidTopicName);
    }
    Ok(())
}

impl Request for CreateTopicRequest {
    const API_KEY: ApiKey = ApiKey::CreateTopic;
    type Response = CreateTopicResponse;
}

crate::protocol::codec::envelopes!(CreateTopicRequest, CreateTopicResponse);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topic_names() {
        for ok in ["a", "orders", "orders.v2", "a_b-C.9", "...", &"x".repeat(249)] {
            assert_eq!(validate_topic_name(ok), Ok(()), "{ok}");
        }
        let too_long = "x".repeat(250);
        for bad in ["", ".", "..", "a/b", "a b", "ü", "a\0", &too_long] {
            assert_eq!(validate_topic_name(bad), Err(ErrorCode::InvalidTopicName), "{bad:?}");
        }
    }

    #[test]
    fn create_request_validation() {
        let good = CreateTopicRequest {
            name: "t".into(),
            partitions: 3,
            retention_ms: RETENTION_UNLIMITED,
            retention_bytes: USE_BROKER_DEFAULT,
            segment_bytes: 0,
        };
        let check = |req: &CreateTopicRequest| {
            let bytes = rkyv::to_bytes::<rkyv::rancor::Error>(req).unwrap();
            crate::protocol::decode_envelope::<CreateTopicRequest>(&bytes).unwrap().validate()
        };
        assert_eq!(check(&good), Ok(()));
        let cases = [
            (CreateTopicRequest { partitions: 0, ..good.clone() }, ErrorCode::InvalidPartitions),
            (CreateTopicRequest { partitions: PARTITIONS_MAX + 1, ..good.clone() }, ErrorCode::InvalidPartitions),
            (CreateTopicRequest { retention_ms: -2, ..good.clone() }, ErrorCode::InvalidConfig),
            (CreateTopicRequest { segment_bytes: 100, ..good.clone() }, ErrorCode::InvalidConfig),
            (CreateTopicRequest { name: "..".into(), ..good.clone() }, ErrorCode::InvalidTopicName),
        ];
        for (req, code) in cases {
            assert_eq!(check(&req), Err(code), "{req:?}");
        }
    }
}
