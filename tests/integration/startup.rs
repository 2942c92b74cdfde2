//! Start-up failures are one actionable line and a non-zero exit, never a panic: a data
//! directory another broker holds, a data directory that cannot exist, bad flags.

use std::process::Command;

use crate::broker_support::Broker;

fn serve(args: &[&str]) -> (Option<i32>, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_ringmq"))
        .arg("serve")
        .args(["--listen", "127.0.0.1:0"])
        .args(args)
        .output()
        .expect("running ringmq serve");
    (output.status.code(), String::from_utf8_lossy(&output.stderr).into_owned())
}

#[test]
fn start_up_failures_are_one_clear_line_and_a_non_zero_exit() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_str().unwrap();
    let broker = Broker::start(dir.path(), &["--cores", "1"]);
    let (code, stderr) = serve(&["--data-dir", data]);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains("locked by another process"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    broker.stop();

    let (code, stderr) = serve(&["--data-dir", "/proc/ringmq-cannot-be-here"]);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains("/proc/ringmq-cannot-be-here") && !stderr.contains("panicked"), "{stderr}");

    let (code, stderr) = serve(&["--data-dir", data, "--cores", "0"]);
    assert_ne!(code, Some(0), "{stderr}");
    assert!(stderr.contains("--cores"), "{stderr}");

    let (code, stderr) = serve(&["--data-dir", data, "--fsync", "sometimes"]);
    assert_eq!(code, Some(2), "a bad flag is a usage error: {stderr}");
    assert!(stderr.contains("sometimes"), "{stderr}");

    let (code, stderr) = serve(&["--data-dir", data, "--log-level", "[[["]);
    assert_eq!(code, Some(2), "{stderr}");
}
