//! [`GroupConsumer`] against an in-memory coordinator: one member owning `t`-0, which holds
//! three records at offsets 0..3. Checks what the member sends and when.

use std::cell::RefCell;
use std::rc::Rc;

use bytes::Bytes;
use futures_lite::future::block_on;

use super::{DeliveryMode, GroupConsumer, GroupConsumerConfig};
use crate::client::connection::ConnectionConfig;
use crate::client::fake_broker::{connection, FakeStream, Handler};
use crate::client::ConsumerConfig;
use crate::model::{LeaderEpoch, Offset, TimestampMs};
use crate::protocol::{
    decode_envelope_owned, encode_response, ApiKey, ConsumerGroupHeartbeatRequest, ConsumerGroupHeartbeatResponse,
    ErrorCode, FetchPartitionResponse, FetchRequest, FetchResponse, FetchTopicResponse, Frame, LeaveGroupResponse,
    ListOffsetsPartitionResponse, ListOffsetsResponse, ListOffsetsTopicResponse, OffsetCommitPartitionResponse,
    OffsetCommitRequest, OffsetCommitResponse, OffsetCommitTopicResponse, OffsetFetchPartitionResponse,
    OffsetFetchResponse, OffsetFetchTopicResponse, PayloadBuilder, ResponseTo, TopicPartitions, OFFSET_UNKNOWN,
};
use crate::storage::batch::{stamp, BatchBuilder, BatchBuilderConfig};

/// What the member sent, in order.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Sent {
    /// (member id, epoch)
    Heartbeat(String, i32),
    OffsetFetch,
    ListOffsets,
    /// The long-poll wait asked for.
    Fetch(u32),
    /// (epoch, committed offset of t-0)
    Commit(i32, u64),
    Leave,
}

#[derive(Default)]
struct Coordinator {
    sent: Vec<Sent>,
    heartbeat_interval_ms: u32,
    /// Answer the next heartbeat with this code.
    fail_next_heartbeat: Option<ErrorCode>,
    /// Answer the next OffsetFetch with this code.
    fail_next_offset_fetch: Option<ErrorCode>,
    joins: i32,
    committed: Option<u64>,
}

fn respond<T: crate::protocol::Envelope>(frame: &Frame, body: &T, payload: Vec<Bytes>) -> Vec<u8> {
    encode_response(ResponseTo::from(&frame.header), body, payload).unwrap().to_vec()
}

fn three_records() -> Bytes {
    let mut builder = BatchBuilder::new(BatchBuilderConfig::default());
    for value in ["a", "b", "c"] {
        builder.push(TimestampMs(1), None, value.as_bytes(), &[]);
    }
    let mut bytes = builder.build().unwrap().to_vec();
    stamp(&mut bytes, Offset(0), LeaderEpoch(0)).unwrap();
    Bytes::from(bytes)
}

fn answer(state: &mut Coordinator, frame: Frame) -> Vec<u8> {
    let key = frame.header.api_key;
    if key == ApiKey::ConsumerGroupHeartbeat.as_u16() {
        let request: ConsumerGroupHeartbeatRequest = decode_envelope_owned(frame.envelope.as_slice()).unwrap();
        state.sent.push(Sent::Heartbeat(request.member_id.clone(), request.member_epoch));
        let mut response = ConsumerGroupHeartbeatResponse {
            error_code: 0,
            error_message: String::new(),
            member_id: "m1".into(),
            member_epoch: state.joins,
            heartbeat_interval_ms: state.heartbeat_interval_ms,
            assignment: None,
        };
        if let Some(code) = state.fail_next_heartbeat.take() {
            response.error_code = code.as_u16();
        } else if request.member_epoch == 0 {
            state.joins += 1;
            response.member_epoch = state.joins;
            response.assignment = Some(vec![TopicPartitions { topic: "t".into(), partitions: vec![0] }]);
        }
        return respond(&frame, &response, Vec::new());
    }
    if key == ApiKey::OffsetFetch.as_u16() {
        state.sent.push(Sent::OffsetFetch);
        if let Some(code) = state.fail_next_offset_fetch.take() {
            let response = OffsetFetchResponse { error_code: code.as_u16(), topics: Vec::new() };
            return respond(&frame, &response, Vec::new());
        }
        let partition = OffsetFetchPartitionResponse {
            partition: 0,
            error_code: 0,
            offset: state.committed.unwrap_or(OFFSET_UNKNOWN),
            metadata: String::new(),
        };
        let topics = vec![OffsetFetchTopicResponse { name: "t".into(), partitions: vec![partition] }];
        return respond(&frame, &OffsetFetchResponse { error_code: 0, topics }, Vec::new());
    }
    if key == ApiKey::ListOffsets.as_u16() {
        state.sent.push(Sent::ListOffsets);
        let partition = ListOffsetsPartitionResponse { partition: 0, error_code: 0, offset: 0, timestamp_ms: -1 };
        let topics = vec![ListOffsetsTopicResponse { name: "t".into(), partitions: vec![partition] }];
        return respond(&frame, &ListOffsetsResponse { topics }, Vec::new());
    }
    if key == ApiKey::Fetch.as_u16() {
        let request: FetchRequest = decode_envelope_owned(frame.envelope.as_slice()).unwrap();
        state.sent.push(Sent::Fetch(request.max_wait_ms));
        let position = request.topics[0].partitions[0].fetch_offset;
        let mut payload = PayloadBuilder::new();
        let range = payload.push(if position < 3 { three_records() } else { Bytes::new() }).unwrap();
        let partition = FetchPartitionResponse {
            partition: 0,
            error_code: 0,
            high_watermark: 3,
            log_start_offset: 0,
            payload_offset: range.offset,
            payload_length: range.length,
        };
        let topics = vec![FetchTopicResponse { name: "t".into(), partitions: vec![partition] }];
        return respond(&frame, &FetchResponse { topics }, payload.finish());
    }
    if key == ApiKey::OffsetCommit.as_u16() {
        let request: OffsetCommitRequest = decode_envelope_owned(frame.envelope.as_slice()).unwrap();
        let offset = request.topics[0].partitions[0].offset;
        state.sent.push(Sent::Commit(request.member_epoch, offset));
        state.committed = Some(offset);
        let partitions = vec![OffsetCommitPartitionResponse { partition: 0, error_code: 0 }];
        let topics = vec![OffsetCommitTopicResponse { name: "t".into(), partitions }];
        return respond(&frame, &OffsetCommitResponse { error_code: 0, topics }, Vec::new());
    }
    if key == ApiKey::LeaveGroup.as_u16() {
        state.sent.push(Sent::Leave);
        return respond(&frame, &LeaveGroupResponse { error_code: 0, members: Vec::new() }, Vec::new());
    }
    panic!("unexpected api key {key}");
}

fn member(delivery: DeliveryMode, heartbeat_interval_ms: u32) -> (GroupConsumer<FakeStream>, Rc<RefCell<Coordinator>>) {
    let state = Rc::new(RefCell::new(Coordinator { heartbeat_interval_ms, ..Coordinator::default() }));
    let shared = Rc::clone(&state);
    let handler: Handler = Box::new(move |frame| vec![answer(&mut shared.borrow_mut(), frame)]);
    let config = GroupConsumerConfig {
        delivery,
        auto_commit: false,
        fetch: ConsumerConfig { max_wait_ms: 60_000, ..ConsumerConfig::default() },
        ..GroupConsumerConfig::new("g", vec!["t".into()])
    };
    (GroupConsumer::new(connection(64, ConnectionConfig::default(), handler), config), state)
}

fn offsets(records: &[crate::client::ConsumerRecord]) -> Vec<u64> {
    records.iter().map(|r| r.offset.0).collect()
}

/// Guards at-least-once: the join positions the new partition at `start_from` (no commit
/// yet), the fetch wait is cut to the heartbeat interval, nothing is committed before the
/// caller is done, `poll_at_most` hands out only what it returns, and `close` commits exactly
/// what was handed out, then leaves.
#[test]
fn at_least_once_commits_only_what_was_handed_out() {
    let (mut consumer, state) = member(DeliveryMode::AtLeastOnce, 1_000);
    block_on(async {
        assert_eq!(offsets(&consumer.poll_at_most(2).await.unwrap()), [0, 1]);
        assert_eq!(consumer.assignment(), vec![("t".to_owned(), crate::model::PartitionId(0))]);
        assert_eq!((consumer.member_id(), consumer.member_epoch()), ("m1", 1));
        let sent = state.borrow().sent.clone();
        assert_eq!(sent[..3], [Sent::Heartbeat(String::new(), 0), Sent::OffsetFetch, Sent::ListOffsets]);
        let Sent::Fetch(wait) = sent[3] else { panic!("{sent:?}") };
        assert!(wait <= 1_000, "the fetch wait {wait} ms outlasts the heartbeat interval");
        assert!(!sent.iter().any(|s| matches!(s, Sent::Commit(..))), "{sent:?}");
        consumer.close().await.unwrap();
        let sent = state.borrow().sent.clone();
        assert_eq!(sent[sent.len() - 2..], [Sent::Commit(1, 2), Sent::Leave]);
    });
}

/// Guards at-most-once: the positions are committed before `poll` returns the records.
#[test]
fn at_most_once_commits_before_handing_out() {
    let (mut consumer, state) = member(DeliveryMode::AtMostOnce, 1_000);
    block_on(async {
        assert_eq!(offsets(&consumer.poll().await.unwrap()), [0, 1, 2]);
        assert_eq!(state.borrow().sent.last(), Some(&Sent::Commit(1, 3)));
        consumer.close().await.unwrap();
        assert_eq!(state.borrow().sent.last(), Some(&Sent::Leave), "nothing more to commit");
    });
}

/// Guards fencing: a fenced member drops its uncommitted positions and unreturned records (no
/// commit at the fenced epoch), rejoins at epoch 0 with its member id, and consumes again from
/// the group's committed offset.
#[test]
fn a_fenced_member_rejoins_from_the_committed_offset() {
    let (mut consumer, state) = member(DeliveryMode::AtLeastOnce, 1);
    block_on(async {
        assert_eq!(offsets(&consumer.poll_at_most(1).await.unwrap()), [0]);
        consumer.commit().await.unwrap();
        assert_eq!(offsets(&consumer.poll_at_most(1).await.unwrap()), [1]);
        state.borrow_mut().fail_next_heartbeat = Some(ErrorCode::FencedMemberEpoch);
        std::thread::sleep(std::time::Duration::from_millis(5));
        let again = consumer.poll().await.unwrap();
        assert_eq!(offsets(&again), [1, 2], "the uncommitted record comes again, from the commit");
        let sent = state.borrow().sent.clone();
        assert!(sent.contains(&Sent::Heartbeat("m1".into(), 0)), "{sent:?}");
        let commits: Vec<&Sent> = sent.iter().filter(|s| matches!(s, Sent::Commit(..))).collect();
        assert_eq!(commits, [&Sent::Commit(1, 1)], "{sent:?}");
        assert_eq!(consumer.member_epoch(), 2);
    });
}

/// Guards "never fetch a partition before its committed offset is known": while the
/// coordinator is loading, `poll` returns nothing and fetches nothing, then resumes from the
/// committed offset.
#[test]
fn no_fetch_before_the_committed_offset_is_known() {
    let (mut consumer, state) = member(DeliveryMode::AtLeastOnce, 1_000);
    state.borrow_mut().committed = Some(2);
    state.borrow_mut().fail_next_offset_fetch = Some(ErrorCode::CoordinatorLoadInProgress);
    block_on(async {
        assert!(consumer.poll().await.unwrap().is_empty());
        let sent = state.borrow().sent.clone();
        assert!(!sent.iter().any(|s| matches!(s, Sent::Fetch(_) | Sent::ListOffsets)), "{sent:?}");
        assert_eq!(offsets(&consumer.poll().await.unwrap()), [2]);
    });
}
