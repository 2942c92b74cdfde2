//! The idempotent producer end to end against a real broker: answers lost to dropped
//! connections (through a TCP proxy that cuts the connection after forwarding a produce request
//! and before forwarding its answer), a broker `kill -9` and restart in the middle of a run, and
//! the raw protocol rules (duplicate, gap, fenced epoch, unique producer ids).

use std::collections::{BTreeMap, HashSet};
use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use ringmq::client::{
    AccumulatorConfig, Backoff, ConnectionConfig, Consumer, ConsumerConfig, Producer, ProducerConfig, SeekTo,
};
use ringmq::model::{PartitionId, ProducerEpoch, ProducerId, TimestampMs};
use ringmq::protocol::{ApiKey, ErrorCode, FrameDecoder, FrameStatus, InitProducerIdRequest, ProduceRequest};
use ringmq::storage::batch::{BatchBuilder, BatchBuilderConfig, BatchHeader};

use crate::broker_support::Broker;

const IO_POLL: Duration = Duration::from_millis(50);

/// What the proxy shares between its threads and the test.
struct ProxyState {
    upstream: Mutex<SocketAddr>,
    /// Produce requests forwarded so far, over all connections.
    produce_requests: AtomicUsize,
    /// 1-based numbers of the produce requests whose answer is not forwarded: the proxy cuts
    /// both connections instead.
    lose_answers_to: Vec<usize>,
    answers_lost: AtomicUsize,
    /// While false, new connections wait before connecting upstream.
    gate_open: AtomicBool,
    /// Close the gate when an answer is lost (the test reopens it).
    close_gate_on_loss: bool,
    losses: Mutex<Option<mpsc::Sender<usize>>>,
    stop: AtomicBool,
}

/// A TCP proxy on 127.0.0.1 in front of the broker; see [`ProxyState`].
struct Proxy {
    address: SocketAddr,
    state: Arc<ProxyState>,
    acceptor: Option<JoinHandle<()>>,
}

impl Proxy {
    fn start(
        upstream: SocketAddr,
        lose_answers_to: Vec<usize>,
        close_gate_on_loss: bool,
    ) -> (Proxy, mpsc::Receiver<usize>) {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the proxy");
        listener.set_nonblocking(true).expect("non-blocking accept");
        let address = listener.local_addr().expect("proxy address");
        let (losses, lost) = mpsc::channel();
        let state = Arc::new(ProxyState {
            upstream: Mutex::new(upstream),
            produce_requests: AtomicUsize::new(0),
            lose_answers_to,
            answers_lost: AtomicUsize::new(0),
            gate_open: AtomicBool::new(true),
            close_gate_on_loss,
            losses: Mutex::new(Some(losses)),
            stop: AtomicBool::new(false),
        });
        let shared = Arc::clone(&state);
        let acceptor = std::thread::spawn(move || {
            let mut connections = Vec::new();
            while !shared.stop.load(Ordering::SeqCst) {
                match listener.accept() {
                    Ok((client, _)) => {
                        let shared = Arc::clone(&shared);
                        connections.push(std::thread::spawn(move || serve_connection(client, shared)));
                    }
                    Err(error) if error.kind() == ErrorKind::WouldBlock => std::thread::sleep(Duration::from_millis(5)),
                    Err(_) => break,
                }
            }
            for connection in connections {
                let _ = connection.join();
            }
        });
        (Proxy { address, state, acceptor: Some(acceptor) }, lost)
    }

    fn answers_lost(&self) -> usize {
        self.state.answers_lost.load(Ordering::SeqCst)
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.state.stop.store(true, Ordering::SeqCst);
        self.state.gate_open.store(true, Ordering::SeqCst);
        if let Some(acceptor) = self.acceptor.take() {
            let _ = acceptor.join();
        }
    }
}

/// Forwards one client connection: requests up, answers down, frame by frame.
fn serve_connection(client: TcpStream, state: Arc<ProxyState>) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !state.gate_open.load(Ordering::SeqCst) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    let upstream_address = *state.upstream.lock().unwrap();
    let Ok(upstream) = TcpStream::connect(upstream_address) else {
        let _ = client.shutdown(Shutdown::Both);
        return;
    };
    let doomed: Arc<Mutex<HashSet<u32>>> = Arc::default();
    let (client_reader, upstream_writer) = (client.try_clone().unwrap(), upstream.try_clone().unwrap());
    let up = {
        let (state, doomed) = (Arc::clone(&state), Arc::clone(&doomed));
        std::thread::spawn(move || {
            forward(client_reader, upstream_writer, &state, |header| {
                if header.api_key == ApiKey::Produce.as_u16() {
                    let number = state.produce_requests.fetch_add(1, Ordering::SeqCst) + 1;
                    if state.lose_answers_to.contains(&number) {
                        doomed.lock().unwrap().insert(header.correlation_id);
                    }
                }
                true
            })
        })
    };
    let (upstream_reader, client_writer) = (upstream.try_clone().unwrap(), client.try_clone().unwrap());
    forward(upstream_reader, client_writer, &state, |header| {
        if !doomed.lock().unwrap().contains(&header.correlation_id) {
            return true;
        }
        let lost = state.answers_lost.fetch_add(1, Ordering::SeqCst) + 1;
        if state.close_gate_on_loss {
            state.gate_open.store(false, Ordering::SeqCst);
        }
        if let Some(losses) = state.losses.lock().unwrap().as_ref() {
            let _ = losses.send(lost);
        }
        false
    });
    let _ = client.shutdown(Shutdown::Both);
    let _ = upstream.shutdown(Shutdown::Both);
    let _ = up.join();
}

/// Copies whole frames from `from` to `to` while `pass` says so; returns at end of stream, on
/// an error, when `pass` refuses a frame, or when the proxy stops.
fn forward(
    mut from: TcpStream,
    mut to: TcpStream,
    state: &ProxyState,
    mut pass: impl FnMut(&ringmq::protocol::FrameHeader) -> bool,
) {
    from.set_read_timeout(Some(IO_POLL)).unwrap();
    let decoder = FrameDecoder::default();
    let mut buffer = BytesMut::new();
    let mut chunk = vec![0u8; 64 * 1024];
    while !state.stop.load(Ordering::SeqCst) {
        match from.read(&mut chunk) {
            Ok(0) => return,
            Ok(read) => buffer.extend_from_slice(&chunk[..read]),
            Err(error) if matches!(error.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => continue,
            Err(_) => return,
        }
        loop {
            let header = match decoder.status(&buffer) {
                Ok(FrameStatus::Ready(header)) => header,
                Ok(FrameStatus::NeedMore(_)) => break,
                Err(_) => return,
            };
            let frame = buffer.split_to(header.frame_bytes() as usize);
            if !pass(&header) {
                let _ = to.shutdown(Shutdown::Both);
                let _ = from.shutdown(Shutdown::Both);
                return;
            }
            if to.write_all(&frame).is_err() {
                return;
            }
        }
    }
}

fn producer_config() -> ProducerConfig {
    ProducerConfig {
        batching: AccumulatorConfig { batch_bytes: 1024, linger: Duration::from_millis(1) },
        retries_max: 30,
        backoff: Backoff { initial: Duration::from_millis(20), max: Duration::from_millis(1_000) },
        ..ProducerConfig::default()
    }
}

fn connection_config() -> ConnectionConfig {
    ConnectionConfig { request_timeout: Duration::from_secs(15), ..ConnectionConfig::default() }
}

/// Sends `count` keyed records (`value = index`) through `address` with reconnection; returns
/// the producer id and epoch it had after its first send and at the end.
fn produce_all(
    address: SocketAddr,
    topic: &'static str,
    keys: usize,
    count: usize,
) -> Vec<(ProducerId, ProducerEpoch)> {
    ringmq::runtime::run_local(move || async move {
        let connection = ringmq::runtime::open_connection(address, connection_config()).await.expect("connect");
        let connector = ringmq::runtime::tcp_connector(address, connection_config());
        let mut producer = Producer::new(connection, producer_config()).with_reconnect(connector);
        assert!(producer.is_idempotent());
        let mut identities = Vec::new();
        let mut deliveries = Vec::new();
        for index in 0..count {
            let key = Bytes::from(format!("key-{}", index % keys));
            let delivery = producer.send(topic, Some(key), Bytes::from(index.to_string()), Vec::new()).await;
            deliveries.push(delivery.expect("send"));
            if index == 0 {
                identities.extend(producer.producer_identity());
            }
        }
        producer.flush().await.expect("flush");
        for delivery in deliveries {
            delivery.await.expect("every record is acknowledged");
        }
        identities.extend(producer.producer_identity());
        identities
    })
    .expect("client executor")
}

/// Reads every partition of `topic` from the broker: per partition, the values in offset
/// order; and the sum of the partitions' log end offsets.
fn consume_all(
    address: SocketAddr,
    topic: &'static str,
    partitions: u32,
    count: usize,
) -> (BTreeMap<u32, Vec<usize>>, u64) {
    ringmq::runtime::run_local(move || async move {
        let connection = ringmq::runtime::open_connection(address, ConnectionConfig::default()).await.unwrap();
        let mut consumer = Consumer::new(connection, ConsumerConfig { max_wait_ms: 100, ..ConsumerConfig::default() });
        let all: Vec<_> = (0..partitions).map(|p| (topic, PartitionId(p))).collect();
        consumer.assign(&all);
        consumer.seek_all(SeekTo::Earliest).await.unwrap();
        let mut by_partition: BTreeMap<u32, Vec<usize>> = BTreeMap::new();
        let mut received = 0;
        let deadline = Instant::now() + Duration::from_secs(30);
        while received < count && Instant::now() < deadline {
            for record in consumer.poll().await.unwrap() {
                let value: usize = std::str::from_utf8(&record.value).unwrap().parse().unwrap();
                by_partition.entry(record.partition.0).or_default().push(value);
                received += 1;
            }
        }
        let mut log_end_total = 0;
        for partition in 0..partitions {
            log_end_total += consumer.seek(topic, PartitionId(partition), SeekTo::Latest).await.unwrap().0;
        }
        (by_partition, log_end_total)
    })
    .unwrap()
}

/// Exactly one copy of each of `count` records, each partition in send order.
fn assert_exactly_once_in_order(by_partition: &BTreeMap<u32, Vec<usize>>, log_end_total: u64, count: usize) {
    assert_eq!(log_end_total, count as u64, "the partitions hold exactly {count} records: no duplicate");
    let mut seen = vec![false; count];
    for (partition, values) in by_partition {
        assert!(values.windows(2).all(|w| w[0] < w[1]), "partition {partition} is in send order");
        for &value in values {
            assert!(!seen[value], "record {value} appears twice");
            seen[value] = true;
        }
    }
    assert!(seen.iter().all(|&seen| seen), "every record arrived");
}

fn broker_with_topic(dir: &std::path::Path, topic: &str, partitions: u32) -> Broker {
    let broker = Broker::start(dir, &["--cores", "2"]);
    assert_eq!(broker.client().create_topic(topic, partitions), ErrorCode::None);
    broker
}

/// The producer kept one id and epoch from its first send to its end, and the broker at
/// `address` holds each of the `count` records exactly once, in order.
fn assert_one_identity_and_exactly_once(
    identities: &[(ProducerId, ProducerEpoch)],
    address: SocketAddr,
    topic: &'static str,
    partitions: u32,
    count: usize,
) {
    assert_eq!(identities.len(), 2);
    assert_eq!(identities[0], identities[1], "one producer id and epoch for the whole run");
    let (by_partition, log_end_total) = consume_all(address, topic, partitions, count);
    assert_exactly_once_in_order(&by_partition, log_end_total, count);
}

/// Answers to several produce requests are lost after the broker appended them (the proxy
/// cuts the connection instead of forwarding them); the producer reconnects, sends the same
/// batches again, and the broker drops them as duplicates: each record exactly once, in order.
#[test]
fn lost_answers_are_retried_without_duplicates() {
    const TOPIC: &str = "idem-proxy";
    const PARTITIONS: u32 = 4;
    const COUNT: usize = 3_000;
    let dir = tempfile::tempdir().unwrap();
    let broker = broker_with_topic(dir.path(), TOPIC, PARTITIONS);
    let (proxy, _lost) = Proxy::start(broker.address, vec![3, 10, 20, 35, 50], false);
    let identities = produce_all(proxy.address, TOPIC, 40, COUNT);
    assert!(proxy.answers_lost() >= 3, "the proxy cut {} connections", proxy.answers_lost());
    assert_one_identity_and_exactly_once(&identities, broker.address, TOPIC, PARTITIONS, COUNT);
    drop(proxy);
    broker.stop();
}

/// The broker is killed (-9) right after it answered a produce whose answer the proxy held
/// back, and restarted on the same data: the producer keeps its id and epoch, reconnects, and
/// its retry is recognised as a duplicate from the state replayed from the log.
#[test]
fn retries_after_a_broker_crash_are_recognised_as_duplicates() {
    const TOPIC: &str = "idem-crash";
    const PARTITIONS: u32 = 2;
    const COUNT: usize = 2_000;
    let dir = tempfile::tempdir().unwrap();
    let broker = broker_with_topic(dir.path(), TOPIC, PARTITIONS);
    let (proxy, lost) = Proxy::start(broker.address, vec![8], true);
    let proxy_address = proxy.address;
    let producer = std::thread::spawn(move || produce_all(proxy_address, TOPIC, 10, COUNT));
    lost.recv_timeout(Duration::from_secs(60)).expect("the proxy held back an answer");
    broker.kill();
    let broker = Broker::start(dir.path(), &["--cores", "2"]);
    *proxy.state.upstream.lock().unwrap() = broker.address;
    proxy.state.gate_open.store(true, Ordering::SeqCst);
    let identities = producer.join().expect("the producer thread");
    assert_one_identity_and_exactly_once(&identities, broker.address, TOPIC, PARTITIONS, COUNT);
    drop(proxy);
    broker.stop();
}

fn idempotent_batch(producer_id: i64, epoch: i16, base_sequence: i32, records: usize) -> Bytes {
    let mut builder = BatchBuilder::new(BatchBuilderConfig {
        producer_id: ProducerId(producer_id),
        producer_epoch: ProducerEpoch(epoch),
        base_sequence,
        ..BatchBuilderConfig::default()
    });
    for i in 0..records {
        builder.push(TimestampMs::now(), None, format!("{base_sequence}-{i}").as_bytes(), &[]);
    }
    builder.build().expect("a test batch builds")
}

fn init_producer_id(client: &mut crate::broker_support::RawClient) -> (i64, i16) {
    let response = client.call(&InitProducerIdRequest::default(), Vec::new()).body;
    assert_eq!(ErrorCode::from_u16(response.error_code), ErrorCode::None);
    (response.producer_id, response.producer_epoch)
}

/// The broker's rules on the wire: a duplicate (also pipelined, also after a kill -9 and
/// restart) gets the original offset and no second copy; a gap gets OutOfOrderSequence; an
/// older epoch gets ProducerFenced; InitProducerId never hands out an id twice, across a crash.
#[test]
fn the_broker_drops_duplicates_refuses_gaps_and_fences_old_epochs() {
    const TOPIC: &str = "idem-raw";
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start(dir.path(), &["--cores", "2"]);
    let mut client = broker.client();
    assert_eq!(client.create_topic(TOPIC, 1), ErrorCode::None);
    let (id, epoch) = init_producer_id(&mut client);
    assert_eq!(epoch, 0);
    let (other, _) = init_producer_id(&mut client);
    assert_ne!(id, other);

    let first = idempotent_batch(id, 0, 0, 3);
    assert_eq!(client.produce(TOPIC, 0, std::slice::from_ref(&first), -1), (ErrorCode::None, 0));
    assert_eq!(
        client.produce(TOPIC, 0, std::slice::from_ref(&first), -1),
        (ErrorCode::None, 0),
        "duplicate: original offset"
    );
    let second = idempotent_batch(id, 0, 3, 2);
    // Pipelined: the same batch twice before either answer. One append, one duplicate.
    let request = |batch: &Bytes| ProduceRequest {
        acks: -1,
        timeout_ms: 10_000,
        topics: vec![ringmq::protocol::ProduceTopic {
            name: TOPIC.into(),
            partitions: vec![ringmq::protocol::ProducePartition {
                partition: 0,
                payload_offset: 0,
                payload_length: batch.len() as u32,
            }],
        }],
    };
    client.send(&request(&second), vec![second.clone()]);
    client.send(&request(&second), vec![second.clone()]);
    for _ in 0..2 {
        let answer = client.receive::<ProduceRequest>().expect("produce answer").body.topics[0].partitions[0].clone();
        assert_eq!((ErrorCode::from_u16(answer.error_code), answer.base_offset), (ErrorCode::None, 3));
    }
    let (code, _) = client.produce(TOPIC, 0, &[idempotent_batch(id, 0, 9, 1)], -1);
    assert_eq!(code, ErrorCode::OutOfOrderSequence, "a gap");
    let bumped = idempotent_batch(id, 1, 0, 1);
    assert_eq!(client.produce(TOPIC, 0, std::slice::from_ref(&bumped), -1), (ErrorCode::None, 5), "new epoch");
    let (code, _) = client.produce(TOPIC, 0, &[idempotent_batch(id, 0, 5, 1)], -1);
    assert_eq!(code, ErrorCode::ProducerFenced, "an older epoch");
    let (_, high_watermark, batches) = client.fetch(TOPIC, 0, 0, 0, 0);
    assert_eq!(high_watermark, 6, "3 + 2 + 1 records: no duplicate was appended");
    assert_eq!(batches.len(), 3);

    drop(client);
    broker.kill();
    let broker = Broker::start(dir.path(), &["--cores", "2"]);
    let mut client = broker.client();
    let (after, _) = init_producer_id(&mut client);
    assert!(after > id && after > other, "ids are not reused after a crash: {after} after {id} and {other}");
    // The state was rebuilt from the log: the duplicate is still recognised, the fence holds.
    assert_eq!(client.produce(TOPIC, 0, &[bumped], -1), (ErrorCode::None, 5), "duplicate after restart");
    let (code, _) = client.produce(TOPIC, 0, &[idempotent_batch(id, 0, 5, 1)], -1);
    assert_eq!(code, ErrorCode::ProducerFenced);
    assert_eq!(client.produce(TOPIC, 0, &[idempotent_batch(id, 1, 1, 1)], -1), (ErrorCode::None, 6), "continues");
    let (_, high_watermark, batches) = client.fetch(TOPIC, 0, 0, 0, 0);
    assert_eq!(high_watermark, 7);
    let headers: Vec<BatchHeader> = batches.iter().map(|b| BatchHeader::parse(b).unwrap()).collect();
    assert!(headers.iter().all(|h| h.producer_id == ProducerId(id)));
    broker.stop();
}

/// Bad input to the producer-id API and to idempotent batches gets a clear code, and the
/// broker keeps serving: an empty or oversized transactional id is `InvalidTransactionalId`, a
/// transactional id (transactions are not built yet) `InvalidRequest`, a negative sequence
/// `OutOfOrderSequence`; nothing is appended for any of them.
#[test]
fn bad_idempotence_input_gets_clear_codes() {
    const TOPIC: &str = "idem-bad";
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start(dir.path(), &["--cores", "2"]);
    let mut client = broker.client();
    assert_eq!(client.create_topic(TOPIC, 1), ErrorCode::None);
    let init = |client: &mut crate::broker_support::RawClient, transactional_id: Option<String>| {
        let request = InitProducerIdRequest { transactional_id, ..InitProducerIdRequest::default() };
        let response = client.call(&request, Vec::new()).body;
        (ErrorCode::from_u16(response.error_code), response.producer_id)
    };
    assert_eq!(init(&mut client, Some(String::new())), (ErrorCode::InvalidTransactionalId, -1));
    assert_eq!(init(&mut client, Some("x".repeat(100_000))), (ErrorCode::InvalidTransactionalId, -1));
    assert_eq!(init(&mut client, Some("tx-1".into())), (ErrorCode::InvalidRequest, -1));
    let (id, _) = init_producer_id(&mut client);
    let (code, _) = client.produce(TOPIC, 0, &[idempotent_batch(id, 0, -5, 2)], -1);
    assert_eq!(code, ErrorCode::OutOfOrderSequence, "a negative sequence");
    assert_eq!(client.produce(TOPIC, 0, &[idempotent_batch(id, 0, 0, 2)], -1), (ErrorCode::None, 0), "still serving");
    let (_, high_watermark, _) = client.fetch(TOPIC, 0, 0, 0, 0);
    assert_eq!(high_watermark, 2, "only the good batch was appended");
    broker.stop();
}
