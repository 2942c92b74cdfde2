//! Cost of the wire protocol's hot paths: encoding and decoding a Produce request with 16
//! partitions (envelope only: the batches ride in the payload section and are never copied),
//! and decoding a frame header.

use std::hint::black_box;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
use ringmq::protocol::{
    decode_envelope, encode_request, FrameDecoder, FrameHeader, FrameLimits, PayloadBuilder, ProducePartition,
    ProduceRequest, ProduceTopic, FRAME_HEADER_BYTES,
};

const PARTITIONS: u32 = 16;
const BATCH_BYTES: usize = 16 * 1024;

fn produce_request() -> (ProduceRequest, Vec<Bytes>) {
    let mut payload = PayloadBuilder::new();
    let partitions = (0..PARTITIONS)
        .map(|partition| {
            let range = payload.push(Bytes::from(vec![0u8; BATCH_BYTES])).expect("fits");
            ProducePartition { partition, payload_offset: range.offset, payload_length: range.length }
        })
        .collect();
    let request = ProduceRequest {
        acks: -1,
        timeout_ms: 30_000,
        topics: vec![ProduceTopic { name: "bench-topic".into(), partitions }],
    };
    (request, payload.finish())
}

fn bench_frame(c: &mut Criterion) {
    let (request, payload) = produce_request();

    c.bench_function("produce request, 16 partitions: encode", |b| {
        b.iter(|| encode_request(1, black_box(&request), payload.clone()).expect("encodes"))
    });

    let encoded = encode_request(1, &request, payload.clone()).expect("encodes");
    let wire = Bytes::from(encoded.to_vec());
    let decoder = FrameDecoder::new(FrameLimits::default());
    c.bench_function("produce request, 16 partitions: split frame off the input", |b| {
        b.iter_batched(
            || BytesMut::from(&wire[..]),
            |mut input| decoder.split_frame(&mut input).expect("valid").expect("whole"),
            BatchSize::SmallInput,
        )
    });

    let mut input = BytesMut::from(&wire[..]);
    let frame = decoder.split_frame(&mut input).expect("valid").expect("whole");
    c.bench_function("produce request, 16 partitions: checked envelope decode", |b| {
        b.iter(|| {
            let archived = decode_envelope::<ProduceRequest>(black_box(frame.envelope.as_slice())).expect("valid");
            black_box(archived.topics[0].partitions.len())
        })
    });

    let mut header = [0u8; FRAME_HEADER_BYTES];
    header.copy_from_slice(&wire[..FRAME_HEADER_BYTES]);
    let limits = FrameLimits::default();
    c.bench_function("frame header decode", |b| {
        b.iter(|| FrameHeader::decode(black_box(&header), &limits).expect("valid"))
    });
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(1));
    targets = bench_frame
}
criterion_main!(benches);
