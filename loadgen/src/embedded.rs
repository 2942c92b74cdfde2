//! `--embedded`: runs `ringmq serve` as a child process on a fresh data directory under
//! `./target` (a real disk, not tmpfs, so that the figures are the broker's), waits for its
//! `ringmq ready … listen=ADDR` line, and stops it with SIGTERM at the end.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long the broker may take to report ready.
const READY_TIMEOUT: Duration = Duration::from_secs(60);
/// How long the broker may take to stop after SIGTERM before it is killed.
const STOP_TIMEOUT: Duration = Duration::from_secs(60);
/// Broker stderr lines kept for an error message.
const LOG_TAIL_LINES: usize = 20;

/// A running child broker. Stopped (SIGTERM, then SIGKILL after a timeout) by [`Broker::stop`]
/// or on drop.
pub struct Broker {
    child: Option<Child>,
    pub addr: SocketAddr,
    pub data_dir: PathBuf,
    log_tail: Arc<Mutex<Vec<String>>>,
}

/// The broker binary: `--broker-bin`, else `ringmq` next to this executable.
pub fn broker_binary(explicit: Option<&Path>) -> Result<PathBuf, String> {
    if let Some(path) = explicit {
        return Ok(path.to_path_buf());
    }
    let me = std::env::current_exe().map_err(|error| format!("cannot find this executable: {error}"))?;
    let candidate = me.parent().map(|dir| dir.join("ringmq"));
    match candidate {
        Some(path) if path.is_file() => Ok(path),
        _ => Err(format!(
            "no `ringmq` binary next to {} (build it with `cargo build --release`, or pass --broker-bin)",
            me.display()
        )),
    }
}

/// Finds `listen=ADDR` in a log line, ignoring colour escapes.
pub fn parse_ready_line(line: &str) -> Option<SocketAddr> {
    if !line.contains("ringmq ready") {
        return None;
    }
    let plain = strip_ansi(line);
    plain.split_whitespace().find_map(|word| word.strip_prefix("listen=")).and_then(|addr| addr.parse().ok())
}

fn strip_ansi(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            // CSI: ESC [ … final byte in @..~
            for next in chars.by_ref() {
                if ('@'..='~').contains(&next) && next != '[' {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

impl Broker {
    /// Starts the broker with `flags` on a new data dir under `target_dir`, and waits until
    /// it is ready.
    pub fn start(binary: &Path, flags: &[String], target_dir: &Path) -> Result<Broker, String> {
        let stamp =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis()).unwrap_or(0);
        let data_dir = target_dir.join(format!("loadgen-data-{}-{stamp}", std::process::id()));
        std::fs::create_dir_all(&data_dir)
            .map_err(|error| format!("cannot create the broker's data dir {}: {error}", data_dir.display()))?;
        let mut command = Command::new(binary);
        command
            .arg("serve")
            .arg("--data-dir")
            .arg(&data_dir)
            .arg("--listen")
            .arg("127.0.0.1:0")
            .args(flags)
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut child =
            command.spawn().map_err(|error| format!("cannot start the broker {}: {error}", binary.display()))?;
        let Some(stderr) = child.stderr.take() else {
            let _ = child.kill();
            return Err("the broker's stderr is not piped".to_owned());
        };
        let log_tail = Arc::new(Mutex::new(Vec::new()));
        let (ready_sender, ready_receiver) = mpsc::channel::<SocketAddr>();
        let tail = Arc::clone(&log_tail);
        // Reads the broker's log to its end (so that the pipe never fills), keeping the last
        // lines for error messages and passing warnings and errors through.
        std::thread::spawn(move || {
            let mut ready_sender = Some(ready_sender);
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if let Some(addr) = parse_ready_line(&line) {
                    if let Some(sender) = ready_sender.take() {
                        let _ = sender.send(addr);
                    }
                }
                if line.contains("WARN") || line.contains("ERROR") {
                    eprintln!("broker: {}", strip_ansi(&line));
                }
                if let Ok(mut tail) = tail.lock() {
                    tail.push(line);
                    let excess = tail.len().saturating_sub(LOG_TAIL_LINES);
                    tail.drain(..excess);
                }
            }
        });
        let deadline = Instant::now() + READY_TIMEOUT;
        let mut broker = Broker { child: Some(child), addr: SocketAddr::from(([127, 0, 0, 1], 0)), data_dir, log_tail };
        loop {
            match ready_receiver.recv_timeout(Duration::from_millis(50)) {
                Ok(addr) => {
                    broker.addr = addr;
                    return Ok(broker);
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => {}
            }
            if let Some(status) = broker.exit_status() {
                return Err(format!("the broker exited before it was ready ({status}): {}", broker.last_log_line()));
            }
            if Instant::now() >= deadline {
                return Err(format!(
                    "the broker did not report ready within {READY_TIMEOUT:?}: {}",
                    broker.last_log_line()
                ));
            }
        }
    }

    /// The broker's process id.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Resident memory of the broker (`VmRSS` of /proc/PID/status), in KiB.
    pub fn rss_kib(&self) -> Option<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid()?)).ok()?;
        parse_vm_rss_kib(&status)
    }

    fn exit_status(&mut self) -> Option<std::process::ExitStatus> {
        self.child.as_mut().and_then(|child| child.try_wait().ok().flatten())
    }

    fn last_log_line(&self) -> String {
        self.log_tail
            .lock()
            .ok()
            .and_then(|tail| tail.last().map(|line| strip_ansi(line)))
            .unwrap_or_else(|| "(no log)".to_owned())
    }

    /// SIGTERM, wait for the clean stop (SIGKILL after a timeout), remove the data dir.
    pub fn stop(mut self) -> Result<(), String> {
        let outcome = self.stop_child();
        // The data dir may be large; a failure to remove it is not worth failing the run.
        let _ = std::fs::remove_dir_all(&self.data_dir);
        outcome
    }

    fn stop_child(&mut self) -> Result<(), String> {
        let Some(mut child) = self.child.take() else { return Ok(()) };
        if let Ok(Some(status)) = child.try_wait() {
            return Err(format!("the broker had already exited ({status}): {}", self.last_log_line()));
        }
        if let Ok(pid) = libc::pid_t::try_from(child.id()) {
            // SAFETY: kill(2) with a pid of our own child that has not been reaped (try_wait
            // returned None above), so the pid cannot have been reused.
            unsafe {
                libc::kill(pid, libc::SIGTERM);
            }
        }
        let deadline = Instant::now() + STOP_TIMEOUT;
        loop {
            match child.try_wait() {
                Ok(Some(status)) if status.success() => return Ok(()),
                Ok(Some(status)) => return Err(format!("the broker stopped with {status}: {}", self.last_log_line())),
                Ok(None) if Instant::now() >= deadline => {
                    let _ = child.kill();
                    let _ = child.wait();
                    return Err(format!("the broker did not stop within {STOP_TIMEOUT:?} of SIGTERM; killed"));
                }
                Ok(None) => std::thread::sleep(Duration::from_millis(20)),
                Err(error) => return Err(format!("waiting for the broker: {error}")),
            }
        }
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        if self.child.is_some() {
            let _ = self.stop_child();
            let _ = std::fs::remove_dir_all(&self.data_dir);
        }
    }
}

/// `VmRSS:   1234 kB` → 1234.
pub fn parse_vm_rss_kib(status: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_listen_address_in_the_ready_line() {
        let plain = "2026-11-25T00:00:00Z  INFO ringmq::server: ringmq ready listen=127.0.0.1:40123 shards=2";
        assert_eq!(parse_ready_line(plain), Some("127.0.0.1:40123".parse().unwrap()));
        let coloured = "\u{1b}[32m INFO\u{1b}[0m \u{1b}[2mringmq::server\u{1b}[0m: ringmq ready \u{1b}[3mlisten\u{1b}[0m\u{1b}[2m=\u{1b}[0m127.0.0.1:9 \u{1b}[3mshards\u{1b}[0m\u{1b}[2m=\u{1b}[0m1";
        assert_eq!(parse_ready_line(coloured), Some("127.0.0.1:9".parse().unwrap()));
        assert_eq!(parse_ready_line("INFO shard ready listen=1.2.3.4:5"), None);
    }

    #[test]
    fn reads_vm_rss() {
        let status = "Name:\tringmq\nVmPeak:\t  999 kB\nVmRSS:\t   20480 kB\nThreads:\t3\n";
        assert_eq!(parse_vm_rss_kib(status), Some(20_480));
        assert_eq!(parse_vm_rss_kib("Name: x\n"), None);
    }
}
