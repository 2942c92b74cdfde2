//! Crash test: a child process appends batches with `always` durability and prints each
//! acknowledged batch; the parent kills it with SIGKILL at random moments, many times. After
//! every kill the log is reopened and every acknowledged batch must read back intact, at the
//! offset it was acknowledged with, in order. Guards the durability contract of
//! `PartitionLog::append` and the recovery scan.
//!
//! The child is this same test binary, started with an environment variable that turns
//! `crash_child_appender` from a no-op into the appender.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use ringmq::model::{LeaderEpoch, Offset, TimestampMs};
use ringmq::storage::{Durability, LogConfig};
use ringmq::testing::{make_batch, run_local};

use crate::support::{open_log, read_everything, small_log_config, Rng};

const CHILD_DIR_ENV: &str = "RINGMQ_CRASH_CHILD_DIR";
const CHILD_SEED_ENV: &str = "RINGMQ_CRASH_CHILD_SEED";
const KILLS: u64 = 12;
const CHILD_RUN_MS_MAX: u64 = 400;
const TIME_LIMIT: Duration = Duration::from_secs(90);

fn config() -> LogConfig {
    LogConfig { durability: Durability::Always, ..small_log_config() }
}

/// In the child: append until killed (or for at most 30 s), printing `ACK base next tag`
/// after each append resolves. In a normal test run: does nothing.
#[test]
fn crash_child_appender() {
    let (Ok(dir), Ok(seed)) = (std::env::var(CHILD_DIR_ENV), std::env::var(CHILD_SEED_ENV)) else {
        return;
    };
    let seed: u64 = seed.parse().unwrap();
    run_local(move || async move {
        let (log, _) = open_log(std::path::Path::new(&dir), config()).await;
        let mut rng = Rng::new(seed);
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut tag = seed * 1_000_000;
        println!("READY");
        while Instant::now() < deadline {
            let batch = make_batch(tag, rng.range(1, 8) as usize, rng.range(10, 4000) as usize, TimestampMs::now());
            let info = log.append(batch, LeaderEpoch(1)).await.unwrap();
            println!("ACK {} {} {}", info.base_offset.0, info.next_offset.0, tag);
            tag += 1;
        }
    });
}

#[test]
fn every_acknowledged_batch_survives_sigkill() {
    let dir = tempfile::tempdir().unwrap();
    let mut rng = Rng::new(0xC0FFEE);
    let mut acknowledged: BTreeMap<u64, (u64, u64)> = BTreeMap::new(); // base -> (next, tag)
    let started = Instant::now();
    for round in 1..=KILLS {
        if started.elapsed() > TIME_LIMIT {
            eprintln!("crash test: time limit reached after {} rounds", round - 1);
            break;
        }
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args(["--exact", "storage_crash::crash_child_appender", "--nocapture", "--test-threads=1"])
            .env(CHILD_DIR_ENV, dir.path())
            .env(CHILD_SEED_ENV, round.to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (lines_tx, lines_rx) = mpsc::channel();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if lines_tx.send(line).is_err() {
                    break;
                }
            }
        });
        // Wait until the child is appending, then let it run a random while and kill it.
        let ready = lines_rx.iter().take(20).any(|line| line.ends_with("READY"));
        assert!(ready, "round {round}: the child did not start");
        std::thread::sleep(Duration::from_millis(rng.range(5, CHILD_RUN_MS_MAX)));
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        reader.join().unwrap();
        let mut acks_this_round = 0;
        for line in lines_rx.try_iter() {
            let fields: Vec<u64> =
                line.strip_prefix("ACK ").unwrap_or("").split(' ').filter_map(|f| f.parse().ok()).collect();
            if let [base, next, tag] = fields[..] {
                acknowledged.insert(base, (next, tag));
                acks_this_round += 1;
            }
        }
        let path = dir.path().to_path_buf();
        let expected_batches = acknowledged.clone();
        let summary = run_local(move || async move {
            let (log, report) = open_log(&path, config()).await;
            let batches = read_everything(&log, Offset(0)).await;
            log.close().await.unwrap();
            (batches, report.truncation.map(|t| t.reason))
        });
        let (batches, truncation) = summary;
        let by_base: BTreeMap<u64, (u64, u64)> =
            batches.iter().map(|&(base, next, tag)| (base.0, (next.0, tag))).collect();
        for (base, entry) in &expected_batches {
            assert_eq!(
                by_base.get(base),
                Some(entry),
                "round {round}: acknowledged batch at {base} is lost or changed"
            );
        }
        assert!(batches.windows(2).all(|w| w[0].1 == w[1].0), "round {round}: batches are contiguous");
        eprintln!(
            "crash round {round}: {acks_this_round} acks, {} batches in the log, recovery cut: {truncation:?}",
            batches.len()
        );
        // What survived beyond the acknowledged ones is kept as the log's truth from now on.
        acknowledged = by_base;
    }
    assert!(!acknowledged.is_empty(), "the children acknowledged nothing: the test tested nothing");
}
