//! Record batch throughput: building, full validation, and the CRC alone.
//!
//! Plain CPU work, no I/O: `cargo bench --bench batch`. Each figure is bytes of batch per second;
//! records carry 1 KiB values, the size a typical producer sends.

use std::time::Duration;

use criterion::{black_box, criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use ringmq::model::{LeaderEpoch, Offset, TimestampMs};
use ringmq::storage::batch::{stamp, validate, validate_crc, BatchBuilder, BatchBuilderConfig, CRC_COVERAGE_START};

const RECORD_VALUE_BYTES: usize = 1024;
const BATCH_SIZES_BYTES: [usize; 3] = [16 * 1024, 64 * 1024, 256 * 1024];

/// A batch of 1 KiB records whose estimated size reaches `batch_bytes`.
fn builder_for(batch_bytes: usize) -> BatchBuilder {
    let value = vec![0xa5; RECORD_VALUE_BYTES];
    let mut builder = BatchBuilder::new(BatchBuilderConfig::default());
    let mut timestamp = 1_700_000_000_000;
    while builder.estimated_bytes() + RECORD_VALUE_BYTES < batch_bytes {
        builder.push(TimestampMs(timestamp), Some(b"key-0001"), &value, &[]);
        timestamp += 1;
    }
    builder
}

fn bench_build(c: &mut Criterion) {
    let mut group = c.benchmark_group("batch build (1 KiB records)");
    for batch_bytes in BATCH_SIZES_BYTES {
        let len = builder_for(batch_bytes).build().map_or(0, |b| b.len());
        group.throughput(Throughput::Bytes(len as u64));
        group.bench_with_input(
            BenchmarkId::from_parameter(format!("{} KiB", batch_bytes / 1024)),
            &batch_bytes,
            |b, &batch_bytes| {
                // Pushing copies the records into the builder; the build serializes them once.
                b.iter_batched(
                    || builder_for(batch_bytes),
                    |builder| black_box(builder.build()),
                    criterion::BatchSize::LargeInput,
                )
            },
        );
    }
    group.finish();
}

fn bench_validate(c: &mut Criterion) {
    let mut group = c.benchmark_group("batch validate (CRC + rkyv check)");
    for batch_bytes in BATCH_SIZES_BYTES {
        let Ok(built) = builder_for(batch_bytes).build() else {
            continue;
        };
        let mut batch = built.to_vec();
        let _ = stamp(&mut batch, Offset(12_345), LeaderEpoch(1));
        group.throughput(Throughput::Bytes(batch.len() as u64));
        group.bench_with_input(BenchmarkId::new("full", format!("{} KiB", batch_bytes / 1024)), &batch, |b, batch| {
            b.iter(|| black_box(validate(black_box(batch))))
        });
        group.bench_with_input(
            BenchmarkId::new("crc only", format!("{} KiB", batch_bytes / 1024)),
            &batch,
            |b, batch| b.iter(|| black_box(validate_crc(black_box(batch)))),
        );
    }
    group.finish();
}

fn bench_crc(c: &mut Criterion) {
    let mut group = c.benchmark_group("crc32fast");
    let bytes = vec![0x5a_u8; 256 * 1024 - CRC_COVERAGE_START];
    group.throughput(Throughput::Bytes(bytes.len() as u64));
    group.bench_function("256 KiB", |b| b.iter(|| black_box(crc32fast::hash(black_box(&bytes)))));
    group.finish();
}

fn quick() -> Criterion {
    Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(1))
}

criterion_group! {
    name = benches;
    config = quick();
    targets = bench_build, bench_validate, bench_crc
}
criterion_main!(benches);
