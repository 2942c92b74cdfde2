//! Sending a [`ShardOp`] to the shard that must run it: directly when that is this shard, over
//! the mesh otherwise (one hop there, one back).

use std::collections::BTreeMap;
use std::rc::Rc;

use crate::shard::execute::execute;
use crate::shard::ops::{ShardOp, ShardReply};
use crate::shard::placement::ShardId;
use crate::shard::state::Shard;

/// The shard that owns the topic table and serializes topic creation and deletion.
pub const METADATA_SHARD: ShardId = ShardId(0);

pub async fn run_on(shard: &Rc<Shard>, owner: ShardId, op: ShardOp) -> ShardReply {
    if owner == shard.id {
        execute(shard.clone(), op).await
    } else {
        shard.router.call(owner, op).await
    }
}

/// Items grouped by the shard that owns them, in shard order.
pub fn group_by_owner<T>(
    items: impl IntoIterator<Item = (ShardId, T)>,
) -> BTreeMap<ShardId, Vec<T>> {
    let mut groups: BTreeMap<ShardId, Vec<T>> = BTreeMap::new();
    for (owner, item) in items {
        groups.entry(owner).or_default().push(item);
    }
    groups
}
