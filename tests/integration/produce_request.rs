//! A produce request that names a partition twice, next to refused partitions: every position
//! is answered, in request order, and a partition named twice gets one answer for both.

use ringmq::protocol::apis::produce::ACKS_ALL;
use ringmq::protocol::{ErrorCode, ProducePartition, ProduceRequest, ProduceTopic, OFFSET_UNKNOWN};

use crate::broker_basic::read_tags;
use crate::broker_support::{batch, Broker};

/// Guards the answers of a multi-partition produce: both batches of a partition named twice are
/// appended in request order and both positions answer the later one's base offset (a refusal
/// of one position loses to the other's append); an unknown topic is refused alone; adjacent
/// entries of one topic share a response entry.
#[test]
fn a_partition_named_twice_is_appended_twice_and_answered_once() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start(dir.path(), &["--cores", "2"]);
    let mut client = broker.client();
    assert_eq!(client.create_topic("dup", 2), ErrorCode::None);
    let batches = [batch(1, 2), batch(2, 1), batch(3, 3), batch(4, 1)];
    let mut offsets = Vec::new();
    let mut payload_bytes = 0u32;
    for b in &batches {
        offsets.push((payload_bytes, b.len() as u32));
        payload_bytes += b.len() as u32;
    }
    let part =
        |partition, (payload_offset, payload_length)| ProducePartition { partition, payload_offset, payload_length };
    let request = ProduceRequest {
        acks: ACKS_ALL,
        timeout_ms: 10_000,
        topics: vec![
            ProduceTopic {
                name: "dup".into(),
                partitions: vec![part(0, offsets[0]), part(1, offsets[1]), part(0, offsets[2])],
            },
            // Outside the payload: refused, but partition 1's other position was appended.
            ProduceTopic { name: "dup".into(), partitions: vec![part(1, (payload_bytes, 10))] },
            ProduceTopic { name: "nope".into(), partitions: vec![part(0, offsets[3])] },
        ],
    };
    let response = client.call(&request, batches.to_vec()).body;
    let answers: Vec<(&str, u32, ErrorCode, u64)> = response
        .topics
        .iter()
        .flat_map(|topic| {
            topic
                .partitions
                .iter()
                .map(move |p| (topic.name.as_str(), p.partition, ErrorCode::from_u16(p.error_code), p.base_offset))
        })
        .collect();
    assert_eq!(response.topics.len(), 2, "the two adjacent entries of dup share one: {answers:?}");
    assert_eq!(
        answers,
        vec![
            ("dup", 0, ErrorCode::None, 2),
            ("dup", 1, ErrorCode::None, 0),
            ("dup", 0, ErrorCode::None, 2),
            ("dup", 1, ErrorCode::None, 0),
            ("nope", 0, ErrorCode::UnknownTopicOrPartition, OFFSET_UNKNOWN),
        ]
    );
    assert_eq!(read_tags(&mut client, "dup", 0), vec![1, 3], "both batches, in request order");
    assert_eq!(read_tags(&mut client, "dup", 1), vec![2]);
}
