//! Unit tests of the append path: the in-place path (no I/O under the append lock) mixed with
//! the path that rolls, grows the file and writes buffers out, the time-based roll, and the
//! pre-allocation ahead of the appends.

use std::time::Duration;

use super::tests::{open, small_config};
use crate::model::{LeaderEpoch, Offset, TimestampMs};
use crate::storage::batch::validate;
use crate::storage::config::{Durability, LogConfig};
use crate::storage::segment::segment_file_name;
use crate::storage::PartitionLog;
use crate::testing::{batch_tag, make_batch, run_local};

/// Every batch from the log start to the end as (tag, stamped base offset), read one batch at a
/// time so that each read goes through the offset index.
async fn read_tags_and_bases(log: &PartitionLog) -> Vec<(u64, Offset)> {
    let mut found = Vec::new();
    let mut offset = log.log_start_offset();
    for _ in 0..100_000 {
        let read = log.read(offset, 1).await.unwrap();
        let Some(batch) = read.batches.first() else {
            return found;
        };
        let header = validate(batch).unwrap();
        assert!(header.base_offset <= offset && offset < header.next_offset(), "the batch holds the offset read");
        found.push((batch_tag(batch).unwrap(), header.base_offset));
        offset = header.next_offset();
    }
    panic!("read did not reach the log end");
}

/// Four tasks append one-record batches, yielding between appends, into a log whose 8 KiB write
/// buffer fills every few batches and whose 64 KiB segments roll: appends that fit in place
/// interleave with appends that write out, grow or roll. The offsets each append returns must
/// be the ones stamped in its batch, contiguous over all tasks, in each task's order, and the
/// same after a clean reopen (which loads the indexes built by the appends).
#[test]
fn in_place_and_io_appends_keep_offsets_contiguous_and_stamped() {
    const TASKS: u64 = 4;
    const APPENDS_PER_TASK: u64 = 60;
    run_local(|| async {
        let dir = tempfile::tempdir().unwrap();
        let config = LogConfig { durability: Durability::Never, write_buffer_bytes: 8 << 10, ..small_config() };
        // A tiny cache: reads come from the segment files.
        let log = open(dir.path(), config.clone(), 4 << 10).await;
        let tasks: Vec<_> = (0..TASKS)
            .map(|task| {
                let log = log.clone();
                glommio::spawn_local(async move {
                    let mut appended = Vec::new();
                    for i in 0..APPENDS_PER_TASK {
                        let tag = task * 1000 + i;
                        let info =
                            log.append(make_batch(tag, 1, 700, TimestampMs(1000)), LeaderEpoch(1)).await.unwrap();
                        assert_eq!(info.next_offset, info.base_offset.plus(1));
                        appended.push((tag, info.base_offset));
                        futures_lite::future::yield_now().await;
                    }
                    appended
                })
            })
            .collect();
        let mut expected = Vec::new();
        for task in tasks {
            let appended = task.await;
            assert!(appended.windows(2).all(|w| w[0].1 < w[1].1), "one task's batches stay in order");
            expected.extend(appended);
        }
        expected.sort_by_key(|&(_, base)| base);
        let bases: Vec<_> = expected.iter().map(|&(_, base)| base).collect();
        assert_eq!(bases, (0..TASKS * APPENDS_PER_TASK).map(Offset).collect::<Vec<_>>(), "contiguous offsets");
        assert!(log.segment_count() > 1 && log.stats().writes > 1, "the run rolled and wrote buffers out");
        assert_eq!(read_tags_and_bases(&log).await, expected, "stamped offsets are the returned ones");
        log.close().await.unwrap();
        let reopened = open(dir.path(), config, 4 << 10).await;
        assert_eq!(reopened.log_end_offset(), Offset(TASKS * APPENDS_PER_TASK));
        assert_eq!(read_tags_and_bases(&reopened).await, expected, "after a clean reopen");
        reopened.close().await.unwrap();
    });
}

/// A segment rolls on the first append after it is `segment_ms` old (counted from its first
/// append), and never by age without a time limit.
#[test]
fn segments_roll_by_age_only_with_a_time_limit() {
    run_local(|| async {
        for (segment_ms, rolls) in [(Some(40), true), (None, false)] {
            let dir = tempfile::tempdir().unwrap();
            let config =
                LogConfig { segment_bytes: 1 << 20, segment_ms, durability: Durability::Never, ..small_config() };
            let log = open(dir.path(), config, 1 << 20).await;
            let batch = || make_batch(1, 1, 100, TimestampMs(1000));
            log.append(batch(), LeaderEpoch(1)).await.unwrap();
            log.append(batch(), LeaderEpoch(1)).await.unwrap();
            assert_eq!(log.segment_count(), 1, "a young segment does not roll");
            // Past the limit by more than a coarse clock tick (at most 10 ms).
            glommio::timer::sleep(Duration::from_millis(80)).await;
            let info = log.append(batch(), LeaderEpoch(1)).await.unwrap();
            assert_eq!(info.base_offset, Offset(2));
            assert_eq!(log.segment_count(), if rolls { 2 } else { 1 }, "segment_ms {segment_ms:?}");
            // The new segment's clock starts with its own first append.
            log.append(batch(), LeaderEpoch(1)).await.unwrap();
            assert_eq!(log.segment_count(), if rolls { 2 } else { 1 });
            log.close().await.unwrap();
        }
    });
}

/// Guards the pre-allocation ahead (`preallocate.rs`): a partition appended at a steady pace
/// finds its file already grown each time it reaches the end of an allocation step, so no
/// append waits for a fallocate of its own; without it every step (1 MiB here) is one waited
/// fallocate. Also checks that the batches read back and survive a clean reopen after the
/// file grew under the in-flight writes.
#[test]
fn appends_at_a_steady_pace_never_wait_for_a_fallocate() {
    const APPENDS: u64 = 256;
    const VALUE_BYTES: usize = 16 << 10;
    run_local(|| async {
        let dir = tempfile::tempdir().unwrap();
        let config = LogConfig {
            segment_bytes: 64 << 20,
            preallocate_bytes: 1 << 20,
            durability: Durability::Never,
            ..LogConfig::default()
        };
        let log = open(dir.path(), config.clone(), 1 << 20).await;
        let mut started_ahead = 0;
        for tag in 0..APPENDS {
            log.append(make_batch(tag, 1, VALUE_BYTES, TimestampMs(1000)), LeaderEpoch(1)).await.unwrap();
            if log.is_preallocating() {
                started_ahead += 1;
                // The producer's next request: the fallocate completes meanwhile.
                glommio::timer::sleep(Duration::from_millis(2)).await;
            }
        }
        let appended_bytes = log.size_bytes();
        assert!(appended_bytes > 4 << 20, "the appends crossed several allocation steps");
        assert!(started_ahead >= 3, "a pre-allocation started ahead of each step ({started_ahead})");
        assert_eq!(log.stats().allocations_waited, 0, "no append waited for a fallocate");
        let file_bytes = std::fs::metadata(dir.path().join(segment_file_name(Offset(0), "log"))).unwrap().len();
        assert!(file_bytes >= appended_bytes, "the file was grown ahead: {file_bytes} < {appended_bytes}");
        log.close().await.unwrap();
        let reopened = open(dir.path(), config, 1 << 20).await;
        assert_eq!(reopened.log_end_offset(), Offset(APPENDS));
        let tags: Vec<u64> = read_tags_and_bases(&reopened).await.into_iter().map(|(tag, _)| tag).collect();
        assert_eq!(tags, (0..APPENDS).collect::<Vec<_>>());
        reopened.close().await.unwrap();
    });
}

/// Guards the sealed segments' index files, written on the blocking thread after the roll
/// returns: they appear for every closed segment once the writes finish, and a crash before
/// they were written (simulated by removing them and dropping the log unclosed) loses nothing,
/// because open rebuilds a closed segment's missing indexes by a scan, keeps it whole and
/// writes the indexes back, so the next open does not scan again.
#[test]
fn a_rolled_segments_indexes_are_written_after_the_roll_and_rebuilt_if_a_crash_lost_them() {
    run_local(|| async {
        let dir = tempfile::tempdir().unwrap();
        let log = open(dir.path(), small_config(), 1 << 20).await;
        let mut bases = Vec::new();
        for tag in 0..240 {
            bases.push(
                log.append(make_batch(tag, 1, 900, TimestampMs(1000)), LeaderEpoch(1)).await.unwrap().base_offset,
            );
        }
        assert!(log.segment_count() >= 3, "64 KiB segments rolled");
        log.wait_for_seal().await;
        log.finish_index_writes().await;
        let index_files = |extension: &str| {
            let mut names: Vec<_> = std::fs::read_dir(dir.path())
                .unwrap()
                .filter_map(|entry| entry.ok()?.file_name().into_string().ok())
                .filter(|name| name.ends_with(extension))
                .collect();
            names.sort();
            names
        };
        assert_eq!(index_files(".index").len(), log.segment_count() - 1, "one per closed segment");
        assert_eq!(index_files(".timeindex").len(), log.segment_count() - 1);
        for name in index_files(".index").into_iter().chain(index_files(".timeindex")) {
            std::fs::remove_file(dir.path().join(name)).unwrap();
        }
        drop(log);
        let reopened = open(dir.path(), small_config(), 1 << 20).await;
        assert_eq!(reopened.log_end_offset(), Offset(240));
        let found: Vec<(u64, Offset)> = read_tags_and_bases(&reopened).await;
        assert_eq!(
            found,
            (0..240).zip(bases).collect::<Vec<_>>(),
            "every batch, at its offset, through rebuilt indexes"
        );
        assert_eq!(index_files(".index").len(), reopened.segment_count() - 1, "the rebuilt indexes are written back");
        reopened.close().await.unwrap();
    });
}
