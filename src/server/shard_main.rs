//! The life of one shard, on its own pinned executor: join the mesh, open the partitions it
//! owns, accept connections, and on shutdown drain, close its logs and leave.

use std::os::fd::{FromRawFd, RawFd};
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::future::{select, Either};
use glommio::channels::channel_mesh::MeshBuilder;
use glommio::net::TcpListener;
use glommio::sync::Semaphore;

use super::connection;
use super::topics::TopicTable;
use crate::shard::execute::{apply_retention, apply_topics, execute};
use crate::shard::mesh::{serve_mesh, MeshMessage, MeshRouter};
use crate::shard::state::{BrokerSettings, Shard};
use crate::sys::cpu_wait::{CpuWaitWatch, SchedStat, CPU_WAIT_CHECK_INTERVAL};

/// How often a shard looks at the shutdown flag while it waits for connections.
const SHUTDOWN_POLL: Duration = Duration::from_millis(50);
/// How long a shard waits for its in-flight requests at shutdown.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);
/// How often retention runs over a shard's partitions.
pub const RETENTION_CHECK_INTERVAL: Duration = Duration::from_secs(30);

/// What every shard shares with the main thread.
pub struct Shared {
    pub settings: Arc<BrokerSettings>,
    pub topics: Arc<TopicTable>,
    pub mesh: MeshBuilder<MeshMessage, glommio::channels::channel_mesh::Full>,
    pub shutdown: Arc<AtomicBool>,
    /// Shards that finished draining their requests; logs close once all have.
    pub drained: Arc<AtomicUsize>,
    /// Shards that opened their partitions; the broker reports ready once all have.
    pub started: Arc<AtomicUsize>,
}

/// A shard's two listening sockets, bound on the main thread; the shard takes ownership.
#[derive(Debug)]
pub struct ShardListeners {
    /// The order in which the main thread spawned this shard's executor: the shard port at this
    /// index of `BrokerSettings::shard_ports` is `own`, so the shard's mesh id must equal it.
    pub index: usize,
    /// Its SO_REUSEPORT socket on the shared port.
    pub shared: RawFd,
    /// The socket of its own port (shard-aware clients).
    pub own: RawFd,
}

pub async fn run_shard(listeners: ShardListeners, shared: Shared) -> Result<(), String> {
    let started = shared.started.clone();
    let shutdown = shared.shutdown.clone();
    let result = run(listeners, shared).await;
    if result.is_err() {
        // Unblock the main thread and stop the other shards: a broker missing a shard must not serve.
        started.fetch_add(1, Ordering::SeqCst);
        shutdown.store(true, Ordering::SeqCst);
    }
    result
}

async fn run(listeners: ShardListeners, shared: Shared) -> Result<(), String> {
    // SAFETY: the main thread bound these two listening sockets for this shard alone and handed
    // over their only descriptors; each listener takes ownership of one and closes it.
    let (shared_listener, own_listener) =
        unsafe { (TcpListener::from_raw_fd(listeners.shared), TcpListener::from_raw_fd(listeners.own)) };
    let (senders, receivers) = shared.mesh.join().await.map_err(|e| format!("cannot join the channel mesh: {e}"))?;
    // A shard is its place in the mesh, and that number decides which partitions the shard
    // owns. glommio numbers peers by executor id, which the main thread assigns in spawn order:
    // the listeners' order. Metadata's shard ports rely on it, so it is checked.
    let router = MeshRouter::new(senders);
    let id = router.shard_id();
    if id.0 != listeners.index {
        return Err(format!(
            "shard spawned as {} got mesh id {}: its own port would be listed for another shard",
            listeners.index, id.0
        ));
    }
    let shard = Shard::new(id, shared.settings.clone(), router.clone());
    crate::storage::direct_io::check_direct_io(&shared.settings.data_dir).await.map_err(|e| {
        format!(
            "O_DIRECT does not work in {}: {e} (use a directory on ext4 or XFS, not tmpfs or a network filesystem)",
            shared.settings.data_dir.display()
        )
    })?;
    let mesh_shard = shard.clone();
    let mesh_task =
        glommio::spawn_local(serve_mesh(router.clone(), receivers, move |op| execute(mesh_shard.clone(), op)));
    if let Err(error) = apply_topics(&shard, shared.topics.clone()).await {
        tracing::error!(shard = %id, %error, "some partitions could not be opened; they answer UnknownTopicOrPartition");
    }
    crate::shard::groups::load_groups(&shard).await;
    let expire_task = glommio::spawn_local(crate::shard::groups::expire_loop(shard.clone())).detach();
    tracing::info!(shard = %id, partitions = shard.open_partitions().len(), "shard ready");
    shared.started.fetch_add(1, Ordering::SeqCst);

    let retention_shard = shard.clone();
    let retention_task = glommio::spawn_local(async move {
        loop {
            glommio::timer::sleep(RETENTION_CHECK_INTERVAL).await;
            if retention_shard.shutting_down.get() {
                break;
            }
            apply_retention(&retention_shard).await;
        }
    })
    .detach();
    let cpu_wait_task = glommio::spawn_local(watch_cpu_wait(shard.clone())).detach();

    let memory = Rc::new(Semaphore::new(shard.settings.shard_memory_bytes as u64));
    // A connection on the shard's own port is served exactly like one on the shared port; only
    // the client's choice of partitions differs.
    futures::future::join(
        accept_until_shutdown(&shard, &shared_listener, &memory, &shared.shutdown),
        accept_until_shutdown(&shard, &own_listener, &memory, &shared.shutdown),
    )
    .await;
    drop(shared_listener);
    drop(own_listener);
    shard.shutting_down.set(true);
    // Long polls answer now with what they have, instead of holding the drain up.
    for (_, cancel) in shard.fetch_cancels.borrow_mut().drain() {
        let _ = cancel.send(());
    }
    drain(&shard).await;
    shared.drained.fetch_add(1, Ordering::SeqCst);
    wait_for(|| shared.drained.load(Ordering::SeqCst) >= shard.settings.shard_count, DRAIN_TIMEOUT).await;
    close_partitions(&shard).await;
    memory.close();
    retention_task.cancel();
    cpu_wait_task.cancel();
    expire_task.cancel();
    router.fail_pending();
    router.close();
    drop(mesh_task);
    tracing::info!(shard = %id, "shard stopped");
    Ok(())
}

/// Warns when the shard waited for its CPU (another thread or process ran on its core) for
/// `CPU_WAIT_WARN_PERCENT` or more of an interval: see `sys::cpu_wait`. Runs on the shard's
/// thread, which is the one `/proc/thread-self` names; the read is a procfs file of one line,
/// answered from memory, every 10 s.
async fn watch_cpu_wait(shard: Rc<Shard>) {
    let mut watch = match SchedStat::of_this_thread() {
        Ok(first) => CpuWaitWatch::new(first, Instant::now()),
        Err(error) => {
            tracing::info!(shard = %shard.id, %error, "no per-thread CPU wait figures; shards will not report waiting for their CPUs");
            return;
        }
    };
    loop {
        glommio::timer::sleep(CPU_WAIT_CHECK_INTERVAL).await;
        if shard.shutting_down.get() {
            return;
        }
        let Ok(stat) = SchedStat::of_this_thread() else { return };
        if let Some(report) = watch.observe(stat, Instant::now()) {
            tracing::warn!(
                shard = %shard.id,
                waited_ms = report.waited_ms,
                interval_ms = report.interval_ms,
                waited_percent = report.waited_percent,
                ran_ms = report.ran_ms,
                "shard waited for its CPU while other threads or processes ran on its core; every request to its partitions waited too (leave the broker's cores to it: tuning/README.md, section 14)"
            );
        }
    }
}

async fn accept_until_shutdown(
    shard: &Rc<Shard>,
    listener: &TcpListener,
    memory: &Rc<Semaphore>,
    shutdown: &AtomicBool,
) {
    // Bounded by the shutdown flag, read at least every SHUTDOWN_POLL.
    while !shutdown.load(Ordering::SeqCst) {
        // One accept stays pending across the shutdown ticks and is dropped only at shutdown:
        // dropping glommio's accept cancels its io_uring operation, and an accept that completed
        // in the kernel just before the cancel leaks the new connection (accepted, never served;
        // its client waits for answers until it times out).
        let accept = listener.accept();
        futures::pin_mut!(accept);
        let accepted = loop {
            let tick = glommio::timer::sleep(SHUTDOWN_POLL);
            futures::pin_mut!(tick);
            match select(accept.as_mut(), tick).await {
                Either::Left((accepted, _)) => break Some(accepted),
                Either::Right(_) if shutdown.load(Ordering::SeqCst) => break None,
                Either::Right(_) => {}
            }
        };
        match accepted {
            Some(Ok(stream)) => {
                let peer = stream.peer_addr().unwrap_or_else(|_| std::net::SocketAddr::from(([0, 0, 0, 0], 0)));
                tracing::debug!(shard = %shard.id, %peer, "connection accepted");
                glommio::spawn_local(connection::serve(shard.clone(), stream, peer, memory.clone())).detach();
            }
            Some(Err(error)) => {
                tracing::warn!(shard = %shard.id, %error, "accept failed");
                glommio::timer::sleep(SHUTDOWN_POLL).await;
            }
            None => {}
        }
    }
}

/// Waits (bounded) for the requests this shard is handling to finish.
async fn drain(shard: &Shard) {
    let finished = wait_for(|| shard.requests_in_flight.get() == 0, DRAIN_TIMEOUT).await;
    if !finished {
        tracing::warn!(shard = %shard.id, in_flight = shard.requests_in_flight.get(), "shutdown: requests still running after the drain timeout");
    }
}

async fn wait_for(mut condition: impl FnMut() -> bool, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    while !condition() {
        if Instant::now() >= deadline {
            return false;
        }
        glommio::timer::sleep(Duration::from_millis(5)).await;
    }
    true
}

/// Flushes, syncs and closes every log, writing the clean-shutdown markers.
async fn close_partitions(shard: &Shard) {
    let closes = shard.open_partitions().into_iter().map(|(tp, handle)| async move {
        if let Err(error) = handle.log.close().await {
            tracing::error!(topic = %tp.topic, partition = tp.partition, %error, "closing the log failed");
        }
    });
    futures::future::join_all(closes).await;
}
