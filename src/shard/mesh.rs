//! Request/reply over glommio's channel mesh: a shard sends a [`ShardOp`] to the owner of a
//! partition and awaits the [`ShardReply`]. Kernel-facing (glommio channels).
//!
//! One full mesh carries both directions. Each shard runs one receiving task per peer; a
//! request is executed as a task of its own on the receiving shard and answered on the mesh;
//! a reply completes the local waiter. The mesh queues are bounded: a full queue makes the
//! sender wait, which slows the connection that produced the work.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;

use futures::channel::oneshot;
use glommio::channels::channel_mesh::{Receivers, Senders};

use super::ops::{ShardOp, ShardReply};
use super::placement::ShardId;
use crate::protocol::ErrorCode;

/// Messages on the mesh.
#[derive(Debug)]
pub enum MeshMessage {
    Request { id: u64, op: ShardOp },
    Reply { id: u64, reply: ShardReply },
}

/// Queue length of each mesh channel (messages, each carrying many batches).
pub const MESH_CHANNEL_CAPACITY: usize = 1024;

/// This shard's end of the mesh. Lives on one shard.
pub struct MeshRouter {
    senders: Senders<MeshMessage>,
    pending: RefCell<HashMap<u64, oneshot::Sender<ShardReply>>>,
    next_id: Cell<u64>,
}

impl MeshRouter {
    pub fn new(senders: Senders<MeshMessage>) -> Rc<Self> {
        Rc::new(MeshRouter {
            senders,
            pending: RefCell::new(HashMap::new()),
            next_id: Cell::new(0),
        })
    }

    pub fn shard_id(&self) -> ShardId {
        ShardId(self.senders.peer_id())
    }

    /// Sends `op` to shard `to` and waits for its reply.
    pub async fn call(&self, to: ShardId, op: ShardOp) -> ShardReply {
        let id = self.next_id.get();
        self.next_id.set(id.wrapping_add(1));
        let (sender, receiver) = oneshot::channel();
        self.pending.borrow_mut().insert(id, sender);
        if self
            .senders
            .send_to(to.0, MeshMessage::Request { id, op })
            .await
            .is_err()
        {
            self.pending.borrow_mut().remove(&id);
            return unreachable_shard(to);
        }
        receiver.await.unwrap_or_else(|_| unreachable_shard(to))
    }

    /// Sends a reply back to the shard that asked.
    pub async fn reply(&self, to: ShardId, id: u64, reply: ShardReply) {
        if self
            .senders
            .send_to(to.0, MeshMessage::Reply { id, reply })
            .await
            .is_err()
        {
            tracing::debug!(shard = %to, "reply dropped: the asking shard is gone");
        }
    }

    fn complete(&self, id: u64, reply: ShardReply) {
        if let Some(waiter) = self.pending.borrow_mut().remove(&id) {
            let _ = waiter.send(reply);
        }
    }

    /// Fails every call still waiting (used at shutdown).
    pub fn fail_pending(&self) {
        self.pending.borrow_mut().clear();
    }

    pub fn close(&self) {
        self.senders.close();
    }
}

fn unreachable_shard(to: ShardId) -> ShardReply {
    ShardReply::Failed {
        error_code: ErrorCode::BrokerShuttingDown,
        message: format!("shard {to} is not reachable (shutting down?)"),
    }
}

/// Runs until every peer closed its sender: executes incoming requests with `execute` (each as
/// its own task) and completes local calls with incoming replies.
pub async fn serve_mesh<F, Fut>(
    router: Rc<MeshRouter>,
    mut receivers: Receivers<MeshMessage>,
    execute: F,
) where
    F: Fn(ShardOp) -> Fut + Clone + 'static,
    Fut: std::future::Future<Output = ShardReply> + 'static,
{
    let mut tasks = Vec::new();
    for (peer, stream) in receivers.streams() {
        let router = router.clone();
        let execute = execute.clone();
        tasks.push(glommio::spawn_local(async move {
            while let Some(message) = stream.recv().await {
                match message {
                    MeshMessage::Request { id, op } => {
                        let router = router.clone();
                        let execute = execute.clone();
                        glommio::spawn_local(async move {
                            let reply = execute(op).await;
                            router.reply(ShardId(peer), id, reply).await;
                        })
                        .detach();
                    }
                    MeshMessage::Reply { id, reply } => router.complete(id, reply),
                }
            }
        }));
    }
    for task in tasks {
        task.await;
    }
}
