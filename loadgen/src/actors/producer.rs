//! The producer actor: one `ringmq::client::ShardAwareProducer` (a connection per broker shard)
//! or `Producer` (one connection), see [`ProducerClient`], sending either as fast
//! as the in-flight bound allows (closed loop) or on a fixed schedule (open loop, see
//! [`crate::rate`]). Runs on its own executor thread.
//!
//! Produce-ack latency is taken from the intended send time (open loop) or the send call
//! (closed loop) to the moment the actor sees the delivery resolved. The client's producer is
//! driven (no background task): while an open-loop producer waits for its next send time it
//! waits in `poll_until`, which wakes as soon as an ack arrives. It waits at least
//! `--pace-us`, then sends every message that came due, each timed from its intended time.

use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use ringmq::client::{AccumulatorConfig, Acks, ClientError, ConnectionConfig, DeliveryFuture, ProducerConfig};

use super::producer_client::ProducerClient;
use super::{error_name, is_connection_lost, stamp_value, ActorEnv};
use crate::args::{AcksArg, KeyMode};
use crate::rate::Pacer;
use crate::stats::{latency_ns, Stats, MERGE_INTERVAL_MS};

/// What a producer is told beyond [`ActorEnv`].
#[derive(Clone, Debug)]
pub struct ProducerSettings {
    pub message_bytes: usize,
    pub key_mode: KeyMode,
    pub batch_bytes: usize,
    pub linger: Duration,
    pub acks: AcksArg,
    pub in_flight: usize,
    /// Messages per second for this producer (open loop); `None`: closed loop.
    pub rate_per_s: Option<f64>,
    /// Shortest wait between two sends (open loop).
    pub pace: Duration,
    /// Run time after the start at which producers stop (warmup + duration); `None`: budget.
    pub stop_after_ns: Option<u64>,
    pub warmup_ns: u64,
    /// One connection per broker shard on its own port (`ShardAwareProducer`), or one
    /// connection to the bootstrap address (`Producer`).
    pub shard_aware: bool,
    /// Write the intended send time into each value (consumers of this run read it). Without
    /// it every message shares one value, as Kafka's producer perf test does: nothing reads
    /// the stamp, and building a value per message is load-generator work the broker never sees.
    pub stamp_values: bool,
}

/// `--batch-bytes` that makes batches of exactly ten 1 KiB records (checked by a test).
#[cfg(test)]
pub const SMALL_BATCH_BYTES_FOR_10_KIB: usize = 11_000;

/// A small, fast PRNG (xorshift64*): keys need spread, not quality, and no dependency.
#[derive(Clone, Debug)]
pub struct KeyGen {
    mode: KeyMode,
    state: u64,
}

impl KeyGen {
    pub fn new(mode: KeyMode, seed: u64) -> KeyGen {
        // A zero state would stay zero.
        KeyGen { mode, state: seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1 }
    }

    fn next_u64(&mut self) -> u64 {
        self.state ^= self.state >> 12;
        self.state ^= self.state << 25;
        self.state ^= self.state >> 27;
        self.state.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// The key of the next message.
    pub fn next_key(&mut self) -> Option<Bytes> {
        match self.mode {
            KeyMode::None => None,
            KeyMode::Random => Some(Bytes::copy_from_slice(&self.next_u64().to_le_bytes())),
            KeyMode::Distinct(count) => Some(Bytes::from(format!("key-{}", self.next_u64() % count))),
        }
    }
}

fn client_acks(acks: AcksArg) -> Acks {
    match acks {
        AcksArg::None => Acks::None,
        AcksArg::Leader => Acks::Leader,
        AcksArg::All => Acks::All,
    }
}

/// A sent message not yet seen acknowledged.
struct Outstanding {
    intended_ns: u64,
    delivery: DeliveryFuture,
}

struct State {
    env: ActorEnv,
    settings: ProducerSettings,
    local: Stats,
    outstanding: VecDeque<Outstanding>,
    /// Run-relative time at which the measured part starts (ns on the run clock).
    measure_from_ns: u64,
    last_merge_ns: u64,
    keys: KeyGen,
    /// Value template: random-ish filler, the timestamp written per message.
    template: Vec<u8>,
    /// The value every message shares when values are not stamped.
    shared_value: Option<Bytes>,
    /// Where values are built: one allocation per [`VALUE_ARENA_BYTES`], not one per message.
    values: BytesMut,
}

/// Bytes allocated at once for message values (at least one message).
const VALUE_ARENA_BYTES: usize = 256 * 1024;

impl State {
    /// Settles, oldest first, every delivery already resolved. Reads the clock only when one
    /// has: this runs after every send. The run's shared counters are written once per call,
    /// not per message: producers on other cores write the same cache lines.
    fn settle(&mut self) {
        let mut read_ns = None;
        let mut acked: u64 = 0;
        let bytes = self.settings.message_bytes as u64;
        while let Some(front) = self.outstanding.front() {
            let Some(result) = front.delivery.try_result() else { break };
            let intended_ns = front.intended_ns;
            self.outstanding.pop_front();
            let now = *read_ns.get_or_insert_with(|| self.env.run.clock.now_ns());
            match result {
                Ok(_) => {
                    acked += 1;
                    if intended_ns >= self.measure_from_ns {
                        self.local.record_ack(latency_ns(intended_ns, now), bytes);
                    }
                }
                Err(error) => self.local.record_error(&error_name(&error), 1),
            }
        }
        if acked > 0 {
            self.env.run.stats.add_acked(acked, acked * bytes);
            self.env.run.acked_ok_total.fetch_add(acked, Ordering::Relaxed);
        }
        let Some(now) = read_ns else { return };
        if now.saturating_sub(self.last_merge_ns) >= MERGE_INTERVAL_MS * 1_000_000 {
            self.env.run.stats.absorb(&mut self.local);
            self.last_merge_ns = now;
        }
    }

    fn value(&mut self, intended_ns: u64) -> Bytes {
        if let Some(shared) = &self.shared_value {
            return shared.clone();
        }
        if self.values.capacity() < self.template.len() {
            self.values = BytesMut::with_capacity(VALUE_ARENA_BYTES.max(self.template.len()));
        }
        self.values.extend_from_slice(&self.template);
        let mut value = self.values.split();
        stamp_value(&mut value, intended_ns);
        value.freeze()
    }

    fn should_stop(&self, start_ns: u64, now_ns: u64) -> bool {
        let run = &self.env.run;
        run.stop_producers.load(Ordering::Relaxed)
            || self.settings.stop_after_ns.is_some_and(|after| now_ns >= start_ns + after)
    }
}

/// Runs one producer to the end of the run. Connection failures are reported through
/// `Run::fail`; the return value is only for the thread join.
pub async fn run(env: ActorEnv, settings: ProducerSettings) {
    let run = env.run.clone();
    let connection_config = ConnectionConfig { max_in_flight: settings.in_flight + 1, ..ConnectionConfig::default() };
    let config = ProducerConfig {
        acks: client_acks(settings.acks),
        batching: AccumulatorConfig { batch_bytes: settings.batch_bytes, linger: settings.linger },
        requests_in_flight_max: settings.in_flight,
        ..ProducerConfig::default()
    };
    let mut producer = match ProducerClient::connect(env.addr, connection_config, config, settings.shard_aware).await {
        Ok(producer) => producer,
        Err(error) => {
            run.fail(format!("producer {} cannot connect to the broker at {}: {error}", env.index, env.addr));
            return;
        }
    };
    if let Err(error) = producer.partition_count(&env.topic).await {
        run.fail(format!("producer {}: {error}", env.index));
        return;
    }
    let template: Vec<u8> = (0..settings.message_bytes).map(|i| (i as u8).wrapping_mul(31).wrapping_add(7)).collect();
    let mut state = State {
        keys: KeyGen::new(settings.key_mode, env.index as u64 + 1),
        env: env.clone(),
        settings: settings.clone(),
        local: Stats::default(),
        outstanding: VecDeque::new(),
        measure_from_ns: 0,
        last_merge_ns: 0,
        shared_value: (!settings.stamp_values).then(|| Bytes::from(template.clone())),
        template,
        values: BytesMut::new(),
    };
    run.ready.fetch_add(1, Ordering::SeqCst);
    let Some(start_ns) = run.wait_for_go().await else { return };
    state.measure_from_ns = start_ns + settings.warmup_ns;
    state.last_merge_ns = start_ns;
    let mut pacer = settings.rate_per_s.map(|rate| Pacer::new(start_ns, rate));
    // While waiting between sends: when the wait ends (run clock), kept across early wake-ups.
    let mut pace_until_ns: Option<u64> = None;
    loop {
        // One clock reading per message: the run's time and the client's linger instant.
        let now_instant = Instant::now();
        let now = run.clock.ns_at(now_instant);
        if state.should_stop(start_ns, now) {
            if let Some(pacer) = &pacer {
                let stop_ns = settings.stop_after_ns.map_or(now, |after| now.min(start_ns + after));
                let pace_ns = settings.pace.as_nanos() as u64;
                state.local.unsent_due_messages += pacer.unsent_at_stop(state.measure_from_ns, stop_ns, pace_ns);
            }
            break;
        }
        let intended_ns = match pacer.as_mut() {
            None => now,
            Some(pacer) => {
                let pacing = pace_until_ns.is_some_and(|until| now < until);
                match if pacing { None } else { pacer.take_due(now) } {
                    Some(intended) => {
                        pace_until_ns = None;
                        if intended >= state.measure_from_ns {
                            state.local.record_send_lag(now.saturating_sub(intended));
                        }
                        intended
                    }
                    None => {
                        // Not due yet: wait (at least the pace) while acks are settled as they arrive.
                        let wait_until_ns = *pace_until_ns
                            .get_or_insert_with(|| pacer.next_due_ns().max(now + settings.pace.as_nanos() as u64));
                        let deadline = now_instant + Duration::from_nanos(wait_until_ns.saturating_sub(now));
                        if let Err(error) = producer.poll_until(deadline).await {
                            lost_or_counted(&mut state, &error);
                            break;
                        }
                        state.settle();
                        continue;
                    }
                }
            }
        };
        if !run.claim_message() {
            break;
        }
        let key = state.keys.next_key();
        let value = state.value(intended_ns);
        match producer.send_at(now_instant, &env.topic, key, value, Vec::new()).await {
            Ok(delivery) => state.outstanding.push_back(Outstanding { intended_ns, delivery }),
            Err(error) => {
                if lost_or_counted(&mut state, &error) {
                    break;
                }
            }
        }
        state.settle();
    }
    if !run.abort.load(Ordering::SeqCst) {
        if let Err(error) = producer.flush().await {
            lost_or_counted(&mut state, &error);
        }
    }
    state.settle();
    // Whatever is still unresolved failed with the connection.
    let unresolved = state.outstanding.len() as u64;
    if unresolved > 0 {
        state.local.record_error("unacknowledged", unresolved);
    }
    run.stats.absorb(&mut state.local);
    run.producers_end_ns.fetch_max(run.clock.now_ns(), Ordering::SeqCst);
    run.producers_done.fetch_add(1, Ordering::SeqCst);
}

/// Reports a lost connection to the run (true), or counts a per-message failure (false).
fn lost_or_counted(state: &mut State, error: &ClientError) -> bool {
    if is_connection_lost(error) {
        state.env.run.connection_lost(error);
        true
    } else {
        state.local.record_error(&error_name(error), 1);
        false
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    /// Guards the key modes: no key, a fresh key per message, exactly K distinct keys.
    #[test]
    fn key_modes_produce_the_promised_keys() {
        let mut none = KeyGen::new(KeyMode::None, 1);
        assert!((0..10).all(|_| none.next_key().is_none()));
        let mut random = KeyGen::new(KeyMode::Random, 1);
        let keys: HashSet<Bytes> = (0..10_000).filter_map(|_| random.next_key()).collect();
        assert_eq!(keys.len(), 10_000, "random keys do not repeat in practice");
        let mut distinct = KeyGen::new(KeyMode::Distinct(7), 1);
        let keys: HashSet<Bytes> = (0..10_000).filter_map(|_| distinct.next_key()).collect();
        assert_eq!(keys.len(), 7);
        assert!(keys.contains(&Bytes::from_static(b"key-6")));
        // Different producers get different sequences.
        let a: Vec<_> = (0..4).map(|_| KeyGen::new(KeyMode::Random, 1).next_key()).collect();
        let b = KeyGen::new(KeyMode::Random, 2).next_key();
        assert_ne!(a[0], b);
    }

    /// Random keys spread over partitions the way the client hashes them.
    #[test]
    fn random_keys_spread_over_partitions() {
        let mut keys = KeyGen::new(KeyMode::Random, 3);
        let mut counts = [0u32; 8];
        for _ in 0..8_000 {
            let key = keys.next_key().unwrap_or_default();
            counts[ringmq::client::partition_for_key(&key, 8).0 as usize] += 1;
        }
        assert!(counts.iter().all(|&c| (800..1_200).contains(&c)), "{counts:?}");
    }
}

#[cfg(test)]
mod batch_size_tests {
    use std::time::Instant;

    use ringmq::client::{Accumulator, AccumulatorConfig};
    use ringmq::model::{PartitionId, TimestampMs};
    use ringmq::storage::batch::BatchBuilderConfig;

    /// Records of `value_bytes` per batch for a `--batch-bytes` target, as the client's
    /// accumulator closes them. Used to pick the flag for "10 × 1 KiB per batch" (PERF.md).
    fn records_per_batch(batch_bytes: usize, value_bytes: usize) -> usize {
        let config = AccumulatorConfig { batch_bytes, linger: std::time::Duration::from_secs(1) };
        let mut accumulator: Accumulator<()> = Accumulator::new(config, BatchBuilderConfig::default());
        let now = Instant::now();
        let value = vec![0u8; value_bytes];
        for _ in 0..100 {
            accumulator.append("t", PartitionId(0), now, TimestampMs(1), None, bytes::Bytes::from(value.clone()), &[]);
        }
        accumulator.drain_ready(now, false).first().map_or(0, |batch| batch.builder.record_count())
    }

    #[test]
    fn batch_bytes_for_ten_one_kib_records() {
        assert_eq!(records_per_batch(super::SMALL_BATCH_BYTES_FOR_10_KIB, 1024), 10);
    }
}
