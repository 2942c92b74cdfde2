//! What the broker must survive from the network: random bytes, a 4 GiB length prefix, a frame
//! cut in half and left hanging, a valid header with a garbage body, unknown API keys and
//! versions, a corrupt record batch, hundreds of idle connections and a client that never
//! reads its responses. Each gets an error response or a logged close; other clients keep
//! being served; memory stays bounded; acknowledged data stays.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use bytes::Bytes;
use ringmq::protocol::apis::produce::ACKS_ALL;
use ringmq::protocol::{
    ErrorCode, FetchPartition, FetchRequest, FetchTopic, FrameHeader, MetadataRequest, ProduceRequest,
};

use crate::broker_support::{batch, Broker, RawClient};
use crate::support::Rng;

/// The broker still answers a fresh client and still holds what was acknowledged.
fn assert_still_serving(broker: &mut Broker, expected_batches: usize) {
    assert!(broker.is_running(), "the broker died");
    let mut client = broker.client();
    let (code, _, batches) = client.fetch("safe", 0, 0, 0, 0);
    assert_eq!(code, ErrorCode::None);
    assert_eq!(batches.len(), expected_batches, "acknowledged batches are all there");
}

fn rss_bytes(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
        .unwrap_or(0)
        * 1024
}

/// Reads until the broker closes the connection (bounded by the read timeout); returns what
/// it sent.
fn read_until_closed(stream: &mut TcpStream) -> Vec<u8> {
    stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut received = Vec::new();
    let _ = stream.read_to_end(&mut received);
    received
}

fn header(api_key: u16, api_version: u16, body_length: u32, payload_length: u32) -> [u8; 24] {
    FrameHeader { body_length, payload_length, api_key, api_version, correlation_id: 77, flags: 0 }.encode()
}

fn error_code_of(response: &[u8]) -> Option<ErrorCode> {
    let header: [u8; 24] = response.get(..24)?.try_into().ok()?;
    let decoded = FrameHeader::decode(&header, &ringmq::protocol::FrameLimits { max_frame_bytes: 1 << 30 }).ok()?;
    assert!(decoded.is_error(), "an error response");
    assert_eq!(decoded.correlation_id, 77, "addressed to the refused request");
    let body = ringmq::protocol::aligned_copy(response.get(24..24 + decoded.body_length as usize)?);
    let error = ringmq::protocol::decode_envelope_owned::<ringmq::protocol::ErrorResponse>(&body).ok()?;
    Some(ErrorCode::from_u16(error.error_code))
}

#[test]
fn the_broker_survives_bad_input_and_keeps_serving_others() {
    let dir = tempfile::tempdir().unwrap();
    let mut broker = Broker::start(dir.path(), &["--cores", "2"]);
    let mut client = broker.client();
    client.create_topic("safe", 1);
    for tag in 0..3 {
        assert_eq!(client.produce("safe", 0, &[batch(tag, 2)], ACKS_ALL).0, ErrorCode::None);
    }
    let pid = broker_pid(&broker);
    let rss_before = rss_bytes(pid);

    // Random bytes: refused and closed.
    let mut rng = Rng::new(99);
    for _ in 0..5 {
        let mut stream = TcpStream::connect(broker.address).unwrap();
        let garbage: Vec<u8> = (0..4096).map(|_| rng.next_u64() as u8).collect();
        let _ = stream.write_all(&garbage);
        read_until_closed(&mut stream);
    }
    assert_still_serving(&mut broker, 3);

    // A 4 GiB length prefix: refused before any allocation, with an error response.
    let mut stream = TcpStream::connect(broker.address).unwrap();
    stream.write_all(&header(1, 0, u32::MAX, u32::MAX)).unwrap();
    let response = read_until_closed(&mut stream);
    assert_eq!(error_code_of(&response), Some(ErrorCode::MessageTooLarge));
    assert_still_serving(&mut broker, 3);

    // A frame cut in half, left hanging: others are served meanwhile.
    let mut hanging = TcpStream::connect(broker.address).unwrap();
    hanging.write_all(&header(1, 0, 1000, 0)).unwrap();
    hanging.write_all(&[0u8; 300]).unwrap();
    assert_still_serving(&mut broker, 3);

    // A valid header with a garbage body: an error response, and the connection stays usable.
    let mut raw = RawClient::connect(broker.address);
    raw.stream.write_all(&header(1, 0, 64, 0)).unwrap();
    raw.stream.write_all(&[0xAB; 64]).unwrap();
    let (frame_header, envelope, _) = raw.read_frame().unwrap();
    assert!(frame_header.is_error());
    let error = ringmq::protocol::decode_envelope_owned::<ringmq::protocol::ErrorResponse>(
        &ringmq::protocol::aligned_copy(&envelope),
    )
    .unwrap();
    assert!(
        [ErrorCode::CorruptMessage, ErrorCode::InvalidRequest].contains(&ErrorCode::from_u16(error.error_code)),
        "got {}",
        error.error_code
    );
    raw.call(&MetadataRequest { topics: vec![] }, Vec::new());

    // Unknown API key and version: error responses; the connection stays usable.
    raw.stream.write_all(&header(999, 0, 0, 0)).unwrap();
    let (frame_header, envelope, _) = raw.read_frame().unwrap();
    assert!(frame_header.is_error());
    let error = ringmq::protocol::decode_envelope_owned::<ringmq::protocol::ErrorResponse>(
        &ringmq::protocol::aligned_copy(&envelope),
    )
    .unwrap();
    assert_eq!(ErrorCode::from_u16(error.error_code), ErrorCode::UnknownApiKey);
    raw.stream.write_all(&header(1, 42, 0, 0)).unwrap();
    let (_, envelope, _) = raw.read_frame().unwrap();
    let error = ringmq::protocol::decode_envelope_owned::<ringmq::protocol::ErrorResponse>(
        &ringmq::protocol::aligned_copy(&envelope),
    )
    .unwrap();
    assert_eq!(ErrorCode::from_u16(error.error_code), ErrorCode::UnsupportedVersion);
    raw.call(&MetadataRequest { topics: vec![] }, Vec::new());

    // A record batch with a bad CRC: refused with CorruptMessage; nothing appended.
    let mut bad = batch(50, 2).to_vec();
    let last = bad.len() - 1;
    bad[last - 20] ^= 0xFF;
    let (code, _) = raw.produce("safe", 0, &[Bytes::from(bad)], ACKS_ALL);
    assert_eq!(code, ErrorCode::CorruptMessage);
    // A payload range outside the payload section.
    let request = ProduceRequest {
        acks: ACKS_ALL,
        timeout_ms: 1000,
        topics: vec![ringmq::protocol::ProduceTopic {
            name: "safe".into(),
            partitions: vec![ringmq::protocol::ProducePartition {
                partition: 0,
                payload_offset: 10,
                payload_length: 1 << 30,
            }],
        }],
    };
    let response = raw.call(&request, vec![batch(51, 1)]);
    assert_ne!(response.body.topics[0].partitions[0].error_code, 0);
    assert_still_serving(&mut broker, 3);

    // Hundreds of idle connections.
    let idle: Vec<TcpStream> = (0..300).map(|_| TcpStream::connect(broker.address).unwrap()).collect();
    assert_still_serving(&mut broker, 3);

    // A client that never reads its responses: it stops being read; others are served.
    let mut greedy = TcpStream::connect(broker.address).unwrap();
    greedy.set_write_timeout(Some(Duration::from_secs(2))).unwrap();
    let fetch = FetchRequest {
        max_wait_ms: 0,
        min_bytes: 0,
        max_bytes: 1 << 20,
        topics: vec![FetchTopic {
            name: "safe".into(),
            partitions: vec![FetchPartition { partition: 0, fetch_offset: 0, partition_max_bytes: 1 << 20 }],
        }],
    };
    let frame = ringmq::protocol::encode_request(1, &fetch, Vec::new()).unwrap().to_vec();
    for _ in 0..20_000 {
        if greedy.write_all(&frame).is_err() {
            break; // the broker stopped reading: backpressure reached the client
        }
    }
    assert_still_serving(&mut broker, 3);

    let rss_after = rss_bytes(pid);
    assert!(
        rss_after < rss_before + (256 << 20),
        "memory stays bounded: RSS went from {} MiB to {} MiB",
        rss_before >> 20,
        rss_after >> 20
    );
    drop((idle, greedy, hanging));
    let log = broker.log().join("\n");
    assert!(log.contains("protocol violation"), "closes for protocol violations are logged:\n{log}");
    assert_eq!(broker.stop(), Some(0));
}

fn broker_pid(broker: &Broker) -> u32 {
    broker.pid()
}

/// Guards the offsets topic: its records are replayed as group state, so clients may not
/// write there.
#[test]
fn clients_cannot_produce_to_the_offsets_topic() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start(dir.path(), &["--cores", "2"]);
    let mut client = broker.client();
    let (code, _) = client.produce("__consumer_offsets", 0, &[batch(1, 1)], ACKS_ALL);
    assert_eq!(code, ErrorCode::InvalidRequest);
    assert_eq!(broker.stop(), Some(0));
}

/// Guards the in-place read of large frames: a Produce frame far larger than one socket read,
/// trickled in small pieces, arrives whole (its batch is stored and the connection serves the
/// next request), and a large frame cut off by the client is logged as a violation without
/// storing anything.
#[test]
fn large_frames_arriving_in_pieces_are_read_whole() {
    let dir = tempfile::tempdir().unwrap();
    let mut broker = Broker::start(dir.path(), &["--cores", "1"]);
    let mut client = broker.client();
    assert_eq!(client.create_topic("safe", 1), ErrorCode::None);
    let large = batch(7, 3_000);
    assert!(large.len() > 256 << 10, "several socket reads: {} bytes", large.len());
    let request = ProduceRequest {
        acks: ACKS_ALL,
        timeout_ms: 10_000,
        topics: vec![ringmq::protocol::ProduceTopic {
            name: "safe".into(),
            partitions: vec![ringmq::protocol::ProducePartition {
                partition: 0,
                payload_offset: 0,
                payload_length: large.len() as u32,
            }],
        }],
    };
    let frame = ringmq::protocol::encode_request(5, &request, vec![large.clone()]).unwrap().to_vec();

    // Cut off: half the frame, then the client goes away.
    let mut cut = TcpStream::connect(broker.address).unwrap();
    cut.write_all(&frame[..frame.len() / 2]).unwrap();
    drop(cut);

    // Trickled: 40 pieces with pauses, so that the broker sees many partial reads.
    let mut raw = RawClient::connect(broker.address);
    for piece in frame.chunks(frame.len().div_ceil(40)) {
        raw.stream.write_all(piece).unwrap();
        raw.stream.flush().unwrap();
        std::thread::sleep(Duration::from_millis(2));
    }
    let (header, _, _) = raw.read_frame().unwrap();
    assert!(!header.is_error(), "the trickled produce is answered");
    raw.call(&MetadataRequest { topics: vec![] }, Vec::new());

    let (code, _, batches) = client.fetch("safe", 0, 0, 0, 0);
    assert_eq!(code, ErrorCode::None);
    assert_eq!(batches.len(), 1, "the trickled batch is stored once; the cut one is not");
    assert_eq!(batches[0].len(), large.len());
    assert_still_serving(&mut broker, 1);
    let log = broker.log().join("\n");
    assert!(log.contains("in the middle of a frame"), "the cut frame is logged:\n{log}");
    assert_eq!(broker.stop(), Some(0));
}
