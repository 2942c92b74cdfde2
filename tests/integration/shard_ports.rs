//! Shard ports on a real two-shard broker: Metadata lists one port per shard (and still answers
//! v0 without them), each served by its shard; a producer on one shard's port produces to partitions of both shards; the
//! shard-aware producer spreads records over the shard ports; a consumer on the shared port
//! reads everything back; the shard-aware consumer reads each partition from its owner; a
//! fetch spanning both shards answers with the one that has data. A shard port that cannot be
//! bound is one clear error at start.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::process::Command;
use std::time::{Duration, Instant};

use bytes::Bytes;
use ringmq::client::{
    AccumulatorConfig, ConnectionConfig, Consumer, ConsumerConfig, Producer, ProducerConfig, SeekTo,
    ShardAwareConsumer, ShardAwareProducer,
};
use ringmq::model::PartitionId;
use ringmq::protocol::{
    check_response_header, decode_envelope_owned, encode_request, ApiKey, ErrorCode, FetchPartition, FetchRequest,
    FetchTopic, MetadataRequest, MetadataResponse, MetadataResponseV0,
};
use ringmq::runtime::{open_connection, run_local, shard_connector};

use crate::broker_support::{batch, split_batches, Broker, RawClient};

const TOPIC: &str = "sharded";
const PARTITIONS: u32 = 4;
const RECORDS_PER_PRODUCER: usize = 200;

/// Metadata v1 of `TOPIC` through `client`.
fn metadata(client: &mut RawClient) -> MetadataResponse {
    client.call(&MetadataRequest { topics: vec![TOPIC.into()] }, Vec::new()).body
}

/// One partition of shard 0 and one of shard 1 in `TOPIC`'s Metadata.
fn one_partition_per_shard(response: &MetadataResponse) -> (u32, u32) {
    let owners: Vec<u32> = response.topics[0].partitions.iter().map(|partition| partition.shard).collect();
    let on_shard = |shard: u32| owners.iter().position(|&owner| owner == shard).map(|p| p as u32);
    let (Some(zero), Some(one)) = (on_shard(0), on_shard(1)) else {
        panic!("4 partitions over 2 shards leave each shard one: {owners:?}");
    };
    (zero, one)
}

/// A two-shard broker (`--fsync never`, plus `extra` flags) with `TOPIC` created; its client
/// and `TOPIC`'s Metadata.
fn two_shard_broker(dir: &std::path::Path, extra: &[&str]) -> (Broker, RawClient, MetadataResponse) {
    let mut flags = vec!["--cores", "2", "--fsync", "never"];
    flags.extend_from_slice(extra);
    let broker = Broker::start(dir, &flags);
    let mut client = broker.client();
    assert_eq!(client.create_topic(TOPIC, PARTITIONS), ErrorCode::None);
    let response = metadata(&mut client);
    (broker, client, response)
}

/// Guards the broker side of shard ports and both producers over them, end to end: a request
/// on a shard port for another shard's partition is still served (routed over the mesh), the
/// shard-aware producer delivers every record with keyed records on their hash partition, and
/// the shared port's consumer sees every record of both producers exactly once.
#[test]
fn producers_on_shard_ports_are_read_back_on_the_shared_port() {
    let dir = tempfile::tempdir().unwrap();
    let accepts = "info,ringmq::server::shard_main=debug";
    let (broker, mut client, response) = two_shard_broker(dir.path(), &["--log-level", accepts]);
    assert_eq!(response.shard_count, 2);
    let ports = response.shard_ports.clone();
    assert_eq!(ports.len(), 2, "one port per shard: {ports:?}");
    assert!(ports.iter().all(|&port| port != 0 && port != broker.address.port()), "{ports:?}");
    assert_ne!(ports[0], ports[1]);
    let (own, other) = one_partition_per_shard(&response);

    // The same request on a shard port answers the same (any API works on any port), and the
    // connection is served by that shard (its accept is logged with the client's port).
    let mut log = Vec::new();
    for (shard, &port) in ports.iter().enumerate() {
        let mut on_shard_port = RawClient::connect(SocketAddr::new(broker.address.ip(), port));
        assert_eq!(metadata(&mut on_shard_port), response);
        let client_port = on_shard_port.stream.local_addr().unwrap().port();
        let accepted = format!("connection accepted shard={shard} peer=127.0.0.1:{client_port}");
        // The line was written before the answer; it reaches us through a pipe and a thread.
        let deadline = Instant::now() + Duration::from_secs(10);
        while !log.iter().any(|line: &String| line.contains(&accepted)) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
            log.extend(broker.log());
        }
        assert!(log.iter().any(|line| line.contains(&accepted)), "no '{accepted}' in the broker's log");
    }
    assert_metadata_v0_is_served(&mut client, &response);

    let address = broker.address;
    let shard_zero = SocketAddr::new(address.ip(), ports[0]);
    let (sent, received) = run_local(move || async move {
        let config = ProducerConfig {
            batching: AccumulatorConfig { batch_bytes: 4096, linger: Duration::from_millis(2) },
            ..ProducerConfig::default()
        };
        let mut sent: HashMap<u32, usize> = HashMap::new();
        let mut deliveries = Vec::new();

        // A plain producer on shard 0's port: its own partition and the other shard's.
        let connection = open_connection(shard_zero, ConnectionConfig::default()).await.unwrap();
        let mut producer = Producer::new(connection, config);
        for index in 0..RECORDS_PER_PRODUCER {
            let partition = PartitionId(if index % 2 == 0 { own } else { other });
            let record = ringmq::client::producer::ProducerRecord {
                topic: TOPIC.into(),
                partition: Some(partition),
                value: Bytes::from(format!("plain-{index}")),
                ..Default::default()
            };
            deliveries.push(producer.send_record(record).await.unwrap());
        }
        producer.flush().await.unwrap();

        // The shard-aware producer from the shared port, null and keyed records.
        let bootstrap = open_connection(address, ConnectionConfig::default()).await.unwrap();
        let mut shard_aware =
            ShardAwareProducer::new(bootstrap, address, config, shard_connector(ConnectionConfig::default()));
        assert_eq!(shard_aware.partition_count(TOPIC).await.unwrap(), PARTITIONS);
        assert_eq!(shard_aware.shard_ports(), ports);
        let mut keyed = Vec::new();
        for index in 0..RECORDS_PER_PRODUCER {
            let key = (index % 3 == 0).then(|| Bytes::from(format!("key-{index}")));
            let value = Bytes::from(format!("aware-{index}"));
            let delivery = shard_aware.send(TOPIC, key.clone(), value, Vec::new()).await.unwrap();
            if index % 20 == 0 {
                shard_aware.poll_until(Instant::now() + Duration::from_millis(1)).await.unwrap();
            }
            match key {
                Some(key) => keyed.push((key, delivery)),
                None => deliveries.push(delivery),
            }
        }
        shard_aware.flush().await.unwrap();
        assert_eq!(shard_aware.outstanding(), 0);
        for (key, delivery) in keyed {
            let delivered = delivery.await.expect("a keyed record is acknowledged");
            assert_eq!(delivered.partition, ringmq::client::partition_for_key(&key, PARTITIONS));
            *sent.entry(delivered.partition.0).or_default() += 1;
        }
        for delivery in deliveries {
            let delivered = delivery.await.expect("every record is acknowledged");
            assert!(delivered.offset.is_some());
            *sent.entry(delivered.partition.0).or_default() += 1;
        }

        let connection = open_connection(address, ConnectionConfig::default()).await.unwrap();
        let mut consumer = Consumer::new(connection, ConsumerConfig { max_wait_ms: 100, ..ConsumerConfig::default() });
        let all: Vec<_> = (0..PARTITIONS).map(|partition| (TOPIC, PartitionId(partition))).collect();
        consumer.assign(&all);
        consumer.seek_all(SeekTo::Earliest).await.unwrap();
        let mut received = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(30);
        while received.len() < 2 * RECORDS_PER_PRODUCER && Instant::now() < deadline {
            received.extend(consumer.poll().await.unwrap());
        }
        (sent, received)
    })
    .unwrap();

    assert_eq!(received.len(), 2 * RECORDS_PER_PRODUCER, "every record is consumed once");
    let mut per_partition: HashMap<u32, usize> = HashMap::new();
    let mut values: Vec<String> = Vec::new();
    for record in &received {
        *per_partition.entry(record.partition.0).or_default() += 1;
        values.push(String::from_utf8(record.value.to_vec()).unwrap());
    }
    assert_eq!(per_partition, sent, "each partition holds what was acknowledged for it");
    assert!(per_partition.get(&own).is_some_and(|&count| count >= RECORDS_PER_PRODUCER / 2));
    assert!(per_partition.get(&other).is_some_and(|&count| count >= RECORDS_PER_PRODUCER / 2));
    values.sort();
    values.dedup();
    assert_eq!(values.len(), 2 * RECORDS_PER_PRODUCER, "no record twice");
    broker.stop();
}

/// A v0 Metadata request (an older client) gets the v0 response: the same without shard ports.
fn assert_metadata_v0_is_served(client: &mut RawClient, v1: &MetadataResponse) {
    let request = MetadataRequest { topics: vec![TOPIC.into()] };
    let mut frame = encode_request(77, &request, Vec::new()).unwrap().to_vec();
    // The frame header's api_version (bytes 14..16, little endian; PROTOCOL.md §1).
    frame[14..16].copy_from_slice(&0u16.to_le_bytes());
    std::io::Write::write_all(&mut client.stream, &frame).unwrap();
    let (header, envelope, _) = client.read_frame().unwrap();
    assert_eq!((header.correlation_id, header.api_version), (77, 0));
    assert!(!check_response_header(&header, ApiKey::Metadata).unwrap(), "not an error response");
    let v0: MetadataResponseV0 = decode_envelope_owned(&ringmq::protocol::aligned_copy(&envelope)).unwrap();
    assert_eq!(v0, MetadataResponseV0::from(v1.clone()));
}

/// Guards the start-up contract for shard ports: a port already taken is one clear line naming
/// the shard, and a non-zero exit, not a panic.
#[test]
fn a_taken_shard_port_is_a_clear_start_up_error() {
    let dir = tempfile::tempdir().unwrap();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port().to_string();
    let output = Command::new(env!("CARGO_BIN_EXE_ringmq"))
        .args(["serve", "--listen", "127.0.0.1:0", "--cores", "2", "--shard-port-base", &port, "--data-dir"])
        .arg(dir.path())
        .output()
        .expect("running ringmq serve");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains(&format!("127.0.0.1:{port} (the port of shard 0)")), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    drop(taken);
}

/// Guards the fetch that spans two shards: once one shard's partition meets `min_bytes`, the
/// answer goes out with its batch and the other shard's partition is left out (PROTOCOL.md),
/// not waited for; the cancelled long poll leaves nothing behind, so a later fetch of that
/// partition still waits for, and returns, the next batch produced to it.
#[test]
fn a_fetch_spanning_two_shards_answers_with_the_shard_that_has_data() {
    let dir = tempfile::tempdir().unwrap();
    let (broker, mut client, response) = two_shard_broker(dir.path(), &[]);
    let (quiet, busy) = one_partition_per_shard(&response);

    let mut fetcher = broker.client();
    let both = FetchRequest {
        max_wait_ms: 15_000,
        min_bytes: 1,
        max_bytes: 1 << 20,
        topics: vec![FetchTopic {
            name: TOPIC.into(),
            partitions: [quiet, busy]
                .iter()
                .map(|&partition| FetchPartition { partition, fetch_offset: 0, partition_max_bytes: 1 << 20 })
                .collect(),
        }],
    };
    let sent_at = Instant::now();
    fetcher.send(&both, Vec::new());
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(client.produce(TOPIC, busy, &[batch(7, 3)], 1).0, ErrorCode::None);
    let response = fetcher.receive::<FetchRequest>().expect("a fetch answer");
    // Far below the 15 s wait: the answer went out on the busy shard's data.
    assert!(sent_at.elapsed() < Duration::from_secs(10), "answered after {:?}", sent_at.elapsed());
    let answers = &response.body.topics[0].partitions;
    let busy_answer = answers.iter().find(|p| p.partition == busy).expect("the busy partition is answered");
    assert_eq!(ErrorCode::from_u16(busy_answer.error_code), ErrorCode::None);
    let section = response
        .payload
        .slice(busy_answer.payload_offset as usize..(busy_answer.payload_offset + busy_answer.payload_length) as usize);
    assert_eq!(split_batches(section).len(), 1);
    // The quiet shard was still waiting (15 s, no data): cancelled, and not waited for.
    assert!(answers.iter().all(|p| p.partition != quiet), "the quiet partition is left out: {answers:?}");

    let address = broker.address;
    let waiter = std::thread::spawn(move || RawClient::connect(address).fetch(TOPIC, quiet, 0, 15_000, 1));
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(client.produce(TOPIC, quiet, &[batch(8, 2)], 1).0, ErrorCode::None);
    let (code, high_watermark, batches) = waiter.join().unwrap();
    assert_eq!((code, high_watermark, batches.len()), (ErrorCode::None, 2, 1));
    broker.stop();
}

/// Guards the shard-aware consumer on a real two-shard broker: it opens one connection per
/// owner shard, reads every partition back in offset order from the earliest offset, and keeps
/// a long poll in flight on each shard: a record produced to either shard's partition while it
/// waits is returned by the next poll, long before the fetch's `max_wait_ms`, and nothing is
/// returned twice.
#[test]
fn the_shard_aware_consumer_reads_each_partition_from_its_owner() {
    let dir = tempfile::tempdir().unwrap();
    let (broker, mut client, response) = two_shard_broker(dir.path(), &[]);
    let (first, second) = one_partition_per_shard(&response);
    for partition in 0..PARTITIONS {
        for tag in 0..3 {
            assert_eq!(client.produce(TOPIC, partition, &[batch(tag, 2)], 1).0, ErrorCode::None);
        }
    }

    let address = broker.address;
    let later = move |partition: u32| {
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(300));
            RawClient::connect(address).produce(TOPIC, partition, &[batch(9, 1)], 1).0
        })
    };
    let ports = response.shard_ports.clone();
    run_local(move || async move {
        let bootstrap = open_connection(address, ConnectionConfig::default()).await.unwrap();
        let config = ConsumerConfig { max_wait_ms: 15_000, ..ConsumerConfig::default() };
        let mut consumer =
            ShardAwareConsumer::new(bootstrap, address, config, shard_connector(ConnectionConfig::default()));
        let all: Vec<_> = (0..PARTITIONS).map(|partition| (TOPIC, PartitionId(partition))).collect();
        consumer.assign(&all).await.unwrap();
        assert_eq!(consumer.shard_ports(), ports);
        assert_eq!(consumer.shard_connections(), 2, "one connection per owner shard");
        consumer.seek_all(SeekTo::Earliest).await.unwrap();

        let mut offsets: HashMap<u32, Vec<u64>> = HashMap::new();
        let expected = (PARTITIONS * 6) as usize;
        for _ in 0..100 {
            if offsets.values().map(Vec::len).sum::<usize>() >= expected {
                break;
            }
            for record in consumer.poll().await.unwrap() {
                offsets.entry(record.partition.0).or_default().push(record.offset.0);
            }
        }
        for partition in 0..PARTITIONS {
            assert_eq!(offsets.get(&partition), Some(&(0..6).collect::<Vec<u64>>()), "partition {partition}");
        }

        // Both shards now long-poll; data on one answers, the other's fetch stays in flight.
        for partition in [second, first] {
            let producer = later(partition);
            let started = Instant::now();
            let mut records = Vec::new();
            for _ in 0..10 {
                records.extend(consumer.poll().await.unwrap());
                if !records.is_empty() {
                    break;
                }
            }
            assert!(started.elapsed() < Duration::from_secs(10), "waited {:?}", started.elapsed());
            assert_eq!(producer.join().unwrap(), ErrorCode::None);
            let got: Vec<(u32, u64)> = records.iter().map(|r| (r.partition.0, r.offset.0)).collect();
            assert_eq!(got, [(partition, 6)]);
            assert_eq!(consumer.position(TOPIC, PartitionId(partition)), Some(ringmq::model::Offset(7)));
        }
    })
    .unwrap();
    broker.stop();
}

/// Guards against starving the other shard: with data already there on both shards, a fetch
/// over one shard's own port (its partition answers at once, the other's reply is one mesh hop
/// away) returns both partitions' batches, every time.
#[test]
fn a_fetch_spanning_two_shards_returns_every_shard_that_has_data() {
    let dir = tempfile::tempdir().unwrap();
    let (broker, mut client, response) = two_shard_broker(dir.path(), &[]);
    let (local, remote) = one_partition_per_shard(&response);
    let mut on_shard_zero = RawClient::connect(SocketAddr::new(broker.address.ip(), response.shard_ports[0]));
    for round in 0..20u64 {
        for partition in [local, remote] {
            assert_eq!(client.produce(TOPIC, partition, &[batch(round, 1)], 1).0, ErrorCode::None);
        }
        let request = FetchRequest {
            max_wait_ms: 5_000,
            min_bytes: 1,
            max_bytes: 1 << 20,
            topics: vec![FetchTopic {
                name: TOPIC.into(),
                partitions: [local, remote]
                    .iter()
                    .map(|&partition| FetchPartition { partition, fetch_offset: round, partition_max_bytes: 1 << 20 })
                    .collect(),
            }],
        };
        let answer = on_shard_zero.call(&request, Vec::new()).body;
        let with_data: Vec<u32> =
            answer.topics[0].partitions.iter().filter(|p| p.payload_length > 0).map(|p| p.partition).collect();
        assert_eq!(with_data, [local, remote], "round {round}: both shards' batches");
    }
    broker.stop();
}
