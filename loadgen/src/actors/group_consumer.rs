//! The consumer actor in group mode (`--group`): one connection, one
//! `ringmq::client::GroupConsumer`; the broker assigns the partitions and moves them on joins,
//! leaves and failures. It joins before the go (so the first assignment is not measured as
//! consume time), then polls until the run says stop, and leaves the group cleanly.
//!
//! `--kill-consumer-after`: consumer 0 stops at that time without leaving — a crash as far as
//! the group knows — and the others report to the [`super::rebalance::RebalanceWatch`] when
//! they first receive each partition it left behind.

use std::collections::BTreeSet;
use std::sync::atomic::Ordering;
use std::time::Duration;

use ringmq::client::{ConnectionConfig, DeliveryMode, GroupConsumer, GroupConsumerConfig, SeekTo};
use ringmq::runtime::open_connection;

use super::consumer::{finished, ConsumerSettings, ReceiveMeter, FETCH_MAX_WAIT_MS};
use super::{error_name, is_connection_lost, ActorEnv};
use crate::args::ConsumeFrom;

/// What a group consumer is told beyond [`ConsumerSettings`].
#[derive(Clone, Debug)]
pub struct GroupSettings {
    pub group_id: String,
    pub delivery: DeliveryMode,
    /// Consumer 0 only: stop without leaving at this run time (ns after the start).
    pub kill_after_ns: Option<u64>,
}

/// Pause between join attempts while the coordinator is not ready.
const JOIN_RETRY: Duration = Duration::from_millis(20);

/// Runs one group member to the end of the run (or to its kill).
pub async fn run(env: ActorEnv, settings: ConsumerSettings, group: GroupSettings) {
    let run = env.run.clone();
    let connection = match open_connection(env.addr, ConnectionConfig::default()).await {
        Ok(connection) => connection,
        Err(error) => {
            run.fail(format!("consumer {} cannot connect to the broker at {}: {error}", env.index, env.addr));
            return;
        }
    };
    let mut config = GroupConsumerConfig::new(group.group_id.clone(), vec![env.topic.clone()]);
    config.delivery = group.delivery;
    config.start_from = match settings.from {
        ConsumeFrom::Earliest => SeekTo::Earliest,
        ConsumeFrom::Latest => SeekTo::Latest,
    };
    config.fetch.max_wait_ms = FETCH_MAX_WAIT_MS;
    let mut consumer = GroupConsumer::new(connection, config);
    // Join: poll until the coordinator gave a member epoch. Records handed out meanwhile (a
    // consume-only run) are counted after the go.
    let mut early = Vec::new();
    while consumer.member_epoch() <= 0 {
        if run.abort.load(Ordering::SeqCst) {
            return;
        }
        match consumer.poll().await {
            Ok(records) => early.extend(records),
            Err(error) if is_connection_lost(&error) => {
                run.fail(format!("consumer {} cannot join group '{}': {error}", env.index, group.group_id));
                return;
            }
            Err(_) => glommio::timer::sleep(JOIN_RETRY).await,
        }
    }
    run.ready.fetch_add(1, Ordering::SeqCst);
    let Some(start_ns) = run.wait_for_go().await else { return };
    let mut meter = ReceiveMeter::new(start_ns, &settings);
    meter.absorb(&run, &early, run.clock.now_ns());
    drop(early);
    let kill_at_ns = group.kill_after_ns.filter(|_| env.index == 0).map(|after| start_ns.saturating_add(after));
    // Partitions already reported to the rebalance watch since the kill.
    let mut reported: BTreeSet<u32> = BTreeSet::new();
    loop {
        let now = run.clock.now_ns();
        if finished(&env, &settings, start_ns, now) {
            break;
        }
        if kill_at_ns.is_some_and(|at| now >= at) {
            let owned = consumer.assignment().into_iter().filter(|(topic, _)| *topic == env.topic).map(|(_, p)| p.0);
            run.rebalance.kill(now, owned);
            drop(consumer);
            meter.finish(&run);
            return;
        }
        let records = match consumer.poll().await {
            Ok(records) => records,
            Err(error) => {
                if meter.poll_failed(&run, &error) {
                    break;
                }
                continue;
            }
        };
        let now = run.clock.now_ns();
        if run.rebalance.is_armed() {
            for record in &records {
                if reported.insert(record.partition.0) {
                    run.rebalance.record_receive(record.partition.0, now);
                }
            }
        }
        meter.absorb(&run, &records, now);
    }
    if let Err(error) = consumer.close().await {
        meter.local.record_error(&error_name(&error), 1);
    }
    meter.finish(&run);
}
