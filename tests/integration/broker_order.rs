//! Per-key order across many partitions, through the real client: records with the same key
//! land in the partition the key hashes to, and a consumer reads each key's records in the
//! order they were sent. Guards the producer's partitioner and batching, the broker's per
//! partition ordering, and the consumer's decoding, together.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use bytes::Bytes;
use ringmq::client::{
    partition_for_key, AccumulatorConfig, ConnectionConfig, Consumer, ConsumerConfig, Producer, ProducerConfig, SeekTo,
};
use ringmq::model::PartitionId;
use ringmq::protocol::ErrorCode;

use crate::broker_support::Broker;

const PARTITIONS: u32 = 16;
const KEYS: usize = 40;
const RECORDS: usize = 3000;

#[test]
fn records_of_one_key_stay_in_order_in_their_partition() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start(dir.path(), &["--cores", "2", "--fsync", "never"]);
    assert_eq!(broker.client().create_topic("keyed", PARTITIONS), ErrorCode::None);
    let address = broker.address;
    let received = ringmq::runtime::run_local(move || async move {
        let connection = ringmq::runtime::open_connection(address, ConnectionConfig::default()).await.unwrap();
        let config = ProducerConfig {
            batching: AccumulatorConfig { batch_bytes: 4096, linger: Duration::from_millis(2) },
            ..ProducerConfig::default()
        };
        let mut producer = Producer::new(connection, config);
        let mut deliveries = Vec::new();
        for sequence in 0..RECORDS {
            let key = format!("key-{}", sequence % KEYS);
            let value = format!("{key}:{sequence}");
            let delivery =
                producer.send("keyed", Some(Bytes::from(key)), Bytes::from(value), Vec::new()).await.unwrap();
            deliveries.push(delivery);
        }
        producer.flush().await.unwrap();
        for delivery in deliveries {
            delivery.await.expect("every record is acknowledged");
        }

        let connection = ringmq::runtime::open_connection(address, ConnectionConfig::default()).await.unwrap();
        let mut consumer = Consumer::new(connection, ConsumerConfig { max_wait_ms: 100, ..ConsumerConfig::default() });
        let all: Vec<_> = (0..PARTITIONS).map(|p| ("keyed", PartitionId(p))).collect();
        consumer.assign(&all);
        consumer.seek_all(SeekTo::Earliest).await.unwrap();
        let mut received = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(30);
        while received.len() < RECORDS && Instant::now() < deadline {
            received.extend(consumer.poll().await.unwrap());
        }
        received
    })
    .unwrap();
    assert_eq!(received.len(), RECORDS, "every record is consumed once");
    let mut last_sequence: HashMap<String, (PartitionId, usize)> = HashMap::new();
    for record in &received {
        let text = String::from_utf8(record.value.to_vec()).unwrap();
        let (key, sequence) = text.split_once(':').unwrap();
        let sequence: usize = sequence.parse().unwrap();
        assert_eq!(record.key.as_deref(), Some(key.as_bytes()));
        assert_eq!(record.partition, partition_for_key(key.as_bytes(), PARTITIONS), "{key} is in its hash partition");
        if let Some(&(partition, previous)) = last_sequence.get(key) {
            assert_eq!(partition, record.partition);
            assert!(sequence > previous, "{key}: {sequence} after {previous}");
        }
        last_sequence.insert(key.to_string(), (record.partition, sequence));
    }
    assert_eq!(last_sequence.len(), KEYS);
    broker.stop();
}
