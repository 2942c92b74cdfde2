//! Command-line flags (clap). Plain data plus the parsers of the flag values; every check of
//! a combination of flags is in [`Args::validate`], so that a bad command line is one line and
//! exit 2 before anything starts.

use std::path::PathBuf;
use std::time::Duration;

/// Default broker address, the broker's own default listen address.
pub const BOOTSTRAP_DEFAULT: &str = "127.0.0.1:9292";
/// Largest `--message-bytes`: one message must fit a produce request (16 MiB) with room.
pub const MESSAGE_BYTES_MAX: usize = 8 << 20;
/// Smallest `--message-bytes`: the send timestamp travels in the first 8 bytes of the value.
pub const MESSAGE_BYTES_MIN: usize = crate::actors::TIMESTAMP_BYTES;
/// Bound on `--in-flight`: the client connection allows 16 requests, one kept for Metadata.
pub const IN_FLIGHT_MAX: usize = 15;

/// How producers key their messages.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyMode {
    /// Null keys: the client's sticky partitioner fills one partition's batch at a time.
    None,
    /// A fresh random 8-byte key per message: spread over every partition.
    Random,
    /// Keys drawn at random from `K` distinct keys (`key-0` … `key-{K-1}`).
    Distinct(u64),
}

pub fn parse_key_mode(value: &str) -> Result<KeyMode, String> {
    match value {
        "none" => Ok(KeyMode::None),
        "random" => Ok(KeyMode::Random),
        other => match other.strip_prefix("distinct:").map(str::parse::<u64>) {
            Some(Ok(count)) if count > 0 => Ok(KeyMode::Distinct(count)),
            _ => Err(format!("'{other}' is not none, random or distinct:K with K ≥ 1")),
        },
    }
}

/// `--acks` values.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AcksArg {
    None,
    Leader,
    All,
}

impl AcksArg {
    pub fn as_str(self) -> &'static str {
        match self {
            AcksArg::None => "0",
            AcksArg::Leader => "1",
            AcksArg::All => "all",
        }
    }
}

pub fn parse_acks(value: &str) -> Result<AcksArg, String> {
    match value {
        "0" => Ok(AcksArg::None),
        "1" => Ok(AcksArg::Leader),
        "all" | "-1" => Ok(AcksArg::All),
        other => Err(format!("'{other}' is not one of 0, 1, all")),
    }
}

/// A duration flag: `10s`, `500ms`, `2m`, or a bare number of seconds.
pub fn parse_duration(value: &str) -> Result<Duration, String> {
    let bad = || format!("'{value}' is not a duration like 10s, 500ms, 2m or 10");
    let (number, scale_ms) = if let Some(ms) = value.strip_suffix("ms") {
        (ms, 1.0)
    } else if let Some(s) = value.strip_suffix('s') {
        (s, 1_000.0)
    } else if let Some(m) = value.strip_suffix('m') {
        (m, 60_000.0)
    } else {
        (value, 1_000.0)
    };
    let number: f64 = number.trim().parse().map_err(|_| bad())?;
    if !number.is_finite() || number < 0.0 {
        return Err(bad());
    }
    Ok(Duration::from_secs_f64(number * scale_ms / 1_000.0))
}

/// A byte size: `1024`, `16KiB`, `1MiB`, `64k`, `1m`.
pub fn parse_bytes(value: &str) -> Result<usize, String> {
    let bad = || format!("'{value}' is not a size like 1024, 16KiB or 1MiB");
    let lower = value.trim().to_ascii_lowercase();
    let units: [(&str, usize); 8] = [
        ("kib", 1 << 10),
        ("mib", 1 << 20),
        ("gib", 1 << 30),
        ("kb", 1_000),
        ("mb", 1_000_000),
        ("k", 1 << 10),
        ("m", 1 << 20),
        ("b", 1),
    ];
    for (suffix, scale) in units {
        if let Some(number) = lower.strip_suffix(suffix) {
            let number: usize = number.trim().parse().map_err(|_| bad())?;
            return number.checked_mul(scale).ok_or_else(bad);
        }
    }
    lower.parse().map_err(|_| bad())
}

/// A CPU list. A newtype, because clap takes a bare `Vec` field for a repeated flag.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CpuList(pub Vec<usize>);

/// A CPU list: `0,1` or `0-3` or a mix.
pub fn parse_cpus(value: &str) -> Result<CpuList, String> {
    let bad = || format!("'{value}' is not a CPU list like 0,1 or 0-3");
    let mut cpus = Vec::new();
    for part in value.split(',').filter(|p| !p.is_empty()) {
        match part.split_once('-') {
            Some((from, to)) => {
                let from: usize = from.parse().map_err(|_| bad())?;
                let to: usize = to.parse().map_err(|_| bad())?;
                if from > to {
                    return Err(bad());
                }
                cpus.extend(from..=to);
            }
            None => cpus.push(part.parse().map_err(|_| bad())?),
        }
    }
    if cpus.is_empty() {
        return Err(bad());
    }
    Ok(CpuList(cpus))
}

/// Where consumers start.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum ConsumeFrom {
    Earliest,
    Latest,
}

/// A group member's delivery mode.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum DeliveryArg {
    /// Commit after processing (auto-commit).
    AtLeastOnce,
    /// Commit before handing records over.
    AtMostOnce,
}

impl DeliveryArg {
    pub fn mode(self) -> ringmq::client::DeliveryMode {
        match self {
            DeliveryArg::AtLeastOnce => ringmq::client::DeliveryMode::AtLeastOnce,
            DeliveryArg::AtMostOnce => ringmq::client::DeliveryMode::AtMostOnce,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryArg::AtLeastOnce => "at-least-once",
            DeliveryArg::AtMostOnce => "at-most-once",
        }
    }
}

/// `ringmq-loadgen`: producers and consumers against a ringmq broker.
#[derive(Clone, Debug, clap::Parser)]
#[command(
    name = "ringmq-loadgen",
    version,
    about = "Load generator for ringmq: N producers and M consumers, each on its own thread and connection",
    after_help = "Example, one command for a first benchmark:\n  ringmq-loadgen --embedded --broker-arg=--fsync=never --duration 10s --producers 2 --consumers 1"
)]
pub struct Args {
    /// Broker address (HOST:PORT); ignored with --embedded.
    #[arg(long, default_value = BOOTSTRAP_DEFAULT)]
    pub bootstrap: String,
    /// Topic to produce to and consume from; created if missing.
    #[arg(long, default_value = "loadgen")]
    pub topic: String,
    /// Partitions of the topic when it is created.
    #[arg(long, default_value_t = 2)]
    pub partitions: u32,
    /// Value size of each message (with consumers, the first 8 bytes carry the send timestamp).
    #[arg(long, default_value = "1KiB", value_parser = parse_bytes)]
    pub message_bytes: usize,
    /// Keys: none, random, or distinct:K.
    #[arg(long, default_value = "none", value_parser = parse_key_mode)]
    pub key_mode: KeyMode,
    /// Producer batch size target.
    #[arg(long, default_value = "256KiB", value_parser = parse_bytes)]
    pub batch_bytes: usize,
    /// How long a producer batch waits for more records.
    #[arg(long, default_value_t = 5)]
    pub linger_ms: u64,
    /// When the broker acknowledges: 0, 1 or all.
    #[arg(long, default_value = "1", value_parser = parse_acks)]
    pub acks: AcksArg,
    /// Producers and consumers connect to every broker shard on its own port: producers send
    /// each partition's records to its owner, consumers fetch each partition from its owner
    /// with a long poll per shard (no cross-core hop on the broker); false: one connection to
    /// the bootstrap address, as a plain client would.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    pub shard_aware: bool,
    /// Consumers only: overrides --shard-aware for the (non-group) consumers, to compare the
    /// two kinds of consumer under the same producers.
    #[arg(long, action = clap::ArgAction::Set)]
    pub shard_aware_consumers: Option<bool>,
    /// Produce requests in flight per producer (1..=15).
    #[arg(long, default_value_t = 5)]
    pub in_flight: usize,
    /// Open loop: total messages per second over all producers, paced, with latency taken
    /// from the intended send time (coordinated-omission correction). Without it: closed
    /// loop, as fast as the producers can go.
    #[arg(long)]
    pub rate: Option<f64>,
    /// Measured run time (after --warmup) [default: 10s unless --messages is given].
    #[arg(long, value_parser = parse_duration)]
    pub duration: Option<Duration>,
    /// Stop after this many messages in total (produced, or consumed when --producers 0).
    #[arg(long)]
    pub messages: Option<u64>,
    /// Time at the start of the run excluded from the results.
    #[arg(long, default_value = "0s", value_parser = parse_duration)]
    pub warmup: Duration,
    /// Producer actors.
    #[arg(long, default_value_t = 1)]
    pub producers: usize,
    /// Consumer actors (partitions dealt round-robin); with producers, they measure
    /// publish-to-receive latency.
    #[arg(long, default_value_t = 0)]
    pub consumers: usize,
    /// Where consumers start [default: latest with producers, earliest without].
    #[arg(long, value_enum)]
    pub from: Option<ConsumeFrom>,
    /// Consumers join this consumer group and the broker assigns the partitions (without it,
    /// partitions are dealt round-robin). The group's offsets are first set to where --from
    /// says (the log end with producers), so the group must have no members.
    #[arg(long)]
    pub group: Option<String>,
    /// With --group: when members commit.
    #[arg(long, value_enum, default_value = "at-least-once")]
    pub delivery: DeliveryArg,
    /// With --group: consumer 0 stops at this time without leaving the group, as a crash
    /// would; the report gives the rebalance pause (kill → its partitions consumed again).
    /// Needs at least 2 consumers.
    #[arg(long, value_parser = parse_duration)]
    pub kill_consumer_after: Option<Duration>,
    /// Pin actor i to CPU cpus[i mod len] (e.g. 0,1 or 0-3) [default: not pinned].
    #[arg(long, value_parser = parse_cpus)]
    pub cpus: Option<CpuList>,
    /// Microseconds an idle actor polls for its socket and timers before its thread sleeps
    /// (as the broker's flag of the same name). A sleeping thread takes tens of µs to wake on a
    /// VM. A polling thread yields its CPU to any other runnable thread between two polls, so
    /// it pays on a CPU of its own or on one it shares with a polling broker shard
    /// (--broker-arg=--spin-before-park-us=N with --cpus on the shard's CPU), not beside busy work.
    #[arg(long, default_value_t = 0)]
    pub spin_before_park_us: u64,
    /// Open loop: the shortest wait of a producer between two sends, in µs. Messages that come
    /// due meanwhile are sent together, each timed from its own intended send time, so this
    /// adds to the measured latency rather than hiding it; a producer does not wake up once
    /// per message at high rates. Acks are seen as soon as they arrive, whatever this is.
    #[arg(long, default_value_t = 20)]
    pub pace_us: u64,
    /// Start `ringmq serve` as a child on a fresh data dir under ./target, run against it,
    /// then stop it.
    #[arg(long)]
    pub embedded: bool,
    /// The broker binary for --embedded [default: `ringmq` next to this binary].
    #[arg(long)]
    pub broker_bin: Option<PathBuf>,
    /// A flag passed to the embedded broker, e.g. --broker-arg=--fsync=never (repeatable).
    #[arg(long = "broker-arg", allow_hyphen_values = true)]
    pub broker_args: Vec<String>,
    /// Shorthand for --broker-arg=--fsync=VALUE (always, never, interval:MS).
    #[arg(long)]
    pub fsync: Option<String>,
    /// Shorthand for --broker-arg=--cores=N.
    #[arg(long)]
    pub cores: Option<usize>,
    /// Write the full report (parameters, host, results, distributions) as JSON here.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Write latency percentile and throughput-over-time plots here (SVG).
    #[arg(long)]
    pub plot: Option<PathBuf>,
    /// No progress line on stderr.
    #[arg(long)]
    pub quiet: bool,
}

impl Args {
    /// Checks flag combinations clap cannot express. One line per problem.
    pub fn validate(&self) -> Result<(), String> {
        if self.producers == 0 && self.consumers == 0 {
            return Err("nothing to do: --producers and --consumers are both 0".to_owned());
        }
        if !(MESSAGE_BYTES_MIN..=MESSAGE_BYTES_MAX).contains(&self.message_bytes) {
            return Err(format!(
                "--message-bytes must be in {MESSAGE_BYTES_MIN}..={MESSAGE_BYTES_MAX} (the first {MESSAGE_BYTES_MIN} bytes carry the send time)"
            ));
        }
        if self.batch_bytes == 0 {
            return Err("--batch-bytes must be at least 1".to_owned());
        }
        if !(1..=IN_FLIGHT_MAX).contains(&self.in_flight) {
            return Err(format!("--in-flight must be in 1..={IN_FLIGHT_MAX}"));
        }
        if let Some(rate) = self.rate {
            if !rate.is_finite() || rate <= 0.0 {
                return Err("--rate must be a positive number of messages per second".to_owned());
            }
            if self.producers == 0 {
                return Err("--rate needs at least one producer".to_owned());
            }
        }
        if self.partitions == 0 {
            return Err("--partitions must be at least 1".to_owned());
        }
        if self.messages == Some(0) {
            return Err("--messages must be at least 1".to_owned());
        }
        if self.duration.is_some_and(|d| d.is_zero()) {
            return Err("--duration must be more than 0".to_owned());
        }
        if self.group.as_deref().is_some_and(str::is_empty) {
            return Err("--group needs a name".to_owned());
        }
        if self.kill_consumer_after.is_some() && (self.group.is_none() || self.consumers < 2) {
            return Err("--kill-consumer-after needs --group and at least 2 consumers".to_owned());
        }
        let passes_broker_flags = !self.broker_args.is_empty() || self.fsync.is_some() || self.cores.is_some();
        if passes_broker_flags && !self.embedded {
            return Err("--broker-arg, --fsync and --cores need --embedded".to_owned());
        }
        Ok(())
    }

    /// The measured run time: `--duration`, or 10 s when neither it nor `--messages` is given.
    pub fn measured_duration(&self) -> Option<Duration> {
        match (self.duration, self.messages) {
            (Some(duration), _) => Some(duration),
            (None, Some(_)) => None,
            (None, None) => Some(Duration::from_secs(10)),
        }
    }

    /// Whether the consumers are shard-aware: `--shard-aware-consumers`, else `--shard-aware`.
    pub fn consumers_shard_aware(&self) -> bool {
        self.shard_aware_consumers.unwrap_or(self.shard_aware)
    }

    /// Where consumers start.
    pub fn consume_from(&self) -> ConsumeFrom {
        self.from.unwrap_or(if self.producers > 0 { ConsumeFrom::Latest } else { ConsumeFrom::Earliest })
    }

    /// The flags for `ringmq serve`, shorthands first, in order.
    pub fn broker_flags(&self) -> Vec<String> {
        let mut flags = Vec::new();
        if let Some(fsync) = &self.fsync {
            flags.push(format!("--fsync={fsync}"));
        }
        if let Some(cores) = self.cores {
            flags.push(format!("--cores={cores}"));
        }
        flags.extend(self.broker_args.iter().cloned());
        flags
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    /// Guards the key-mode syntax, including the refusal of `distinct:0`.
    #[test]
    fn key_modes_parse() {
        assert_eq!(parse_key_mode("none"), Ok(KeyMode::None));
        assert_eq!(parse_key_mode("random"), Ok(KeyMode::Random));
        assert_eq!(parse_key_mode("distinct:16"), Ok(KeyMode::Distinct(16)));
        assert!(parse_key_mode("distinct:0").is_err());
        assert!(parse_key_mode("distinct:").is_err());
        assert!(parse_key_mode("hash").is_err());
    }

    #[test]
    fn sizes_durations_and_cpus_parse() {
        assert_eq!(parse_bytes("1024"), Ok(1024));
        assert_eq!(parse_bytes("16KiB"), Ok(16 << 10));
        assert_eq!(parse_bytes("1MiB"), Ok(1 << 20));
        assert_eq!(parse_bytes("64k"), Ok(64 << 10));
        assert!(parse_bytes("1.5MiB").is_err());
        assert_eq!(parse_duration("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("3"), Ok(Duration::from_secs(3)));
        assert!(parse_duration("-1s").is_err());
        assert_eq!(parse_cpus("0,1"), Ok(CpuList(vec![0, 1])));
        assert_eq!(parse_cpus("0-2,5"), Ok(CpuList(vec![0, 1, 2, 5])));
        assert!(parse_cpus("2-1").is_err());
    }

    /// Guards the combination checks and the pass-through of broker flags.
    #[test]
    fn validation_and_broker_flags() {
        let parse = |line: &[&str]| Args::try_parse_from(std::iter::once("ringmq-loadgen").chain(line.iter().copied()));
        let args = parse(&[]).unwrap();
        assert!(args.validate().is_ok());
        assert_eq!(args.measured_duration(), Some(Duration::from_secs(10)));
        assert!(args.shard_aware, "shard-aware producers by default");
        assert!(!parse(&["--shard-aware", "false"]).unwrap().shard_aware);
        assert!(args.consumers_shard_aware());
        assert!(!parse(&["--shard-aware", "false"]).unwrap().consumers_shard_aware());
        assert!(!parse(&["--shard-aware-consumers", "false"]).unwrap().consumers_shard_aware());
        assert!(parse(&["--shard-aware=false", "--shard-aware-consumers=true"]).unwrap().consumers_shard_aware());
        assert!(parse(&["--shard-aware"]).is_err(), "the flag takes a value");
        assert!(parse(&["--producers", "0"]).unwrap().validate().is_err());
        assert!(parse(&["--message-bytes", "4"]).unwrap().validate().is_err());
        assert!(parse(&["--fsync", "never"]).unwrap().validate().is_err());
        assert!(parse(&["--in-flight", "16"]).unwrap().validate().is_err());
        assert!(parse(&["--acks", "2"]).is_err());
        assert!(parse(&["--pace-us", "-1"]).is_err());
        let args =
            parse(&["--embedded", "--fsync", "never", "--broker-arg=--cores=1", "--broker-arg", "--log-level=warn"])
                .unwrap();
        assert!(args.validate().is_ok());
        assert_eq!(args.broker_flags(), ["--fsync=never", "--cores=1", "--log-level=warn"]);
        assert_eq!(parse(&["--cpus", "0-1"]).unwrap().cpus, Some(CpuList(vec![0, 1])));
        assert!(parse(&["--consumers", "2", "--kill-consumer-after", "2s"]).unwrap().validate().is_err());
        assert!(parse(&["--group", "g", "--consumers", "1", "--kill-consumer-after", "2s"])
            .unwrap()
            .validate()
            .is_err());
        assert!(parse(&["--group", "", "--consumers", "1"]).unwrap().validate().is_err());
        let args = parse(&["--group", "g", "--consumers", "2", "--kill-consumer-after", "2s"]).unwrap();
        assert!(args.validate().is_ok());
        assert_eq!(args.kill_consumer_after, Some(Duration::from_secs(2)));
        assert_eq!(args.delivery, DeliveryArg::AtLeastOnce);
        let args = parse(&["--messages", "5"]).unwrap();
        assert_eq!(args.measured_duration(), None);
    }
}
