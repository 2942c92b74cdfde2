//! Topic creation and deletion, run on the metadata shard (shard 0): change the table, persist
//! it, then have every shard adopt it before answering, so that a client that saw its topic
//! created can produce to it through any shard.

use std::rc::Rc;
use std::sync::Arc;

use futures::future::join_all;

use super::ops::{ShardOp, ShardReply};
use super::placement::ShardId;
use super::state::Shard;
use crate::protocol::ErrorCode;
use crate::server::routing::run_on;
use crate::server::topics::{TopicConfig, TopicTable};

pub async fn create_topic(shard: &Rc<Shard>, topic: TopicConfig) -> ShardReply {
    let Ok(_lock) = shard.metadata_lock.acquire_permit(1).await else {
        return shutting_down();
    };
    let name = topic.name.clone();
    let Some(next) = shard.topics().with_topic(topic) else {
        return ShardReply::Failed {
            error_code: ErrorCode::TopicAlreadyExists,
            message: format!("topic {name} already exists"),
        };
    };
    let reply = publish(shard, next).await;
    if matches!(reply, ShardReply::Done) {
        tracing::info!(topic = %name, "topic created");
    }
    reply
}

pub async fn delete_topic(shard: &Rc<Shard>, name: String) -> ShardReply {
    if name == crate::group::OFFSETS_TOPIC {
        return ShardReply::Failed {
            error_code: ErrorCode::InvalidRequest,
            message: format!("{name} is internal: it holds the consumer groups' offsets"),
        };
    }
    let Ok(_lock) = shard.metadata_lock.acquire_permit(1).await else {
        return shutting_down();
    };
    let Some(next) = shard.topics().without_topic(&name) else {
        return ShardReply::Failed {
            error_code: ErrorCode::UnknownTopicOrPartition,
            message: format!("unknown topic {name}"),
        };
    };
    let reply = publish(shard, next).await;
    if matches!(reply, ShardReply::Done) {
        let _ = std::fs::remove_dir_all(shard.settings.data_dir.join("topics").join(&name));
        tracing::info!(topic = %name, "topic deleted");
    }
    reply
}

/// Persists `table` and makes every shard adopt it.
async fn publish(shard: &Rc<Shard>, table: TopicTable) -> ShardReply {
    if let Err(error) = table.persist(&shard.settings.data_dir) {
        return ShardReply::Failed { error_code: ErrorCode::StorageError, message: error.to_string() };
    }
    let table = Arc::new(table);
    let shards = (0..shard.settings.shard_count).map(ShardId);
    let replies = join_all(shards.map(|id| run_on(shard, id, ShardOp::ApplyTopics { table: table.clone() }))).await;
    let failures: Vec<String> = replies
        .into_iter()
        .filter_map(|reply| match reply {
            ShardReply::Done => None,
            ShardReply::Failed { message, .. } => Some(message),
            other => Some(format!("unexpected reply {other:?}")),
        })
        .collect();
    if failures.is_empty() {
        ShardReply::Done
    } else {
        ShardReply::Failed { error_code: ErrorCode::StorageError, message: failures.join("; ") }
    }
}

fn shutting_down() -> ShardReply {
    ShardReply::Failed { error_code: ErrorCode::BrokerShuttingDown, message: "the broker is shutting down".into() }
}
