//! The actors: producers and consumers, each on its own thread with its own glommio
//! `LocalExecutor` and its own broker connection, sharing only a [`Run`] (atomics, one mutex
//! taken about once a second per actor).
//!
//! Life of a run: every actor connects and gets ready (a consumer takes its positions before
//! any producer sends, so that it sees every message), reports ready, and waits for the
//! go; main stamps the start and lets them all go at once. Producers stop at the deadline or
//! when the message budget is spent, then flush; consumers stop once they have received
//! everything the producers got acknowledged (end-to-end), or at the deadline (alone).
//!
//! Time: every timestamp is nanoseconds from one `Instant` taken by main (CLOCK_MONOTONIC),
//! the same on every thread. When the run has consumers, a producer writes the message's
//! intended send time into the first [`TIMESTAMP_BYTES`] bytes of the value and a consumer
//! subtracts it from its receive time; without consumers every message shares one value.

pub mod consumer;
pub mod consumer_client;
pub mod group_consumer;
pub mod producer;
pub mod producer_client;
pub mod rebalance;

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use glommio::{LocalExecutorBuilder, Placement};
use ringmq::client::ClientError;

use crate::stats::SharedStats;

/// Bytes at the start of each value that carry its intended send time (u64 LE, ns).
pub const TIMESTAMP_BYTES: usize = 8;
/// io_uring buffer memory per actor executor: actors do no file I/O, and a small pool keeps
/// many actors within a default `RLIMIT_MEMLOCK`.
const ACTOR_IO_MEMORY_BYTES: usize = 1 << 20;
/// How often a waiting actor checks for the go (or a failure).
const START_POLL: Duration = Duration::from_millis(1);

/// The run's clock: nanoseconds since one shared `Instant`.
#[derive(Clone, Copy, Debug)]
pub struct Clock {
    base: Instant,
}

impl Clock {
    pub fn new() -> Clock {
        Clock { base: Instant::now() }
    }

    pub fn now_ns(&self) -> u64 {
        self.ns_at(Instant::now())
    }

    /// `instant` on the run's clock (0 before its start).
    pub fn ns_at(&self, instant: Instant) -> u64 {
        u64::try_from(instant.saturating_duration_since(self.base).as_nanos()).unwrap_or(u64::MAX)
    }
}

impl Default for Clock {
    fn default() -> Self {
        Clock::new()
    }
}

/// Writes the send time into the first bytes of a value.
pub fn stamp_value(value: &mut [u8], sent_ns: u64) {
    if let Some(head) = value.get_mut(..TIMESTAMP_BYTES) {
        head.copy_from_slice(&sent_ns.to_le_bytes());
    }
}

/// The send time carried by a value, if it is long enough.
pub fn value_sent_ns(value: &[u8]) -> Option<u64> {
    let head: [u8; TIMESTAMP_BYTES] = value.get(..TIMESTAMP_BYTES)?.try_into().ok()?;
    Some(u64::from_le_bytes(head))
}

/// State shared by main and every actor thread for one run.
#[derive(Debug)]
pub struct Run {
    pub clock: Clock,
    pub stats: SharedStats,
    /// Actors connected and positioned.
    pub ready: AtomicUsize,
    /// Set by main once everyone is ready: the start time (ns) + 1, 0 before.
    start_plus_one_ns: AtomicU64,
    /// Producers stop sending.
    pub stop_producers: AtomicBool,
    /// Everyone stops at once (a failure, or the consumers' deadline).
    pub abort: AtomicBool,
    /// Messages producers may still claim; `None`: no budget, and claims touch no shared state
    /// (every producer would otherwise write this cache line once per message).
    budget: Option<AtomicU64>,
    /// Producers that finished (flushed).
    pub producers_done: AtomicUsize,
    /// Messages acknowledged without error, whole run: what consumers must receive.
    pub acked_ok_total: AtomicU64,
    /// When the last producer finished flushing / the last consumer stopped (ns).
    pub producers_end_ns: AtomicU64,
    pub consumers_end_ns: AtomicU64,
    /// The first fatal failure ("broker connection lost after …").
    fatal: Mutex<Option<String>>,
    /// Group mode with `--kill-consumer-after`: the rebalance pause.
    pub rebalance: rebalance::RebalanceWatch,
}

impl Run {
    /// `actors`: how many actor threads will hand their figures to `stats`.
    pub fn new(clock: Clock, messages: Option<u64>, actors: usize) -> Run {
        Run {
            clock,
            stats: SharedStats::with_spares(actors),
            ready: AtomicUsize::new(0),
            start_plus_one_ns: AtomicU64::new(0),
            stop_producers: AtomicBool::new(false),
            abort: AtomicBool::new(false),
            budget: messages.map(AtomicU64::new),
            producers_done: AtomicUsize::new(0),
            acked_ok_total: AtomicU64::new(0),
            producers_end_ns: AtomicU64::new(0),
            consumers_end_ns: AtomicU64::new(0),
            fatal: Mutex::new(None),
            rebalance: rebalance::RebalanceWatch::default(),
        }
    }

    /// Lets every actor go; the run's time 0 of the results.
    pub fn go(&self) -> u64 {
        let start = self.clock.now_ns();
        self.start_plus_one_ns.store(start + 1, Ordering::SeqCst);
        start
    }

    pub fn start_ns(&self) -> Option<u64> {
        match self.start_plus_one_ns.load(Ordering::SeqCst) {
            0 => None,
            plus_one => Some(plus_one - 1),
        }
    }

    /// Seconds since the start (0 before it).
    pub fn elapsed_s(&self) -> f64 {
        let start = self.start_ns().unwrap_or_else(|| self.clock.now_ns());
        self.clock.now_ns().saturating_sub(start) as f64 / 1e9
    }

    /// Waits (on the actor's executor) until main says go; `None` if the run was aborted first.
    pub async fn wait_for_go(&self) -> Option<u64> {
        loop {
            if self.abort.load(Ordering::SeqCst) {
                return None;
            }
            if let Some(start) = self.start_ns() {
                return Some(start);
            }
            glommio::timer::sleep(START_POLL).await;
        }
    }

    /// Claims one message of the `--messages` budget; false when it is spent.
    pub fn claim_message(&self) -> bool {
        let Some(budget) = &self.budget else { return true };
        budget.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |left| left.checked_sub(1)).is_ok()
    }

    /// Records a fatal failure (the first one wins) and stops everyone.
    pub fn fail(&self, message: String) {
        if let Ok(mut fatal) = self.fatal.lock() {
            fatal.get_or_insert(message);
        }
        self.stats.failed.store(true, Ordering::SeqCst);
        self.stop_producers.store(true, Ordering::SeqCst);
        self.abort.store(true, Ordering::SeqCst);
    }

    pub fn fatal(&self) -> Option<String> {
        self.fatal.lock().ok().and_then(|fatal| fatal.clone())
    }

    /// "broker connection lost after Xs: …" for a connection-level error.
    pub fn connection_lost(&self, error: &ClientError) {
        self.fail(format!("broker connection lost after {:.1}s: {error}", self.elapsed_s()));
    }
}

/// Whether an error means the connection is gone (as opposed to one refused message).
pub fn is_connection_lost(error: &ClientError) -> bool {
    matches!(
        error,
        ClientError::Io(_)
            | ClientError::ConnectionClosed { .. }
            | ClientError::Poisoned(_)
            | ClientError::TimedOut { .. }
            | ClientError::Protocol(_)
            | ClientError::CorrelationMismatch { .. }
            | ClientError::UnexpectedResponse(_)
    )
}

/// The name an error is counted under in the report: the broker's code name, or the kind of
/// client-side failure.
pub fn error_name(error: &ClientError) -> String {
    if let Some(code) = error.error_code() {
        return code.as_str().to_owned();
    }
    match error {
        ClientError::Io(_) => "io",
        ClientError::ConnectionClosed { .. } => "connection_closed",
        ClientError::Protocol(_) => "protocol",
        ClientError::CorrelationMismatch { .. } | ClientError::UnexpectedResponse(_) => "correlation",
        ClientError::Poisoned(_) => "poisoned",
        ClientError::TimedOut { .. } => "timed_out",
        ClientError::CorruptBatch { .. } => "corrupt_batch",
        ClientError::Build(_) => "build",
        _ => "client",
    }
    .to_owned()
}

/// Where an actor's executor runs and how it waits.
#[derive(Clone, Copy, Debug, Default)]
pub struct ActorPlacement {
    /// The CPU the actor's thread is pinned to [`None`: the kernel chooses].
    pub cpu: Option<usize>,
    /// How long the idle executor polls its ring before it sleeps [`None`: sleep at once].
    /// Polling saves the wake-up of a sleeping thread (tens of µs on a VM). The polling
    /// executor yields to any other runnable thread of its CPU between two polls, so it pays on
    /// a CPU of its own or one shared with another polling executor, not beside busy work.
    pub spin_before_park: Option<Duration>,
}

/// Starts `body` on a new thread with its own executor, placed as `placement` says. The
/// thread hands back its CPU figures as it ends (none if the executor could not be created,
/// which is reported as `Err` here).
pub fn spawn_actor<F, Fut>(
    name: String,
    placement: ActorPlacement,
    body: F,
) -> Result<std::thread::JoinHandle<ActorExit>, String>
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + 'static,
{
    let pinning = match placement.cpu {
        Some(cpu) => Placement::Fixed(cpu),
        None => Placement::Unbound,
    };
    let mut builder = LocalExecutorBuilder::new(pinning).name(&name).io_memory(ACTOR_IO_MEMORY_BYTES);
    if let Some(spin) = placement.spin_before_park {
        builder = builder.spin_before_park(spin);
    }
    // glommio's own thread handle only joins; wrap the executor in a std thread we own so
    // that a failure to create the executor (no io_uring) comes back as a message.
    let (sender, receiver) = std::sync::mpsc::channel::<Result<(), String>>();
    let handle = std::thread::Builder::new()
        .name(name.clone())
        .spawn(move || {
            let executor = match builder.make() {
                Ok(executor) => {
                    let _ = sender.send(Ok(()));
                    executor
                }
                Err(error) => {
                    let _ = sender.send(Err(format!("cannot start the executor of {name}: {error}")));
                    return ActorExit { cpu: None };
                }
            };
            executor.run(body());
            ActorExit { cpu: ThreadCpu::of_this_thread() }
        })
        .map_err(|error| format!("cannot start a thread: {error}"))?;
    match receiver.recv() {
        Ok(Ok(())) => Ok(handle),
        Ok(Err(message)) => Err(message),
        Err(_) => Err("an actor thread died while starting".to_owned()),
    }
}

/// What an actor's thread hands back when it ends.
#[derive(Debug)]
pub struct ActorExit {
    /// The thread's CPU figures as it ends (`None` if its executor could not start): its
    /// thread may be gone before the end of the run reads the others.
    pub cpu: Option<ThreadCpu>,
}

/// A thread's id and its CPU figures, read on the thread itself.
#[derive(Clone, Copy, Debug)]
pub struct ThreadCpu {
    pub tid: u32,
    pub stat: ringmq::sys::cpu_wait::SchedStat,
}

impl ThreadCpu {
    fn of_this_thread() -> Option<ThreadCpu> {
        // SAFETY: gettid(2) takes no arguments and cannot fail.
        let tid = unsafe { libc::gettid() };
        let stat = ringmq::sys::cpu_wait::SchedStat::of_this_thread().ok()?;
        Some(ThreadCpu { tid: u32::try_from(tid).ok()?, stat })
    }
}

/// What every actor is told.
#[derive(Clone, Debug)]
pub struct ActorEnv {
    pub run: Arc<Run>,
    pub addr: std::net::SocketAddr,
    pub topic: String,
    pub index: usize,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_carry_their_send_time() {
        let mut value = vec![0xAAu8; 100];
        stamp_value(&mut value, 123_456_789);
        assert_eq!(value_sent_ns(&value), Some(123_456_789));
        assert_eq!(value[8], 0xAA, "only the first 8 bytes are written");
        assert_eq!(value_sent_ns(&[1, 2, 3]), None);
    }

    #[test]
    fn message_budget_is_claimed_exactly() {
        let run = Run::new(Clock::new(), Some(3), 1);
        assert!((0..3).all(|_| run.claim_message()));
        assert!(!run.claim_message());
        let unbounded = Run::new(Clock::new(), None, 1);
        assert!((0..1_000).all(|_| unbounded.claim_message()));
    }

    #[test]
    fn first_failure_wins_and_stops_everyone() {
        let run = Run::new(Clock::new(), None, 1);
        run.fail("first".into());
        run.fail("second".into());
        assert_eq!(run.fatal().as_deref(), Some("first"));
        assert!(run.abort.load(Ordering::SeqCst));
        let closed = ClientError::ConnectionClosed { in_flight: 2 };
        assert!(is_connection_lost(&closed));
        assert_eq!(error_name(&closed), "connection_closed");
    }
}
