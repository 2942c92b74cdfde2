//! Shard ports on a real two-shard broker: Metadata lists one port per shard (and still answers
//! v0 without them), each served by its shard; a producer on one shard's port produces to partitions of both shards; the
//! shard-aware producer spreads records over the shard ports; a consumer on the shared port
//! reads everything back. A shard port that cannot be bound is one clear error at start.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::process::Command;
use std::time::{Duration, Instant};

use bytes::Bytes;
use ringmq::client::{
    AccumulatorConfig, ConnectionConfig, Consumer, ConsumerConfig, Producer, ProducerConfig, SeekTo, ShardAwareProducer,
};
use ringmq::model::PartitionId;
use ringmq::protocol::{
    check_response_header, decode_envelope_owned, encode_request, ApiKey, ErrorCode, MetadataRequest, MetadataResponse,
    MetadataResponseV0,
};
use ringmq::runtime::{open_connection, run_local, shard_connector};

use crate::broker_support::{Broker, RawClient};

const TOPIC: &str = "sharded";
const PARTITIONS: u32 = 4;
const RECORDS_PER_PRODUCER: usize = 200;

/// Metadata v1 of `TOPIC` through `client`.
fn metadata(client: &mut RawClient) -> MetadataResponse {
    client.call(&MetadataRequest { topics: vec![TOPIC.into()] }, Vec::new()).body
}

/// Guards the broker side of shard ports and both producers over them, end to end: a request
/// on a shard port for another shard's partition is still served (routed over the mesh), the
/// shard-aware producer delivers every record with keyed records on their hash partition, and
/// the shared port's consumer sees every record of both producers exactly once.
#[test]
fn producers_on_shard_ports_are_read_back_on_the_shared_port() {
    let dir = tempfile::tempdir().unwrap();
    let accepts = "info,ringmq::server::shard_main=debug";
    let broker = Broker::start(dir.path(), &["--cores", "2", "--fsync", "never", "--log-level", accepts]);
    let mut client = broker.client();
    assert_eq!(client.create_topic(TOPIC, PARTITIONS), ErrorCode::None);

    let response = metadata(&mut client);
    assert_eq!(response.shard_count, 2);
    let ports = response.shard_ports.clone();
    assert_eq!(ports.len(), 2, "one port per shard: {ports:?}");
    assert!(ports.iter().all(|&port| port != 0 && port != broker.address.port()), "{ports:?}");
    assert_ne!(ports[0], ports[1]);
    let owners: Vec<u32> = response.topics[0].partitions.iter().map(|partition| partition.shard).collect();
    let on_shard = |shard: u32| owners.iter().position(|&owner| owner == shard).map(|p| p as u32);
    let (Some(own), Some(other)) = (on_shard(0), on_shard(1)) else {
        panic!("4 partitions over 2 shards leave each shard one: {owners:?}");
    };

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
