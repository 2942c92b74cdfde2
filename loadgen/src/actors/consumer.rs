//! The consumer actor: one `ringmq::client::ShardAwareConsumer` (a connection and a long poll
//! per broker shard) or `Consumer` (one connection), see [`ConsumerClient`], assigned every
//! partition `p` with `p mod consumers == index`, long-polling until the run says stop.
//!
//! End-to-end (producers in the same run): it takes its positions at the high watermark
//! before the producers start, and records publish-to-receive latency from the intended send
//! time each message carries. Alone: it reads from `--from` and records throughput only (the
//! timestamps in old messages come from another run's clock).

use std::sync::atomic::Ordering;
use std::time::Duration;

use ringmq::client::{ClientError, ConsumerConfig, ConsumerRecord, SeekTo};
use ringmq::model::PartitionId;

use super::consumer_client::ConsumerClient;
use super::{error_name, is_connection_lost, value_sent_ns, ActorEnv, Run};
use crate::args::ConsumeFrom;
use crate::stats::{latency_ns, Stats, MERGE_INTERVAL_MS};

/// Longest a fetch waits on the broker: also how quickly a consumer notices the stop.
pub const FETCH_MAX_WAIT_MS: u32 = 100;
/// After the producers finished, how long consumers may take to receive the rest.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

/// What a consumer is told beyond [`ActorEnv`].
#[derive(Clone, Debug)]
pub struct ConsumerSettings {
    pub consumers: usize,
    pub from: ConsumeFrom,
    /// Producers in this run (0: consumers alone).
    pub producers: usize,
    /// Consumers alone: stop at this run time (ns after the start).
    pub stop_after_ns: Option<u64>,
    /// Consumers alone: stop after this many messages in all.
    pub messages: Option<u64>,
    pub warmup_ns: u64,
    /// A connection and a long poll per broker shard (`ShardAwareConsumer`), or one
    /// connection to the bootstrap address (`Consumer`).
    pub shard_aware: bool,
}

/// The partitions consumer `index` of `consumers` reads.
pub fn assigned_partitions(partitions: u32, consumers: usize, index: usize) -> Vec<PartitionId> {
    (0..partitions).filter(|p| (*p as usize) % consumers.max(1) == index).map(PartitionId).collect()
}

/// Whether the consumers are done.
pub fn finished(env: &ActorEnv, settings: &ConsumerSettings, start_ns: u64, now_ns: u64) -> bool {
    let run = &env.run;
    if run.abort.load(Ordering::Relaxed) {
        return true;
    }
    let consumed = run.stats.consumed_total.load(Ordering::Relaxed);
    if settings.producers > 0 {
        if run.producers_done.load(Ordering::SeqCst) < settings.producers {
            return false;
        }
        let expected = run.acked_ok_total.load(Ordering::SeqCst);
        let producers_end = run.producers_end_ns.load(Ordering::SeqCst);
        consumed >= expected || now_ns >= producers_end + DRAIN_TIMEOUT.as_nanos() as u64
    } else {
        settings.stop_after_ns.is_some_and(|after| now_ns >= start_ns + after)
            || settings.messages.is_some_and(|messages| consumed >= messages)
    }
}

/// Runs one consumer to the end of the run.
pub async fn run(env: ActorEnv, settings: ConsumerSettings) {
    let run = env.run.clone();
    let start = match settings.from {
        ConsumeFrom::Earliest => SeekTo::Earliest,
        ConsumeFrom::Latest => SeekTo::Latest,
    };
    let config = ConsumerConfig { max_wait_ms: FETCH_MAX_WAIT_MS, start, ..ConsumerConfig::default() };
    let mut consumer = match ConsumerClient::connect(env.addr, config, settings.shard_aware).await {
        Ok(consumer) => consumer,
        Err(error) => {
            run.fail(format!("consumer {} cannot connect to the broker at {}: {error}", env.index, env.addr));
            return;
        }
    };
    let partitions = match consumer.partition_count(&env.topic).await {
        Ok(partitions) => partitions,
        Err(error) => {
            run.fail(format!("consumer {}: {error}", env.index));
            return;
        }
    };
    let assigned = assigned_partitions(partitions, settings.consumers, env.index);
    if !assigned.is_empty() {
        if let Err(error) = consumer.assign(&env.topic, &assigned).await {
            run.fail(format!("consumer {}: cannot assign its partitions: {error}", env.index));
            return;
        }
        if let Err(error) = consumer.seek_all(start).await {
            run.fail(format!("consumer {}: cannot take positions: {error}", env.index));
            return;
        }
    }
    run.ready.fetch_add(1, Ordering::SeqCst);
    let Some(start_ns) = run.wait_for_go().await else { return };
    let mut meter = ReceiveMeter::new(start_ns, &settings);
    loop {
        let now = run.clock.now_ns();
        if finished(&env, &settings, start_ns, now) {
            break;
        }
        if assigned.is_empty() {
            glommio::timer::sleep(Duration::from_millis(u64::from(FETCH_MAX_WAIT_MS))).await;
            continue;
        }
        let records = match consumer.poll().await {
            Ok(records) => records,
            Err(error) => {
                if meter.poll_failed(&run, &error) {
                    break;
                }
                if let ClientError::OffsetOutOfRange { partition, .. } = &error {
                    if let Err(error) = consumer.seek(&env.topic, *partition, SeekTo::Earliest).await {
                        run.fail(format!("consumer {}: cannot seek after out of range: {error}", env.index));
                        break;
                    }
                }
                continue;
            }
        };
        meter.absorb(&run, &records, run.clock.now_ns());
    }
    meter.finish(&run);
}

/// Counts and times what one consumer receives, merging into the run's stats about once per
/// [`MERGE_INTERVAL_MS`].
pub struct ReceiveMeter {
    pub local: Stats,
    last_merge_ns: u64,
    measure_from_ns: u64,
    end_to_end: bool,
}

impl ReceiveMeter {
    pub fn new(start_ns: u64, settings: &ConsumerSettings) -> ReceiveMeter {
        ReceiveMeter {
            local: Stats::default(),
            last_merge_ns: start_ns,
            measure_from_ns: start_ns + settings.warmup_ns,
            end_to_end: settings.producers > 0,
        }
    }

    /// Records received at `now_ns`.
    pub fn absorb(&mut self, run: &Run, records: &[ConsumerRecord], now_ns: u64) {
        let mut bytes_total = 0;
        for record in records {
            let bytes = record.value.len() as u64;
            bytes_total += bytes;
            let sent_ns = value_sent_ns(&record.value).filter(|_| self.end_to_end);
            let measured = match sent_ns {
                Some(sent_ns) => sent_ns >= self.measure_from_ns,
                None => now_ns >= self.measure_from_ns,
            };
            if measured {
                self.local.record_receive(sent_ns.map(|sent| latency_ns(sent, now_ns)), bytes);
            }
        }
        run.stats.add_consumed(records.len() as u64, bytes_total);
        if now_ns.saturating_sub(self.last_merge_ns) >= MERGE_INTERVAL_MS * 1_000_000 {
            run.stats.absorb(&mut self.local);
            self.last_merge_ns = now_ns;
        }
    }

    /// A poll failed: counts the error; true when the connection is gone (the run is failed and
    /// the consumer must stop).
    pub fn poll_failed(&mut self, run: &Run, error: &ClientError) -> bool {
        if is_connection_lost(error) {
            run.connection_lost(error);
            return true;
        }
        self.local.record_error(&error_name(error), 1);
        false
    }

    /// The consumer stopped.
    pub fn finish(mut self, run: &Run) {
        run.stats.absorb(&mut self.local);
        run.consumers_end_ns.fetch_max(run.clock.now_ns(), Ordering::SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partitions_are_dealt_round_robin() {
        assert_eq!(assigned_partitions(5, 2, 0), [PartitionId(0), PartitionId(2), PartitionId(4)]);
        assert_eq!(assigned_partitions(5, 2, 1), [PartitionId(1), PartitionId(3)]);
        assert!(assigned_partitions(1, 2, 1).is_empty());
        let all: usize = (0..3).map(|i| assigned_partitions(64, 3, i).len()).sum();
        assert_eq!(all, 64);
    }
}
