//! Tests of [`ShardAwareProducer`] and [`ShardAwareConsumer`] over the in-memory fake broker: a two-shard "broker" whose
//! every connection is a [`FakeStream`] named by the port it was opened to, behind a gate that
//! can hold its responses back (to see which connection's ack wakes `poll_until`).

use std::cell::RefCell;
use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_lite::future::block_on;

use super::accumulator::{record_bytes_estimate, AccumulatorConfig};
use super::connection::{Connection, ConnectionConfig};
use super::fake_broker::{list_offsets_answer, FakeStream, Gate, GatedStream, Handler, InstantSleeper, NeverSleeper};
use super::partitioner::fnv1a_32;
use super::producer::{Acks, ProducerConfig, ProducerRecord};
use super::{partition_for_key, ClientResult, ConsumerConfig, SeekTo, ShardAwareConsumer, ShardAwareProducer, Sleeper};
use crate::model::{Offset, PartitionId};
use crate::protocol::{
    decode_envelope_owned, encode_response, payload_slice, ApiKey, FetchPartitionResponse, FetchRequest, FetchResponse,
    FetchTopicResponse, Frame, MetadataPartition, MetadataRequest, MetadataResponse, MetadataTopic,
    ProducePartitionResponse, ProduceRequest, ProduceResponse, ProduceTopicResponse, ResponseTo,
};
use crate::storage::batch::{peek_batch_length, validate};

const BOOTSTRAP_PORT: u16 = 9000;
const SHARD_PORTS: [u16; 2] = [9001, 9002];
const PARTITIONS: u32 = 4;

/// The owner shard of a partition in the fake broker.
fn owner(partition: u32) -> usize {
    (partition % 2) as usize
}

/// What the fake broker saw, over all its connections.
#[derive(Default)]
struct Seen {
    /// Ports connections were opened to, in order (the bootstrap connection not included).
    connected: Vec<u16>,
    /// (port the request came in on, partition, records).
    produced: Vec<(u16, u32, u32)>,
    /// (port the fetch came in on, partition), one entry per partition fetched.
    fetched: Vec<(u16, u32)>,
    next_offset: HashMap<u32, u64>,
}

fn respond<T: crate::protocol::Envelope>(frame: &Frame, body: &T) -> Vec<u8> {
    encode_response(ResponseTo::from(&frame.header), body, Vec::new()).expect("encode").to_vec()
}

/// The fake broker as seen from a connection to `port`: Metadata with `shard_ports` and
/// `PARTITIONS` partitions of topic "t" (partition p owned by shard p % 2); Produce appends
/// and answers dense offsets per partition.
fn broker(port: u16, seen: Rc<RefCell<Seen>>, shard_ports: &'static [u16]) -> Handler {
    Box::new(move |frame| {
        let mut seen = seen.borrow_mut();
        let reply = match frame.header.api_key {
            key if key == ApiKey::Metadata.as_u16() => {
                let request: MetadataRequest = decode_envelope_owned(frame.envelope.as_slice()).expect("metadata");
                assert_eq!(request.topics, ["t"]);
                let partitions = (0..PARTITIONS)
                    .map(|partition| MetadataPartition {
                        partition,
                        shard: owner(partition) as u32,
                        log_start_offset: 0,
                        high_watermark: 0,
                    })
                    .collect();
                let topic = MetadataTopic {
                    name: "t".into(),
                    error_code: 0,
                    partitions,
                    retention_ms: -1,
                    retention_bytes: -1,
                    segment_bytes: 0,
                };
                respond(
                    &frame,
                    &MetadataResponse { shard_count: 2, topics: vec![topic], shard_ports: shard_ports.into() },
                )
            }
            key if key == ApiKey::Produce.as_u16() => {
                let request: ProduceRequest = decode_envelope_owned(frame.envelope.as_slice()).expect("produce");
                let mut topics = Vec::new();
                for topic in &request.topics {
                    let mut partitions = Vec::new();
                    for part in &topic.partitions {
                        let range = payload_slice(&frame.payload, part.payload_offset, part.payload_length).unwrap();
                        let length = peek_batch_length(&range).expect("one batch") as usize;
                        assert_eq!(length, range.len(), "one batch per partition per request");
                        let records = validate(&range).expect("a valid batch").record_count;
                        seen.produced.push((port, part.partition, records));
                        let next = seen.next_offset.entry(part.partition).or_default();
                        let base_offset = *next;
                        *next += u64::from(records);
                        partitions.push(ProducePartitionResponse {
                            partition: part.partition,
                            error_code: 0,
                            base_offset,
                            log_start_offset: 0,
                            error_message: String::new(),
                        });
                    }
                    topics.push(ProduceTopicResponse { name: topic.name.clone(), partitions });
                }
                respond(&frame, &ProduceResponse { topics })
            }
            key if key == ApiKey::ListOffsets.as_u16() => respond(&frame, &list_offsets_answer(&frame, |_, _| 0)),
            key if key == ApiKey::Fetch.as_u16() => {
                // Nothing stored: every partition answers at once with no batch.
                let request: FetchRequest = decode_envelope_owned(frame.envelope.as_slice()).expect("fetch");
                let mut topics = Vec::new();
                for topic in &request.topics {
                    let mut partitions = Vec::new();
                    for part in &topic.partitions {
                        seen.fetched.push((port, part.partition));
                        partitions.push(FetchPartitionResponse {
                            partition: part.partition,
                            error_code: 0,
                            high_watermark: 0,
                            log_start_offset: 0,
                            payload_offset: 0,
                            payload_length: 0,
                        });
                    }
                    topics.push(FetchTopicResponse { name: topic.name.clone(), partitions });
                }
                respond(&frame, &FetchResponse { topics })
            }
            other => panic!("unexpected api key {other}"),
        };
        vec![reply]
    })
}

struct Fixture {
    producer: ShardAwareProducer<GatedStream>,
    seen: Rc<RefCell<Seen>>,
    /// Gate of each shard port's connection.
    gates: HashMap<u16, Arc<Gate>>,
}

/// A shard-aware producer on the fake broker, each connection read `7` bytes at a time.
fn fixture(config: ProducerConfig, sleeper: Rc<dyn Sleeper>) -> Fixture {
    fixture_with_ports(config, sleeper, &SHARD_PORTS)
}

fn fixture_with_ports(config: ProducerConfig, sleeper: Rc<dyn Sleeper>, shard_ports: &'static [u16]) -> Fixture {
    let seen = Rc::new(RefCell::new(Seen::default()));
    let gates: HashMap<u16, Arc<Gate>> = SHARD_PORTS.iter().map(|&port| (port, Gate::opened())).collect();
    let open = {
        let (seen, sleeper) = (Rc::clone(&seen), Rc::clone(&sleeper));
        move |port: u16, gate: Arc<Gate>| {
            let stream = GatedStream { inner: FakeStream::new(7, broker(port, Rc::clone(&seen), shard_ports)), gate };
            Connection::new(stream, ConnectionConfig::default(), Rc::clone(&sleeper))
        }
    };
    let bootstrap = open(BOOTSTRAP_PORT, Gate::opened());
    let connector = {
        let (seen, gates) = (Rc::clone(&seen), gates.clone());
        move |address: SocketAddr| {
            seen.borrow_mut().connected.push(address.port());
            let gate = gates.get(&address.port()).cloned().expect("a shard port");
            let connection = open(address.port(), gate);
            async move { ClientResult::Ok(connection) }
        }
    };
    let address = SocketAddr::from(([127, 0, 0, 1], BOOTSTRAP_PORT));
    Fixture { producer: ShardAwareProducer::new(bootstrap, address, config, connector), seen, gates }
}

fn config(batch_bytes: usize, linger: Duration) -> ProducerConfig {
    ProducerConfig {
        acks: Acks::Leader,
        batching: AccumulatorConfig { batch_bytes, linger },
        ..ProducerConfig::default()
    }
}

fn record(partition: Option<u32>, key: Option<&str>, value: &str) -> ProducerRecord {
    ProducerRecord {
        topic: "t".into(),
        partition: partition.map(PartitionId),
        key: key.map(|key| Bytes::copy_from_slice(key.as_bytes())),
        value: Bytes::copy_from_slice(value.as_bytes()),
        ..ProducerRecord::default()
    }
}

/// Guards the routing: a record for a partition goes to its owner shard's port and nowhere
/// else, shard connections open on first use only (or all at once with `prepare`), the
/// bootstrap connection carries no produce, and every delivery resolves with a dense offset of
/// its partition.
#[test]
fn records_go_to_the_owner_shards_port() {
    let mut fixture = fixture(config(1 << 20, Duration::from_secs(60)), Rc::new(InstantSleeper));
    block_on(async {
        assert_eq!(fixture.producer.partition_count("t").await.unwrap(), PARTITIONS);
        assert_eq!(fixture.producer.shard_ports(), SHARD_PORTS);
        assert!(fixture.seen.borrow().connected.is_empty(), "no shard connection before a send");
        let first = fixture.producer.send_record(record(Some(0), None, "p0")).await.unwrap();
        assert_eq!(fixture.seen.borrow().connected, [SHARD_PORTS[0]], "only partition 0's owner is connected");
        let mut deliveries = vec![(0, first)];
        for round in 0..3 {
            for partition in 0..PARTITIONS {
                let value = format!("p{partition}-{round}");
                deliveries.push((
                    partition,
                    fixture.producer.send_record(record(Some(partition), None, &value)).await.unwrap(),
                ));
            }
        }
        assert_eq!(fixture.producer.outstanding(), deliveries.len());
        fixture.producer.flush().await.unwrap();
        assert_eq!(fixture.producer.outstanding(), 0);
        let mut offsets: HashMap<u32, Vec<u64>> = HashMap::new();
        for (partition, delivery) in deliveries {
            let delivered = delivery.await.unwrap();
            assert_eq!(delivered.partition, PartitionId(partition));
            offsets.entry(partition).or_default().push(delivered.offset.expect("acks=1 has offsets").0);
        }
        for (partition, offsets) in offsets {
            assert_eq!(offsets, (0..offsets.len() as u64).collect::<Vec<_>>(), "partition {partition}");
        }
    });
    let seen = fixture.seen.borrow();
    assert_eq!(seen.connected, SHARD_PORTS, "one connection per shard");
    assert!(!seen.produced.is_empty());
    for &(port, partition, _) in &seen.produced {
        assert_eq!(port, SHARD_PORTS[owner(partition)], "partition {partition} came in on port {port}");
    }
    let mut prepared = self::fixture(config(1 << 20, Duration::from_secs(60)), Rc::new(InstantSleeper));
    assert_eq!(block_on(prepared.producer.prepare("t")).unwrap(), PARTITIONS);
    assert_eq!(prepared.seen.borrow().connected, SHARD_PORTS, "prepare opens every owner's connection");
}

/// Guards uniform stickiness (KIP-794) when batches fill: null-key records stay on one
/// partition until its batch cannot take the next record, then move to the next, round-robin
/// from `fnv1a_32(topic) % partitions`; each lands on its owner's port. Every batch but the
/// last is full: the record that did not fit opened a batch on the next partition, not a
/// one-record straggler on this one (which would then wait out its linger alone).
#[test]
fn null_keys_fill_a_batch_then_move_on_without_a_straggler() {
    let value = "v".repeat(100);
    let per_record = record_bytes_estimate(None, value.as_bytes(), &[]);
    let mut fixture = fixture(config(per_record * 3, Duration::from_secs(60)), Rc::new(InstantSleeper));
    let start = fnv1a_32(b"t") % PARTITIONS;
    let records = 3 * (PARTITIONS as usize + 1);
    let mut delivered = Vec::new();
    block_on(async {
        let mut deliveries = Vec::new();
        for _ in 0..records {
            deliveries.push(fixture.producer.send_record(record(None, None, &value)).await.unwrap());
        }
        fixture.producer.flush().await.unwrap();
        for delivery in deliveries {
            delivered.push(delivery.await.unwrap().partition);
        }
    });
    let seen = fixture.seen.borrow();
    let per_batch = seen.produced.iter().map(|&(_, _, records)| records as usize).max().unwrap_or(0);
    assert!(per_batch >= 2, "a batch of {} bytes holds at least two of these records", per_record * 3);
    let short = seen.produced.iter().filter(|&&(_, _, records)| (records as usize) < per_batch).count();
    assert!(short <= 1, "only the last batch may be short: {:?}", seen.produced);
    for (index, partition) in delivered.into_iter().enumerate() {
        let expected = (start + (index / per_batch) as u32) % PARTITIONS;
        assert_eq!(partition, PartitionId(expected), "record {index}");
    }
    for &(port, partition, _) in &seen.produced {
        assert_eq!(port, SHARD_PORTS[owner(partition)]);
    }
}

/// Guards uniform stickiness (KIP-794) when batches go out before they fill (a low rate): the
/// sticky partition moves on at the first batch boundary after `batch_bytes` went to it, not
/// at every batch sent, so that one slow partition does not get every other record.
#[test]
fn null_keys_sent_one_by_one_move_on_after_batch_bytes() {
    let value = "v".repeat(100);
    let per_record = record_bytes_estimate(None, value.as_bytes(), &[]);
    let per_partition = 3;
    let mut fixture = fixture(config(per_record * per_partition, Duration::from_secs(60)), Rc::new(InstantSleeper));
    let start = fnv1a_32(b"t") % PARTITIONS;
    block_on(async {
        for index in 0..per_partition * (PARTITIONS as usize + 1) {
            let delivery = fixture.producer.send_record(record(None, None, &value)).await.unwrap();
            fixture.producer.flush().await.unwrap();
            let expected = (start + (index / per_partition) as u32) % PARTITIONS;
            assert_eq!(delivery.await.unwrap().partition, PartitionId(expected), "record {index}");
        }
    });
    assert!(fixture.seen.borrow().produced.iter().all(|&(_, _, records)| records == 1), "one record per flush");
}

/// Guards keyed partitioning: a keyed record lands on `partition_for_key`'s partition, as
/// with `Producer`, through its owner's port.
#[test]
fn keyed_records_go_to_partition_for_key() {
    let mut fixture = fixture(config(1 << 20, Duration::from_secs(60)), Rc::new(InstantSleeper));
    block_on(async {
        let mut deliveries = Vec::new();
        for index in 0..40 {
            let key = format!("key-{index}");
            let delivery = fixture.producer.send_record(record(None, Some(&key), "v")).await.unwrap();
            deliveries.push((key, delivery));
        }
        fixture.producer.flush().await.unwrap();
        for (key, delivery) in deliveries {
            assert_eq!(delivery.await.unwrap().partition, partition_for_key(key.as_bytes(), PARTITIONS), "{key}");
        }
    });
    let seen = fixture.seen.borrow();
    let partitions: std::collections::HashSet<u32> = seen.produced.iter().map(|&(_, partition, _)| partition).collect();
    assert_eq!(partitions.len(), PARTITIONS as usize, "40 keys cover the 4 partitions");
    for &(port, partition, _) in &seen.produced {
        assert_eq!(port, SHARD_PORTS[owner(partition)]);
    }
}

/// Guards `poll_until` across connections: with a request in flight on both shards, an ack
/// that arrives on the *second* shard's connection (released by another thread while
/// `poll_until` waits, the first shard's never) ends the wait and is settled; the timer
/// never fires (the sleeper never ends), and a watchdog bounds the test.
#[test]
fn poll_until_wakes_for_an_ack_on_the_second_shards_connection() {
    let mut fixture = fixture(config(1 << 20, Duration::ZERO), Rc::new(NeverSleeper));
    block_on(async {
        // Open both shard connections (and learn the topic) while the gates are open.
        for partition in [0, 1] {
            fixture.producer.send_record(record(Some(partition), None, "warm-up")).await.unwrap();
        }
        fixture.producer.flush().await.unwrap();
    });
    for gate in fixture.gates.values() {
        gate.close();
    }
    let (first, second) = block_on(async {
        let first = fixture.producer.send_record(record(Some(0), None, "to shard 0")).await.unwrap();
        let second = fixture.producer.send_record(record(Some(1), None, "to shard 1")).await.unwrap();
        (first, second)
    });
    assert_eq!(fixture.producer.outstanding(), 2, "both sent, neither answer readable yet");
    fixture.gates[&SHARD_PORTS[1]].open_after(Duration::from_millis(50));
    let watchdog = Arc::new(Gate::default());
    watchdog.open_after(Duration::from_secs(20));
    let woke = block_on(futures_lite::future::or(
        async {
            fixture.producer.poll_until(Instant::now() + Duration::from_secs(3600)).await.unwrap();
            true
        },
        async {
            std::future::poll_fn(|context| watchdog.poll_open(context)).await;
            false
        },
    ));
    assert!(woke, "poll_until did not wake for the second shard's ack within 20 s");
    let delivered = second.try_result().expect("the second shard's ack is settled").unwrap();
    assert_eq!(delivered, super::Delivery { partition: PartitionId(1), offset: Some(Offset(1)) });
    assert!(first.try_result().is_none(), "the first shard never answered");
    assert_eq!(fixture.producer.outstanding(), 1);
}

/// Guards the fallback: a broker that lists no shard ports gets every record on the bootstrap
/// connection, and no other connection is opened.
#[test]
fn no_shard_ports_means_everything_on_the_bootstrap_connection() {
    let mut fixture = fixture_with_ports(config(1 << 20, Duration::from_secs(60)), Rc::new(InstantSleeper), &[]);
    block_on(async {
        let mut deliveries = Vec::new();
        for partition in 0..PARTITIONS {
            deliveries.push(fixture.producer.send_record(record(Some(partition), None, "v")).await.unwrap());
        }
        deliveries.push(fixture.producer.send_record(record(None, Some("k"), "v")).await.unwrap());
        fixture.producer.flush().await.unwrap();
        for delivery in deliveries {
            delivery.await.unwrap();
        }
    });
    assert!(fixture.producer.shard_ports().is_empty());
    let seen = fixture.seen.borrow();
    assert!(seen.connected.is_empty(), "no connection besides the bootstrap one: {:?}", seen.connected);
    assert_eq!(seen.produced.len(), PARTITIONS as usize);
    assert!(seen.produced.iter().all(|&(port, _, _)| port == BOOTSTRAP_PORT));
}

/// How a test's connector answers a connection to `port`, the `attempt`-th to that port.
type ConnectRule = fn(port: u16, attempt: usize, seen: &Rc<RefCell<Seen>>) -> ClientResult<Connection<GatedStream>>;

/// Sends one record to partition 1 (owned by shard 1) through a shard-aware producer whose
/// connections follow `rule`, and flushes; returns the delivery and what the broker saw.
fn deliver_to_partition_1(rule: ConnectRule, reconnect: bool) -> (ClientResult<super::Delivery>, Rc<RefCell<Seen>>) {
    let seen = Rc::new(RefCell::new(Seen::default()));
    let bootstrap = open(broker(BOOTSTRAP_PORT, Rc::clone(&seen), &SHARD_PORTS));
    let connector = {
        let seen = Rc::clone(&seen);
        move |address: SocketAddr| {
            let port = address.port();
            let attempt = {
                let mut seen = seen.borrow_mut();
                seen.connected.push(port);
                seen.connected.iter().filter(|&&p| p == port).count()
            };
            let result = rule(port, attempt, &seen);
            async move { result }
        }
    };
    let config = ProducerConfig {
        backoff: super::Backoff { initial: Duration::from_millis(1), max: Duration::from_millis(2) },
        ..config(1 << 20, Duration::ZERO)
    };
    let address = SocketAddr::from(([127, 0, 0, 1], BOOTSTRAP_PORT));
    let mut producer = ShardAwareProducer::new(bootstrap, address, config, connector);
    if reconnect {
        producer = producer.with_reconnect();
    }
    let delivered = block_on(async {
        let delivery = producer.send_record(record(Some(1), None, "to partition 1")).await.unwrap();
        producer.flush().await.unwrap();
        delivery.await
    });
    (delivered, seen)
}

fn refused() -> ClientResult<Connection<GatedStream>> {
    Err(super::ClientError::from(io::Error::from(io::ErrorKind::ConnectionRefused)))
}

/// Guards reconnection when a shard port stops answering (a restarted broker with new
/// kernel-picked ports): the shard's connection breaks with a produce unanswered, its port
/// refuses the new connection, and the record is sent again on a connection to the bootstrap
/// address, where the broker still serves every partition.
#[test]
fn a_shard_port_that_stops_answering_falls_back_to_the_bootstrap_address() {
    let rule: ConnectRule = |port, attempt, seen| match (port == SHARD_PORTS[1], attempt) {
        // Shard 1's first connection loses every produce answer (the connection ends).
        (true, 1) => {
            let mut inner = broker(port, Rc::clone(seen), &SHARD_PORTS);
            let losing: Handler = Box::new(move |frame| {
                if frame.header.api_key == ApiKey::Produce.as_u16() {
                    return Vec::new();
                }
                inner(frame)
            });
            Ok(open(losing))
        }
        (true, _) => refused(),
        _ => Ok(open(broker(port, Rc::clone(seen), &SHARD_PORTS))),
    };
    let (delivered, seen) = deliver_to_partition_1(rule, true);
    assert_eq!(delivered.unwrap().partition, PartitionId(1));
    let seen = seen.borrow();
    assert_eq!(seen.connected, [SHARD_PORTS[1], SHARD_PORTS[1], BOOTSTRAP_PORT], "shard port, refused, bootstrap");
    assert_eq!(seen.produced, [(BOOTSTRAP_PORT, 1, 1)], "sent again on the bootstrap connection");
}

/// Guards the firewall case: a shard port that refuses the first connection is replaced by a
/// connection to the bootstrap address, and the record is delivered through it (no reconnect
/// option needed).
#[test]
fn an_unreachable_shard_port_is_replaced_by_the_bootstrap_address() {
    let rule: ConnectRule = |port, _, seen| {
        if port == SHARD_PORTS[1] {
            refused()
        } else {
            Ok(open(broker(port, Rc::clone(seen), &SHARD_PORTS)))
        }
    };
    let (delivered, seen) = deliver_to_partition_1(rule, false);
    assert_eq!(delivered.unwrap().partition, PartitionId(1));
    let seen = seen.borrow();
    assert_eq!(seen.connected, [SHARD_PORTS[1], BOOTSTRAP_PORT], "shard port refused, then the bootstrap address");
    assert_eq!(seen.produced, [(BOOTSTRAP_PORT, 1, 1)]);
}

/// A connection to the fake broker whose responses are never held back.
fn open(handler: Handler) -> Connection<GatedStream> {
    let stream = GatedStream { inner: FakeStream::new(7, handler), gate: Gate::opened() };
    Connection::new(stream, ConnectionConfig::default(), Rc::new(InstantSleeper))
}

/// Assigns every partition of "t" to a shard-aware consumer on the fake broker listing
/// `shard_ports`, whose connections follow `rule`, positions them and polls once; returns what
/// the broker saw and how many shard connections the consumer holds.
fn consume_once(shard_ports: &'static [u16], rule: ConnectRule) -> (Rc<RefCell<Seen>>, usize) {
    let seen = Rc::new(RefCell::new(Seen::default()));
    let bootstrap = open(broker(BOOTSTRAP_PORT, Rc::clone(&seen), shard_ports));
    let connector = {
        let seen = Rc::clone(&seen);
        move |address: SocketAddr| {
            seen.borrow_mut().connected.push(address.port());
            let result = rule(address.port(), 1, &seen);
            async move { result }
        }
    };
    let address = SocketAddr::from(([127, 0, 0, 1], BOOTSTRAP_PORT));
    let mut consumer = ShardAwareConsumer::new(bootstrap, address, ConsumerConfig::default(), connector);
    let connections = block_on(async {
        let all: Vec<_> = (0..PARTITIONS).map(|partition| ("t", PartitionId(partition))).collect();
        consumer.assign(&all).await.unwrap();
        consumer.seek_all(SeekTo::Earliest).await.unwrap();
        assert!(consumer.poll().await.unwrap().is_empty(), "nothing stored, nothing returned");
        assert_eq!(consumer.position("t", PartitionId(3)), Some(Offset(0)));
        consumer.shard_connections()
    });
    (seen, connections)
}

/// Guards the shard-aware consumer's routing: one connection per owner shard, each partition
/// fetched on its owner's port only, nothing fetched on the bootstrap connection.
#[test]
fn the_consumer_fetches_each_partition_on_its_owners_port() {
    let rule: ConnectRule = |port, _, seen| Ok(open(broker(port, Rc::clone(seen), &SHARD_PORTS)));
    let (seen, connections) = consume_once(&SHARD_PORTS, rule);
    let seen = seen.borrow();
    assert_eq!(connections, 2);
    assert_eq!(seen.connected, SHARD_PORTS);
    assert_eq!(seen.fetched.len(), PARTITIONS as usize, "one fetch per shard: {:?}", seen.fetched);
    for &(port, partition) in &seen.fetched {
        assert_eq!(port, SHARD_PORTS[owner(partition)], "partition {partition} fetched on port {port}");
    }
}

/// Guards the consumer's fallbacks: a broker without shard ports is read over one connection
/// to the bootstrap address, and a shard port that refuses connections is replaced by one.
#[test]
fn the_consumer_falls_back_to_the_bootstrap_address() {
    let rule: ConnectRule = |port, _, seen| Ok(open(broker(port, Rc::clone(seen), &[])));
    let (seen, connections) = consume_once(&[], rule);
    let seen = seen.borrow();
    assert_eq!((connections, seen.connected.as_slice()), (1, &[BOOTSTRAP_PORT][..]));
    assert!(seen.fetched.iter().all(|&(port, _)| port == BOOTSTRAP_PORT), "{:?}", seen.fetched);
    assert_eq!(seen.fetched.len(), PARTITIONS as usize);

    let rule: ConnectRule = |port, _, seen| {
        if port == SHARD_PORTS[1] {
            refused()
        } else {
            Ok(open(broker(port, Rc::clone(seen), &SHARD_PORTS)))
        }
    };
    let (seen, connections) = consume_once(&SHARD_PORTS, rule);
    let seen = seen.borrow();
    assert_eq!(connections, 2);
    assert_eq!(seen.connected, [SHARD_PORTS[0], SHARD_PORTS[1], BOOTSTRAP_PORT]);
    for &(port, partition) in &seen.fetched {
        let expected = if owner(partition) == 0 { SHARD_PORTS[0] } else { BOOTSTRAP_PORT };
        assert_eq!(port, expected, "partition {partition}");
    }
}
