//! The `ringmq` client subcommands against a real broker: topic create/list/describe, produce
//! from stdin, consume with `--max-messages` and `--format json`, and the one-line errors for
//! an unknown topic, an unreachable broker and a bad flag. Every child is bounded in time and
//! killed if it overruns; the broker is stopped at the end.

use std::io::Write;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::broker_support::Broker;

const CLI_TIMEOUT: Duration = Duration::from_secs(30);

/// Runs the CLI with `args` against `bootstrap`, feeding `stdin`; kills it after CLI_TIMEOUT.
fn ringmq(bootstrap: &str, args: &[&str], stdin: &[u8]) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_ringmq"))
        .arg("--bootstrap")
        .arg(bootstrap)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("running the ringmq CLI");
    if let Some(mut input) = child.stdin.take() {
        input.write_all(stdin).expect("writing the CLI's stdin");
    }
    let deadline = Instant::now() + CLI_TIMEOUT;
    while Instant::now() < deadline {
        if child.try_wait().expect("polling the CLI").is_some() {
            return child.wait_with_output().expect("collecting the CLI's output");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let _ = child.kill();
    let output = child.wait_with_output().expect("collecting the CLI's output");
    panic!("ringmq {args:?} did not finish within {CLI_TIMEOUT:?}: {output:?}");
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Guards the CLI contract end to end (see the module doc).
#[test]
fn cli_topic_produce_consume_and_errors() {
    let data = tempfile::tempdir().expect("temp dir");
    let broker = Broker::start(data.path(), &["--cores", "1"]);
    let addr = broker.address.to_string();

    let out = ringmq(&addr, &["topic", "create", "orders", "--partitions", "3"], b"");
    assert!(out.status.success(), "create: {}", text(&out.stderr));
    let out = ringmq(&addr, &["topic", "list"], b"");
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout).lines().collect::<Vec<_>>(), ["orders"]);
    let out = ringmq(&addr, &["topic", "describe", "orders"], b"");
    assert!(out.status.success(), "{}", text(&out.stderr));
    let described = text(&out.stdout);
    assert!(described.contains("partitions: 3"), "{described}");
    assert_eq!(described.matches("partition ").count(), 3, "{described}");

    let out = ringmq(&addr, &["produce", "orders", "--key-separator", ":"], b"k1:one\nk2:two\nthree\nk1:four\n");
    assert!(out.status.success(), "produce: {}", text(&out.stderr));

    let out = ringmq(&addr, &["consume", "orders", "--max-messages", "4", "--format", "json"], b"");
    assert!(out.status.success(), "consume: {}", text(&out.stderr));
    let lines: Vec<serde_json::Value> =
        text(&out.stdout).lines().map(|line| serde_json::from_str(line).expect("one JSON object per line")).collect();
    assert_eq!(lines.len(), 4);
    let mut values: Vec<&str> = lines.iter().map(|l| l["value"].as_str().unwrap()).collect();
    values.sort();
    assert_eq!(values, ["four", "one", "three", "two"]);
    let k1: Vec<&serde_json::Value> = lines.iter().filter(|l| l["key"] == "k1").collect();
    assert_eq!(k1.len(), 2);
    assert_eq!(k1[0]["partition"], k1[1]["partition"], "same key, same partition");
    assert!(lines.iter().any(|l| l["key"].is_null()));
    for line in &lines {
        assert!(line["offset"].is_u64() && line["timestamp"].is_i64());
    }

    // Idle timeout: everything, then exit 0 once nothing new arrives.
    let out = ringmq(&addr, &["consume", "orders", "--idle-timeout-ms", "300"], b"");
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout).lines().count(), 4);

    // Unknown topic: one line, exit 1, for every client subcommand.
    for args in [&["produce", "nope"][..], &["consume", "nope", "--max-messages", "1"], &["topic", "describe", "nope"]]
    {
        let out = ringmq(&addr, args, b"x\n");
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        let stderr = text(&out.stderr);
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
        assert!(stderr.starts_with("ringmq: unknown topic 'nope'"), "{stderr}");
    }
    // A bad flag: one line, exit 2.
    let out = ringmq(&addr, &["produce", "orders", "--acks", "7"], b"");
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(text(&out.stderr).lines().count(), 1, "{}", text(&out.stderr));
    assert!(text(&out.stderr).starts_with("ringmq: "));

    broker.stop();

    // Unreachable broker: the port is closed now.
    let out = ringmq(&addr, &["topic", "list"], b"");
    assert_eq!(out.status.code(), Some(1));
    let stderr = text(&out.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.starts_with("ringmq: cannot connect to the broker"), "{stderr}");
}
