//! Storage engine throughput: the disk's raw O_DIRECT ceiling, appends under each durability
//! policy, and reads from the tail cache and from disk.
//!
//! `cargo bench --bench storage` (about 2 to 3 minutes). Files live in a temporary directory under
//! `target/tmp` — a real disk, never tmpfs, since O_DIRECT and fdatasync must reach the device.
//! Each criterion sample starts a fresh glommio executor, creates a fresh file or log, does the
//! work and returns the time the work took: starting the executor, opening the log, building
//! the batches and deleting the files are outside the timed part.
//!
//! Every bench ends with a one-line sentence with a unit, the median of the measured samples
//! and their spread (min–max), in decimal units (1 GB/s = 10^9 bytes/s); PERF.md quotes them.
//!
//! What each timed part includes, so that a figure can be compared with the ceiling:
//! - appends: one `BytesMut` clone of a pre-built batch per append (a malloc + memcpy, standing in
//!   for the buffer the network layer hands over), the append itself, and a final
//!   `flush(true)`, so that every byte has reached the disk when the clock stops;
//! - raw writes: 1 MiB aligned `DmaFile` writes into a freshly pre-allocated file, then one
//!   fdatasync, the same work the log's `never` policy does minus the log;
//! - small appends (`append_small`): one-record batches (one 1 KiB record, what random keys over
//!   thousands of partitions produce), `never` policy, no final flush, and the batches cloned
//!   before the clock starts (a clone's malloc and first-touch page faults would weigh more than
//!   the append itself): the figure is the log's cost per batch (write-behind writes of full
//!   buffers included), not the disk's nor the allocator's.

use std::cell::RefCell;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use glommio::io::{DmaFile, OpenOptions};
use ringmq::model::{LeaderEpoch, Offset, TimestampMs};
use ringmq::storage::direct_io::check_direct_io;
use ringmq::storage::{Durability, LogConfig, PartitionLog, TailCacheBudget};
use ringmq::testing::{make_batch, run_local};

/// Measured samples per bench; the figures printed are over these.
const SAMPLE_COUNT: usize = 10;
const RECORD_VALUE_BYTES: usize = 1024;
const BATCH_SIZES_KIB: [usize; 3] = [16, 64, 256];
const RAW_WRITE_BYTES: usize = 1 << 20;
/// Writes in flight in the raw write bench: 1 is what the log does (one write per log at a
/// time), 4 is what a disk needs to approach its bandwidth without queueing much.
const RAW_QUEUE_DEPTHS: [usize; 2] = [1, 4];
const FDATASYNC_WRITE_BYTES: usize = 4096;
/// Appender tasks in the concurrent `always` case: the in-flight produce requests of one
/// partition.
const APPENDER_COUNTS: [usize; 2] = [1, 16];
/// The shard's tail cache budget during append benches: a realistic share for one partition.
const APPEND_CACHE_BUDGET_BYTES: usize = 64 << 20;
/// What the read benches read back, over and over.
const READ_LOG_BYTES: usize = 64 << 20;
/// A consumer's fetch size for one partition (Kafka's `max.partition.fetch.bytes` default).
const FETCH_MAX_BYTES: usize = 1 << 20;
const LEADER_EPOCH: LeaderEpoch = LeaderEpoch(1);
/// Logs the many-partitions small-append case spreads its appends over, round-robin.
const SMALL_APPEND_LOG_COUNTS: [usize; 2] = [1, 256];
/// Appends per criterion iteration of the small-append benches: enough that an iteration costs
/// more than opening the logs, which criterion's warm-up counts when it sizes the samples.
const SMALL_APPENDS_PER_ITER: u64 = 1 << 16;

const _: () = assert!(RAW_WRITE_BYTES % 4096 == 0);
const _: () = assert!(READ_LOG_BYTES % FETCH_MAX_BYTES == 0);

/// One measured call of an `iter_custom` routine: how much work, how long.
#[derive(Clone, Copy)]
struct Sample {
    units: u64,
    elapsed: Duration,
}

/// The calls of one bench; criterion runs its warm-up calls first, so the last
/// [`SAMPLE_COUNT`] are the measured samples.
#[derive(Default)]
struct Samples(Vec<Sample>);

impl Samples {
    fn record(&mut self, units: u64, elapsed: Duration) -> Duration {
        self.0.push(Sample { units, elapsed });
        elapsed
    }

    /// Median, min and max of `units / second` over the measured samples, and their count.
    fn per_second(&self) -> (f64, f64, f64, usize) {
        let start = self.0.len().saturating_sub(SAMPLE_COUNT);
        let mut rates: Vec<f64> = self.0[start..].iter().map(|s| s.units as f64 / s.elapsed.as_secs_f64()).collect();
        rates.sort_by(f64::total_cmp);
        let median = match rates.len() {
            0 => 0.0,
            n if n % 2 == 1 => rates[n / 2],
            n => (rates[n / 2 - 1] + rates[n / 2]) / 2.0,
        };
        (median, rates.first().copied().unwrap_or(0.0), rates.last().copied().unwrap_or(0.0), rates.len())
    }

    /// Prints "<what>: 1.52 GB/s (spread 1.40–1.61 GB/s)" with units = bytes.
    fn print_bandwidth(&self, what: &str) {
        let (median, min, max, count) = self.per_second();
        if count == 0 {
            return; // filtered out on the command line
        }
        println!("{what}: {:.2} GB/s (median of {count}, spread {:.2}–{:.2} GB/s)", median / 1e9, min / 1e9, max / 1e9);
    }

    /// Prints "<what>: 412 ns" with units = operations (cost per operation = 1 / rate).
    fn print_nanos_per_op(&self, what: &str) {
        let (median, min, max, count) = self.per_second();
        if count == 0 {
            return; // filtered out on the command line
        }
        println!("{what}: {:.0} ns (median of {count}, spread {:.0}–{:.0} ns)", 1e9 / median, 1e9 / max, 1e9 / min);
    }

    /// Prints "<what>: 212 µs" with units = operations (latency = 1 / rate).
    fn print_latency(&self, what: &str) {
        let (median, min, max, count) = self.per_second();
        if count == 0 {
            return; // filtered out on the command line
        }
        println!("{what}: {:.0} µs (median of {count}, spread {:.0}–{:.0} µs)", 1e6 / median, 1e6 / max, 1e6 / min);
    }
}

/// A fresh directory on the disk that holds `target/`.
fn bench_dir() -> tempfile::TempDir {
    let root = Path::new(env!("CARGO_TARGET_TMPDIR"));
    std::fs::create_dir_all(root).expect("creating target/tmp");
    tempfile::tempdir_in(root).expect("creating a bench directory under target/tmp")
}

/// A batch of 1 KiB records as close to `batch_kib` KiB as it gets without passing it (so that
/// four of them fit in one fetch of [`FETCH_MAX_BYTES`]), and its record count.
fn batch_of(batch_kib: usize) -> (BytesMut, u64) {
    let limit = batch_kib * 1024;
    let mut record_count = batch_kib;
    loop {
        let batch = make_batch(7, record_count, RECORD_VALUE_BYTES, TimestampMs(1_700_000_000_000));
        if batch.len() <= limit || record_count == 1 {
            return (batch, record_count as u64);
        }
        record_count -= 1;
    }
}

async fn create_dma_file(path: &Path) -> DmaFile {
    OpenOptions::new()
        .create(true)
        .truncate(true)
        .read(true)
        .write(true)
        .dma_open(path)
        .await
        .expect("creating a DMA file")
}

/// The disk's ceiling: 1 MiB aligned O_DIRECT writes, `queue_depth` in flight, into a freshly
/// pre-allocated file (unwritten extents, as a log segment), then one fdatasync.
fn raw_odirect_write(c: &mut Criterion) {
    let mut group = c.benchmark_group("raw_odirect_write");
    group.throughput(Throughput::BytesDecimal(RAW_WRITE_BYTES as u64));
    for queue_depth in RAW_QUEUE_DEPTHS {
        let mut samples = Samples::default();
        group.bench_function(format!("1MiB/qd{queue_depth}"), |b| {
            b.iter_custom(|iters| {
                let dir = bench_dir();
                let path = dir.path().join("raw");
                let elapsed = run_local(move || async move {
                    check_direct_io(path.parent().expect("a parent")).await.expect("O_DIRECT works under target/");
                    let file = Rc::new(create_dma_file(&path).await);
                    file.pre_allocate(iters * RAW_WRITE_BYTES as u64, false).await.expect("pre-allocating");
                    let buffers: Vec<_> = (0..queue_depth)
                        .map(|_| {
                            let mut buffer = file.alloc_dma_buffer(RAW_WRITE_BYTES);
                            buffer.as_bytes_mut().fill(0x5a);
                            Rc::new(buffer)
                        })
                        .collect();
                    let started = Instant::now();
                    // Writer k writes chunks k, k + depth, k + 2 depth…: `depth` writes in flight.
                    let writers: Vec<_> = buffers
                        .into_iter()
                        .enumerate()
                        .map(|(k, buffer)| {
                            let file = file.clone();
                            glommio::spawn_local(async move {
                                let mut chunk = k as u64;
                                while chunk < iters {
                                    file.write_rc_at(buffer.clone(), chunk * RAW_WRITE_BYTES as u64)
                                        .await
                                        .expect("writing");
                                    chunk += queue_depth as u64;
                                }
                            })
                        })
                        .collect();
                    for writer in writers {
                        writer.await;
                    }
                    file.fdatasync().await.expect("syncing");
                    let elapsed = started.elapsed();
                    let _ = file.close_rc().await;
                    elapsed
                });
                drop(dir);
                samples.record(iters * RAW_WRITE_BYTES as u64, elapsed)
            })
        });
        samples.print_bandwidth(&format!("raw O_DIRECT write, 1 MiB writes, {queue_depth} in flight"));
    }
    group.finish();
}

/// Latency of one 4 KiB O_DIRECT write + fdatasync, sequential in a file: into a pre-allocated
/// region (unwritten extents, as a log segment: every sync also commits the extent
/// conversion) and over blocks already written (the sync only flushes the data).
fn write_fdatasync(c: &mut Criterion) {
    let mut group = c.benchmark_group("write_fdatasync");
    for overwrite in [false, true] {
        let name = if overwrite { "overwrite" } else { "fallocated" };
        let mut samples = Samples::default();
        group.bench_function(format!("4KiB/{name}"), |b| {
            b.iter_custom(|iters| {
                let dir = bench_dir();
                let path = dir.path().join("sync");
                let elapsed = run_local(move || async move {
                    check_direct_io(path.parent().expect("a parent")).await.expect("O_DIRECT works under target/");
                    let file = create_dma_file(&path).await;
                    let file_bytes = iters * FDATASYNC_WRITE_BYTES as u64;
                    file.pre_allocate(file_bytes, false).await.expect("pre-allocating");
                    let buffer = Rc::new(file.alloc_dma_buffer(FDATASYNC_WRITE_BYTES));
                    if overwrite {
                        let mut zeros = file.alloc_dma_buffer(RAW_WRITE_BYTES);
                        zeros.as_bytes_mut().fill(0);
                        let zeros = Rc::new(zeros);
                        let mut position = 0;
                        while position < file_bytes {
                            file.write_rc_at(zeros.clone(), position).await.expect("zeroing");
                            position += RAW_WRITE_BYTES as u64;
                        }
                        file.fdatasync().await.expect("syncing");
                    }
                    let started = Instant::now();
                    for i in 0..iters {
                        file.write_rc_at(buffer.clone(), i * FDATASYNC_WRITE_BYTES as u64).await.expect("writing");
                        file.fdatasync().await.expect("syncing");
                    }
                    let elapsed = started.elapsed();
                    let _ = file.close().await;
                    elapsed
                });
                drop(dir);
                samples.record(iters, elapsed)
            })
        });
        samples.print_latency(&format!("4 KiB O_DIRECT write + fdatasync, {name}"));
    }
    group.finish();
}

/// memcpy bandwidth: a 256 KiB batch (cache-resident) and 64 MiB (DRAM to DRAM).
fn memcpy(c: &mut Criterion) {
    let mut group = c.benchmark_group("memcpy");
    for (name, bytes) in [("256KiB", 256 << 10), ("64MiB", 64 << 20)] {
        let source = vec![0x5a_u8; bytes];
        let mut target = vec![0_u8; bytes];
        let mut samples = Samples::default();
        group.throughput(Throughput::BytesDecimal(bytes as u64));
        group.bench_function(name, |b| {
            b.iter_custom(|iters| {
                let started = Instant::now();
                for _ in 0..iters {
                    target.copy_from_slice(black_box(&source));
                    black_box(&mut target);
                }
                samples.record(iters * bytes as u64, started.elapsed())
            })
        });
        samples.print_bandwidth(&format!("memcpy, {name}"));
    }
    group.finish();
}

fn log_config(durability: Durability) -> LogConfig {
    LogConfig { durability, ..LogConfig::default() }
}

/// Appends `iters` copies of `batch` from `appenders` concurrent tasks to a fresh log, then
/// `flush(true)`; returns the time from the first append to the end of the flush.
fn timed_appends(dir: PathBuf, config: LogConfig, batch: BytesMut, iters: u64, appenders: usize) -> Duration {
    run_local(move || async move {
        let budget = TailCacheBudget::new(APPEND_CACHE_BUDGET_BYTES);
        let (log, _) = PartitionLog::open(&dir, config, budget).await.expect("opening the log");
        let appenders = appenders as u64;
        let started = Instant::now();
        let tasks: Vec<_> = (0..appenders)
            .map(|k| {
                let log = log.clone();
                let batch = batch.clone();
                // Task k does appends k, k + appenders, …
                let count = iters / appenders + u64::from(k < iters % appenders);
                glommio::spawn_local(async move {
                    for _ in 0..count {
                        log.append(batch.clone(), LEADER_EPOCH).await.expect("appending");
                    }
                })
            })
            .collect();
        for task in tasks {
            task.await;
        }
        log.flush(true).await.expect("flushing");
        let elapsed = started.elapsed();
        log.close().await.expect("closing");
        elapsed
    })
}

fn append(c: &mut Criterion) {
    let mut group = c.benchmark_group("append");
    let cases = BATCH_SIZES_KIB.iter().map(|&kib| (Durability::Never, 1, kib)).chain(
        APPENDER_COUNTS
            .iter()
            .flat_map(|&appenders| BATCH_SIZES_KIB.iter().map(move |&kib| (Durability::Always, appenders, kib))),
    );
    for (durability, appenders, kib) in cases {
        let (batch, _) = batch_of(kib);
        let batch_bytes = batch.len() as u64;
        group.throughput(Throughput::BytesDecimal(batch_bytes));
        let name = match durability {
            Durability::Never => format!("never/{kib}KiB"),
            _ => format!("{durability}/{appenders}_appenders/{kib}KiB"),
        };
        let mut samples = Samples::default();
        group.bench_function(&name, |b| {
            b.iter_custom(|iters| {
                let dir = bench_dir();
                let elapsed =
                    timed_appends(dir.path().to_path_buf(), log_config(durability), batch.clone(), iters, appenders);
                drop(dir);
                samples.record(iters * batch_bytes, elapsed)
            })
        });
        samples.print_bandwidth(&format!("append, {durability}, {appenders} appender(s), {kib} KiB batches"));
    }
    group.finish();
}

/// Opens `log_count` fresh logs (one directory each, under `dir`, sharing one cache budget) and
/// appends `appends` copies of `batch` to them round-robin, one append at a time, `never` policy;
/// returns the time the appends took (opening and closing the logs are not timed).
fn timed_small_appends(dir: PathBuf, batch: BytesMut, appends: u64, log_count: usize) -> Duration {
    run_local(move || async move {
        let budget = TailCacheBudget::new(APPEND_CACHE_BUDGET_BYTES);
        // Opened (and closed) concurrently: each costs a few file operations and syncs.
        let opening = (0..log_count).map(|k| {
            let log_dir = dir.join(format!("p-{k}"));
            let budget = budget.clone();
            async move {
                std::fs::create_dir_all(&log_dir).expect("creating a log directory");
                let (log, _) =
                    PartitionLog::open(&log_dir, log_config(Durability::Never), budget).await.expect("opening the log");
                log
            }
        });
        let logs = futures::future::join_all(opening).await;
        let batches: Vec<BytesMut> = (0..appends).map(|_| batch.clone()).collect();
        let started = Instant::now();
        for (batch, log) in batches.into_iter().zip(logs.iter().cycle()) {
            log.append(batch, LEADER_EPOCH).await.expect("appending");
        }
        let elapsed = started.elapsed();
        for closed in futures::future::join_all(logs.iter().map(|log| log.close())).await {
            closed.expect("closing");
        }
        elapsed
    })
}

/// The per-batch cost of one-record batches, on one log and spread over many.
fn append_small(c: &mut Criterion) {
    let mut group = c.benchmark_group("append_small");
    let (batch, record_count) = batch_of(1);
    assert_eq!(record_count, 1, "one record per batch");
    group.throughput(Throughput::Elements(SMALL_APPENDS_PER_ITER));
    for log_count in SMALL_APPEND_LOG_COUNTS {
        let mut samples = Samples::default();
        group.bench_function(format!("never/1_record/{log_count}_logs"), |b| {
            b.iter_custom(|iters| {
                let dir = bench_dir();
                let appends = iters * SMALL_APPENDS_PER_ITER;
                let elapsed = timed_small_appends(dir.path().to_path_buf(), batch.clone(), appends, log_count);
                drop(dir);
                samples.record(appends, elapsed)
            })
        });
        samples.print_nanos_per_op(&format!(
            "append, never, one-record batches ({} bytes), {log_count} log(s) round-robin, per batch",
            batch.len()
        ));
    }
    group.finish();
}

/// How a read bench serves and consumes batches.
#[derive(Clone, Copy, PartialEq)]
enum ReadKind {
    /// From the tail cache; the returned `Bytes` are only counted (zero copy).
    Cache,
    /// From the tail cache, each returned batch copied into one output buffer, what writing
    /// them to a socket costs at the least.
    CacheCopied,
    /// From disk: a tiny cache budget leaves nothing in the cache once written.
    Disk,
}

/// Fills a fresh log with [`READ_LOG_BYTES`] of `kib` KiB batches (untimed), then times
/// `iters` fetches of [`FETCH_MAX_BYTES`] from the start, wrapping around at the end. Returns
/// the bytes read and the time.
fn timed_reads(dir: PathBuf, kib: usize, kind: ReadKind, iters: u64) -> (u64, Duration) {
    run_local(move || async move {
        let budget_bytes = match kind {
            ReadKind::Disk => 1,
            ReadKind::Cache | ReadKind::CacheCopied => 2 * READ_LOG_BYTES,
        };
        let (log, _) = PartitionLog::open(&dir, log_config(Durability::Never), TailCacheBudget::new(budget_bytes))
            .await
            .expect("opening the log");
        let (batch, _) = batch_of(kib);
        for _ in 0..READ_LOG_BYTES / (kib * 1024) {
            log.append(batch.clone(), LEADER_EPOCH).await.expect("appending");
        }
        log.flush(true).await.expect("flushing");
        let end = log.log_end_offset();
        let output = RefCell::new(Vec::with_capacity(2 * FETCH_MAX_BYTES));
        let mut offset = Offset(0);
        let mut read_bytes = 0u64;
        let started = Instant::now();
        for _ in 0..iters {
            let read = log.read(offset, FETCH_MAX_BYTES).await.expect("reading");
            assert!(!read.batches.is_empty(), "a fetch inside the log finds batches");
            if kind == ReadKind::CacheCopied {
                let mut output = output.borrow_mut();
                output.clear();
                for batch in &read.batches {
                    output.extend_from_slice(batch);
                }
                black_box(&mut *output);
            }
            read_bytes += read.total_bytes() as u64;
            offset = next_offset(read.batches.last().map(|b| &b[..]).unwrap_or_default());
            if offset >= end {
                offset = Offset(0);
            }
        }
        let elapsed = started.elapsed();
        log.close().await.expect("closing");
        (read_bytes, elapsed)
    })
}

/// The offset after `batch` (stamped): its base offset plus its record count.
fn next_offset(batch: &[u8]) -> Offset {
    let header = ringmq::storage::batch::BatchHeader::parse(batch).expect("a stamped batch");
    header.base_offset.plus(u64::from(header.record_count))
}

fn read(c: &mut Criterion) {
    let mut group = c.benchmark_group("read");
    let kib = 256;
    let (batch, _) = batch_of(kib);
    // Every fetch returns the same number of whole batches (they all have one size).
    let fetch_bytes = (FETCH_MAX_BYTES / batch.len() * batch.len()) as u64;
    group.throughput(Throughput::BytesDecimal(fetch_bytes));
    for (name, kind, what) in [
        ("tail_cache", ReadKind::Cache, "from the tail cache, zero copy"),
        ("tail_cache_copied", ReadKind::CacheCopied, "from the tail cache, copied into one buffer"),
        ("disk", ReadKind::Disk, "from disk"),
    ] {
        let mut samples = Samples::default();
        group.bench_function(format!("{name}/{kib}KiB"), |b| {
            b.iter_custom(|iters| {
                let dir = bench_dir();
                let (bytes, elapsed) = timed_reads(dir.path().to_path_buf(), kib, kind, iters);
                drop(dir);
                assert_eq!(bytes, iters * fetch_bytes, "every fetch is full");
                samples.record(bytes, elapsed)
            })
        });
        samples.print_bandwidth(&format!("read, {what}, {kib} KiB batches, 1 MiB fetches"));
    }
    group.finish();
}

fn quick() -> Criterion {
    Criterion::default()
        .sample_size(SAMPLE_COUNT)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3))
}

criterion_group! {
    name = benches;
    config = quick();
    targets = raw_odirect_write, write_fdatasync, memcpy, append, append_small, read
}
criterion_main!(benches);
