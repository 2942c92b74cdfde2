//! Unit tests of the partition log on a real glommio executor and temp directories.

use std::rc::Rc;

use crate::model::{LeaderEpoch, Offset, TimestampMs};
use crate::storage::batch::validate;
use crate::storage::config::{Durability, LogConfig};
use crate::storage::error::StorageError;
use crate::storage::tail_cache::TailCacheBudget;
use crate::storage::PartitionLog;
use crate::testing::{batch_tag, make_batch, run_local};

pub(super) fn small_config() -> LogConfig {
    LogConfig {
        segment_bytes: 64 << 10,
        write_buffer_bytes: 16 << 10,
        preallocate_bytes: 128 << 10,
        index_interval_bytes: 1024,
        ..LogConfig::default()
    }
}

pub(super) async fn open(dir: &std::path::Path, config: LogConfig, cache_bytes: usize) -> Rc<PartitionLog> {
    PartitionLog::open(dir, config, TailCacheBudget::new(cache_bytes)).await.unwrap().0
}

/// Appends `count` batches of 3 records tagged 0..count; returns their base offsets.
async fn append_tagged(log: &PartitionLog, count: u64, value_bytes: usize) -> Vec<Offset> {
    let mut bases = Vec::new();
    for tag in 0..count {
        let info =
            log.append(make_batch(tag, 3, value_bytes, TimestampMs(1000 + tag as i64)), LeaderEpoch(1)).await.unwrap();
        bases.push(info.base_offset);
    }
    bases
}

/// Reads every batch from `from` to the log end, checking each one.
async fn read_all_tags(log: &PartitionLog, from: Offset) -> Vec<u64> {
    let mut tags = Vec::new();
    let mut offset = from;
    for _ in 0..100_000 {
        let read = log.read(offset, 8 << 10).await.unwrap();
        if read.batches.is_empty() {
            return tags;
        }
        for batch in &read.batches {
            let header = validate(batch).unwrap();
            assert!(header.next_offset() > offset);
            offset = header.next_offset();
            tags.push(batch_tag(batch).unwrap());
        }
    }
    panic!("read did not reach the log end");
}

#[test]
fn appends_get_contiguous_offsets_and_read_back_from_cache_and_disk() {
    run_local(|| async {
        let dir = tempfile::tempdir().unwrap();
        // A tiny cache: most reads must come from disk.
        let log = open(dir.path(), small_config(), 4 << 10).await;
        let bases = append_tagged(&log, 200, 100).await;
        assert_eq!(bases.iter().map(|o| o.0).collect::<Vec<_>>(), (0..200).map(|i| i * 3).collect::<Vec<_>>());
        assert_eq!(log.log_end_offset(), Offset(600));
        assert!(log.segment_count() > 1, "64 KiB segments must have rolled");
        assert_eq!(read_all_tags(&log, Offset(0)).await, (0..200).collect::<Vec<_>>());
        // A read from inside a batch starts with the batch that holds the offset.
        let read = log.read(Offset(301), 1).await.unwrap();
        assert_eq!(read.batches.len(), 1, "at least one batch, even over max_bytes");
        assert_eq!(batch_tag(&read.batches[0]), Some(100));
        assert!(matches!(log.read(Offset(601), 100).await, Err(StorageError::OffsetOutOfRange { .. })));
        assert!(log.read(Offset(600), 100).await.unwrap().batches.is_empty());
        log.close().await.unwrap();
    });
}

#[test]
fn a_clean_close_skips_the_scan_and_a_dirty_one_recovers_everything_synced() {
    run_local(|| async {
        let dir = tempfile::tempdir().unwrap();
        let log = open(dir.path(), small_config(), 1 << 20).await;
        append_tagged(&log, 50, 200).await;
        log.close().await.unwrap();
        let (log, report) =
            PartitionLog::open(dir.path(), small_config(), TailCacheBudget::new(1 << 20)).await.unwrap();
        assert!(report.clean_shutdown);
        assert_eq!(report.log_end_offset, Offset(150));
        assert_eq!(read_all_tags(&log, Offset(0)).await, (0..50).collect::<Vec<_>>());
        // Append more and drop without closing: as after a crash, with `always` durability.
        for tag in 50..60 {
            log.append(make_batch(tag, 3, 200, TimestampMs(5)), LeaderEpoch(1)).await.unwrap();
        }
        drop(log);
        let (log, report) =
            PartitionLog::open(dir.path(), small_config(), TailCacheBudget::new(1 << 20)).await.unwrap();
        assert!(!report.clean_shutdown);
        assert!(report.truncation.is_none(), "{:?}", report.truncation);
        assert_eq!(read_all_tags(&log, Offset(0)).await, (0..60).collect::<Vec<_>>());
        log.close().await.unwrap();
    });
}

#[test]
fn concurrent_appenders_share_syncs_and_all_land_in_order() {
    run_local(|| async {
        let dir = tempfile::tempdir().unwrap();
        let log = open(dir.path(), LogConfig { durability: Durability::Always, ..small_config() }, 1 << 20).await;
        let mut tasks = Vec::new();
        for appender in 0..16u64 {
            let log = log.clone();
            tasks.push(glommio::spawn_local(async move {
                let mut bases = Vec::new();
                for i in 0..20 {
                    let info = log
                        .append(make_batch(appender * 1000 + i, 2, 64, TimestampMs(1)), LeaderEpoch(1))
                        .await
                        .unwrap();
                    assert!(log.durable_offset() >= info.next_offset, "acknowledged before durable");
                    bases.push(info.base_offset);
                }
                bases
            }));
        }
        let mut all = Vec::new();
        for task in tasks {
            let bases = task.await;
            assert!(bases.windows(2).all(|w| w[0] < w[1]), "one appender's batches stay in order");
            all.extend(bases);
        }
        all.sort();
        assert_eq!(all, (0..320).map(|i| Offset(i * 2)).collect::<Vec<_>>());
        log.close().await.unwrap();
    });
}

#[test]
fn retention_deletes_old_closed_segments_and_moves_the_log_start() {
    run_local(|| async {
        let dir = tempfile::tempdir().unwrap();
        let config = LogConfig { retention_bytes: Some(100 << 10), retention_ms: None, ..small_config() };
        let log = open(dir.path(), config.clone(), 1 << 20).await;
        append_tagged(&log, 600, 300).await;
        let segments_before = log.segment_count();
        let report = log.apply_retention(TimestampMs::now()).await.unwrap();
        assert!(report.deleted_segments > 0 && log.segment_count() < segments_before);
        let start = log.log_start_offset();
        assert_eq!(start, report.log_start_offset);
        assert!(log.size_bytes() >= 100 << 10, "retention keeps at least retention_bytes");
        match log.read(Offset(0), 100).await {
            Err(StorageError::OffsetOutOfRange { log_start, .. }) => assert_eq!(log_start, start),
            other => panic!("expected OffsetOutOfRange, got {other:?}"),
        }
        let tags = read_all_tags(&log, start).await;
        assert_eq!(tags.last(), Some(&599));
        log.close().await.unwrap();
        let (log, _) = PartitionLog::open(dir.path(), config, TailCacheBudget::new(1 << 20)).await.unwrap();
        assert_eq!(log.log_start_offset(), start, "the log start is persisted");
        // By time: every closed segment is older than a day from now.
        let config = LogConfig { retention_ms: Some(1), retention_bytes: None, ..small_config() };
        drop(log);
        let (log, _) = PartitionLog::open(dir.path(), config, TailCacheBudget::new(1 << 20)).await.unwrap();
        log.apply_retention(TimestampMs::now()).await.unwrap();
        assert_eq!(log.segment_count(), 1, "only the active segment survives time retention");
        log.close().await.unwrap();
    });
}

#[test]
fn truncate_to_cuts_whole_batches_and_appends_continue_from_the_cut() {
    run_local(|| async {
        let dir = tempfile::tempdir().unwrap();
        let log = open(dir.path(), small_config(), 1 << 20).await;
        append_tagged(&log, 300, 100).await; // 900 offsets over several segments
        let cut = log.truncate_to(Offset(301)).await.unwrap();
        assert_eq!(cut, Offset(300), "the batch holding 301 starts at 300");
        assert_eq!(log.log_end_offset(), Offset(300));
        let info = log.append(make_batch(777, 3, 100, TimestampMs(1)), LeaderEpoch(2)).await.unwrap();
        assert_eq!(info.base_offset, Offset(300));
        let mut expected: Vec<u64> = (0..100).collect();
        expected.push(777);
        assert_eq!(read_all_tags(&log, Offset(0)).await, expected);
        drop(log); // no clean close: recovery must not resurrect the cut batches
        let log = open(dir.path(), small_config(), 1 << 20).await;
        assert_eq!(read_all_tags(&log, Offset(0)).await, expected);
        log.close().await.unwrap();
    });
}

#[test]
fn offset_for_timestamp_finds_the_first_record_at_or_after() {
    run_local(|| async {
        let dir = tempfile::tempdir().unwrap();
        let log = open(dir.path(), small_config(), 4 << 10).await;
        append_tagged(&log, 300, 100).await; // batch t has timestamp 1000 + t, offsets 3t..3t+2
        assert_eq!(log.offset_for_timestamp(TimestampMs(0)).await.unwrap(), Some(Offset(0)));
        assert_eq!(log.offset_for_timestamp(TimestampMs(1150)).await.unwrap(), Some(Offset(450)));
        assert_eq!(log.offset_for_timestamp(TimestampMs(1299)).await.unwrap(), Some(Offset(897)));
        assert_eq!(log.offset_for_timestamp(TimestampMs(1300)).await.unwrap(), None);
        log.close().await.unwrap();
    });
}

#[test]
fn bad_batches_are_refused_without_harming_the_log() {
    run_local(|| async {
        let dir = tempfile::tempdir().unwrap();
        let log = open(dir.path(), small_config(), 1 << 20).await;
        append_tagged(&log, 2, 10).await;
        let mut short = make_batch(9, 1, 10, TimestampMs(1));
        short.truncate(short.len() - 8);
        assert!(matches!(log.append(short, LeaderEpoch(1)).await, Err(StorageError::InvalidBatch(_))));
        let garbage = bytes::BytesMut::from(&[0xFFu8; 100][..]);
        assert!(matches!(log.append(garbage, LeaderEpoch(1)).await, Err(StorageError::InvalidBatch(_))));
        assert_eq!(read_all_tags(&log, Offset(0)).await, vec![0, 1]);
        log.close().await.unwrap();
        assert!(matches!(
            log.append(make_batch(3, 1, 1, TimestampMs(1)), LeaderEpoch(1)).await,
            Err(StorageError::Closed)
        ));
    });
}

#[test]
fn group_commit_shares_syncs_between_concurrent_appenders() {
    run_local(|| async {
        let dir = tempfile::tempdir().unwrap();
        let log = open(dir.path(), LogConfig::default(), 64 << 20).await;
        let batch = make_batch(1, 200, 1000, TimestampMs(1));
        let tasks: Vec<_> = (0..16)
            .map(|_| {
                let log = log.clone();
                let batch = batch.clone();
                glommio::spawn_local(async move {
                    for _ in 0..16 {
                        log.append(batch.clone(), LeaderEpoch(1)).await.unwrap();
                    }
                })
            })
            .collect();
        for task in tasks {
            task.await;
        }
        let stats = log.stats();
        eprintln!("group commit: {stats:?}");
        assert_eq!(stats.appends, 256);
        assert!(stats.syncs * 4 <= stats.appends, "16 appenders share syncs: {stats:?}");
        log.close().await.unwrap();
    });
}

/// Guards the poison rule: after a failed write the log refuses appends with a clear error
/// (a retried fsync could succeed without the data), and reopening it recovers every batch
/// that was durable before the failure.
#[test]
fn a_failed_write_poisons_the_log_until_it_is_reopened() {
    run_local(|| async {
        let dir = tempfile::tempdir().unwrap();
        let log = open(dir.path(), small_config(), 1 << 20).await;
        append_tagged(&log, 3, 100).await;
        log.state.borrow_mut().inject_write_failure = true;
        let failed = log.append(make_batch(50, 3, 100, TimestampMs(1)), LeaderEpoch(1)).await;
        assert!(matches!(failed, Err(StorageError::Io { .. })), "{failed:?}");
        assert!(log.is_poisoned());
        let refused = log.append(make_batch(51, 3, 100, TimestampMs(1)), LeaderEpoch(1)).await;
        match refused {
            Err(StorageError::Poisoned { cause, .. }) => assert!(cause.contains("injected write failure"), "{cause}"),
            other => panic!("expected Poisoned, got {other:?}"),
        }
        drop(log);
        let log = open(dir.path(), small_config(), 1 << 20).await;
        let tags = read_all_tags(&log, Offset(0)).await;
        assert_eq!(&tags[..3], &[0, 1, 2], "the durable batches survive");
        log.append(make_batch(52, 3, 100, TimestampMs(1)), LeaderEpoch(1)).await.expect("a reopened log appends");
        log.close().await.unwrap();
    });
}

/// Guards the header walk behind the producer-state replay: after a reopen (clean or not),
/// every batch of every segment is visited once, oldest first, with its stamped offset and
/// producer fields, batches larger than a read chunk included (their bodies are skipped).
#[test]
fn batch_headers_are_visited_in_order_across_segments() {
    use crate::model::{ProducerEpoch, ProducerId};
    use crate::storage::batch::{BatchBuilder, BatchBuilderConfig};
    run_local(|| async {
        let dir = tempfile::tempdir().unwrap();
        let config = LogConfig { segment_bytes: 1 << 20, ..small_config() };
        let log = open(dir.path(), config.clone(), 1 << 20).await;
        let mut expected = Vec::new();
        for sequence in 0..40i32 {
            let mut builder = BatchBuilder::new(BatchBuilderConfig {
                producer_id: ProducerId(7),
                producer_epoch: ProducerEpoch(1),
                base_sequence: sequence * 2,
                ..BatchBuilderConfig::default()
            });
            // Every tenth batch is larger than a read chunk (256 KiB).
            let value_bytes = if sequence % 10 == 3 { 300 << 10 } else { 100 };
            for _ in 0..2 {
                builder.push(TimestampMs(1000), None, &vec![b'v'; value_bytes], &[]);
            }
            let batch = bytes::BytesMut::from(&builder.build().unwrap()[..]);
            let info = log.append(batch, LeaderEpoch(1)).await.unwrap();
            expected.push((info.base_offset, sequence * 2));
        }
        assert!(log.segment_count() > 1, "the run spans segments");
        for clean in [true, false] {
            if clean {
                log.close().await.unwrap();
            }
            let reopened = open(dir.path(), config.clone(), 1 << 20).await;
            let mut seen = Vec::new();
            reopened
                .visit_batch_headers(|header| {
                    assert_eq!((header.producer_id, header.producer_epoch), (ProducerId(7), ProducerEpoch(1)));
                    seen.push((header.base_offset, header.base_sequence));
                })
                .await
                .unwrap();
            assert_eq!(seen, expected, "clean reopen: {clean}");
            if !clean {
                reopened.close().await.unwrap();
            }
        }
    });
}

/// Guards the write-buffer sizing (`storage::buffer_sizing`) inside the log: a burst starts on
/// 64 KiB buffers and grows to 1 MiB ones (so it takes far fewer writes than 64 KiB buffers
/// would, and more than 1 MiB ones from the start), a quiet spell and a sync shrink them again,
/// and every batch written across those size changes reads back in order from the disk, also
/// after a reopen.
#[test]
fn batches_survive_write_buffer_size_changes() {
    run_local(|| async {
        let dir = tempfile::tempdir().unwrap();
        let config = LogConfig {
            durability: Durability::Never,
            segment_bytes: 64 << 20,
            write_buffer_bytes: 1 << 20,
            ..LogConfig::default()
        };
        let log = open(dir.path(), config.clone(), 0).await;
        // 40 batches of 3 × 30 KB: ~3.6 MB at once.
        append_tagged(&log, 40, 30_000).await;
        let burst_writes = log.stats().writes;
        assert!(
            (5..30).contains(&burst_writes),
            "64 KiB buffers first (~55 writes if they stayed), 1 MiB after 16 of them (~4 if from the start): {burst_writes}"
        );
        glommio::timer::sleep(std::time::Duration::from_millis(150)).await;
        for tag in 40..45 {
            log.append(make_batch(tag, 3, 1000, TimestampMs(2000)), LeaderEpoch(1)).await.unwrap();
            log.sync_to(log.log_end_offset()).await.unwrap();
        }
        for tag in 45..60 {
            log.append(make_batch(tag, 3, 30_000, TimestampMs(3000)), LeaderEpoch(1)).await.unwrap();
        }
        let expected: Vec<u64> = (0..60).collect();
        assert_eq!(read_all_tags(&log, Offset(0)).await, expected);
        log.close().await.unwrap();
        let reopened = open(dir.path(), config, 0).await;
        assert_eq!(read_all_tags(&reopened, Offset(0)).await, expected);
        reopened.close().await.unwrap();
    });
}
