//! Records of the internal offsets topic: committed offsets and group metadata, and their
//! byte encoding.
//!
//! The coordinator appends these to its partition of the offsets topic (same log engine as any
//! topic, so they are durable and later replicated) and rebuilds its state from them at
//! start-up ([`super::offsets::replay`]). Because the latest record per [`RecordKey`] wins, a
//! partition can be rewritten as just its live records ([`super::snapshot`]).
//!
//! ## Encoding (little-endian, versioned)
//!
//! ```text
//! ┌─────────┬──────┬───────────────────────────────────────────────┐
//! │ version │ kind │ fields of the kind, in order                  │
//! │ u8 = 0  │ u8   │                                               │
//! └─────────┴──────┴───────────────────────────────────────────────┘
//! str = u16 length + UTF-8 bytes
//! kind 0 OffsetCommit:    group str, topic str, partition u32, offset u64,
//!                         commit_timestamp_ms i64, metadata str
//! kind 1 OffsetTombstone: group str, topic str, partition u32
//! kind 2 GroupMetadata:   group str, group_epoch i32, assignor u8 (0 uniform, 1 range)
//! kind 3 GroupTombstone:  group str   (the group and all its offsets are deleted)
//! ```
//!
//! A record is exactly its fields: trailing bytes are an error. A newer layout takes a new
//! version number; [`GroupRecord::decode`] refuses versions it does not know rather than
//! guessing. The decoder never panics on arbitrary bytes (property-tested).

use super::assignor::AssignorKind;

/// The version this build writes and reads.
pub const RECORD_VERSION: u8 = 0;

const KIND_OFFSET_COMMIT: u8 = 0;
const KIND_OFFSET_TOMBSTONE: u8 = 1;
const KIND_GROUP_METADATA: u8 = 2;
const KIND_GROUP_TOMBSTONE: u8 = 3;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OffsetCommitRecord {
    pub group: String,
    pub topic: String,
    pub partition: u32,
    /// The next offset to consume.
    pub offset: u64,
    pub metadata: String,
    pub commit_timestamp_ms: i64,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GroupMetadataRecord {
    pub group: String,
    pub group_epoch: i32,
    pub assignor: AssignorKind,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum GroupRecord {
    OffsetCommit(OffsetCommitRecord),
    /// One committed offset deleted (its topic was deleted, or an admin deleted it).
    OffsetTombstone {
        group: String,
        topic: String,
        partition: u32,
    },
    GroupMetadata(GroupMetadataRecord),
    /// The group was deleted: drops its metadata and every offset committed before.
    GroupTombstone {
        group: String,
    },
}

/// What a record replaces: the latest record per key wins (compaction keeps only it).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum RecordKey {
    Offset { group: String, topic: String, partition: u32 },
    Group { group: String },
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RecordDecodeError {
    #[error("record truncated: {needed} more bytes needed at byte {at}")]
    Truncated { at: usize, needed: usize },
    #[error("record version {0} is not known to this build")]
    UnknownVersion(u8),
    #[error("record kind {0} is not known")]
    UnknownKind(u8),
    #[error("assignor {0} is not known")]
    UnknownAssignor(u8),
    #[error("string at byte {at} is not UTF-8")]
    BadUtf8 { at: usize },
    #[error("{0} bytes after the end of the record")]
    TrailingBytes(usize),
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("string of {0} bytes does not fit a record's u16 length")]
pub struct RecordEncodeError(pub usize);

impl GroupRecord {
    pub fn group(&self) -> &str {
        match self {
            GroupRecord::OffsetCommit(r) => &r.group,
            GroupRecord::OffsetTombstone { group, .. } | GroupRecord::GroupTombstone { group } => group,
            GroupRecord::GroupMetadata(r) => &r.group,
        }
    }

    pub fn key(&self) -> RecordKey {
        match self {
            GroupRecord::OffsetCommit(r) => {
                RecordKey::Offset { group: r.group.clone(), topic: r.topic.clone(), partition: r.partition }
            }
            GroupRecord::OffsetTombstone { group, topic, partition } => {
                RecordKey::Offset { group: group.clone(), topic: topic.clone(), partition: *partition }
            }
            GroupRecord::GroupMetadata(r) => RecordKey::Group { group: r.group.clone() },
            GroupRecord::GroupTombstone { group } => RecordKey::Group { group: group.clone() },
        }
    }

    /// Encodes the record. Fails only for a string over 65 535 bytes, which the protocol's
    /// bounds (group id 255, topic 249, metadata 4 096) rule out.
    pub fn encode(&self) -> Result<Vec<u8>, RecordEncodeError> {
        let mut out = Vec::with_capacity(64);
        out.push(RECORD_VERSION);
        match self {
            GroupRecord::OffsetCommit(r) => {
                out.push(KIND_OFFSET_COMMIT);
                put_str(&mut out, &r.group)?;
                put_str(&mut out, &r.topic)?;
                out.extend_from_slice(&r.partition.to_le_bytes());
                out.extend_from_slice(&r.offset.to_le_bytes());
                out.extend_from_slice(&r.commit_timestamp_ms.to_le_bytes());
                put_str(&mut out, &r.metadata)?;
            }
            GroupRecord::OffsetTombstone { group, topic, partition } => {
                out.push(KIND_OFFSET_TOMBSTONE);
                put_str(&mut out, group)?;
                put_str(&mut out, topic)?;
                out.extend_from_slice(&partition.to_le_bytes());
            }
            GroupRecord::GroupMetadata(r) => {
                out.push(KIND_GROUP_METADATA);
                put_str(&mut out, &r.group)?;
                out.extend_from_slice(&r.group_epoch.to_le_bytes());
                out.push(r.assignor.as_u8());
            }
            GroupRecord::GroupTombstone { group } => {
                out.push(KIND_GROUP_TOMBSTONE);
                put_str(&mut out, group)?;
            }
        }
        Ok(out)
    }

    /// Decodes one record; any malformed input is an error, never a panic.
    pub fn decode(bytes: &[u8]) -> Result<GroupRecord, RecordDecodeError> {
        let mut reader = Reader { bytes, at: 0 };
        let version = reader.u8()?;
        if version != RECORD_VERSION {
            return Err(RecordDecodeError::UnknownVersion(version));
        }
        let record = match reader.u8()? {
            KIND_OFFSET_COMMIT => GroupRecord::OffsetCommit(OffsetCommitRecord {
                group: reader.str()?,
                topic: reader.str()?,
                partition: reader.u32()?,
                offset: reader.u64()?,
                commit_timestamp_ms: reader.u64()? as i64,
                metadata: reader.str()?,
            }),
            KIND_OFFSET_TOMBSTONE => {
                GroupRecord::OffsetTombstone { group: reader.str()?, topic: reader.str()?, partition: reader.u32()? }
            }
            KIND_GROUP_METADATA => {
                let group = reader.str()?;
                let group_epoch = reader.u32()? as i32;
                let assignor = reader.u8()?;
                let assignor = AssignorKind::from_u8(assignor).ok_or(RecordDecodeError::UnknownAssignor(assignor))?;
                GroupRecord::GroupMetadata(GroupMetadataRecord { group, group_epoch, assignor })
            }
            KIND_GROUP_TOMBSTONE => GroupRecord::GroupTombstone { group: reader.str()? },
            kind => return Err(RecordDecodeError::UnknownKind(kind)),
        };
        match bytes.len() - reader.at {
            0 => Ok(record),
            extra => Err(RecordDecodeError::TrailingBytes(extra)),
        }
    }
}

fn put_str(out: &mut Vec<u8>, s: &str) -> Result<(), RecordEncodeError> {
    let length = u16::try_from(s.len()).map_err(|_| RecordEncodeError(s.len()))?;
    out.extend_from_slice(&length.to_le_bytes());
    out.extend_from_slice(s.as_bytes());
    Ok(())
}

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl Reader<'_> {
    fn take(&mut self, n: usize) -> Result<&[u8], RecordDecodeError> {
        let rest = &self.bytes[self.at..];
        if rest.len() < n {
            return Err(RecordDecodeError::Truncated { at: self.at, needed: n - rest.len() });
        }
        self.at += n;
        Ok(&rest[..n])
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], RecordDecodeError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }

    fn u8(&mut self) -> Result<u8, RecordDecodeError> {
        Ok(self.array::<1>()?[0])
    }

    fn u32(&mut self) -> Result<u32, RecordDecodeError> {
        Ok(u32::from_le_bytes(self.array()?))
    }

    fn u64(&mut self) -> Result<u64, RecordDecodeError> {
        Ok(u64::from_le_bytes(self.array()?))
    }

    fn str(&mut self) -> Result<String, RecordDecodeError> {
        let length = u16::from_le_bytes(self.array()?) as usize;
        let at = self.at;
        let bytes = self.take(length)?;
        std::str::from_utf8(bytes).map(str::to_owned).map_err(|_| RecordDecodeError::BadUtf8 { at })
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::group::offsets::{compact, replay};

    fn record() -> impl Strategy<Value = GroupRecord> {
        let group = prop::sample::select(vec!["g1", "g2", "ü-group"]).prop_map(str::to_owned);
        let topic = prop::sample::select(vec!["a", "b"]).prop_map(str::to_owned);
        prop_oneof![
            6 => (group.clone(), topic.clone(), 0u32..3, any::<u64>(), ".{0,8}", any::<i64>()).prop_map(
                |(group, topic, partition, offset, metadata, commit_timestamp_ms)| {
                    GroupRecord::OffsetCommit(OffsetCommitRecord {
                        group, topic, partition, offset, metadata, commit_timestamp_ms,
                    })
                }
            ),
            1 => (group.clone(), topic, 0u32..3)
                .prop_map(|(group, topic, partition)| GroupRecord::OffsetTombstone { group, topic, partition }),
            2 => (group.clone(), any::<i32>(), any::<bool>()).prop_map(|(group, group_epoch, range)| {
                let assignor = if range { AssignorKind::Range } else { AssignorKind::Uniform };
                GroupRecord::GroupMetadata(GroupMetadataRecord { group, group_epoch, assignor })
            }),
            1 => group.prop_map(|group| GroupRecord::GroupTombstone { group }),
        ]
    }

    /// Pins the byte layout: changing it breaks every offsets topic already on disk.
    #[test]
    fn layout_is_pinned() {
        let record = GroupRecord::GroupMetadata(GroupMetadataRecord {
            group: "g".into(),
            group_epoch: 7,
            assignor: AssignorKind::Range,
        });
        assert_eq!(record.encode().unwrap(), vec![0, 2, 1, 0, b'g', 7, 0, 0, 0, 1]);
        let bytes = record.encode().unwrap();
        assert_eq!(GroupRecord::decode(&bytes[..4]), Err(RecordDecodeError::Truncated { at: 4, needed: 1 }));
        let mut longer = bytes.clone();
        longer.push(0);
        assert_eq!(GroupRecord::decode(&longer), Err(RecordDecodeError::TrailingBytes(1)));
        assert_eq!(GroupRecord::decode(&[1, 2]), Err(RecordDecodeError::UnknownVersion(1)));
        assert_eq!(GroupRecord::decode(&[0, 9]), Err(RecordDecodeError::UnknownKind(9)));
        assert_eq!(GroupRecord::decode(&[0, 3, 1, 0, 0xff]), Err(RecordDecodeError::BadUtf8 { at: 4 }));
        let huge = GroupRecord::GroupTombstone { group: "g".repeat(70_000) };
        assert!(huge.encode().is_err());
    }

    proptest! {
        /// Guards the encoding: every record survives encode → decode unchanged.
        #[test]
        fn records_round_trip(record in record()) {
            let bytes = record.encode().unwrap();
            prop_assert_eq!(GroupRecord::decode(&bytes), Ok(record));
        }

        /// Guards the decoder against arbitrary bytes (and valid records cut or bit-flipped):
        /// errors only, never a panic.
        #[test]
        fn decode_never_panics(
            bytes in prop::collection::vec(any::<u8>(), 0..64),
            record in record(),
            cut in any::<usize>(),
            flip in any::<(usize, u8)>(),
        ) {
            let _ = GroupRecord::decode(&bytes);
            let mut encoded = record.encode().unwrap();
            let _ = GroupRecord::decode(&encoded[..cut % (encoded.len() + 1)]);
            let at = flip.0 % encoded.len();
            encoded[at] ^= flip.1;
            let _ = GroupRecord::decode(&encoded);
        }

        /// Guards compaction: the compacted records replay to the same state as the full run,
        /// hold one record per live key, and compacting again changes nothing.
        #[test]
        fn compaction_keeps_the_state(records in prop::collection::vec(record(), 0..80)) {
            let full = replay(&records);
            let compacted = compact(&records);
            prop_assert_eq!(&replay(&compacted), &full);
            let keys: std::collections::BTreeSet<RecordKey> = compacted.iter().map(GroupRecord::key).collect();
            prop_assert_eq!(keys.len(), compacted.len());
            prop_assert!(compacted.len() <= records.len());
            prop_assert_eq!(compact(&compacted), compacted);
        }
    }
}
