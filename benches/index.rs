//! Sparse index lookups: `OffsetIndex::floor` and `TimeIndex::scan_start` on a full segment's
//! index (1 GiB segment, one entry per 4 KiB: 262,144 entries), the cost a read pays before its
//! DMA read. Run: `cargo bench --bench index`.

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};
use ringmq::model::{Offset, TimestampMs};
use ringmq::storage::index::{OffsetIndex, TimeIndex};

const ENTRIES: u32 = 262_144;

fn full_indexes() -> (OffsetIndex, TimeIndex) {
    let base = Offset(1_000_000);
    let mut offsets = OffsetIndex::new(base);
    let mut times = TimeIndex::new(base);
    for entry in 0..ENTRIES {
        // Four records of ~1 KiB per 4 KiB entry.
        let offset = base.plus(u64::from(entry) * 4);
        offsets.push(offset, entry * 4096);
        times.push(TimestampMs(1_700_000_000_000 + i64::from(entry)), offset);
    }
    (offsets, times)
}

fn lookups(c: &mut Criterion) {
    let (offsets, times) = full_indexes();
    let mut group = c.benchmark_group("index");
    group.sample_size(20).measurement_time(Duration::from_secs(2)).warm_up_time(Duration::from_millis(300));
    let mut probe = 0u64;
    group.bench_function("offset_floor/262144_entries", |b| {
        b.iter(|| {
            probe = probe.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            black_box(offsets.floor(Offset(1_000_000 + probe % (u64::from(ENTRIES) * 4))))
        })
    });
    group.bench_function("time_scan_start/262144_entries", |b| {
        b.iter(|| {
            probe = probe.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            black_box(times.scan_start(TimestampMs(1_700_000_000_000 + (probe % u64::from(ENTRIES)) as i64)))
        })
    });
    group.bench_function("encode_decode/262144_entries", |b| {
        b.iter(|| black_box(OffsetIndex::decode(Offset(1_000_000), &offsets.encode()).map(|i| i.len())))
    });
    group.finish();
}

criterion_group!(benches, lookups);
criterion_main!(benches);
