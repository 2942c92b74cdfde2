//! The consumer-group subcommands: `group list|describe|reset-offsets`, and `consume --group`.

use std::collections::BTreeSet;
use std::io::Write;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::client_commands::{
    connect, describe, format_record, stdout_failed, CommandResult, ConsumeArgs, Delivery, StartFrom,
    CONSUME_MAX_WAIT_MS,
};
use super::EXIT_RUNTIME_ERROR;
use crate::client::{ClientError, Committer, ConsumerConfig, DeliveryMode, GroupConsumer, GroupConsumerConfig, SeekTo};
use crate::model::{Offset, PartitionId};
use crate::protocol::{ErrorCode, OffsetSpec};

/// `ringmq group ...`
#[derive(Debug, clap::Subcommand)]
pub enum GroupCommand {
    /// List consumer groups with their state, one per line.
    List,
    /// Show a group's state, members and, per partition, committed offset, log end and lag.
    Describe { group: String },
    /// Set a group's committed offsets on every partition of a topic (only while the group
    /// has no members).
    ResetOffsets {
        group: String,
        /// Every partition of this topic is reset.
        #[arg(long)]
        topic: String,
        /// earliest, latest, or an offset (the same on every partition, clamped into each
        /// partition's log start and log end).
        #[arg(long, value_parser = super::client_commands::parse_from)]
        to: StartFrom,
    },
}

/// One line for a client error of a group command.
fn describe_group_error(group: &str, error: &ClientError) -> String {
    match error.error_code() {
        Some(ErrorCode::GroupIdNotFound) => format!("unknown group '{group}'"),
        Some(ErrorCode::NonEmptyGroup) => {
            format!("group '{group}' has active members; stop them before resetting its offsets")
        }
        _ => describe(error),
    }
}

pub(super) async fn group(addr: SocketAddr, command: GroupCommand) -> CommandResult {
    let mut connection = connect(addr).await?;
    let text = match command {
        GroupCommand::List => {
            let groups = connection.list_groups(&[]).await.map_err(|e| describe(&e))?;
            groups.iter().map(|g| format!("{} {}\n", g.group_id, g.state)).collect::<String>()
        }
        GroupCommand::Describe { group } => {
            let fail = |e: ClientError| describe_group_error(&group, &e);
            let described = connection.describe_group(&group).await.map_err(fail)?;
            let committed = connection.offset_fetch(&group, &[]).await.map_err(fail)?;
            let mut text = format!(
                "group: {}\nstate: {}\nassignor: {}\ngroup_epoch: {}\nassignment_epoch: {}\nmembers: {}\n",
                described.group_id,
                described.state,
                described.assignor,
                described.group_epoch,
                described.assignment_epoch,
                described.members.len()
            );
            let mut topics: BTreeSet<String> = committed.iter().map(|c| c.topic.clone()).collect();
            for member in &described.members {
                let assigned: Vec<String> = member
                    .assignment
                    .iter()
                    .map(|tp| {
                        let parts: Vec<String> = tp.partitions.iter().map(u32::to_string).collect();
                        format!("{}:{}", tp.topic, parts.join(","))
                    })
                    .collect();
                let assigned = if assigned.is_empty() { "-".to_owned() } else { assigned.join(" ") };
                text.push_str(&format!(
                    "member {} epoch {} partitions {}\n",
                    member.member_id, member.member_epoch, assigned
                ));
                topics.extend(member.subscribed_topic_names.iter().cloned());
            }
            for topic in topics {
                let metadata = match connection.topic_metadata(&topic).await {
                    Ok(metadata) => metadata,
                    Err(error) if error.error_code() == Some(ErrorCode::UnknownTopicOrPartition) => continue,
                    Err(error) => return Err(describe(&error)),
                };
                for partition in &metadata.partitions {
                    let offset = committed
                        .iter()
                        .find(|c| c.topic == topic && c.partition.0 == partition.partition)
                        .and_then(|c| c.offset);
                    let log_end = partition.high_watermark;
                    let (committed_text, lag) = match offset {
                        Some(offset) => (offset.0.to_string(), log_end.saturating_sub(offset.0).to_string()),
                        None => ("-".to_owned(), "-".to_owned()),
                    };
                    text.push_str(&format!(
                        "partition {topic}/{}: committed {committed_text} log_end {log_end} lag {lag}\n",
                        partition.partition
                    ));
                }
            }
            text
        }
        GroupCommand::ResetOffsets { group, topic, to } => {
            let metadata = connection.topic_metadata(&topic).await.map_err(|e| describe(&e))?;
            let partitions: Vec<PartitionId> = metadata.partitions.iter().map(|p| PartitionId(p.partition)).collect();
            let mut bounds = Vec::new();
            for spec in [OffsetSpec::Earliest, OffsetSpec::Latest] {
                let lookups: Vec<(PartitionId, OffsetSpec)> = partitions.iter().map(|&p| (p, spec)).collect();
                let found = connection.list_offsets(&topic, &lookups).await.map_err(|e| describe(&e))?;
                bounds.push(found.iter().map(|f| f.offset.unwrap_or_default()).collect::<Vec<Offset>>());
            }
            // An explicit offset is clamped into each partition's [log start, log end].
            let offsets: Vec<(PartitionId, Offset)> = partitions
                .iter()
                .enumerate()
                .map(|(index, &partition)| {
                    let earliest = bounds[0].get(index).copied().unwrap_or_default();
                    let latest = bounds[1].get(index).copied().unwrap_or_default().max(earliest);
                    let offset = match to {
                        StartFrom::Earliest => earliest,
                        StartFrom::Latest => latest,
                        StartFrom::Offset(offset) => Offset(offset).clamp(earliest, latest),
                    };
                    (partition, offset)
                })
                .collect();
            let commits: Vec<(&str, PartitionId, Offset)> =
                offsets.iter().map(|&(p, offset)| (topic.as_str(), p, offset)).collect();
            connection
                .commit_offsets(&group, Committer::Admin, &commits)
                .await
                .map_err(|e| describe_group_error(&group, &e))?;
            offsets
                .iter()
                .map(|(p, offset)| format!("group '{group}' topic '{topic}' partition {p}: offset {offset}\n"))
                .collect()
        }
    };
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Ok(()) => Ok(()),
        Err(error) => stdout_failed(error),
    }
}

/// `ringmq consume TOPIC --group G`: prints the records of the partitions the group assigns
/// this member, commits per `--delivery`, and leaves the group on exit (count, idle timeout,
/// SIGINT or SIGTERM).
pub(super) async fn consume_in_group(addr: SocketAddr, args: ConsumeArgs) -> CommandResult {
    let group = args.group.clone().unwrap_or_default();
    let mut connection = connect(addr).await?;
    connection.topic_metadata(&args.topic).await.map_err(|e| describe(&e))?;
    let stop = Arc::new(AtomicBool::new(false));
    // The first SIGINT/SIGTERM ends the loop (commit, leave); a second one exits at once.
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register_conditional_shutdown(signal, i32::from(EXIT_RUNTIME_ERROR), Arc::clone(&stop))
            .and_then(|_| signal_hook::flag::register(signal, Arc::clone(&stop)))
            .map_err(|e| format!("cannot handle signals: {e}"))?;
    }
    let max_wait_ms = args.idle_timeout_ms.map_or(CONSUME_MAX_WAIT_MS, |idle| idle.clamp(1, CONSUME_MAX_WAIT_MS));
    let config = GroupConsumerConfig {
        delivery: match args.delivery {
            Delivery::AtLeastOnce => DeliveryMode::AtLeastOnce,
            Delivery::AtMostOnce => DeliveryMode::AtMostOnce,
        },
        start_from: match args.from {
            StartFrom::Earliest => SeekTo::Earliest,
            StartFrom::Latest => SeekTo::Latest,
            StartFrom::Offset(offset) => SeekTo::Offset(Offset(offset)),
        },
        fetch: ConsumerConfig {
            max_wait_ms: u32::try_from(max_wait_ms).unwrap_or(u32::MAX),
            ..ConsumerConfig::default()
        },
        ..GroupConsumerConfig::new(group.clone(), vec![args.topic.clone()])
    };
    let mut consumer = GroupConsumer::new(connection, config);
    let idle_timeout = args.idle_timeout_ms.map(Duration::from_millis);
    let mut printed: u64 = 0;
    let mut last_data = Instant::now();
    let mut failure: Option<String> = None;
    let mut out = std::io::stdout().lock();
    loop {
        let remaining = args.max_messages.map_or(u64::MAX, |max| max.saturating_sub(printed));
        if remaining == 0 || stop.load(Ordering::Relaxed) {
            break;
        }
        if idle_timeout.is_some_and(|idle| last_data.elapsed() >= idle) {
            break;
        }
        let records = match consumer.poll_at_most(usize::try_from(remaining).unwrap_or(usize::MAX)).await {
            Ok(records) => records,
            Err(error) => {
                failure = Some(describe_group_error(&group, &error));
                break;
            }
        };
        if !records.is_empty() {
            last_data = Instant::now();
        }
        let mut lines = String::new();
        for record in &records {
            lines.push_str(&format_record(record, args.format));
            lines.push('\n');
        }
        printed += records.len() as u64;
        if let Err(error) = out.write_all(lines.as_bytes()).and_then(|()| out.flush()) {
            if let Err(message) = stdout_failed(error) {
                failure = Some(message);
            }
            break;
        }
    }
    let closed = consumer.close().await;
    match (failure, closed) {
        (Some(message), _) => Err(message),
        (None, Err(error)) => Err(format!("leaving group '{group}': {}", describe_group_error(&group, &error))),
        (None, Ok(())) => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn group_errors_read_as_one_clear_line() {
        let unknown = ClientError::Broker { code: ErrorCode::GroupIdNotFound, message: "group 'g'".into() };
        assert_eq!(describe_group_error("g", &unknown), "unknown group 'g'");
        let busy = ClientError::Partition {
            topic: "t".into(),
            partition: PartitionId(0),
            code: ErrorCode::NonEmptyGroup,
            message: String::new(),
        };
        assert!(describe_group_error("g", &busy).starts_with("group 'g' has active members"));
    }
}
