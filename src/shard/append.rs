//! The owner's append of one produced batch: the idempotence check against the partition's
//! producer state, the append, the wait for the durability policy; and the rebuild of that state
//! from the log when a partition opens.

use bytes::BytesMut;

use super::execute::{storage_error, LEADER_EPOCH};
use super::state::PartitionHandle;
use crate::group::producer_state::{PartitionProducerState, ProducerBatch, SequenceCheck};
use crate::model::Offset;
use crate::protocol::ErrorCode;
use crate::storage::batch::BatchHeader;
use crate::storage::{PartitionLog, StorageError};

/// Appends one batch without waiting for the log's durability policy; the batch's base offset
/// and the offset after it, to pass to `PartitionLog::await_durability` (once for all the
/// batches of a request, so that they share one fdatasync).
///
/// A batch with a producer id is checked against the partition's producer state first. The
/// caller holds the partition's append turn (`PartitionHandle::append_turns`), so the check,
/// the append's offset assignment and the record of the batch are not interleaved with another
/// request's, and pipelined batches of one producer are judged in the order they were sent. A
/// duplicate is not appended again: its answer is the original base offset, to be given once
/// the original is as durable as this request is promised (the original may still be waiting
/// for its fdatasync).
pub async fn append_batch(handle: &PartitionHandle, batch: BytesMut) -> Result<(Offset, Offset), (ErrorCode, String)> {
    let header = BatchHeader::parse(&batch).map_err(|e| storage_error(&StorageError::InvalidBatch(e)))?;
    if header.producer_id.0 < 0 {
        return handle
            .log
            .append_without_sync(batch, LEADER_EPOCH)
            .await
            .map(|info| (info.base_offset, info.next_offset))
            .map_err(|e| storage_error(&e));
    }
    let appended = {
        let (producer_id, producer_epoch, base_sequence, record_count) =
            (header.producer_id, header.producer_epoch, header.base_sequence, header.record_count);
        let check = handle.producers.borrow().check(producer_id, producer_epoch, base_sequence, record_count);
        match check {
            SequenceCheck::Accept => {
                let info = handle.log.append_without_sync(batch, LEADER_EPOCH).await.map_err(|e| storage_error(&e))?;
                handle.producers.borrow_mut().record(&ProducerBatch {
                    producer_id,
                    producer_epoch,
                    base_sequence,
                    record_count,
                    base_offset: info.base_offset,
                });
                (info.base_offset, info.next_offset)
            }
            SequenceCheck::Duplicate(original) => {
                tracing::debug!(producer_id = producer_id.0, base_sequence, base_offset = %original, "duplicate batch");
                (original, original.plus(u64::from(record_count)))
            }
            refused @ (SequenceCheck::OutOfOrderSequence | SequenceCheck::ProducerFenced) => {
                let known_epoch = handle.producers.borrow().epoch_of(producer_id);
                return Err((
                    refused.error_code(),
                    format!(
                        "producer {} epoch {} base sequence {base_sequence}: {} (the partition knows epoch {known_epoch:?})",
                        producer_id.0,
                        producer_epoch.0,
                        refused.error_code().as_str()
                    ),
                ));
            }
        }
    };
    Ok(appended)
}

/// Rebuilds the idempotent producers' state of a freshly opened log from its batch headers
/// (cost: see `storage::log::producers`).
pub async fn replay_producers(log: &PartitionLog) -> Result<PartitionProducerState, StorageError> {
    let mut producers = PartitionProducerState::new();
    log.visit_batch_headers(|header| {
        if header.producer_id.0 >= 0 {
            producers.record(&ProducerBatch {
                producer_id: header.producer_id,
                producer_epoch: header.producer_epoch,
                base_sequence: header.base_sequence,
                record_count: header.record_count,
                base_offset: header.base_offset,
            });
        }
    })
    .await?;
    Ok(producers)
}
