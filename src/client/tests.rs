//! Client tests over the in-memory fake broker: pipelining and response matching, broken
//! connections, and the producer and consumer end to end without a real broker.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_lite::future::block_on;

use super::accumulator::AccumulatorConfig;
use super::connection::ConnectionConfig;
use super::consumer::decode_batches;
use super::fake_broker::{connection, list_offsets_answer, FakeStream, Gate, GatedStream, Handler, NeverSleeper};
use super::{
    partition_for_key, Acks, Backoff, ClientError, Connection, Consumer, ConsumerConfig, Producer, ProducerConfig,
    SeekTo,
};
use crate::group::producer_state::{PartitionProducerState, ProducerBatch, SequenceCheck};
use crate::model::{LeaderEpoch, Offset, PartitionId};
use crate::protocol::InitProducerIdResponse;
use crate::protocol::{
    decode_envelope_owned, encode_error_response, encode_response, payload_slice, ApiKey, ErrorCode,
    FetchPartitionResponse, FetchRequest, FetchResponse, FetchTopicResponse, Frame, MetadataPartition, MetadataRequest,
    MetadataResponse, MetadataTopic, OffsetSpec, PayloadBuilder, ProducePartitionResponse, ProduceRequest,
    ProduceResponse, ProduceTopicResponse, ResponseTo, OFFSET_UNKNOWN,
};
use crate::storage::batch::{peek_batch_length, stamp, validate};

fn metadata_response(shard_count: u32, topics: &[(&str, u32)]) -> MetadataResponse {
    MetadataResponse {
        shard_count,
        topics: topics
            .iter()
            .map(|&(name, partitions)| MetadataTopic {
                name: name.to_owned(),
                error_code: if partitions == 0 { ErrorCode::UnknownTopicOrPartition.as_u16() } else { 0 },
                partitions: (0..partitions)
                    .map(|partition| MetadataPartition { partition, shard: 0, log_start_offset: 0, high_watermark: 0 })
                    .collect(),
                retention_ms: -1,
                retention_bytes: -1,
                segment_bytes: 0,
            })
            .collect(),
        shard_ports: Vec::new(),
    }
}

fn respond<T: crate::protocol::Envelope>(frame: &Frame, body: &T, payload: Vec<Bytes>) -> Vec<u8> {
    encode_response(ResponseTo::from(&frame.header), body, payload).unwrap().to_vec()
}

/// Guards pipelining and response matching: three requests are written before the fake
/// answers any; the answers come back in request order, in 7-byte reads, and each ticket gets
/// its own response even when received out of order (the others are parked).
#[test]
fn pipelined_responses_match_their_requests() {
    let mut held: Vec<Frame> = Vec::new();
    let handler: Handler = Box::new(move |frame| {
        held.push(frame);
        if held.len() < 3 {
            return Vec::new();
        }
        held.drain(..)
            .map(|frame| {
                let id = frame.header.correlation_id;
                respond(&frame, &metadata_response(id, &[]), Vec::new())
            })
            .collect()
    });
    let mut conn = connection(7, ConnectionConfig::default(), handler);
    block_on(async {
        let a = conn.send(&MetadataRequest::default(), Vec::new()).await.unwrap();
        let b = conn.send(&MetadataRequest::default(), Vec::new()).await.unwrap();
        let c = conn.send(&MetadataRequest::default(), Vec::new()).await.unwrap();
        assert_eq!(conn.in_flight(), 3);
        let (ida, idb, idc) = (a.correlation_id(), b.correlation_id(), c.correlation_id());
        assert!(ida != idb && idb != idc);
        let rc = conn.receive(c).await.unwrap();
        assert_eq!(rc.body.shard_count, idc);
        assert_eq!(conn.in_flight(), 0, "earlier responses were read and parked");
        assert_eq!(conn.receive(a).await.unwrap().body.shard_count, ida);
        assert_eq!(conn.receive(b).await.unwrap().body.shard_count, idb);
    });
}

/// Guards the in-order check: a response with another correlation id poisons the connection.
#[test]
fn wrong_correlation_id_poisons_the_connection() {
    let handler: Handler = Box::new(|frame| {
        let mut to = ResponseTo::from(&frame.header);
        to.correlation_id += 100;
        vec![encode_response(to, &metadata_response(1, &[]), Vec::new()).unwrap().to_vec()]
    });
    let mut conn = connection(1 << 16, ConnectionConfig::default(), handler);
    block_on(async {
        let err = conn.call(&MetadataRequest::default()).await.unwrap_err();
        assert!(matches!(err, ClientError::CorrelationMismatch { .. }), "{err}");
        let err = conn.call(&MetadataRequest::default()).await.unwrap_err();
        assert!(matches!(err, ClientError::Poisoned(_)), "{err}");
    });
}

/// Guards "a dropped connection is an error, not a panic": end of stream with a request in
/// flight is `ConnectionClosed`, and the connection refuses further use.
#[test]
fn dropped_connection_is_an_error() {
    let handler: Handler = Box::new(|_| Vec::new());
    let mut conn = connection(3, ConnectionConfig::default(), handler);
    block_on(async {
        let err = conn.call(&MetadataRequest::default()).await.unwrap_err();
        assert!(matches!(err, ClientError::ConnectionClosed { in_flight: 1 }), "{err}");
        assert!(conn.poisoned().is_some());
        assert!(matches!(conn.send(&MetadataRequest::default(), Vec::new()).await, Err(ClientError::Poisoned(_))));
    });
}

/// An `ErrorResponse` becomes a typed broker error with its code and leaves the connection
/// usable; an oversized response is refused from its header.
#[test]
fn error_responses_and_frame_limit() {
    let mut calls = 0;
    let handler: Handler = Box::new(move |frame| {
        calls += 1;
        let to = ResponseTo::from(&frame.header);
        if calls == 1 {
            vec![encode_error_response(to, ErrorCode::ThrottledBusy, "busy").unwrap().to_vec()]
        } else {
            let many: Vec<(String, u32)> = (0..50).map(|i| (format!("topic-{i}"), 1)).collect();
            let many: Vec<(&str, u32)> = many.iter().map(|(n, p)| (n.as_str(), *p)).collect();
            vec![respond(&frame, &metadata_response(1, &many), Vec::new())]
        }
    });
    let config = ConnectionConfig { response_frame_bytes_max: 1024, max_in_flight: 2, ..ConnectionConfig::default() };
    let mut conn = connection(1 << 16, config, handler);
    block_on(async {
        let err = conn.call(&MetadataRequest::default()).await.unwrap_err();
        assert_eq!(err.error_code(), Some(ErrorCode::ThrottledBusy));
        assert!(err.is_retriable());
        assert!(conn.poisoned().is_none());
        let err = conn.call(&MetadataRequest::default()).await.unwrap_err();
        assert!(matches!(err, ClientError::Protocol(_)), "{err}");
    });
}

/// Guards the in-flight bound: a third request is refused without being written.
#[test]
fn in_flight_requests_are_bounded() {
    let handler: Handler = Box::new(|_| Vec::new());
    let config = ConnectionConfig { max_in_flight: 2, ..ConnectionConfig::default() };
    let mut conn = connection(1 << 16, config, handler);
    block_on(async {
        let _a = conn.send(&MetadataRequest::default(), Vec::new()).await.unwrap();
        let _b = conn.send(&MetadataRequest::default(), Vec::new()).await.unwrap();
        assert!(!conn.can_send());
        let err = conn.send(&MetadataRequest::default(), Vec::new()).await.unwrap_err();
        assert!(matches!(err, ClientError::InvalidArgument(_)));
        assert_eq!(conn.in_flight(), 2);
    });
}

/// A tiny in-memory broker for one topic: stamps and stores produced batches, serves fetches
/// and list-offsets from them. `fail_produces` answers that many produce requests with
/// `NotLeader` first.
#[derive(Default)]
struct MiniBroker {
    partitions: u32,
    logs: HashMap<u32, Vec<Vec<u8>>>,
    next_offset: HashMap<u32, u64>,
    produce_requests: usize,
    fail_produces: usize,
    /// Idempotence, with the broker's own rules.
    producers: HashMap<u32, PartitionProducerState>,
    producer_ids_given: i64,
    /// Produce requests (1-based numbers) that are applied but whose answer is lost: the
    /// connection then ends, as if it dropped after the append.
    lose_answers_to: Vec<usize>,
}

fn mini_broker(state: Rc<RefCell<MiniBroker>>) -> Handler {
    Box::new(move |frame| {
        let mut broker = state.borrow_mut();
        let reply = match frame.header.api_key {
            k if k == ApiKey::Metadata.as_u16() => {
                let request: MetadataRequest = decode_envelope_owned(frame.envelope.as_slice()).unwrap();
                let topics: Vec<(&str, u32)> =
                    request.topics.iter().map(|t| (t.as_str(), if t == "t" { broker.partitions } else { 0 })).collect();
                respond(&frame, &metadata_response(1, &topics), Vec::new())
            }
            k if k == ApiKey::Produce.as_u16() => {
                let request: ProduceRequest = decode_envelope_owned(frame.envelope.as_slice()).unwrap();
                broker.produce_requests += 1;
                let fail = broker.fail_produces > 0;
                broker.fail_produces = broker.fail_produces.saturating_sub(1);
                let mut topics = Vec::new();
                for topic in &request.topics {
                    let mut partitions = Vec::new();
                    for p in &topic.partitions {
                        let range = payload_slice(&frame.payload, p.payload_offset, p.payload_length).unwrap();
                        let base = broker.next_offset.get(&p.partition).copied().unwrap_or(0);
                        let (code, base_offset) = if fail {
                            (ErrorCode::NotLeader, OFFSET_UNKNOWN)
                        } else {
                            let mut at = 0;
                            let mut next = base;
                            let mut outcome = (ErrorCode::None, None);
                            while at < range.len() {
                                let length = peek_batch_length(&range[at..]).unwrap() as usize;
                                let mut batch = range[at..at + length].to_vec();
                                at += length;
                                let header = validate(&batch).expect("the producer's batch is valid");
                                let state = broker.producers.entry(p.partition).or_default();
                                let (id, epoch, sequence, count) = (
                                    header.producer_id,
                                    header.producer_epoch,
                                    header.base_sequence,
                                    header.record_count,
                                );
                                let check = if id.0 < 0 {
                                    SequenceCheck::Accept
                                } else {
                                    state.check(id, epoch, sequence, count)
                                };
                                match check {
                                    SequenceCheck::Accept => {}
                                    SequenceCheck::Duplicate(original) => {
                                        outcome.1.get_or_insert(original.0);
                                        continue;
                                    }
                                    refused => {
                                        outcome.0 = refused.error_code();
                                        break;
                                    }
                                }
                                state.record(&ProducerBatch {
                                    producer_id: id,
                                    producer_epoch: epoch,
                                    base_sequence: sequence,
                                    record_count: count,
                                    base_offset: Offset(next),
                                });
                                stamp(&mut batch, Offset(next), LeaderEpoch(0)).unwrap();
                                outcome.1.get_or_insert(next);
                                next += u64::from(header.record_count);
                                broker.logs.entry(p.partition).or_default().push(batch);
                            }
                            broker.next_offset.insert(p.partition, next);
                            match outcome {
                                (ErrorCode::None, first) => (ErrorCode::None, first.unwrap_or(base)),
                                (code, _) => (code, OFFSET_UNKNOWN),
                            }
                        };
                        partitions.push(ProducePartitionResponse {
                            partition: p.partition,
                            error_code: code.as_u16(),
                            base_offset: if request.acks == 0 { OFFSET_UNKNOWN } else { base_offset },
                            log_start_offset: 0,
                            error_message: String::new(),
                        });
                    }
                    topics.push(ProduceTopicResponse { name: topic.name.clone(), partitions });
                }
                if broker.lose_answers_to.contains(&broker.produce_requests) {
                    return Vec::new();
                }
                respond(&frame, &ProduceResponse { topics }, Vec::new())
            }
            k if k == ApiKey::InitProducerId.as_u16() => {
                broker.producer_ids_given += 1;
                let producer_id = 41 + broker.producer_ids_given;
                respond(&frame, &InitProducerIdResponse { error_code: 0, producer_id, producer_epoch: 0 }, Vec::new())
            }
            k if k == ApiKey::ListOffsets.as_u16() => {
                let answer = list_offsets_answer(&frame, |partition, spec| match spec {
                    OffsetSpec::Latest => broker.next_offset.get(&partition).copied().unwrap_or(0),
                    _ => 0,
                });
                respond(&frame, &answer, Vec::new())
            }
            k if k == ApiKey::Fetch.as_u16() => {
                let request: FetchRequest = decode_envelope_owned(frame.envelope.as_slice()).unwrap();
                let mut payload = PayloadBuilder::new();
                let mut topics = Vec::new();
                for t in &request.topics {
                    let mut partitions = Vec::new();
                    for p in &t.partitions {
                        let high_watermark = broker.next_offset.get(&p.partition).copied().unwrap_or(0);
                        let mut code = ErrorCode::None;
                        let mut bytes = Vec::new();
                        if p.fetch_offset > high_watermark {
                            code = ErrorCode::OffsetOutOfRange;
                        } else {
                            for batch in broker.logs.get(&p.partition).into_iter().flatten() {
                                let header = validate(batch).unwrap();
                                if header.next_offset().0 > p.fetch_offset {
                                    bytes.extend_from_slice(batch);
                                }
                            }
                        }
                        let range = payload.push(Bytes::from(bytes)).unwrap();
                        partitions.push(FetchPartitionResponse {
                            partition: p.partition,
                            error_code: code.as_u16(),
                            high_watermark,
                            log_start_offset: 0,
                            payload_offset: range.offset,
                            payload_length: range.length,
                        });
                    }
                    topics.push(FetchTopicResponse { name: t.name.clone(), partitions });
                }
                respond(&frame, &FetchResponse { topics }, payload.finish())
            }
            other => panic!("unexpected api key {other}"),
        };
        vec![reply]
    })
}

fn small_batches() -> ProducerConfig {
    ProducerConfig {
        batching: AccumulatorConfig { batch_bytes: 600, linger: Duration::from_secs(60) },
        backoff: Backoff { initial: Duration::from_millis(1), max: Duration::from_millis(2) },
        requests_in_flight_max: 2,
        ..ProducerConfig::default()
    }
}

/// Guards the producer end to end: keyed records land on `partition_for_key`, null keys fill
/// sticky batches, every delivery resolves with a dense per-partition offset, and what the
/// broker stored decodes back to the values sent, in order.
#[test]
fn producer_delivers_every_record_with_its_offset() {
    let state = Rc::new(RefCell::new(MiniBroker { partitions: 3, ..MiniBroker::default() }));
    let conn = connection(1 << 12, ConnectionConfig::default(), mini_broker(Rc::clone(&state)));
    let mut producer = Producer::new(conn, small_batches());
    block_on(async {
        let mut sent = Vec::new();
        for i in 0..60u32 {
            let key = (i % 2 == 0).then(|| Bytes::from(format!("key-{}", i % 7)));
            let value = Bytes::from(format!("value-{i}"));
            let delivery = producer
                .send("t", key.clone(), value.clone(), vec![("n".into(), Bytes::from_static(b"1"))])
                .await
                .unwrap();
            sent.push((key, value, delivery));
        }
        producer.flush().await.unwrap();
        assert_eq!(producer.outstanding(), 0);
        let mut by_partition: HashMap<u32, Vec<(u64, Bytes)>> = HashMap::new();
        for (key, value, delivery) in sent {
            let delivery = delivery.await.unwrap();
            if let Some(key) = &key {
                assert_eq!(delivery.partition, partition_for_key(key, 3));
            }
            by_partition.entry(delivery.partition.0).or_default().push((delivery.offset.unwrap().0, value));
        }
        let broker = state.borrow();
        assert!(broker.produce_requests >= 2, "small batches need several requests");
        for (partition, mut delivered) in by_partition {
            delivered.sort_by_key(|(offset, _)| *offset);
            let offsets: Vec<u64> = delivered.iter().map(|(o, _)| *o).collect();
            assert_eq!(offsets, (0..delivered.len() as u64).collect::<Vec<_>>());
            let topic: Rc<str> = Rc::from("t");
            let mut stored = Vec::new();
            for batch in &broker.logs[&partition] {
                let (records, _) = decode_batches(&topic, PartitionId(partition), batch, Offset(0)).unwrap();
                stored.extend(records);
            }
            assert_eq!(stored.len(), delivered.len());
            for (record, (offset, value)) in stored.iter().zip(&delivered) {
                assert_eq!(record.offset.0, *offset);
                assert_eq!(&record.value, value);
                assert_eq!(record.headers.len(), 1);
            }
        }
    });
}

/// Guards the sticky partitioner's switch (KIP-480): the null-key record that does not fit the
/// sticky partition's batch goes to the next partition, so every batch but the last is full.
/// Appending it first would leave a one-record batch behind at each switch, to wait out its
/// linger alone (with 8 partitions and 4 batches, each would reach the broker on its own).
#[test]
fn null_keys_fill_each_batch_and_leave_no_straggler() {
    let state = Rc::new(RefCell::new(MiniBroker { partitions: 8, ..MiniBroker::default() }));
    let conn = connection(1 << 12, ConnectionConfig::default(), mini_broker(Rc::clone(&state)));
    let mut producer = Producer::new(conn, small_batches());
    let records = 20;
    block_on(async {
        for _ in 0..records {
            producer.send("t", None, Bytes::from_static(&[7u8; 100]), Vec::new()).await.unwrap();
        }
        producer.flush().await.unwrap();
    });
    let broker = state.borrow();
    let batch_records: Vec<u32> =
        broker.logs.values().flatten().map(|batch| validate(batch).expect("a valid batch").record_count).collect();
    assert_eq!(batch_records.iter().sum::<u32>(), records);
    let full = batch_records.iter().copied().max().unwrap_or(0);
    assert!(full >= 2, "a {} byte batch holds several 100-byte records", small_batches().batching.batch_bytes);
    let short = batch_records.iter().filter(|&&count| count < full).count();
    assert!(short <= 1, "only the last batch may be short: {batch_records:?}");
}

/// Guards retries: `NotLeader` twice, then success; the records are delivered once each.
/// And with fewer retries allowed than failures, the delivery fails with the broker's code.
#[test]
fn producer_retries_retriable_errors_then_gives_up() {
    for (failures, retries_max, succeeds) in [(2, 3, true), (5, 2, false)] {
        let state =
            Rc::new(RefCell::new(MiniBroker { partitions: 1, fail_produces: failures, ..MiniBroker::default() }));
        let conn = connection(1 << 12, ConnectionConfig::default(), mini_broker(Rc::clone(&state)));
        let config = ProducerConfig { retries_max, ..small_batches() };
        let mut producer = Producer::new(conn, config);
        block_on(async {
            let a = producer.send("t", None, Bytes::from_static(b"a"), Vec::new()).await.unwrap();
            let b = producer.send("t", None, Bytes::from_static(b"b"), Vec::new()).await.unwrap();
            producer.flush().await.unwrap();
            let (a, b) = (a.await, b.await);
            let broker = state.borrow();
            if succeeds {
                assert_eq!(a.unwrap().offset, Some(Offset(0)));
                assert_eq!(b.unwrap().offset, Some(Offset(1)));
                assert_eq!(broker.produce_requests, failures + 1);
                assert_eq!(broker.next_offset[&0], 2, "delivered once, not duplicated");
            } else {
                let err = a.unwrap_err();
                assert_eq!(err.error_code(), Some(ErrorCode::NotLeader), "{err}");
                assert!(b.is_err());
                assert_eq!(broker.produce_requests, retries_max as usize + 1);
            }
        });
    }
}

/// An unknown topic fails `send` at once with the broker's code; a partition out of range too.
#[test]
fn producer_reports_unknown_topics() {
    let state = Rc::new(RefCell::new(MiniBroker { partitions: 2, ..MiniBroker::default() }));
    let conn = connection(1 << 12, ConnectionConfig::default(), mini_broker(state));
    let mut producer = Producer::new(conn, small_batches());
    block_on(async {
        let err = producer.send("nope", None, Bytes::from_static(b"x"), Vec::new()).await.unwrap_err();
        assert_eq!(err.error_code(), Some(ErrorCode::UnknownTopicOrPartition));
        let err = producer
            .send_record(super::producer::ProducerRecord {
                topic: "t".into(),
                partition: Some(PartitionId(2)),
                value: Bytes::from_static(b"x"),
                ..Default::default()
            })
            .await
            .unwrap_err();
        assert!(matches!(err, ClientError::InvalidArgument(_)), "{err}");
    });
}

/// A two-partition mini broker holding `v0`..`v9`, even ones on partition 0, odd ones on 1.
fn mini_broker_with_ten_records() -> Rc<RefCell<MiniBroker>> {
    let state = Rc::new(RefCell::new(MiniBroker { partitions: 2, ..MiniBroker::default() }));
    let conn = connection(1 << 12, ConnectionConfig::default(), mini_broker(Rc::clone(&state)));
    let mut producer = Producer::new(conn, small_batches());
    block_on(async {
        for i in 0..10u32 {
            let record = super::producer::ProducerRecord {
                topic: "t".into(),
                partition: Some(PartitionId(i % 2)),
                value: Bytes::from(format!("v{i}")),
                ..Default::default()
            };
            producer.send_record(record).await.unwrap();
        }
        producer.flush().await.unwrap();
    });
    state
}

/// Guards the consumer end to end: records produced to two partitions come back validated,
/// with their offsets, from earliest; a second poll with no new data is empty; a position past
/// the high watermark is reported as `OffsetOutOfRange` and a seek to earliest recovers.
#[test]
fn consumer_reads_back_and_reports_out_of_range() {
    let state = mini_broker_with_ten_records();
    let conn = connection(1 << 12, ConnectionConfig::default(), mini_broker(Rc::clone(&state)));
    let mut consumer = Consumer::new(conn, ConsumerConfig::default());
    consumer.assign(&[("t", PartitionId(0)), ("t", PartitionId(1))]);
    block_on(async {
        let records = consumer.poll().await.unwrap();
        assert_eq!(records.len(), 10);
        let p0: Vec<&[u8]> = records.iter().filter(|r| r.partition == PartitionId(0)).map(|r| &r.value[..]).collect();
        assert_eq!(p0, [&b"v0"[..], b"v2", b"v4", b"v6", b"v8"]);
        assert_eq!(consumer.position("t", PartitionId(1)), Some(Offset(5)));
        assert!(consumer.poll().await.unwrap().is_empty());
        consumer.seek("t", PartitionId(0), SeekTo::Offset(Offset(99))).await.unwrap();
        let err = consumer.poll().await.unwrap_err();
        assert!(matches!(err, ClientError::OffsetOutOfRange { high_watermark: Offset(5), .. }), "{err}");
        assert_eq!(consumer.seek("t", PartitionId(0), SeekTo::Earliest).await.unwrap(), Offset(0));
        assert_eq!(consumer.poll().await.unwrap().len(), 5);
        assert_eq!(consumer.seek("t", PartitionId(0), SeekTo::Latest).await.unwrap(), Offset(5));
    });
}

/// Guards the split fetch (send now, receive later): an answer is used only for partitions
/// still at the position the fetch was sent from. A seek while the fetch is in flight wins (the
/// stale records of that partition are dropped, its new position kept); a seek that asks the
/// broker (ListOffsets on the same connection) parks the fetch's answer and loses nothing.
#[test]
fn a_seek_while_a_fetch_is_in_flight_wins_over_its_answer() {
    let state = mini_broker_with_ten_records();
    let conn = connection(1 << 12, ConnectionConfig::default(), mini_broker(Rc::clone(&state)));
    let mut consumer = Consumer::new(conn, ConsumerConfig::default());
    consumer.assign(&[("t", PartitionId(0)), ("t", PartitionId(1))]);
    block_on(async {
        consumer.send_fetch().await.unwrap();
        assert!(consumer.has_fetch_in_flight());
        consumer.send_fetch().await.unwrap(); // at most one in flight: nothing sent
        consumer.seek("t", PartitionId(0), SeekTo::Offset(Offset(3))).await.unwrap();
        let records = consumer.receive_fetch().await.unwrap();
        assert!(!consumer.has_fetch_in_flight());
        let values: Vec<&[u8]> = records.iter().map(|r| &r.value[..]).collect();
        assert_eq!(values, [&b"v1"[..], b"v3", b"v5", b"v7", b"v9"], "partition 0's stale answer dropped");
        assert_eq!(consumer.position("t", PartitionId(0)), Some(Offset(3)));
        assert_eq!(consumer.position("t", PartitionId(1)), Some(Offset(5)));
        let records = consumer.poll().await.unwrap();
        let values: Vec<&[u8]> = records.iter().map(|r| &r.value[..]).collect();
        assert_eq!(values, [&b"v6"[..], b"v8"], "partition 0 from its new position");

        consumer.seek("t", PartitionId(0), SeekTo::Offset(Offset(0))).await.unwrap();
        consumer.send_fetch().await.unwrap();
        // A ListOffsets round trip on the same connection while the fetch is in flight.
        assert_eq!(consumer.seek("t", PartitionId(1), SeekTo::Latest).await.unwrap(), Offset(5));
        assert!(consumer.fetch_arrived().unwrap(), "the fetch's answer was parked, not lost");
        let records = consumer.receive_fetch().await.unwrap();
        assert_eq!(records.len(), 5, "partition 0 from offset 0; partition 1 was already at its end");
        assert!(consumer.receive_fetch().await.unwrap().is_empty(), "no fetch in flight: nothing to receive");
    });
}

/// The stored records of one partition of the mini broker, as (offset, value), and the base
/// sequences of its batches.
fn stored(broker: &MiniBroker, partition: u32) -> (Vec<(u64, Bytes)>, Vec<i32>) {
    let topic: Rc<str> = Rc::from("t");
    let mut records = Vec::new();
    let mut sequences = Vec::new();
    for batch in broker.logs.get(&partition).into_iter().flatten() {
        sequences.push(validate(batch).unwrap().base_sequence);
        let (decoded, _) = decode_batches(&topic, PartitionId(partition), batch, Offset(0)).unwrap();
        records.extend(decoded.into_iter().map(|record| (record.offset.0, record.value)));
    }
    (records, sequences)
}

/// Guards the idempotent producer over dropped connections: answers to several produce
/// requests are lost after the broker appended them and the connection ends; the producer
/// reconnects through its connector, sends the same batches again with the same sequences,
/// the broker recognises them as duplicates, and every partition holds each record exactly
/// once, in send order, with the offsets the deliveries reported.
#[test]
fn idempotent_producer_reconnects_and_never_duplicates() {
    let state = Rc::new(RefCell::new(MiniBroker {
        partitions: 3,
        lose_answers_to: vec![2, 5, 6, 11],
        ..MiniBroker::default()
    }));
    let conn = connection(1 << 12, ConnectionConfig::default(), mini_broker(Rc::clone(&state)));
    let connects = Rc::new(RefCell::new(0));
    let connector = {
        let (state, connects) = (Rc::clone(&state), Rc::clone(&connects));
        move || {
            *connects.borrow_mut() += 1;
            let conn = connection(1 << 12, ConnectionConfig::default(), mini_broker(Rc::clone(&state)));
            async move { Ok(conn) }
        }
    };
    let mut producer =
        Producer::new(conn, ProducerConfig { retries_max: 10, ..small_batches() }).with_reconnect(connector);
    assert!(producer.is_idempotent(), "acks = all turns idempotence on by default");
    block_on(async {
        let mut sent = Vec::new();
        for i in 0..120u32 {
            let key = Bytes::from(format!("key-{}", i % 5));
            let value = Bytes::from(format!("value-{i}"));
            let delivery = producer.send("t", Some(key.clone()), value.clone(), Vec::new()).await.unwrap();
            sent.push((key, value, delivery));
        }
        producer.flush().await.unwrap();
        assert_eq!(producer.outstanding(), 0);
        assert_eq!(producer.producer_identity().map(|(id, epoch)| (id.0, epoch.0)), Some((42, 0)));
        let mut expected: HashMap<u32, Vec<(u64, Bytes)>> = HashMap::new();
        for (key, value, delivery) in sent {
            let delivery = delivery.await.expect("delivered");
            assert_eq!(delivery.partition, partition_for_key(&key, 3));
            expected.entry(delivery.partition.0).or_default().push((delivery.offset.unwrap().0, value));
        }
        let broker = state.borrow();
        assert_eq!(broker.producer_ids_given, 1, "the producer keeps its id across reconnections");
        assert!(*connects.borrow() >= 3, "every lost answer ended a connection");
        for (partition, delivered) in expected {
            let (records, sequences) = stored(&broker, partition);
            assert_eq!(records, delivered, "partition {partition}: exactly once, in order, at the reported offsets");
            assert!(sequences.windows(2).all(|w| w[0] < w[1]), "sequences grow: {sequences:?}");
            assert_eq!(sequences.first(), Some(&0));
        }
    });
}

/// Guards the per-batch delivery outcome: records of one batch awaited by separate tasks
/// (each with its own waker) all wake when the batch is acknowledged, each with its own offset;
/// records still queued when the producer is dropped fail instead of pending forever.
#[test]
fn every_record_of_a_batch_resolves_with_its_own_offset() {
    use futures::task::LocalSpawnExt;

    let state = Rc::new(RefCell::new(MiniBroker { partitions: 1, ..MiniBroker::default() }));
    let conn = connection(1 << 12, ConnectionConfig::default(), mini_broker(Rc::clone(&state)));
    let config = ProducerConfig {
        batching: AccumulatorConfig { batch_bytes: 1 << 20, linger: Duration::from_secs(60) },
        ..ProducerConfig::default()
    };
    let mut producer = Producer::new(conn, config);
    let mut pool = futures::executor::LocalPool::new();
    // (record, offset) in the order the tasks saw them resolve.
    type Resolved = Vec<(usize, Option<Offset>)>;
    let resolved: Rc<RefCell<Resolved>> = Rc::default();
    let deliveries: Vec<_> =
        (0..5).map(|i| block_on(producer.send("t", None, Bytes::from(format!("v{i}")), Vec::new())).unwrap()).collect();
    for (index, delivery) in deliveries.into_iter().enumerate() {
        assert!(delivery.try_result().is_none(), "nothing is sent before the linger or a flush");
        let resolved = Rc::clone(&resolved);
        pool.spawner()
            .spawn_local(async move {
                let delivery = delivery.await.unwrap();
                resolved.borrow_mut().push((index, delivery.offset));
            })
            .unwrap();
    }
    pool.run_until_stalled();
    assert!(resolved.borrow().is_empty(), "every task waits for the batch");
    pool.run_until(producer.flush()).unwrap();
    pool.run_until_stalled();
    let mut resolved = resolved.borrow().clone();
    resolved.sort_unstable();
    assert_eq!(resolved, (0..5).map(|i| (i, Some(Offset(i as u64)))).collect::<Vec<_>>());
    assert_eq!(state.borrow().produce_requests, 1, "one batch for the five records");

    let queued: Vec<_> =
        (0..3).map(|_| block_on(producer.send("t", None, Bytes::from_static(b"late"), Vec::new())).unwrap()).collect();
    drop(producer);
    for delivery in queued {
        assert!(
            matches!(delivery.try_result(), Some(Err(ClientError::InvalidArgument(message))) if message.contains("dropped")),
            "a record queued in a dropped producer fails"
        );
    }
}

/// A producer (acks 1, linger 0, two request slots, `batch_bytes`) on a mini broker of topic
/// "t" with `partitions`, whose answers are held back (gate closed) once the topic is known:
/// as with a real broker a round trip away, requests take the slots and stay there.
fn producer_with_answers_held(
    partitions: u32,
    batch_bytes: usize,
) -> (Producer<GatedStream>, Rc<RefCell<MiniBroker>>, Arc<Gate>) {
    let state = Rc::new(RefCell::new(MiniBroker { partitions, ..MiniBroker::default() }));
    let gate = Gate::opened();
    let stream =
        GatedStream { inner: FakeStream::new(1 << 12, mini_broker(Rc::clone(&state))), gate: Arc::clone(&gate) };
    let conn = Connection::new(stream, ConnectionConfig::default(), Rc::new(NeverSleeper));
    let config = ProducerConfig {
        acks: Acks::Leader,
        batching: AccumulatorConfig { batch_bytes, linger: Duration::ZERO },
        requests_in_flight_max: 2,
        ..ProducerConfig::default()
    };
    let mut producer = Producer::new(conn, config);
    block_on(producer.partition_count("t")).unwrap();
    gate.close();
    (producer, state, gate)
}

/// Guards natural batching with `linger = 0` (Kafka's sender behaves the same): while every
/// request slot is taken, records join the open batch instead of each closing a one-record
/// batch and waiting for a slot, which made a `linger_ms = 0` producer one round trip per
/// record (36 k msgs/s where it now does 580–730 k, PERF.md). The fake broker holds its
/// answers back: sends must not wait for them; then every record resolves with its own
/// offset, in order.
#[test]
fn records_join_open_batches_while_every_request_slot_is_taken() {
    use futures::FutureExt;

    const RECORDS: u64 = 100;
    let (mut producer, state, gate) = producer_with_answers_held(1, 1 << 20);
    let deliveries: Vec<_> = (0..RECORDS)
        .map(|i| {
            let send = producer.send("t", None, Bytes::from(format!("v{i}")), Vec::new());
            send.now_or_never().expect("a send does not wait for a request slot").unwrap()
        })
        .collect();
    assert_eq!(
        state.borrow().produce_requests,
        2,
        "two one-record requests take the slots; the rest waits in one batch"
    );
    gate.open();
    block_on(producer.flush()).unwrap();
    assert_eq!(state.borrow().produce_requests, 3, "the flush sends the other 98 records as one batch");
    for (i, delivery) in deliveries.into_iter().enumerate() {
        assert_eq!(block_on(delivery).unwrap().offset, Some(Offset(i as u64)));
    }
}

/// Guards the bound on natural batching: records are held for a request slot only while
/// everything held fits in one batch. Records spread over four partitions leave four open
/// batches that never fill (as a sticky partitioner that moves on just before a batch fills
/// does); without the bound, sends never waited and a closed-loop caller piled up seconds of
/// records (PERF.md: 4,096 partitions). With it, a send waits for a slot once about
/// `batch_bytes` are held, long before any batch fills; then every record is delivered.
#[test]
fn holding_records_for_a_slot_stops_at_one_batch_of_bytes() {
    use std::future::Future;
    use std::task::{Context, Poll};

    const BATCH_BYTES: usize = 2_000;
    let (mut producer, _state, gate) = producer_with_answers_held(4, BATCH_BYTES);
    let record = |i: usize| super::producer::ProducerRecord {
        topic: "t".to_owned(),
        partition: Some(PartitionId((i % 4) as u32)),
        key: None,
        value: Bytes::from(vec![b'v'; 100]),
        headers: Vec::new(),
        timestamp: None,
    };
    let waker = futures::task::noop_waker();
    let mut context = Context::from_waker(&waker);
    let mut deliveries = Vec::new();
    let mut first_wait = None;
    for i in 0..200 {
        let mut send = Box::pin(producer.send_record(record(i)));
        match send.as_mut().poll(&mut context) {
            Poll::Ready(delivery) => deliveries.push(delivery.unwrap()),
            Poll::Pending => {
                gate.open();
                deliveries.push(block_on(send).unwrap());
                first_wait = Some(i);
                break;
            }
        }
    }
    let first_wait = first_wait.expect("a send waits for a slot");
    // Each record adds ~100 bytes and its archived fields; four batches of ~14 records each
    // would fill BATCH_BYTES only after ~56 sends.
    assert!((2..=24).contains(&first_wait), "the first send to wait was number {first_wait}");
    block_on(producer.flush()).unwrap();
    let mut next_offset = [0u64; 4];
    for (i, delivery) in deliveries.into_iter().enumerate() {
        let delivery = block_on(delivery).unwrap();
        assert_eq!(delivery.offset, Some(Offset(next_offset[i % 4])), "record {i}");
        next_offset[i % 4] += 1;
    }
}

/// Guards Kafka's configuration rule: idempotence is off by default with acks != all (no
/// producer id asked, batches carry none), and asking for it with acks != all is refused.
#[test]
fn idempotence_follows_acks() {
    let state = Rc::new(RefCell::new(MiniBroker { partitions: 1, ..MiniBroker::default() }));
    let conn = connection(1 << 12, ConnectionConfig::default(), mini_broker(Rc::clone(&state)));
    let mut producer = Producer::new(conn, ProducerConfig { acks: Acks::Leader, ..small_batches() });
    assert!(!producer.is_idempotent());
    block_on(async {
        let delivery = producer.send("t", None, Bytes::from_static(b"a"), Vec::new()).await.unwrap();
        producer.flush().await.unwrap();
        assert_eq!(delivery.await.unwrap().offset, Some(Offset(0)));
    });
    assert_eq!(state.borrow().producer_ids_given, 0);
    assert_eq!(stored(&state.borrow(), 0).1, [crate::storage::batch::BASE_SEQUENCE_NONE]);

    let conn = connection(1 << 12, ConnectionConfig::default(), mini_broker(Rc::clone(&state)));
    let config = ProducerConfig { acks: Acks::Leader, idempotence: Some(true), ..small_batches() };
    assert!(config.is_idempotent().is_err());
    let mut producer = Producer::new(conn, config);
    block_on(async {
        let err = producer.send("t", None, Bytes::from_static(b"a"), Vec::new()).await.unwrap_err();
        assert!(matches!(&err, ClientError::InvalidArgument(message) if message.contains("acks")), "{err}");
    });
}

/// Guards the fatal codes: a broker that lost the producer's sequence answers
/// `OutOfOrderSequence`, and the deliveries of that batch fail with it (not retried, not
/// reported as success).
#[test]
fn out_of_order_sequence_fails_the_delivery() {
    let state = Rc::new(RefCell::new(MiniBroker { partitions: 1, ..MiniBroker::default() }));
    // The broker already saw sequences 0..10 of producer 42 epoch 0: the producer's 0 is a gap.
    state.borrow_mut().producers.entry(0).or_default().record(&ProducerBatch {
        producer_id: crate::model::ProducerId(42),
        producer_epoch: crate::model::ProducerEpoch(0),
        base_sequence: 0,
        record_count: 10,
        base_offset: Offset(0),
    });
    state.borrow_mut().producers.entry(0).or_default().record(&ProducerBatch {
        producer_id: crate::model::ProducerId(42),
        producer_epoch: crate::model::ProducerEpoch(0),
        base_sequence: 10,
        record_count: 1,
        base_offset: Offset(10),
    });
    let conn = connection(1 << 12, ConnectionConfig::default(), mini_broker(Rc::clone(&state)));
    let mut producer = Producer::new(conn, small_batches());
    block_on(async {
        let a = producer.send("t", None, Bytes::from_static(b"ab"), Vec::new()).await.unwrap();
        producer.flush().await.unwrap();
        let err = a.await.unwrap_err();
        assert_eq!(err.error_code(), Some(ErrorCode::OutOfOrderSequence), "{err}");
        assert!(err.to_string().contains("idempotent producer"), "{err}");
    });
    assert_eq!(state.borrow().produce_requests, 1, "not retried");
}

/// Guards `Connection::wait_for_response`: it returns at once with nothing in flight, returns
/// as soon as one response has arrived (parked for its `receive`, read here in 7-byte pieces)
/// while a later one is still in flight, and an end of stream is an error, not a hang.
#[test]
fn wait_for_response_parks_the_first_arrival() {
    let mut held: Vec<Frame> = Vec::new();
    let handler: Handler = Box::new(move |frame| {
        held.push(frame);
        if held.len() < 2 {
            return Vec::new();
        }
        held.drain(..).map(|frame| respond(&frame, &metadata_response(1, &[]), Vec::new())).collect()
    });
    let mut conn = connection(7, ConnectionConfig::default(), handler);
    block_on(async {
        conn.wait_for_response().await.unwrap();
        let a = conn.send(&MetadataRequest::default(), Vec::new()).await.unwrap();
        let b = conn.send(&MetadataRequest::default(), Vec::new()).await.unwrap();
        conn.wait_for_response().await.unwrap();
        assert_eq!(conn.in_flight(), 1, "the first response is parked, the second not yet read");
        assert_eq!(conn.receive(a).await.unwrap().body.shard_count, 1);
        assert_eq!(conn.receive(b).await.unwrap().body.shard_count, 1);
    });
    let mut silent = connection(7, ConnectionConfig::default(), Box::new(|_| Vec::new()));
    block_on(async {
        let _pending = silent.send(&MetadataRequest::default(), Vec::new()).await.unwrap();
        assert!(matches!(silent.wait_for_response().await, Err(ClientError::ConnectionClosed { .. })));
        assert!(silent.poisoned().is_some());
    });
}

/// A sleeper that records what it was asked to wait, and does not wait.
struct RecordingSleeper(Rc<RefCell<Vec<Duration>>>);

impl super::Sleeper for RecordingSleeper {
    fn sleep(&self, duration: Duration) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()>>> {
        self.0.borrow_mut().push(duration);
        Box::pin(std::future::ready(()))
    }
}

/// Guards `Producer::poll_until`: it wakes for a lingering batch's deadline, not only for the
/// caller's; a batch whose linger has passed is sent and its ack settled by the next call.
#[test]
fn poll_until_wakes_for_the_linger_and_settles_the_ack() {
    let state = Rc::new(RefCell::new(MiniBroker { partitions: 1, ..MiniBroker::default() }));
    let asked = Rc::new(RefCell::new(Vec::new()));
    let stream = super::fake_broker::FakeStream::new(1 << 12, mini_broker(Rc::clone(&state)));
    let conn = super::Connection::new(stream, ConnectionConfig::default(), Rc::new(RecordingSleeper(asked.clone())));
    let linger = Duration::from_millis(50);
    let config = ProducerConfig {
        batching: AccumulatorConfig { batch_bytes: 1 << 20, linger },
        acks: Acks::Leader,
        ..ProducerConfig::default()
    };
    let mut producer = Producer::new(conn, config);
    block_on(async {
        let far = std::time::Instant::now() + Duration::from_secs(10);
        producer.poll_until(std::time::Instant::now() + Duration::from_millis(5)).await.unwrap();
        assert!(asked.borrow().last().is_some_and(|d| *d <= Duration::from_millis(5)), "{:?}", asked.borrow());
        let delivery = producer.send("t", None, Bytes::from_static(b"v"), Vec::new()).await.unwrap();
        producer.poll_until(far).await.unwrap();
        assert!(asked.borrow().last().is_some_and(|d| *d <= linger), "woke for the linger: {:?}", asked.borrow());
        assert!(delivery.try_result().is_none(), "the linger has not passed yet");
        std::thread::sleep(linger + Duration::from_millis(5));
        producer.poll_until(far).await.unwrap();
        let delivered = delivery.try_result().expect("settled after the linger").unwrap();
        assert_eq!(delivered.offset, Some(Offset(0)));
        assert_eq!(producer.outstanding(), 0);
    });
}
