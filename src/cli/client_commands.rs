//! The client subcommands: `topic`, `produce`, `consume` (without `--group`). Each runs on one glommio executor
//! (`crate::runtime::run_local`) and returns `Err(one line)` on failure.

use std::future::Future;
use std::io::{BufRead, Write};
use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use glommio::net::TcpStream;

use crate::client::producer::ProducerRecord;
use crate::client::{
    self, ClientError, Connection, ConnectionConfig, Consumer, ConsumerConfig, ConsumerRecord, DeliveryFuture,
    Producer, ProducerConfig, SeekTo, Sleeper, TopicConfig,
};
use crate::model::{Offset, PartitionId};
use crate::protocol::ErrorCode;
use crate::runtime::{open_connection, run_local, tcp_connector, GlommioSleeper};

/// `ringmq topic ...`
#[derive(Debug, clap::Subcommand)]
pub enum TopicCommand {
    /// Create a topic.
    Create {
        name: String,
        #[arg(long, default_value_t = 1)]
        partitions: u32,
        /// Retention by time; -1 keeps data forever [default: the broker's].
        #[arg(long, allow_negative_numbers = true)]
        retention_ms: Option<i64>,
        /// Retention by size per partition; -1 means no limit [default: the broker's].
        #[arg(long, allow_negative_numbers = true)]
        retention_bytes: Option<i64>,
        /// Segment file size [default: the broker's].
        #[arg(long)]
        segment_bytes: Option<u64>,
    },
    /// List topic names, one per line.
    List,
    /// Show a topic's settings and partitions.
    Describe { name: String },
    /// Delete a topic and its data.
    Delete { name: String },
}

/// `--acks` values.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Acks {
    None,
    Leader,
    All,
}

fn parse_acks(value: &str) -> Result<Acks, String> {
    match value {
        "0" => Ok(Acks::None),
        "1" => Ok(Acks::Leader),
        "all" | "-1" => Ok(Acks::All),
        other => Err(format!("'{other}' is not one of 0, 1, all")),
    }
}

/// `ringmq produce TOPIC`
#[derive(Debug, clap::Args)]
pub struct ProduceArgs {
    pub topic: String,
    /// Send every message to this partition [default: by key hash, or sticky without a key].
    #[arg(long)]
    pub partition: Option<u32>,
    /// When the broker acknowledges: 0 (on receipt), 1 (leader append), all.
    #[arg(long, default_value = "all", value_parser = parse_acks)]
    pub acks: Acks,
    /// Split each line at the first SEP: the text before is the key, after is the value.
    #[arg(long)]
    pub key_separator: Option<String>,
}

/// `--from` values.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StartFrom {
    Earliest,
    Latest,
    Offset(u64),
}

pub(super) fn parse_from(value: &str) -> Result<StartFrom, String> {
    match value {
        "earliest" => Ok(StartFrom::Earliest),
        "latest" => Ok(StartFrom::Latest),
        other => {
            other.parse().map(StartFrom::Offset).map_err(|_| format!("'{other}' is not earliest, latest or an offset"))
        }
    }
}

/// `--format` values.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum ConsumeFormat {
    /// The value, as UTF-8 (lossy).
    Value,
    /// `{"partition","offset","timestamp","key","value"}`.
    Json,
}

/// `--delivery` values.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Delivery {
    /// Commit after printing: nothing is lost, a crash may print some messages again.
    AtLeastOnce,
    /// Commit before printing: nothing is printed twice, a crash may skip some messages.
    AtMostOnce,
}

/// `ringmq consume TOPIC`
#[derive(Debug, clap::Args)]
pub struct ConsumeArgs {
    pub topic: String,
    /// Consume only this partition [default: all].
    #[arg(long, conflicts_with = "group")]
    pub partition: Option<u32>,
    /// Where to start: earliest, latest, or an offset (the same on every partition). With
    /// --group, only for partitions the group has committed nothing for.
    #[arg(long, default_value = "earliest", value_parser = parse_from)]
    pub from: StartFrom,
    /// Consume as a member of this consumer group: the group's partitions are shared among
    /// its members and progress is committed; leaves the group on exit.
    #[arg(long)]
    pub group: Option<String>,
    /// With --group: when to commit.
    #[arg(long, value_enum, default_value = "at-least-once", requires = "group")]
    pub delivery: Delivery,
    /// Exit 0 after this many messages.
    #[arg(long)]
    pub max_messages: Option<u64>,
    /// Exit 0 after this long without new messages [default: follow until interrupted].
    #[arg(long)]
    pub idle_timeout_ms: Option<u64>,
    #[arg(long, value_enum, default_value = "value")]
    pub format: ConsumeFormat,
}

/// Longest a consume long-poll waits, so that `--idle-timeout-ms` is checked often enough.
pub(super) const CONSUME_MAX_WAIT_MS: u64 = 500;
/// How often `produce` drives the producer while stdin has no line ready.
const PRODUCE_IDLE_POLL: Duration = Duration::from_millis(1);
/// Lines read ahead of the producer.
const PRODUCE_LINES_QUEUED_MAX: usize = 4096;

pub(super) type CommandResult = Result<(), String>;

/// Resolves the bootstrap address, then runs the command on a fresh executor.
pub(super) fn run<F>(bootstrap: &str, command: impl FnOnce(SocketAddr) -> F) -> CommandResult
where
    F: Future<Output = CommandResult>,
{
    let addr = bootstrap
        .to_socket_addrs()
        .map_err(|error| format!("bad broker address '{bootstrap}': {error}"))?
        .next()
        .ok_or_else(|| format!("broker address '{bootstrap}' resolves to nothing"))?;
    run_local(|| command(addr)).map_err(|error| format!("cannot start the I/O runtime: {error}"))?
}

pub(super) async fn connect(addr: SocketAddr) -> Result<Connection<TcpStream>, String> {
    open_connection(addr, ConnectionConfig::default())
        .await
        .map_err(|error| format!("cannot connect to the broker at {addr}: {error}"))
}

/// One line for a client error, with the common cases spelled out.
pub(super) fn describe(error: &ClientError) -> String {
    match error {
        ClientError::Topic { topic, code: ErrorCode::UnknownTopicOrPartition, .. } => {
            format!("unknown topic '{topic}'")
        }
        ClientError::Topic { topic, code: ErrorCode::TopicAlreadyExists, .. } => {
            format!("topic '{topic}' already exists")
        }
        other => other.to_string(),
    }
}

pub(super) async fn topic(addr: SocketAddr, command: TopicCommand) -> CommandResult {
    let mut connection = connect(addr).await?;
    let mut out = std::io::stdout().lock();
    let printed = match command {
        TopicCommand::Create { name, partitions, retention_ms, retention_bytes, segment_bytes } => {
            let config = TopicConfig {
                partitions,
                retention_ms: retention_ms.unwrap_or(0),
                retention_bytes: retention_bytes.unwrap_or(0),
                segment_bytes: segment_bytes.unwrap_or(0),
            };
            connection.create_topic(&name, &config).await.map_err(|e| describe(&e))?;
            writeln!(out, "created topic '{name}' with {partitions} partitions")
        }
        TopicCommand::List => {
            let metadata = connection.metadata(&[]).await.map_err(|e| describe(&e))?;
            let mut names: Vec<String> = metadata.topics.into_iter().map(|t| t.name).collect();
            names.sort();
            names.iter().try_for_each(|name| writeln!(out, "{name}"))
        }
        TopicCommand::Describe { name } => {
            let topic = connection.topic_metadata(&name).await.map_err(|e| describe(&e))?;
            let mut text = format!(
                "topic: {}\npartitions: {}\nretention_ms: {}\nretention_bytes: {}\nsegment_bytes: {}\n",
                topic.name,
                topic.partitions.len(),
                topic.retention_ms,
                topic.retention_bytes,
                topic.segment_bytes
            );
            for partition in &topic.partitions {
                text.push_str(&format!(
                    "partition {}: shard {} log_start_offset {} high_watermark {}\n",
                    partition.partition, partition.shard, partition.log_start_offset, partition.high_watermark
                ));
            }
            out.write_all(text.as_bytes())
        }
        TopicCommand::Delete { name } => {
            connection.delete_topic(&name).await.map_err(|e| describe(&e))?;
            writeln!(out, "deleted topic '{name}'")
        }
    };
    printed.and_then(|()| out.flush()).map_err(|error| format!("writing to stdout: {error}"))
}

/// Splits a line into (key, value) at the first `separator`; no separator: no key.
pub fn split_key(line: &[u8], separator: Option<&[u8]>) -> (Option<Bytes>, Bytes) {
    let Some(separator) = separator.filter(|s| !s.is_empty()) else {
        return (None, Bytes::copy_from_slice(line));
    };
    match line.windows(separator.len()).position(|window| window == separator) {
        Some(at) => (Some(Bytes::copy_from_slice(&line[..at])), Bytes::copy_from_slice(&line[at + separator.len()..])),
        None => (None, Bytes::copy_from_slice(line)),
    }
}

enum Line {
    Data(Vec<u8>),
    Failed(std::io::Error),
}

/// Reads stdin on a plain thread (stdin has no io_uring reader here) so that the producer
/// keeps being driven (linger, acks) while the user types.
fn spawn_stdin_reader() -> mpsc::Receiver<Line> {
    let (sender, receiver) = mpsc::sync_channel(PRODUCE_LINES_QUEUED_MAX);
    std::thread::spawn(move || {
        let stdin = std::io::stdin();
        let mut input = stdin.lock();
        loop {
            let mut line = Vec::new();
            match input.read_until(b'\n', &mut line) {
                Ok(0) => return,
                Ok(_) => {
                    if line.last() == Some(&b'\n') {
                        line.pop();
                        if line.last() == Some(&b'\r') {
                            line.pop();
                        }
                    }
                    if sender.send(Line::Data(line)).is_err() {
                        return;
                    }
                }
                Err(error) => {
                    let _ = sender.send(Line::Failed(error));
                    return;
                }
            }
        }
    });
    receiver
}

pub(super) async fn produce(addr: SocketAddr, args: ProduceArgs) -> CommandResult {
    let connection = connect(addr).await?;
    let config = ProducerConfig {
        acks: match args.acks {
            Acks::None => client::Acks::None,
            Acks::Leader => client::Acks::Leader,
            Acks::All => client::Acks::All,
        },
        ..ProducerConfig::default()
    };
    // A dropped connection is replaced and the unanswered batches resent (deduplicated by the
    // broker when idempotent, the default with acks=all).
    let mut producer =
        Producer::new(connection, config).with_reconnect(tcp_connector(addr, ConnectionConfig::default()));
    let topic = args.topic.clone();
    let count = producer.partition_count(&topic).await.map_err(|e| describe(&e))?;
    let partition = args.partition.map(PartitionId);
    if let Some(partition) = partition {
        if partition.0 >= count {
            return Err(format!("partition {partition} does not exist: topic '{topic}' has {count} partitions"));
        }
    }
    let separator = args.key_separator.as_deref().map(str::as_bytes);
    let lines = spawn_stdin_reader();
    let mut deliveries = Deliveries::default();
    let sleeper = GlommioSleeper;
    loop {
        match lines.try_recv() {
            Ok(Line::Data(line)) => {
                let (key, value) = split_key(&line, separator);
                let sent = producer
                    .send_record(ProducerRecord {
                        topic: topic.clone(),
                        partition,
                        key,
                        value,
                        headers: Vec::new(),
                        timestamp: None,
                    })
                    .await;
                match sent {
                    Ok(delivery) => deliveries.push(delivery),
                    Err(error) => {
                        deliveries.failed(deliveries.sent + 1, error);
                        break;
                    }
                }
            }
            Ok(Line::Failed(error)) => {
                let _ = producer.flush().await;
                return Err(format!("reading stdin: {error}"));
            }
            Err(mpsc::TryRecvError::Empty) => {
                if let Err(error) = producer.poll().await {
                    deliveries.failed(deliveries.sent, error);
                    break;
                }
                sleeper.sleep(PRODUCE_IDLE_POLL).await;
            }
            Err(mpsc::TryRecvError::Disconnected) => break,
        }
        deliveries.settle();
        if deliveries.first_failure.is_some() {
            break;
        }
    }
    // Whatever happened, wait for what was sent, so the report counts every line.
    let flushed = producer.flush().await;
    deliveries.settle();
    if let Err(error) = flushed {
        deliveries.failed(deliveries.sent, error);
    }
    match deliveries.first_failure {
        None => Ok(()),
        Some((line, error)) => Err(format!(
            "produce to '{topic}' failed at line {line}: {}; {} of {} lines acknowledged",
            describe(&error),
            deliveries.acknowledged,
            deliveries.sent
        )),
    }
}

/// Delivery futures of the lines sent, settled oldest first.
#[derive(Default)]
struct Deliveries {
    waiting: std::collections::VecDeque<(u64, DeliveryFuture)>,
    sent: u64,
    acknowledged: u64,
    first_failure: Option<(u64, ClientError)>,
}

impl Deliveries {
    fn push(&mut self, delivery: DeliveryFuture) {
        self.sent += 1;
        self.waiting.push_back((self.sent, delivery));
    }

    fn failed(&mut self, line: u64, error: ClientError) {
        self.first_failure.get_or_insert((line.max(1), error));
    }

    fn settle(&mut self) {
        while let Some((line, front)) = self.waiting.front() {
            match front.try_result() {
                None => return,
                Some(Ok(_)) => self.acknowledged += 1,
                Some(Err(error)) => {
                    let line = *line;
                    self.failed(line, error);
                }
            }
            self.waiting.pop_front();
        }
    }
}

/// One output line for a record.
pub fn format_record(record: &ConsumerRecord, format: ConsumeFormat) -> String {
    match format {
        ConsumeFormat::Value => String::from_utf8_lossy(&record.value).into_owned(),
        ConsumeFormat::Json => serde_json::json!({
            "partition": record.partition.0,
            "offset": record.offset.0,
            "timestamp": record.timestamp.0,
            "key": record.key.as_ref().map(|key| String::from_utf8_lossy(key).into_owned()),
            "value": String::from_utf8_lossy(&record.value),
        })
        .to_string(),
    }
}

pub(super) async fn consume(addr: SocketAddr, args: ConsumeArgs) -> CommandResult {
    if args.group.is_some() {
        return super::group_commands::consume_in_group(addr, args).await;
    }
    let mut connection = connect(addr).await?;
    let topic = connection.topic_metadata(&args.topic).await.map_err(|e| describe(&e))?;
    let partitions: Vec<PartitionId> = match args.partition {
        Some(partition) if topic.partitions.iter().any(|p| p.partition == partition) => {
            vec![PartitionId(partition)]
        }
        Some(partition) => {
            return Err(format!(
                "partition {partition} does not exist: topic '{}' has {} partitions",
                args.topic,
                topic.partitions.len()
            ))
        }
        None => topic.partitions.iter().map(|p| PartitionId(p.partition)).collect(),
    };
    let max_wait_ms = args.idle_timeout_ms.map_or(CONSUME_MAX_WAIT_MS, |idle| idle.clamp(1, CONSUME_MAX_WAIT_MS));
    let config =
        ConsumerConfig { max_wait_ms: u32::try_from(max_wait_ms).unwrap_or(u32::MAX), ..ConsumerConfig::default() };
    let mut consumer = Consumer::new(connection, config);
    let assignment: Vec<(&str, PartitionId)> = partitions.iter().map(|&p| (args.topic.as_str(), p)).collect();
    consumer.assign(&assignment);
    let start = match args.from {
        StartFrom::Earliest => SeekTo::Earliest,
        StartFrom::Latest => SeekTo::Latest,
        StartFrom::Offset(offset) => SeekTo::Offset(Offset(offset)),
    };
    consumer.seek_all(start).await.map_err(|e| describe(&e))?;
    let idle_timeout = args.idle_timeout_ms.map(Duration::from_millis);
    let mut printed: u64 = 0;
    let mut last_data = Instant::now();
    let mut out = std::io::stdout().lock();
    loop {
        if args.max_messages.is_some_and(|max| printed >= max) {
            return Ok(());
        }
        if idle_timeout.is_some_and(|idle| last_data.elapsed() >= idle) {
            return Ok(());
        }
        let records = match consumer.poll().await {
            Ok(records) => records,
            Err(ClientError::OffsetOutOfRange { topic, partition, offset, log_start_offset, .. }) => {
                eprintln!(
                    "ringmq: offset {offset} of topic '{topic}' partition {partition} is out of \
                     range (log start {log_start_offset}); resetting to earliest"
                );
                consumer.seek(&topic, partition, SeekTo::Earliest).await.map_err(|e| describe(&e))?;
                continue;
            }
            Err(error) => return Err(describe(&error)),
        };
        if !records.is_empty() {
            last_data = Instant::now();
        }
        for record in &records {
            if args.max_messages.is_some_and(|max| printed >= max) {
                break;
            }
            let line = format_record(record, args.format);
            if let Err(error) = writeln!(out, "{line}") {
                return stdout_failed(error);
            }
            printed += 1;
        }
        if let Err(error) = out.flush() {
            return stdout_failed(error);
        }
    }
}

/// A closed stdout (`| head`) ends the command quietly; anything else is an error.
pub(super) fn stdout_failed(error: std::io::Error) -> CommandResult {
    if error.kind() == std::io::ErrorKind::BrokenPipe {
        Ok(())
    } else {
        Err(format!("writing to stdout: {error}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_separator_splits_at_the_first() {
        assert_eq!(split_key(b"k1:v:1", Some(b":")), (Some(Bytes::from_static(b"k1")), Bytes::from_static(b"v:1")));
        assert_eq!(split_key(b"novalue", Some(b"::")), (None, Bytes::from_static(b"novalue")));
        assert_eq!(split_key(b"a::b", Some(b"::")), (Some(Bytes::from_static(b"a")), Bytes::from_static(b"b")));
        assert_eq!(split_key(b"x", None), (None, Bytes::from_static(b"x")));
        assert_eq!(split_key(b":v", Some(b":")), (Some(Bytes::new()), Bytes::from_static(b"v")));
    }

    #[test]
    fn acks_and_from_parse() {
        assert_eq!(parse_acks("0"), Ok(Acks::None));
        assert_eq!(parse_acks("1"), Ok(Acks::Leader));
        assert_eq!(parse_acks("all"), Ok(Acks::All));
        assert!(parse_acks("2").is_err());
        assert_eq!(parse_from("earliest"), Ok(StartFrom::Earliest));
        assert_eq!(parse_from("latest"), Ok(StartFrom::Latest));
        assert_eq!(parse_from("42"), Ok(StartFrom::Offset(42)));
        assert!(parse_from("-1").is_err());
    }

    #[test]
    fn json_format_has_the_documented_fields() {
        let record = ConsumerRecord {
            topic: "t".into(),
            partition: PartitionId(1),
            offset: Offset(7),
            timestamp: crate::model::TimestampMs(1_700),
            key: None,
            value: Bytes::from_static(b"he\"llo\xff"),
            headers: Vec::new(),
        };
        let line = format_record(&record, ConsumeFormat::Json);
        let parsed: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(parsed["partition"], 1);
        assert_eq!(parsed["offset"], 7);
        assert_eq!(parsed["timestamp"], 1_700);
        assert!(parsed["key"].is_null());
        assert_eq!(parsed["value"], "he\"llo\u{fffd}");
        assert_eq!(format_record(&record, ConsumeFormat::Value), "he\"llo\u{fffd}");
    }
}
