//! Snapshot compaction of the offsets topic on its coordinator shard: when a partition's log
//! holds much more than its live state ([`crate::group::snapshot`] has the policy and the
//! content), its live records are re-appended and the log start moves past everything older.
//!
//! A snapshot of offsets partition P:
//! 1. takes every unit of the commit gate (each commit holds one from before its append to after
//!    its apply: [`SnapshotState::commit_permit`]), then [`Shard::group_write_lock`] (held by
//!    every group-state change until its append is durable). So no record is appended and not
//!    yet applied, and nothing applied is not yet appended: the coordinator's state of P's
//!    groups equals a replay of P's log;
//! 2. takes P's live records from the coordinator, with no `.await` in between;
//! 3. rolls P's log, appends the records as batches from offset S and syncs them, whatever
//!    the durability setting. Both locks are still held, so nothing else lands in between and
//!    every later record lands after the snapshot (latest wins on replay);
//! 4. moves P's log start to S (persisted before any file is removed), which deletes every
//!    segment below S, and only then releases the locks: a reload of the coordinator (which
//!    holds the group lock) never reads a log whose start moves under it.
//!
//! A crash before step 4 leaves the log start where it was: the load replays the old records,
//! then the (maybe partial) snapshot, whose values are the ones already current — the same
//! state. After step 4 the load replays the snapshot and what followed it. A failed append or
//! sync leaves the log start alone too; the in-memory state was never changed by a snapshot.
//!
//! When: after every append to an offsets partition ([`schedule_if_due`]) and on the expiry
//! timer ([`schedule_due`], which also compacts a log loaded at start-up). One snapshot task
//! per shard at a time; it works through every due partition. Commits and group changes wait
//! while a snapshot is appended (one roll and one sync per batch with `--fsync always`).

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::rc::Rc;

use bytes::BytesMut;
use glommio::sync::{Permit, Semaphore};

use super::execute::LEADER_EPOCH;
use super::groups::{next_batch, offsets_partitions};
use super::ops::TopicPartition;
use super::state::{PartitionHandle, Shard};
use crate::group::snapshot::{partition_snapshot, snapshot_batch_bytes, snapshot_due};
use crate::group::OFFSETS_TOPIC;
use crate::model::Offset;

/// Units of the commit gate: more than commits can ever be in flight on one shard.
const COMMIT_GATE_UNITS: u64 = u32::MAX as u64;

/// A shard's snapshot bookkeeping (one per shard, in [`Shard`]).
pub struct SnapshotState {
    /// Every commit holds one unit from before its append to after its apply; a snapshot takes
    /// them all.
    commit_gate: Semaphore,
    /// Passed through to take commit-gate units. glommio's semaphore wakes a later small waiter
    /// before an earlier big one, so a snapshot waiting for the whole gate would starve under a
    /// steady flow of commits; a snapshot holds the turnstile while it waits, which stops new
    /// commits at the turnstile (one unit each: first come, first served).
    turnstile: Semaphore,
    /// Bytes of the last snapshot of each offsets partition: its live state.
    live_bytes: RefCell<BTreeMap<u32, u64>>,
    /// A snapshot task is running on this shard.
    running: Cell<bool>,
}

impl Default for SnapshotState {
    fn default() -> SnapshotState {
        SnapshotState {
            commit_gate: Semaphore::new(COMMIT_GATE_UNITS),
            turnstile: Semaphore::new(1),
            live_bytes: RefCell::new(BTreeMap::new()),
            running: Cell::new(false),
        }
    }
}

impl SnapshotState {
    /// What a commit holds from before its append to after its apply. `None` only if the
    /// semaphores were closed, which they never are.
    pub async fn commit_permit(&self) -> Option<Permit<'_>> {
        let _turn = self.turnstile.acquire_permit(1).await.ok()?;
        // Immediate: a snapshot holding the gate holds the turnstile too.
        self.commit_gate.acquire_permit(1).await.ok()
    }

    /// The whole commit gate: once no commit is between its append and its apply.
    async fn all_commits(&self) -> Result<(Permit<'_>, Permit<'_>), String> {
        let closed = |_| "the commit gate is closed".to_string();
        let turn = self.turnstile.acquire_permit(1).await.map_err(closed)?;
        let all = self.commit_gate.acquire_permit(COMMIT_GATE_UNITS).await.map_err(closed)?;
        Ok((turn, all))
    }

    /// A poisoned log is never due: it refuses appends until the broker restarts.
    fn is_due(&self, partition: u32, handle: &PartitionHandle) -> bool {
        if handle.log.is_poisoned() {
            return false;
        }
        let live_bytes = self.live_bytes.borrow().get(&partition).copied().unwrap_or(0);
        snapshot_due(handle.log.size_bytes(), live_bytes, handle.log.config().segment_bytes)
    }
}

/// What one snapshot did, for the log.
struct SnapshotReport {
    records: usize,
    bytes: u64,
    log_start: Offset,
    deleted_segments: usize,
}

/// After an append to offsets partition `partition`: starts the snapshot task if the
/// partition is due and no snapshot is running.
pub fn schedule_if_due(shard: &Rc<Shard>, partition: u32, handle: &PartitionHandle) {
    let state = &shard.offsets_snapshots;
    if !state.running.get() && !shard.shutting_down.get() && state.is_due(partition, handle) {
        spawn_snapshots(shard);
    }
}

/// Starts the snapshot task if any offsets partition of this shard is due.
pub fn schedule_due(shard: &Rc<Shard>) {
    if !shard.offsets_snapshots.running.get() && !shard.shutting_down.get() && next_due(shard, 0).is_some() {
        spawn_snapshots(shard);
    }
}

/// The first due offsets partition of this shard at or after `from`.
fn next_due(shard: &Shard, from: u32) -> Option<(u32, Rc<PartitionHandle>)> {
    (from..offsets_partitions(&shard.topics())).find_map(|partition| {
        let tp = TopicPartition { topic: OFFSETS_TOPIC.to_string(), partition };
        if shard.owner_of(&tp) != shard.id {
            return None;
        }
        let handle = shard.partition(&tp)?;
        shard.offsets_snapshots.is_due(partition, &handle).then_some((partition, handle))
    })
}

/// Snapshots the due partitions, round robin, as one task (a partition that becomes due
/// meanwhile is taken too).
fn spawn_snapshots(shard: &Rc<Shard>) {
    shard.offsets_snapshots.running.set(true);
    let shard = shard.clone();
    glommio::spawn_local(async move {
        let partitions = offsets_partitions(&shard.topics());
        let mut from = 0;
        // Bounded in count; round robin from the partition after the last one snapshotted.
        for _ in 0..partitions.saturating_mul(2) {
            let Some((partition, handle)) = next_due(&shard, from).or_else(|| next_due(&shard, 0)) else { break };
            if shard.shutting_down.get() {
                break;
            }
            from = partition + 1;
            match snapshot_partition(&shard, partition, &handle).await {
                Ok(Some(report)) => tracing::info!(
                    shard = %shard.id, partition, records = report.records, bytes = report.bytes,
                    log_start_offset = %report.log_start, deleted_segments = report.deleted_segments,
                    "offsets partition compacted to a snapshot"
                ),
                Ok(None) => {}
                Err(message) => {
                    tracing::warn!(shard = %shard.id, partition, %message, "offsets snapshot failed; the log is unchanged")
                }
            }
        }
        shard.offsets_snapshots.running.set(false);
    })
    .detach();
}

/// Steps 1 to 4 of the module doc for one partition. `None`: the coordinator is not loaded.
async fn snapshot_partition(
    shard: &Shard,
    partition: u32,
    handle: &PartitionHandle,
) -> Result<Option<SnapshotReport>, String> {
    let log = &handle.log;
    let _commits = shard.offsets_snapshots.all_commits().await?;
    let _changes = shard.group_write_lock.acquire_permit(1).await.map_err(|_| "the group lock is closed")?;
    let records = {
        let groups = shard.groups.borrow();
        if !groups.is_loaded() {
            return Ok(None);
        }
        partition_snapshot(groups.offsets(), partition, offsets_partitions(&shard.topics()))
    };
    log.roll_now().await.map_err(|error| format!("rolling: {error}"))?;
    let start = log.log_end_offset();
    let batch_bytes = snapshot_batch_bytes(log.config().segment_bytes);
    let mut bytes = 0u64;
    let mut unwritten = records.iter();
    // Bounded: every batch takes at least one record.
    while let Some(batch) = next_batch(&mut unwritten, batch_bytes).map_err(|(_, message)| message)? {
        bytes += batch.len() as u64;
        let appended = log.append(BytesMut::from(&batch[..]), LEADER_EPOCH).await;
        handle.appended.notify_all();
        appended.map_err(|error| format!("appending: {error}"))?;
    }
    log.flush(true).await.map_err(|error| format!("syncing: {error}"))?;
    let report = log.advance_log_start(start).await.map_err(|error| format!("moving the log start: {error}"))?;
    shard.offsets_snapshots.live_bytes.borrow_mut().insert(partition, bytes);
    Ok(Some(SnapshotReport {
        records: records.len(),
        bytes,
        log_start: start,
        deleted_segments: report.deleted_segments,
    }))
}
