//! Cross-module tests: every envelope through encode → split → decode, and the never-panic
//! properties of the decoders on arbitrary bytes.

use bytes::{Bytes, BytesMut};
use proptest::prelude::*;
use rkyv::util::AlignedVec;

use super::*;

fn sample_produce(partitions: u32, payload: &mut PayloadBuilder) -> ProduceRequest {
    let partitions = (0..partitions)
        .map(|p| {
            let range = payload.push(Bytes::from(vec![p as u8; 64])).unwrap();
            ProducePartition { partition: p, payload_offset: range.offset, payload_length: range.length }
        })
        .collect();
    ProduceRequest { acks: -1, timeout_ms: 30_000, topics: vec![ProduceTopic { name: "orders".into(), partitions }] }
}

fn sample_requests(
) -> (ApiVersionsRequest, MetadataRequest, CreateTopicRequest, DeleteTopicRequest, FetchRequest, ListOffsetsRequest) {
    (
        ApiVersionsRequest { client_software_name: "ringmq-rust".into(), client_software_version: "0.1.0".into() },
        MetadataRequest { topics: vec!["a".into(), "b".into()] },
        CreateTopicRequest {
            name: "orders".into(),
            partitions: 12,
            retention_ms: 7 * 24 * 3600 * 1000,
            retention_bytes: -1,
            segment_bytes: 0,
        },
        DeleteTopicRequest { name: "orders".into() },
        FetchRequest {
            max_wait_ms: 500,
            min_bytes: 1,
            max_bytes: 1 << 20,
            topics: vec![FetchTopic {
                name: "orders".into(),
                partitions: vec![FetchPartition { partition: 3, fetch_offset: 42, partition_max_bytes: 1 << 16 }],
            }],
        },
        ListOffsetsRequest {
            topics: vec![ListOffsetsTopic {
                name: "orders".into(),
                partitions: vec![
                    ListOffsetsPartition { partition: 0, spec: OffsetSpec::Earliest },
                    ListOffsetsPartition { partition: 1, spec: OffsetSpec::Latest },
                    ListOffsetsPartition { partition: 2, spec: OffsetSpec::Timestamp(1_700_000_000_000) },
                ],
            }],
        },
    )
}

fn sample_responses() -> (
    ApiVersionsResponse,
    MetadataResponse,
    CreateTopicResponse,
    DeleteTopicResponse,
    ProduceResponse,
    ListOffsetsResponse,
    ErrorResponse,
) {
    (
        ApiVersionsResponse::supported(),
        MetadataResponse {
            shard_count: 4,
            topics: vec![MetadataTopic {
                name: "orders".into(),
                error_code: 0,
                partitions: vec![MetadataPartition {
                    partition: 0,
                    shard: 2,
                    log_start_offset: 10,
                    high_watermark: 99,
                }],
                retention_ms: -1,
                retention_bytes: 1 << 30,
                segment_bytes: 1 << 30,
            }],
            shard_ports: vec![9300, 9301, 9302, 9303],
        },
        CreateTopicResponse { error_code: ErrorCode::TopicAlreadyExists.as_u16(), error_message: "exists".into() },
        DeleteTopicResponse { error_code: 0, error_message: String::new() },
        ProduceResponse {
            topics: vec![ProduceTopicResponse {
                name: "orders".into(),
                partitions: vec![ProducePartitionResponse {
                    partition: 1,
                    error_code: ErrorCode::NotLeader.as_u16(),
                    base_offset: OFFSET_UNKNOWN,
                    log_start_offset: 0,
                    error_message: "moved".into(),
                }],
            }],
        },
        ListOffsetsResponse {
            topics: vec![ListOffsetsTopicResponse {
                name: "orders".into(),
                partitions: vec![ListOffsetsPartitionResponse {
                    partition: 2,
                    error_code: 0,
                    offset: 7,
                    timestamp_ms: 1_700_000_000_001,
                }],
            }],
        },
        ErrorResponse { error_code: ErrorCode::CorruptMessage.as_u16(), message: "bad archive".into() },
    )
}

/// Sends `frame` through a byte stream (behind `junk_prefix` bytes, so that the envelope lands
/// unaligned in the receive buffer half the time) and splits it back off.
fn through_the_wire(frame: &EncodedFrame, junk_prefix: usize) -> Frame {
    let mut input = BytesMut::new();
    input.extend_from_slice(&vec![0u8; junk_prefix]);
    input.extend_from_slice(&frame.to_vec());
    let _ = input.split_to(junk_prefix);
    let decoder = FrameDecoder::default();
    let split = decoder.split_frame(&mut input).unwrap().expect("whole frame");
    assert!(input.is_empty());
    split
}

fn request_round_trip<T: Request + PartialEq + std::fmt::Debug>(request: &T) {
    for junk in [0, 3] {
        let encoded = encode_request(7, request, Vec::new()).unwrap();
        assert_eq!(encoded.head().len() % 8, 0);
        let frame = through_the_wire(&encoded, junk);
        assert_eq!(check_request_header(&frame.header).unwrap(), T::API_KEY);
        assert_eq!(frame.header.correlation_id, 7);
        let decoded = decode_envelope_owned::<T>(frame.envelope.as_slice()).unwrap();
        assert_eq!(&decoded, request);
    }
}

fn response_round_trip<R: Request, T: Envelope + PartialEq + std::fmt::Debug>(response: &T) {
    let to = ResponseTo { correlation_id: 9, api_key: R::API_KEY.as_u16(), api_version: 0 };
    let encoded = encode_response(to, response, Vec::new()).unwrap();
    let frame = through_the_wire(&encoded, 1);
    assert!(!check_response_header(&frame.header, R::API_KEY).unwrap());
    assert_eq!(frame.header.correlation_id, 9);
    let decoded = decode_envelope_owned::<T>(frame.envelope.as_slice()).unwrap();
    assert_eq!(&decoded, response);
}

/// Guards the envelope encoding of every API: request and response survive encode → frame
/// split → checked decode unchanged, with the envelope aligned or not in the receive buffer.
#[test]
fn every_envelope_round_trips() {
    let (versions, metadata, create, delete, fetch, list) = sample_requests();
    request_round_trip(&versions);
    request_round_trip(&metadata);
    request_round_trip(&create);
    request_round_trip(&delete);
    request_round_trip(&fetch);
    request_round_trip(&list);
    request_round_trip(&sample_produce(3, &mut PayloadBuilder::new()));

    let (versions, metadata, create, delete, produce, list, _) = sample_responses();
    response_round_trip::<ApiVersionsRequest, _>(&versions);
    response_round_trip::<MetadataRequest, _>(&metadata);
    response_round_trip::<MetadataRequest, _>(&MetadataResponseV0::from(metadata));
    response_round_trip::<CreateTopicRequest, _>(&create);
    response_round_trip::<DeleteTopicRequest, _>(&delete);
    response_round_trip::<ProduceRequest, _>(&produce);
    response_round_trip::<ListOffsetsRequest, _>(&list);
}

fn sample_group_requests() -> (
    FindCoordinatorRequest,
    ConsumerGroupHeartbeatRequest,
    LeaveGroupRequest,
    OffsetCommitRequest,
    OffsetFetchRequest,
    DescribeGroupRequest,
    ListGroupsRequest,
    InitProducerIdRequest,
) {
    (
        FindCoordinatorRequest { group_id: "billing".into() },
        ConsumerGroupHeartbeatRequest {
            group_id: "billing".into(),
            member_id: "m3-1".into(),
            member_epoch: 4,
            subscribed_topic_names: Some(vec!["orders".into(), "refunds".into()]),
            server_assignor: Some("uniform".into()),
            owned_partitions: Some(vec![TopicPartitions { topic: "orders".into(), partitions: vec![0, 3] }]),
        },
        LeaveGroupRequest { group_id: "billing".into(), member_ids: vec!["m3-1".into(), "m3-2".into()] },
        OffsetCommitRequest {
            group_id: "billing".into(),
            member_id: "m3-1".into(),
            member_epoch: 4,
            topics: vec![OffsetCommitTopic {
                name: "orders".into(),
                partitions: vec![OffsetCommitPartition { partition: 3, offset: 1234, metadata: "host-a".into() }],
            }],
        },
        OffsetFetchRequest {
            group_id: "billing".into(),
            topics: vec![OffsetFetchTopic { name: "orders".into(), partitions: vec![0, 3] }],
        },
        DescribeGroupRequest { group_id: "billing".into() },
        ListGroupsRequest { states_filter: vec!["Stable".into()] },
        InitProducerIdRequest { transactional_id: Some("tx-1".into()), transaction_timeout_ms: 60_000 },
    )
}

fn sample_group_responses() -> (
    FindCoordinatorResponse,
    ConsumerGroupHeartbeatResponse,
    LeaveGroupResponse,
    OffsetCommitResponse,
    OffsetFetchResponse,
    DescribeGroupResponse,
    ListGroupsResponse,
    InitProducerIdResponse,
) {
    let assignment = vec![TopicPartitions { topic: "orders".into(), partitions: vec![1, 2] }];
    (
        FindCoordinatorResponse { error_code: 0, error_message: String::new(), shard: 3 },
        ConsumerGroupHeartbeatResponse {
            error_code: 0,
            error_message: String::new(),
            member_id: "m3-1".into(),
            member_epoch: 5,
            heartbeat_interval_ms: 5_000,
            assignment: Some(assignment.clone()),
        },
        LeaveGroupResponse {
            error_code: 0,
            members: vec![LeaveGroupMemberResponse {
                member_id: "m3-2".into(),
                error_code: ErrorCode::UnknownMemberId.as_u16(),
            }],
        },
        OffsetCommitResponse {
            error_code: 0,
            topics: vec![OffsetCommitTopicResponse {
                name: "orders".into(),
                partitions: vec![OffsetCommitPartitionResponse {
                    partition: 3,
                    error_code: ErrorCode::StaleMemberEpoch.as_u16(),
                }],
            }],
        },
        OffsetFetchResponse {
            error_code: 0,
            topics: vec![OffsetFetchTopicResponse {
                name: "orders".into(),
                partitions: vec![OffsetFetchPartitionResponse {
                    partition: 0,
                    error_code: 0,
                    offset: OFFSET_UNKNOWN,
                    metadata: String::new(),
                }],
            }],
        },
        DescribeGroupResponse {
            error_code: 0,
            group_id: "billing".into(),
            state: "Reconciling".into(),
            assignor: "uniform".into(),
            group_epoch: 7,
            assignment_epoch: 7,
            members: vec![DescribedMember {
                member_id: "m3-1".into(),
                member_epoch: 6,
                subscribed_topic_names: vec!["orders".into()],
                assignment: assignment.clone(),
                target_assignment: assignment,
            }],
        },
        ListGroupsResponse {
            error_code: 0,
            groups: vec![ListedGroup { group_id: "billing".into(), state: "Stable".into() }],
        },
        InitProducerIdResponse { error_code: 0, producer_id: 1000, producer_epoch: 2 },
    )
}

/// Guards the envelope encoding of the group and producer-id APIs (keys 10..=17): requests and
/// responses survive encode → frame split → checked decode unchanged, and the sample requests
/// pass their own validation.
#[test]
fn group_envelopes_round_trip() {
    let (find, heartbeat, leave, commit, fetch, describe, list, init) = sample_group_requests();
    request_round_trip(&find);
    request_round_trip(&heartbeat);
    request_round_trip(&leave);
    request_round_trip(&commit);
    request_round_trip(&fetch);
    request_round_trip(&describe);
    request_round_trip(&list);
    request_round_trip(&init);
    fn valid<T: Envelope>(request: &T, validate: impl Fn(&T::Archived) -> Result<(), ErrorCode>) {
        let bytes = rkyv::to_bytes::<rkyv::rancor::Error>(request).unwrap();
        assert_eq!(validate(decode_envelope::<T>(&bytes).unwrap()), Ok(()));
    }
    valid(&find, |r| r.validate());
    valid(&heartbeat, |r| r.validate());
    valid(&leave, |r| r.validate());
    valid(&commit, |r| r.validate());
    valid(&fetch, |r| r.validate());
    valid(&describe, |r| r.validate());
    valid(&list, |r| r.validate());
    valid(&init, |r| r.validate());

    let (find, heartbeat, leave, commit, fetch, describe, list, init) = sample_group_responses();
    response_round_trip::<FindCoordinatorRequest, _>(&find);
    response_round_trip::<ConsumerGroupHeartbeatRequest, _>(&heartbeat);
    response_round_trip::<LeaveGroupRequest, _>(&leave);
    response_round_trip::<OffsetCommitRequest, _>(&commit);
    response_round_trip::<OffsetFetchRequest, _>(&fetch);
    response_round_trip::<DescribeGroupRequest, _>(&describe);
    response_round_trip::<ListGroupsRequest, _>(&list);
    response_round_trip::<InitProducerIdRequest, _>(&init);
}

/// Guards the bounds of the group requests that carry lists (members, topics, partitions):
/// over the bound is `GroupListTooLong`, not an allocation or a panic.
#[test]
fn group_request_lists_are_bounded() {
    use crate::protocol::apis::group_limits::{GROUP_MEMBERS_MAX, GROUP_STATES_FILTER_MAX, GROUP_TOPICS_MAX};
    fn check<T: Envelope>(request: &T, validate: impl Fn(&T::Archived) -> Result<(), ErrorCode>) -> ErrorCode {
        let bytes = rkyv::to_bytes::<rkyv::rancor::Error>(request).unwrap();
        validate(decode_envelope::<T>(&bytes).unwrap()).unwrap_err()
    }
    let (_, _, leave, commit, fetch, _, _, _) = sample_group_requests();
    let huge_leave = LeaveGroupRequest { member_ids: vec!["m".into(); GROUP_MEMBERS_MAX + 1], ..leave.clone() };
    assert_eq!(check(&huge_leave, |r| r.validate()), ErrorCode::GroupListTooLong);
    let empty_leave = LeaveGroupRequest { member_ids: vec![], ..leave };
    assert_eq!(check(&empty_leave, |r| r.validate()), ErrorCode::InvalidRequest);
    let topic = commit.topics[0].clone();
    let huge_commit = OffsetCommitRequest { topics: vec![topic; GROUP_TOPICS_MAX + 1], ..commit.clone() };
    assert_eq!(check(&huge_commit, |r| r.validate()), ErrorCode::GroupListTooLong);
    let anonymous = OffsetCommitRequest { member_id: String::new(), member_epoch: 3, ..commit };
    assert_eq!(check(&anonymous, |r| r.validate()), ErrorCode::InvalidMemberId);
    let bad_group = OffsetFetchRequest { group_id: String::new(), ..fetch };
    assert_eq!(check(&bad_group, |r| r.validate()), ErrorCode::InvalidGroupId);
    let filters = ListGroupsRequest { states_filter: vec!["Stable".into(); GROUP_STATES_FILTER_MAX + 1] };
    assert_eq!(check(&filters, |r| r.validate()), ErrorCode::GroupListTooLong);
    let empty_tx = InitProducerIdRequest { transactional_id: Some(String::new()), transaction_timeout_ms: 0 };
    assert_eq!(check(&empty_tx, |r| r.validate()), ErrorCode::InvalidTransactionalId);
}

/// Guards the zero-copy payload path: a Produce request's batches come back from the payload
/// section byte for byte, at the ranges the envelope names, and a Fetch response does the same.
#[test]
fn payload_section_round_trips() {
    let mut payload = PayloadBuilder::new();
    let request = sample_produce(4, &mut payload);
    let encoded = encode_request(1, &request, payload.finish()).unwrap();
    assert_eq!(encoded.header().payload_length, 4 * 64);
    assert_eq!(encoded.io_slices().len(), 1 + 4);
    let frame = through_the_wire(&encoded, 5);
    let archived = decode_envelope::<ProduceRequest>(frame.envelope.as_slice()).unwrap();
    assert_eq!(archived.validate_acks(), Ok(()));
    for partition in archived.topics[0].partitions.iter() {
        let batches =
            payload_slice(&frame.payload, partition.payload_offset.to_native(), partition.payload_length.to_native())
                .unwrap();
        assert_eq!(&batches[..], &vec![partition.partition.to_native() as u8; 64][..]);
    }

    let mut payload = PayloadBuilder::new();
    let range = payload.push(Bytes::from_static(&[0xAB; 24])).unwrap();
    let response = FetchResponse {
        topics: vec![FetchTopicResponse {
            name: "orders".into(),
            partitions: vec![FetchPartitionResponse {
                partition: 0,
                error_code: 0,
                high_watermark: 5,
                log_start_offset: 0,
                payload_offset: range.offset,
                payload_length: range.length,
            }],
        }],
    };
    let to = ResponseTo { correlation_id: 2, api_key: ApiKey::Fetch.as_u16(), api_version: 0 };
    let frame = through_the_wire(&encode_response(to, &response, payload.finish()).unwrap(), 0);
    let archived = decode_envelope::<FetchResponse>(frame.envelope.as_slice()).unwrap();
    assert_eq!(archived, &response);
    let p = &archived.topics[0].partitions[0];
    let batches = payload_slice(&frame.payload, p.payload_offset.into(), p.payload_length.into());
    assert_eq!(&batches.unwrap()[..], &[0xAB; 24]);
    // An envelope that points past the payload section is refused, not sliced.
    assert!(payload_slice(&frame.payload, 8, 24).is_err());
}

/// Guards the error path: an ErrorResponse carries the error flag and decodes as such.
#[test]
fn error_response_round_trips() {
    let to = ResponseTo { correlation_id: 3, api_key: 77, api_version: 0 };
    let encoded = encode_error_response(to, ErrorCode::UnknownApiKey, "no api 77").unwrap();
    let frame = through_the_wire(&encoded, 0);
    assert!(frame.header.is_response() && frame.header.is_error());
    let archived = decode_envelope::<ErrorResponse>(frame.envelope.as_slice()).unwrap();
    assert_eq!(archived.error_code(), ErrorCode::UnknownApiKey);
    assert_eq!(archived.message, "no api 77");
}

/// Guards "never panic, never read unaligned": an envelope handed over at an odd address is
/// refused with an error, and a garbage or truncated envelope is `CorruptMessage`.
#[test]
fn bad_envelopes_are_errors() {
    let bytes = rkyv::to_bytes::<rkyv::rancor::Error>(&sample_requests().4).unwrap();
    let mut shifted = AlignedVec::<16>::new();
    shifted.extend_from_slice(&[0]);
    shifted.extend_from_slice(&bytes);
    let err = decode_envelope::<FetchRequest>(&shifted[1..]).unwrap_err();
    assert!(matches!(err, ProtocolError::UnalignedEnvelope { .. }));
    let copy = aligned_copy(&shifted[1..]);
    assert!(decode_envelope::<FetchRequest>(&copy).is_ok());

    let err = decode_envelope::<FetchRequest>(&bytes[..bytes.len() - 8]).unwrap_err();
    assert_eq!(err.error_code(), ErrorCode::CorruptMessage);
    assert!(!err.closes_connection());
    assert!(decode_envelope::<FetchRequest>(&[]).is_err());
    // A MetadataRequest body is not a CreateTopicRequest.
    let other = rkyv::to_bytes::<rkyv::rancor::Error>(&sample_requests().1).unwrap();
    assert!(decode_envelope::<CreateTopicRequest>(&other).is_err());
}

/// Runs `decode_envelope` for every envelope type on `bytes`, at an aligned and an unaligned
/// address. Only the absence of panics is checked.
fn decode_as_every_type(bytes: &[u8]) {
    fn all(body: &[u8]) {
        let _ = decode_envelope::<ApiVersionsRequest>(body);
        let _ = decode_envelope::<ApiVersionsResponse>(body);
        let _ = decode_envelope::<MetadataRequest>(body);
        let _ = decode_envelope::<MetadataResponse>(body);
        let _ = decode_envelope::<CreateTopicRequest>(body).map(|r| r.validate());
        let _ = decode_envelope::<CreateTopicResponse>(body);
        let _ = decode_envelope::<DeleteTopicRequest>(body);
        let _ = decode_envelope::<DeleteTopicResponse>(body);
        let _ = decode_envelope::<ProduceRequest>(body).map(|r| r.validate_acks());
        let _ = decode_envelope::<ProduceResponse>(body);
        let _ = decode_envelope::<FetchRequest>(body);
        let _ = decode_envelope::<FetchResponse>(body);
        let _ = decode_envelope::<ListOffsetsRequest>(body);
        let _ = decode_envelope::<ListOffsetsResponse>(body);
        let _ = decode_envelope::<ErrorResponse>(body);
        let _ = decode_envelope::<FindCoordinatorRequest>(body).map(|r| r.validate());
        let _ = decode_envelope::<FindCoordinatorResponse>(body);
        let _ = decode_envelope::<ConsumerGroupHeartbeatRequest>(body).map(|r| r.validate());
        let _ = decode_envelope::<ConsumerGroupHeartbeatResponse>(body);
        let _ = decode_envelope::<LeaveGroupRequest>(body).map(|r| r.validate());
        let _ = decode_envelope::<LeaveGroupResponse>(body);
        let _ = decode_envelope::<OffsetCommitRequest>(body).map(|r| r.validate());
        let _ = decode_envelope::<OffsetCommitResponse>(body);
        let _ = decode_envelope::<OffsetFetchRequest>(body).map(|r| r.validate());
        let _ = decode_envelope::<OffsetFetchResponse>(body);
        let _ = decode_envelope::<DescribeGroupRequest>(body).map(|r| r.validate());
        let _ = decode_envelope::<DescribeGroupResponse>(body);
        let _ = decode_envelope::<ListGroupsRequest>(body).map(|r| r.validate());
        let _ = decode_envelope::<ListGroupsResponse>(body);
        let _ = decode_envelope::<InitProducerIdRequest>(body).map(|r| r.validate());
        let _ = decode_envelope::<InitProducerIdResponse>(body);
    }
    let mut aligned = AlignedVec::<16>::with_capacity(bytes.len() + 1);
    aligned.extend_from_slice(bytes);
    all(&aligned);
    let mut shifted = AlignedVec::<16>::with_capacity(bytes.len() + 1);
    shifted.extend_from_slice(&[0]);
    shifted.extend_from_slice(bytes);
    all(&shifted[1..]);
}

/// A valid envelope with a few bytes overwritten: reaches deeper into the validators than
/// purely random bytes do.
fn mutated_envelope() -> impl Strategy<Value = Vec<u8>> {
    let mut payload = PayloadBuilder::new();
    let produce = rkyv::to_bytes::<rkyv::rancor::Error>(&sample_produce(3, &mut payload)).unwrap();
    let list = rkyv::to_bytes::<rkyv::rancor::Error>(&sample_requests().5).unwrap();
    let metadata = rkyv::to_bytes::<rkyv::rancor::Error>(&sample_responses().1).unwrap();
    let heartbeat = rkyv::to_bytes::<rkyv::rancor::Error>(&sample_group_requests().1).unwrap();
    let commit = rkyv::to_bytes::<rkyv::rancor::Error>(&sample_group_requests().3).unwrap();
    let describe = rkyv::to_bytes::<rkyv::rancor::Error>(&sample_group_responses().5).unwrap();
    let bases =
        [produce.to_vec(), list.to_vec(), metadata.to_vec(), heartbeat.to_vec(), commit.to_vec(), describe.to_vec()];
    (0..bases.len(), prop::collection::vec((any::<usize>(), any::<u8>()), 1..6)).prop_map(move |(which, edits)| {
        let mut bytes = bases[which].clone();
        let len = bytes.len();
        for (at, value) in edits {
            bytes[at % len] = value;
        }
        bytes
    })
}

proptest! {
    /// Guards the header decoder against arbitrary input: it never panics, and whatever it
    /// accepts respects the limit.
    #[test]
    fn header_decode_never_panics(bytes in prop::array::uniform24(any::<u8>()), max in any::<u32>()) {
        let limits = FrameLimits { max_frame_bytes: max };
        if let Ok(header) = FrameHeader::decode(&bytes, &limits) {
            prop_assert!(header.frame_bytes_after_header() <= u64::from(max));
            prop_assert_eq!(&header.encode()[..22], &bytes[..22]);
        }
        let _ = FrameDecoder::new(limits).status(&bytes);
    }

    /// Guards every envelope decoder against arbitrary bytes: errors only, never a panic.
    #[test]
    fn decode_envelope_never_panics_on_random_bytes(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        decode_as_every_type(&bytes);
    }

    /// Same, on valid envelopes with a few bytes changed.
    #[test]
    fn decode_envelope_never_panics_on_mutated_envelopes(bytes in mutated_envelope()) {
        decode_as_every_type(&bytes);
    }

    /// Guards the frame splitter on arbitrary byte streams: it splits or asks for more, never
    /// panics, and never asks for more than the limit allows.
    #[test]
    fn frame_decoder_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
        let decoder = FrameDecoder::new(FrameLimits { max_frame_bytes: 4096 });
        let mut input = BytesMut::from(&bytes[..]);
        while let Ok(Some(frame)) = decoder.split_frame(&mut input) {
            decode_as_every_type(frame.envelope.as_slice());
        }
        if let Ok(FrameStatus::NeedMore(n)) = decoder.status(&input) {
            prop_assert!(n <= 4096 + FRAME_HEADER_BYTES);
        }
    }

    /// Guards `payload_slice`: in range it returns exactly the range, out of range an error.
    #[test]
    fn payload_slice_in_or_out(len in 0usize..256, offset in any::<u32>(), length in any::<u32>()) {
        let payload = Bytes::from(vec![1u8; len]);
        let in_range = u64::from(offset) + u64::from(length) <= len as u64;
        match payload_slice(&payload, offset, length) {
            Ok(slice) => { prop_assert!(in_range); prop_assert_eq!(slice.len(), length as usize); }
            Err(_) => prop_assert!(!in_range),
        }
    }
}
