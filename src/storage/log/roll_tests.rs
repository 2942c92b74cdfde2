//! Unit tests of the roll and the background seal (`roll.rs`): the roll does not wait for the
//! closed segment's sync, a durable append does, and recovery cuts the log after a segment
//! whose seal a crash interrupted.

use std::path::Path;

use super::tests::{open, small_config};
use crate::model::{LeaderEpoch, Offset, TimestampMs};
use crate::storage::config::{Durability, LogConfig};
use crate::storage::error::StorageError;
use crate::storage::segment::segment_file_name;
use crate::storage::PartitionLog;
use crate::testing::{make_batch, run_local};

/// Appends 900-byte one-record batches tagged from `first` until the log has rolled once more;
/// returns the next tag.
async fn append_until_roll(log: &PartitionLog, first: u64) -> u64 {
    let segments = log.segment_count();
    for tag in first..first + 1000 {
        log.append(make_batch(tag, 1, 900, TimestampMs(1000)), LeaderEpoch(1)).await.unwrap();
        if log.segment_count() > segments {
            return tag + 1;
        }
    }
    panic!("no roll after 1000 appends");
}

fn file_len(dir: &Path, base: Offset, extension: &str) -> Option<u64> {
    std::fs::metadata(dir.join(segment_file_name(base, extension))).ok().map(|m| m.len())
}

/// Guards the background seal: with `--fsync never` the append that rolls returns while the
/// closed segment is still being sealed (a synchronous seal stopped the partition 5–8 ms);
/// once the seal ends, the closed file is cut to its logical size, durable up to the roll, and
/// its index files get written.
#[test]
fn a_roll_returns_before_the_closed_segment_is_sealed() {
    run_local(|| async {
        let dir = tempfile::tempdir().unwrap();
        let config = LogConfig { durability: Durability::Never, ..small_config() };
        let log = open(dir.path(), config, 1 << 20).await;
        append_until_roll(&log, 0).await;
        assert!(log.is_sealing(), "the roll returned before the seal");
        let new_base = log.state.borrow().active().base_offset;
        log.wait_for_seal().await;
        log.finish_index_writes().await;
        assert!(!log.is_poisoned());
        let closed_size = log.state.borrow().segments[&Offset(0)].size_bytes;
        assert_eq!(file_len(dir.path(), Offset(0), "log"), Some(closed_size), "cut to its logical size");
        assert!(log.durable_offset() >= new_base, "synced up to the roll");
        assert!(file_len(dir.path(), Offset(0), "index").is_some(), "indexes written after the seal");
        log.close().await.unwrap();
    });
}

/// Guards the durability rule of the seal: with `--fsync always`, an append into the new
/// segment is acknowledged only after the closed segment's seal synced it, never on the sync
/// of the new segment alone.
#[test]
fn a_durable_append_after_a_roll_waits_for_the_seal() {
    run_local(|| async {
        let dir = tempfile::tempdir().unwrap();
        let log = open(dir.path(), small_config(), 1 << 20).await;
        for round in 0..3 {
            let next_tag = append_until_roll(&log, round * 1000).await;
            assert!(!log.is_sealing(), "the acknowledged append waited for the seal (round {round})");
            let info = log.append(make_batch(next_tag, 1, 900, TimestampMs(1000)), LeaderEpoch(1)).await.unwrap();
            assert!(log.durable_offset() >= info.next_offset);
        }
        log.close().await.unwrap();
    });
}

/// Guards recovery after a crash in the middle of a seal: the closed segment before the active
/// one has no index files, still its pre-allocated tail, and lost its last batch; open cuts the
/// log at its valid end, removes the active segment after it, and appends go on from the cut.
#[test]
fn recovery_cuts_the_log_after_a_segment_whose_seal_was_interrupted() {
    run_local(|| async {
        let dir = tempfile::tempdir().unwrap();
        let config = LogConfig { durability: Durability::Never, ..small_config() };
        let log = open(dir.path(), config.clone(), 1 << 20).await;
        let next_tag = append_until_roll(&log, 0).await;
        let unsealed_base = Offset(0);
        let (unsealed_size, active_base) = {
            let state = log.state.borrow();
            (state.segments[&unsealed_base].size_bytes, state.active().base_offset)
        };
        append_until_roll(&log, next_tag).await;
        log.close().await.unwrap();
        // Undo the seal of the first segment: no indexes, the last batch lost, zeros after it.
        for extension in ["index", "timeindex"] {
            std::fs::remove_file(dir.path().join(segment_file_name(unsealed_base, extension))).unwrap();
        }
        let path = dir.path().join(segment_file_name(unsealed_base, "log"));
        let file = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
        file.set_len(unsealed_size - 100).unwrap();
        file.set_len(unsealed_size + (64 << 10)).unwrap();
        drop(file);
        // The second closed segment is the one before the active segment: make the first the
        // last closed one by removing the active segment, as if the crash came before it.
        let later_bases: Vec<Offset> = {
            let mut bases: Vec<Offset> = std::fs::read_dir(dir.path())
                .unwrap()
                .filter_map(|e| crate::storage::segment::parse_segment_file_name(e.ok()?.file_name().to_str()?))
                .filter(|base| *base > active_base)
                .collect();
            bases.sort();
            bases
        };
        for base in later_bases {
            std::fs::remove_file(dir.path().join(segment_file_name(base, "log"))).unwrap();
        }
        std::fs::remove_file(dir.path().join("clean_shutdown")).unwrap();

        let (log, report) =
            PartitionLog::open(dir.path(), config, crate::storage::tail_cache::TailCacheBudget::new(1 << 20))
                .await
                .unwrap();
        let cut_at = active_base.0 - 1;
        assert_eq!(log.log_end_offset(), Offset(cut_at), "cut after the last whole batch of the unsealed segment");
        assert_eq!(log.segment_count(), 1, "the segment after it is removed");
        assert!(report.truncation.is_some(), "the cut is reported");
        assert!(file_len(dir.path(), active_base, "log").is_none());
        let info = log.append(make_batch(7, 1, 900, TimestampMs(1000)), LeaderEpoch(1)).await.unwrap();
        assert_eq!(info.base_offset, Offset(cut_at), "appends go on from the cut");
        log.close().await.unwrap();
    });
}

/// Guards the other half of recovery after an interrupted seal: a closed segment that holds
/// all its batches but was not cut or given its indexes is kept whole, cut to its data size
/// and given its index files, and nothing after it is removed.
#[test]
fn recovery_finishes_the_seal_of_a_whole_unsealed_segment() {
    run_local(|| async {
        let dir = tempfile::tempdir().unwrap();
        let config = small_config();
        let log = open(dir.path(), config.clone(), 1 << 20).await;
        let next_tag = append_until_roll(&log, 0).await;
        let size = log.state.borrow().segments[&Offset(0)].size_bytes;
        log.append(make_batch(next_tag, 1, 900, TimestampMs(1000)), LeaderEpoch(1)).await.unwrap();
        let end = log.log_end_offset();
        // A crash leaves nothing running: let the seal's index files (written on a blocking
        // thread) land before they are removed below. Without this the removal found nothing
        // (they had not landed yet), and when they landed before the reopen read them, the
        // reopened log saw a finished seal and did not cut the file (a flake seen in CI).
        log.finish_index_writes().await;
        drop(log);
        // The crash came after the last write, before the cut and the index files.
        for extension in ["index", "timeindex"] {
            std::fs::remove_file(dir.path().join(segment_file_name(Offset(0), extension))).expect("the seal wrote it");
        }
        let path = dir.path().join(segment_file_name(Offset(0), "log"));
        std::fs::OpenOptions::new().write(true).open(&path).unwrap().set_len(size + (64 << 10)).unwrap();

        let log = open(dir.path(), config, 1 << 20).await;
        assert_eq!(log.log_end_offset(), end, "nothing lost");
        assert_eq!(log.segment_count(), 2, "nothing removed");
        assert_eq!(file_len(dir.path(), Offset(0), "log"), Some(size), "cut to its data size");
        assert!(file_len(dir.path(), Offset(0), "index").is_some(), "indexes written");
        log.close().await.unwrap();
    });
}

/// Guards the error of a failed write to a closed segment: after a roll the closed segment's
/// last write is still in flight, and when it fails, the poisoned log names that segment's
/// file, not the active one's.
#[test]
fn a_failed_write_of_the_closed_segment_names_its_file() {
    run_local(|| async {
        let dir = tempfile::tempdir().unwrap();
        let config = LogConfig { durability: Durability::Never, ..small_config() };
        let log = open(dir.path(), config, 1 << 20).await;
        let batch_bytes = make_batch(0, 1, 900, TimestampMs(1000)).len() as u64;
        let mut tag = 0;
        // Bounded: small segments roll within a few hundred appends.
        while !log.state.borrow().should_roll(batch_bytes, log.config.segment_bytes, None) {
            log.append(make_batch(tag, 1, 900, TimestampMs(1000)), LeaderEpoch(1)).await.unwrap();
            tag += 1;
            assert!(tag < 1000, "no roll due after 1000 appends");
        }
        // The next write issued is the roll's last write to the closed segment.
        log.state.borrow_mut().inject_write_failure = true;
        log.append(make_batch(tag, 1, 900, TimestampMs(1000)), LeaderEpoch(1)).await.unwrap();
        log.wait_for_seal().await;
        let refused = log.append(make_batch(tag + 1, 1, 900, TimestampMs(1000)), LeaderEpoch(1)).await;
        let Err(StorageError::Poisoned { cause, .. }) = refused else {
            panic!("the failed write poisons the log: {refused:?}");
        };
        assert!(cause.contains(&segment_file_name(Offset(0), "log")), "names the closed segment: {cause}");
    });
}
