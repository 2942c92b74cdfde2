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
    let mut child = ringmq_spawn(bootstrap, args, Stdio::piped());
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

    // Unreachable broker. Not the stopped broker's port: while other tests run, a client's
    // ephemeral port can take that number and the connect then reaches itself.
    let out = ringmq("127.0.0.1:1", &["topic", "list"], b"");
    assert_eq!(out.status.code(), Some(1));
    let stderr = text(&out.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.starts_with("ringmq: cannot connect to the broker"), "{stderr}");
}

/// Starts the CLI with `args` against `bootstrap`, stdout and stderr piped.
fn ringmq_spawn(bootstrap: &str, args: &[&str], stdin: Stdio) -> std::process::Child {
    Command::new(env!("CARGO_BIN_EXE_ringmq"))
        .arg("--bootstrap")
        .arg(bootstrap)
        .args(args)
        .stdin(stdin)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("running the ringmq CLI")
}

/// The committed offsets summed over the `partition` lines of `group describe`.
fn committed_sum(described: &str) -> u64 {
    described
        .lines()
        .filter(|line| line.starts_with("partition "))
        .filter_map(|line| line.split_whitespace().skip_while(|w| *w != "committed").nth(1))
        .filter_map(|offset| offset.parse::<u64>().ok())
        .sum()
}

/// Guards the group CLI: `consume --group` in both delivery modes commits what it printed and
/// resumes from there; `group list|describe`; `reset-offsets` only while the group is empty;
/// SIGINT leaves the group at once; one-line errors with exit 1 (runtime) and 2 (usage).
#[test]
fn cli_consumer_groups() {
    let data = tempfile::tempdir().expect("temp dir");
    let broker = Broker::start(data.path(), &["--cores", "1", "--group-session-timeout-ms", "3000"]);
    let addr = broker.address.to_string();
    let out = ringmq(&addr, &["topic", "create", "orders", "--partitions", "3"], b"");
    assert!(out.status.success(), "create: {}", text(&out.stderr));
    let out = ringmq(&addr, &["produce", "orders"], b"a\nb\nc\nd\ne\nf\n");
    assert!(out.status.success(), "produce: {}", text(&out.stderr));

    // At-least-once: 4 printed and committed, then the other 2 and nothing twice.
    let out = ringmq(&addr, &["consume", "orders", "--group", "g", "--max-messages", "4"], b"");
    assert!(out.status.success(), "consume: {}", text(&out.stderr));
    let first: Vec<String> = text(&out.stdout).lines().map(str::to_owned).collect();
    assert_eq!(first.len(), 4);
    let out = ringmq(&addr, &["group", "describe", "g"], b"");
    assert!(out.status.success(), "{}", text(&out.stderr));
    let described = text(&out.stdout);
    assert!(described.contains("state: Empty") && described.contains("members: 0"), "{described}");
    assert_eq!(described.matches("partition orders/").count(), 3, "{described}");
    assert_eq!(committed_sum(&described), 4, "{described}");
    let out = ringmq(&addr, &["consume", "orders", "--group", "g", "--idle-timeout-ms", "1500"], b"");
    assert!(out.status.success(), "{}", text(&out.stderr));
    let mut all: Vec<String> = first.clone();
    all.extend(text(&out.stdout).lines().map(str::to_owned));
    all.sort();
    assert_eq!(all, ["a", "b", "c", "d", "e", "f"]);

    let out = ringmq(&addr, &["group", "list"], b"");
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout).lines().collect::<Vec<_>>(), ["g Empty"]);

    // Reset while empty: everything again.
    let out = ringmq(&addr, &["group", "reset-offsets", "g", "--topic", "orders", "--to", "earliest"], b"");
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout).lines().count(), 3);
    let out = ringmq(&addr, &["consume", "orders", "--group", "g", "--idle-timeout-ms", "1500"], b"");
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout).lines().count(), 6);

    // An offset past the end is clamped to each partition's log end: nothing left to consume.
    let out = ringmq(&addr, &["group", "reset-offsets", "g", "--topic", "orders", "--to", "100"], b"");
    assert!(out.status.success(), "{}", text(&out.stderr));
    let described = text(&ringmq(&addr, &["group", "describe", "g"], b"").stdout);
    assert_eq!(committed_sum(&described), 6, "{described}");
    assert_eq!(described.matches(" lag 0").count(), 3, "{described}");

    // At-most-once: committed before printing, the count is what was printed.
    let args = ["consume", "orders", "--group", "g3", "--delivery", "at-most-once", "--max-messages", "2"];
    let out = ringmq(&addr, &args, b"");
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout).lines().count(), 2);
    let out = ringmq(&addr, &["group", "describe", "g3"], b"");
    assert_eq!(committed_sum(&text(&out.stdout)), 2, "{}", text(&out.stdout));

    // A running member: describe shows it; reset is refused; SIGINT leaves at once.
    let mut member = ringmq_spawn(&addr, &["consume", "orders", "--group", "g", "--from", "latest"], Stdio::null());
    let deadline = Instant::now() + CLI_TIMEOUT;
    let mut described = String::new();
    while Instant::now() < deadline {
        described = text(&ringmq(&addr, &["group", "describe", "g"], b"").stdout);
        if described.contains("partitions orders:0,1,2") {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(described.contains("state: Stable") && described.contains("members: 1"), "{described}");
    assert!(described.lines().any(|l| l.starts_with("member ") && l.contains(" epoch ")), "{described}");
    let out = ringmq(&addr, &["group", "reset-offsets", "g", "--topic", "orders", "--to", "latest"], b"");
    assert_eq!(out.status.code(), Some(1));
    let stderr = text(&out.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.starts_with("ringmq: group 'g' has active members"), "{stderr}");
    // SAFETY: kill(2) on our own child's pid, which has not been reaped yet.
    unsafe { libc::kill(member.id() as i32, libc::SIGINT) };
    let deadline = Instant::now() + CLI_TIMEOUT;
    while member.try_wait().expect("polling the member").is_none() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = member.kill();
    let output = member.wait_with_output().expect("the member's output");
    assert!(output.status.success(), "SIGINT exits 0: {}", text(&output.stderr));
    let described = text(&ringmq(&addr, &["group", "describe", "g"], b"").stdout);
    assert!(described.contains("members: 0"), "left at once, not after the session timeout: {described}");

    // Errors: one line; 1 at runtime, 2 for usage.
    for args in [
        &["group", "describe", "nope"][..],
        &["group", "reset-offsets", "g", "--topic", "nope", "--to", "earliest"],
        &["consume", "nope", "--group", "g", "--max-messages", "1"],
    ] {
        let out = ringmq(&addr, args, b"");
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        let stderr = text(&out.stderr);
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
        assert!(stderr.starts_with("ringmq: unknown "), "{stderr}");
    }
    for args in [
        &["consume", "orders", "--group", "g", "--partition", "1"][..],
        &["consume", "orders", "--group", "g", "--delivery", "sometimes"],
        &["consume", "orders", "--delivery", "at-most-once"],
        &["group", "reset-offsets", "g", "--topic", "orders", "--to", "yesterday"],
    ] {
        let out = ringmq(&addr, args, b"");
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let stderr = text(&out.stderr);
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
        assert!(stderr.starts_with("ringmq: "), "{stderr}");
    }
    broker.stop();
}
