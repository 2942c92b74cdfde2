//! End-to-end test of the load generator: `ringmq-loadgen --embedded` starts the real broker
//! binary, produces and consumes 2,000 small messages, and writes the JSON report. Guards the
//! whole path a first benchmark takes (child broker, ready line, topic creation, actors,
//! report), and that a bad flag is one line and exit 2.

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

/// Bound on the run: the loadgen's own limits are far below it.
const RUN_TIMEOUT: Duration = Duration::from_secs(120);

fn loadgen() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_ringmq-loadgen"))
}

/// The `ringmq` broker binary lives next to the loadgen in the workspace's target dir; cargo
/// builds it for the workspace's tests, but build it if this test runs alone.
fn broker() -> PathBuf {
    let path = loadgen().with_file_name("ringmq");
    if !path.is_file() {
        let release = loadgen().parent().is_some_and(|dir| dir.ends_with("release"));
        let mut build = Command::new(env!("CARGO"));
        build.args(["build", "--bin", "ringmq", "-p", "ringmq"]);
        if release {
            build.arg("--release");
        }
        let status = build.status().expect("cargo build runs");
        assert!(status.success(), "cannot build the ringmq binary");
    }
    path
}

/// Runs `ringmq-loadgen --embedded ARGS --quiet --json FILE` against the built broker, bounded
/// by [`RUN_TIMEOUT`], and returns the JSON report.
fn run_embedded(name: &str, args: &[&str]) -> serde_json::Value {
    let broker = broker();
    let work = std::env::temp_dir().join(format!("ringmq-loadgen-test-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&work).expect("work dir");
    let json = work.join("out.json");
    let mut child = Command::new(loadgen())
        .arg("--embedded")
        .args(args)
        .args(["--quiet", "--json"])
        .arg(&json)
        .arg("--broker-bin")
        .arg(&broker)
        // The broker's data dir goes under ./target of the current dir.
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .spawn()
        .expect("start the loadgen");
    let deadline = Instant::now() + RUN_TIMEOUT;
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("the loadgen did not finish within {RUN_TIMEOUT:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "loadgen exited with {status}");
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&json).expect("the JSON report")).expect("valid JSON");
    let _ = std::fs::remove_dir_all(&work);
    report
}

#[test]
fn embedded_run_writes_a_json_report_with_throughput_and_no_errors() {
    let report = run_embedded(
        "plain",
        &[
            "--messages",
            "2000",
            "--message-bytes",
            "100",
            "--consumers",
            "1",
            "--broker-arg=--fsync=never",
            "--broker-arg=--cores=1",
        ],
    );
    let results = &report["results"];
    assert_eq!(results["produce"]["messages"], 2000, "{results}");
    assert!(results["produce"]["msgs_per_s"].as_f64().unwrap_or(0.0) > 0.0, "{results}");
    assert_eq!(results["consume"]["messages"], 2000, "{results}");
    assert!(results["errors"].as_object().is_some_and(|errors| errors.is_empty()), "{results}");
    assert!(results["failure"].is_null(), "{results}");
    assert!(results["produce_ack_latency"]["p99_us"].as_f64().unwrap_or(0.0) > 0.0);
    assert!(report["distributions"]["produce_ack"].as_array().is_some_and(|d| !d.is_empty()));
    assert_eq!(report["parameters"]["message_bytes"], 100);
    assert!(report["host"]["cores"].as_u64().unwrap_or(0) >= 1);
}

/// Guards the CPU-wait lines: a timed run reports the producer's thread and the broker's shard
/// thread, each with the time it ran and waited in the measured window (when the kernel keeps
/// per-thread figures at all).
#[test]
fn embedded_run_reports_how_long_the_busy_threads_waited_for_their_cpus() {
    let report = run_embedded(
        "cpu-wait",
        &["--duration", "1s", "--rate", "20000", "--broker-arg=--fsync=never", "--broker-arg=--cores=1"],
    );
    if !std::path::Path::new("/proc/thread-self/schedstat").exists() {
        return; // No CONFIG_SCHED_INFO: nothing to report.
    }
    let waits = report["results"]["cpu_wait"].as_array().cloned().unwrap_or_default();
    let find = |process: &str, thread_prefix: &str| {
        waits.iter().find(|wait| {
            wait["process"] == process && wait["thread"].as_str().is_some_and(|name| name.starts_with(thread_prefix))
        })
    };
    for (process, thread) in [("loadgen", "producer-0"), ("broker", "ringmq-shard-0")] {
        let wait = find(process, thread).unwrap_or_else(|| panic!("no {process} {thread} in {waits:?}"));
        assert!(wait["ran_ms"].as_f64().unwrap_or(0.0) > 0.0, "{wait}");
        let percent = wait["waited_percent"].as_f64().unwrap_or(-1.0);
        assert!((0.0..=100.0).contains(&percent), "{wait}");
    }
    assert!(report["results"]["cpu_steal"].is_array(), "the host's stolen time per CPU, maybe none");
}

/// Idempotent producers at full speed (acks=all turns idempotence on): many pipelined requests
/// per partition must reach the broker's sequence check in the order they were sent, so no
/// `OutOfOrderSequence` and no loss or duplicate (every acknowledged message consumed once).
#[test]
fn pipelined_idempotent_producers_get_no_sequence_errors() {
    let report = run_embedded(
        "idempotent",
        &[
            "--messages",
            "200000",
            "--message-bytes",
            "100",
            "--batch-bytes",
            "16KiB",
            "--acks",
            "all",
            "--producers",
            "2",
            "--consumers",
            "1",
            "--broker-arg=--fsync=never",
        ],
    );
    let results = &report["results"];
    assert!(results["errors"].as_object().is_some_and(|errors| errors.is_empty()), "{results}");
    assert!(results["failure"].is_null(), "{results}");
    assert_eq!(results["produce"]["messages"], 200000, "{results}");
    assert_eq!(results["consume"]["messages"], 200000, "{results}");
}

/// Group mode: 2 members share 4 partitions; consumer 0 is killed without leaving after 1 s,
/// and its partitions must be consumed again by the survivor once the broker notices (1 s
/// session timeout), with every acknowledged message received at least once.
#[test]
fn group_run_reports_the_rebalance_pause_of_a_killed_member() {
    let report = run_embedded(
        "group",
        &[
            "--partitions",
            "4",
            "--producers",
            "1",
            "--consumers",
            "2",
            "--group",
            "loadgen-test",
            "--rate",
            "2000",
            "--duration",
            "4s",
            "--message-bytes",
            "100",
            "--kill-consumer-after",
            "1s",
            "--broker-arg=--fsync=never",
            "--broker-arg=--group-session-timeout-ms=1000",
        ],
    );
    let results = &report["results"];
    assert!(results["failure"].is_null(), "{results}");
    let produced = results["produce"]["messages"].as_u64().unwrap_or(0);
    assert!(produced > 0, "{results}");
    assert!(results["consume"]["messages"].as_u64().unwrap_or(0) >= produced, "at least once: {results}");
    let pause = &results["rebalance"];
    let orphaned = pause["partitions"].as_array().map_or(0, Vec::len);
    assert!(orphaned >= 1, "the killed member owned partitions: {pause}");
    assert!(pause["never_resumed"].as_array().is_some_and(|never| never.is_empty()), "{pause}");
    assert!(pause["pause_ms_max"].as_f64().unwrap_or(0.0) > 0.0, "{pause}");
    assert_eq!(report["parameters"]["group"], "loadgen-test");
}

#[test]
fn bad_flags_are_one_line_and_exit_2() {
    for args in [&["--acks", "2"][..], &["--key-mode", "hash"], &["--producers", "0"], &["--fsync", "never"]] {
        let output = Command::new(loadgen()).args(args).output().expect("run the loadgen");
        assert_eq!(output.status.code(), Some(2), "{args:?}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(stderr.trim_end().lines().count(), 1, "{args:?}: {stderr}");
        assert!(stderr.starts_with("ringmq-loadgen: "), "{stderr}");
    }
}
