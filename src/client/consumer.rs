//! The consumer: an explicit assignment of (topic, partition)s, a position per partition, and
//! long-poll fetches whose batches are fully validated before any record is yielded.

use std::collections::VecDeque;
use std::rc::Rc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_lite::io::{AsyncRead, AsyncWrite};

use super::connection::{Connection, Pending};
use super::error::{ClientError, ClientResult};
use crate::model::{Offset, PartitionId, TimestampMs};
use crate::protocol::{payload_slice, ErrorCode, FetchPartition, FetchRequest, FetchTopic, OffsetSpec};
use crate::storage::batch::{peek_batch_length, BatchError, BatchView};

/// Consumer settings (the Fetch request's long-poll parameters).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConsumerConfig {
    /// Longest the broker waits for `min_bytes` before answering.
    pub max_wait_ms: u32,
    /// Bytes the broker waits for (0: answer at once, even empty).
    pub min_bytes: u32,
    /// Bound on one response's batches (at least one whole batch is always returned).
    pub max_bytes: u32,
    /// Bound per partition.
    pub partition_max_bytes: u32,
    /// Where a partition with no position starts.
    pub start: SeekTo,
}

impl Default for ConsumerConfig {
    fn default() -> Self {
        ConsumerConfig {
            max_wait_ms: 500,
            min_bytes: 1,
            max_bytes: 16 * 1024 * 1024,
            partition_max_bytes: 4 * 1024 * 1024,
            start: SeekTo::Earliest,
        }
    }
}

/// Where to (re)position a partition.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SeekTo {
    Offset(Offset),
    /// The log start offset.
    Earliest,
    /// The high watermark: only records produced from now on.
    Latest,
    /// The first record at or after this time; the high watermark if there is none.
    Timestamp(TimestampMs),
}

/// One consumed record. Key, value and header values are copied out of the fetched batch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConsumerRecord {
    pub topic: Rc<str>,
    pub partition: PartitionId,
    pub offset: Offset,
    pub timestamp: TimestampMs,
    pub key: Option<Bytes>,
    pub value: Bytes,
    pub headers: Vec<(String, Bytes)>,
}

#[derive(Debug)]
struct Assignment {
    topic: Rc<str>,
    partition: PartitionId,
    position: Option<Offset>,
}

/// A fetch sent and not yet received.
#[derive(Debug)]
struct FetchInFlight {
    pending: Pending<FetchRequest>,
    /// Past this the broker is taken as gone (`max_wait_ms` plus the request timeout).
    deadline: Instant,
    /// Each partition's position when the fetch was sent: an answer is used only for a
    /// partition still assigned at that position (a seek or an assignment in between wins).
    sent_positions: Vec<(Rc<str>, PartitionId, Offset)>,
}

/// See the module doc. Owned by one task.
pub struct Consumer<S> {
    connection: Connection<S>,
    config: ConsumerConfig,
    assignments: Vec<Assignment>,
    /// Records decoded by a poll that also reported an error; returned by the next poll.
    buffered: VecDeque<ConsumerRecord>,
    /// At most one fetch is in flight (see [`Consumer::send_fetch`]).
    fetch_in_flight: Option<FetchInFlight>,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Consumer<S> {
    pub fn new(connection: Connection<S>, config: ConsumerConfig) -> Consumer<S> {
        Consumer { connection, config, assignments: Vec::new(), buffered: VecDeque::new(), fetch_in_flight: None }
    }

    /// Bounds the long-poll wait of the next fetches (a group member shortens it so that its
    /// next heartbeat is never late).
    pub fn set_max_wait_ms(&mut self, max_wait_ms: u32) {
        self.config.max_wait_ms = max_wait_ms;
    }

    /// The connection, for admin calls (metadata, list offsets).
    pub fn connection(&mut self) -> &mut Connection<S> {
        &mut self.connection
    }

    /// Replaces the assignment. Positions are kept for partitions that stay assigned.
    pub fn assign(&mut self, partitions: &[(&str, PartitionId)]) {
        let mut next = Vec::with_capacity(partitions.len());
        for &(topic, partition) in partitions {
            let position = self
                .assignments
                .iter()
                .find(|a| &*a.topic == topic && a.partition == partition)
                .and_then(|a| a.position);
            if next.iter().any(|a: &Assignment| &*a.topic == topic && a.partition == partition) {
                continue;
            }
            next.push(Assignment { topic: Rc::from(topic), partition, position });
        }
        self.assignments = next;
        self.buffered.clear();
    }

    /// Whether any partition is assigned.
    pub fn has_assignment(&self) -> bool {
        !self.assignments.is_empty()
    }

    /// Whether `partition` of `topic` is assigned.
    pub fn is_assigned(&self, topic: &str, partition: PartitionId) -> bool {
        self.assignments.iter().any(|a| &*a.topic == topic && a.partition == partition)
    }

    /// The next offset to fetch for an assigned partition (`None`: not positioned yet).
    pub fn position(&self, topic: &str, partition: PartitionId) -> Option<Offset> {
        self.assignments.iter().find(|a| &*a.topic == topic && a.partition == partition).and_then(|a| a.position)
    }

    /// Positions one assigned partition; returns the offset it will fetch next.
    pub async fn seek(&mut self, topic: &str, partition: PartitionId, to: SeekTo) -> ClientResult<Offset> {
        let Some(index) = self.assignments.iter().position(|a| &*a.topic == topic && a.partition == partition) else {
            return Err(ClientError::InvalidArgument(format!("topic '{topic}' partition {partition} is not assigned")));
        };
        let offset = match to {
            SeekTo::Offset(offset) => offset,
            SeekTo::Earliest => self.lookup(topic, partition, OffsetSpec::Earliest).await?,
            SeekTo::Latest => self.lookup(topic, partition, OffsetSpec::Latest).await?,
            SeekTo::Timestamp(timestamp) => {
                match self.lookup_optional(topic, partition, OffsetSpec::Timestamp(timestamp.0)).await? {
                    Some(offset) => offset,
                    None => self.lookup(topic, partition, OffsetSpec::Latest).await?,
                }
            }
        };
        self.buffered.retain(|r| !(&*r.topic == topic && r.partition == partition));
        if let Some(assignment) = self.assignments.get_mut(index) {
            assignment.position = Some(offset);
        }
        Ok(offset)
    }

    /// Positions every assigned partition.
    pub async fn seek_all(&mut self, to: SeekTo) -> ClientResult<()> {
        let all: Vec<(Rc<str>, PartitionId)> =
            self.assignments.iter().map(|a| (Rc::clone(&a.topic), a.partition)).collect();
        for (topic, partition) in all {
            self.seek(&topic, partition, to).await?;
        }
        Ok(())
    }

    async fn lookup(&mut self, topic: &str, partition: PartitionId, spec: OffsetSpec) -> ClientResult<Offset> {
        self.lookup_optional(topic, partition, spec).await?.ok_or_else(|| ClientError::Partition {
            topic: topic.to_owned(),
            partition,
            code: ErrorCode::Unknown,
            message: "ListOffsets returned no offset".to_owned(),
        })
    }

    async fn lookup_optional(
        &mut self,
        topic: &str,
        partition: PartitionId,
        spec: OffsetSpec,
    ) -> ClientResult<Option<Offset>> {
        let found = self.connection.list_offsets(topic, &[(partition, spec)]).await?;
        Ok(found.first().and_then(|f| f.offset))
    }

    /// Fetches from every assigned partition (one long-poll request) and returns the records
    /// at or after each position, in offset order per partition; empty when `max_wait_ms`
    /// passed with no data. Unpositioned partitions are first positioned at `config.start`.
    ///
    /// A partition error (e.g. [`ClientError::OffsetOutOfRange`]) is returned after the
    /// records of the other partitions are kept for the next poll; that partition's position
    /// is left unchanged for the caller to fix with [`Consumer::seek`].
    ///
    /// The same as [`Consumer::send_fetch`], [`Consumer::wait_for_fetch`] and
    /// [`Consumer::receive_fetch`] in a row; cancellation-safe once the fetch is sent: a poll
    /// dropped while it waits leaves the fetch in flight for the next one.
    pub async fn poll(&mut self) -> ClientResult<Vec<ConsumerRecord>> {
        if !self.buffered.is_empty() {
            return Ok(self.buffered.drain(..).collect());
        }
        self.send_fetch().await?;
        self.wait_for_fetch().await?;
        self.receive_fetch().await
    }

    /// Records a poll kept back after an error, waiting for the next poll.
    pub fn has_buffered(&self) -> bool {
        !self.buffered.is_empty()
    }

    /// Whether a fetch was sent and its answer not yet received.
    pub fn has_fetch_in_flight(&self) -> bool {
        self.fetch_in_flight.is_some()
    }

    /// Sends one long-poll fetch for every assigned partition from its position, unless one is
    /// in flight already. Unpositioned partitions are first positioned at `config.start`.
    pub async fn send_fetch(&mut self) -> ClientResult<()> {
        if self.fetch_in_flight.is_some() {
            return Ok(());
        }
        if self.assignments.is_empty() {
            return Err(ClientError::InvalidArgument("poll with no partitions assigned".to_owned()));
        }
        let unpositioned: Vec<(Rc<str>, PartitionId)> = self
            .assignments
            .iter()
            .filter(|a| a.position.is_none())
            .map(|a| (Rc::clone(&a.topic), a.partition))
            .collect();
        for (topic, partition) in unpositioned {
            let start = self.config.start;
            self.seek(&topic, partition, start).await?;
        }
        let mut topics: Vec<FetchTopic> = Vec::new();
        let mut sent_positions = Vec::with_capacity(self.assignments.len());
        for assignment in &self.assignments {
            let position = assignment.position.unwrap_or_default();
            sent_positions.push((Rc::clone(&assignment.topic), assignment.partition, position));
            let fetch = FetchPartition {
                partition: assignment.partition.0,
                fetch_offset: position.0,
                partition_max_bytes: self.config.partition_max_bytes,
            };
            match topics.iter_mut().find(|t| *t.name == *assignment.topic) {
                Some(topic) => topic.partitions.push(fetch),
                None => topics.push(FetchTopic { name: assignment.topic.to_string(), partitions: vec![fetch] }),
            }
        }
        let request = FetchRequest {
            max_wait_ms: self.config.max_wait_ms,
            min_bytes: self.config.min_bytes,
            max_bytes: self.config.max_bytes,
            topics,
        };
        let wait = Duration::from_millis(u64::from(self.config.max_wait_ms));
        let pending = self.connection.send_with_wait(&request, Vec::new(), wait).await?;
        let deadline = Instant::now() + self.connection.response_timeout(&pending);
        self.fetch_in_flight = Some(FetchInFlight { pending, deadline, sent_positions });
        Ok(())
    }

    /// Waits until the answer to the fetch in flight has arrived (at once when none is in
    /// flight). Cancellation-safe: several consumers can be waited on at once, the losers
    /// dropped. Past the fetch's deadline the connection is poisoned ([`ClientError::TimedOut`]).
    pub async fn wait_for_fetch(&mut self) -> ClientResult<()> {
        match &self.fetch_in_flight {
            Some(fetch) => self.connection.wait_until_arrived(&fetch.pending, fetch.deadline).await,
            None => Ok(()),
        }
    }

    /// Whether the answer to the fetch in flight has arrived, without waiting (takes the bytes
    /// the connection has ready).
    pub fn fetch_arrived(&mut self) -> ClientResult<bool> {
        match &self.fetch_in_flight {
            Some(fetch) => self.connection.is_ready(&fetch.pending),
            None => Ok(false),
        }
    }

    /// Receives the fetch in flight (waiting for it if it has not arrived) and returns its
    /// records, as [`Consumer::poll`] does; empty when no fetch is in flight. A partition
    /// repositioned or unassigned since the fetch was sent is left out of it.
    pub async fn receive_fetch(&mut self) -> ClientResult<Vec<ConsumerRecord>> {
        self.wait_for_fetch().await?;
        let Some(fetch) = self.fetch_in_flight.take() else { return Ok(Vec::new()) };
        let response = self.connection.receive(fetch.pending).await?;
        let mut records = Vec::new();
        let mut first_error = None;
        for (index, assignment) in self.assignments.iter_mut().enumerate() {
            let Some(position) = assignment.position else { continue };
            let is_sent = |(topic, partition, sent): &(Rc<str>, PartitionId, Offset)| {
                *partition == assignment.partition && **topic == *assignment.topic && *sent == position
            };
            // Same index unless the assignment changed since the fetch was sent.
            let sent_at_position =
                fetch.sent_positions.get(index).is_some_and(is_sent) || fetch.sent_positions.iter().any(is_sent);
            if !sent_at_position {
                continue;
            }
            let answer = response
                .body
                .topics
                .iter()
                .filter(|t| *t.name == *assignment.topic)
                .flat_map(|t| t.partitions.iter())
                .find(|p| p.partition == assignment.partition.0);
            let Some(answer) = answer else { continue };
            let code = ErrorCode::from_u16(answer.error_code);
            let error = match code {
                ErrorCode::None => None,
                ErrorCode::OffsetOutOfRange => Some(ClientError::OffsetOutOfRange {
                    topic: assignment.topic.to_string(),
                    partition: assignment.partition,
                    offset: position,
                    log_start_offset: Offset(answer.log_start_offset),
                    high_watermark: Offset(answer.high_watermark),
                }),
                code => Some(ClientError::Partition {
                    topic: assignment.topic.to_string(),
                    partition: assignment.partition,
                    code,
                    message: String::new(),
                }),
            };
            if let Some(error) = error {
                first_error.get_or_insert(error);
                continue;
            }
            let decoded = payload_slice(&response.payload, answer.payload_offset, answer.payload_length)
                .map_err(ClientError::from)
                .and_then(|batches| {
                    decode_shared_batches(&assignment.topic, assignment.partition, &batches, position).map_err(
                        |source| ClientError::CorruptBatch {
                            topic: assignment.topic.to_string(),
                            partition: assignment.partition,
                            source,
                        },
                    )
                });
            match decoded {
                Ok((partition_records, next)) => {
                    records.extend(partition_records);
                    assignment.position = Some(next);
                }
                Err(error) => {
                    first_error.get_or_insert(error);
                }
            }
        }
        records_or_first_error(records, first_error, &mut self.buffered)
    }
}

/// What a poll returns: the records, or the first error with the records kept in `buffered`
/// for the next poll (so that one partition's error loses no other partition's records).
pub(super) fn records_or_first_error(
    records: Vec<ConsumerRecord>,
    first_error: Option<ClientError>,
    buffered: &mut VecDeque<ConsumerRecord>,
) -> ClientResult<Vec<ConsumerRecord>> {
    match first_error {
        Some(error) => {
            buffered.extend(records);
            Err(error)
        }
        None => Ok(records),
    }
}

/// Validates every batch in `batches` (back to back, as a fetch returns them) and returns the
/// records at or after `position`, with the next position: past the last batch, or `position`
/// when there was none. The first batch may start before `position` (batches are never split);
/// its earlier records are skipped.
pub fn decode_batches(
    topic: &Rc<str>,
    partition: PartitionId,
    batches: &[u8],
    position: Offset,
) -> Result<(Vec<ConsumerRecord>, Offset), BatchError> {
    decode_shared_batches(topic, partition, &Bytes::copy_from_slice(batches), position)
}

/// As [`decode_batches`], with keys and values sharing `batches`' memory (no copy per record)
/// when the batches could be read in place; a batch that had to be re-aligned is copied.
pub fn decode_shared_batches(
    topic: &Rc<str>,
    partition: PartitionId,
    batches: &Bytes,
    position: Offset,
) -> Result<(Vec<ConsumerRecord>, Offset), BatchError> {
    let share = |slice: &[u8]| -> Bytes {
        let inside = batches.as_ptr_range();
        if slice.is_empty() {
            Bytes::new()
        } else if inside.start <= slice.as_ptr() && slice.as_ptr_range().end <= inside.end {
            batches.slice_ref(slice)
        } else {
            Bytes::copy_from_slice(slice)
        }
    };
    let mut records = Vec::new();
    let mut next = position;
    let mut rest: &[u8] = batches;
    while !rest.is_empty() {
        let view = BatchView::new(rest)?;
        for record in view.records() {
            if record.offset < position {
                continue;
            }
            records.push(ConsumerRecord {
                topic: Rc::clone(topic),
                partition,
                offset: record.offset,
                timestamp: record.timestamp,
                key: record.key.map(share),
                value: share(record.value),
                headers: record.headers.iter().map(|(key, value)| (key.to_owned(), share(value))).collect(),
            });
        }
        next = next.max(view.header().next_offset());
        // `BatchView::new` checked that `rest` holds `batch_length` bytes.
        let length = peek_batch_length(rest).unwrap_or(0) as usize;
        rest = rest.get(length.max(1)..).unwrap_or_default();
    }
    Ok((records, next))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::LeaderEpoch;
    use crate::storage::batch::{stamp, BatchBuilder, BatchBuilderConfig};

    /// A batch of `values` stamped at `base_offset`, as the broker would return it.
    pub(crate) fn stamped_batch(base_offset: u64, values: &[&str]) -> Vec<u8> {
        let mut builder = BatchBuilder::new(BatchBuilderConfig::default());
        for (i, value) in values.iter().enumerate() {
            let key = format!("k{i}");
            builder.push(
                TimestampMs(1_000 + i as i64),
                (i % 2 == 0).then_some(key.as_bytes()),
                value.as_bytes(),
                &[("h", b"v")],
            );
        }
        let mut bytes = builder.build().unwrap().to_vec();
        stamp(&mut bytes, Offset(base_offset), LeaderEpoch(0)).unwrap();
        bytes
    }

    /// Guards record decoding: absolute offsets and timestamps, keys, headers, records before
    /// the position skipped, the next position past the last batch.
    #[test]
    fn decodes_records_from_batches() {
        let mut wire = stamped_batch(10, &["a", "b", "c"]);
        wire.extend(stamped_batch(13, &["d", "e"]));
        let topic: Rc<str> = Rc::from("t");
        let (records, next) = decode_batches(&topic, PartitionId(2), &wire, Offset(11)).unwrap();
        let values: Vec<&[u8]> = records.iter().map(|r| &r.value[..]).collect();
        assert_eq!(values, [&b"b"[..], b"c", b"d", b"e"]);
        let offsets: Vec<u64> = records.iter().map(|r| r.offset.0).collect();
        assert_eq!(offsets, [11, 12, 13, 14]);
        assert_eq!(next, Offset(15));
        assert_eq!(records[0].timestamp, TimestampMs(1_001));
        assert_eq!(records[0].key, None);
        assert_eq!(records[1].key.as_deref(), Some(&b"k2"[..]));
        assert_eq!(records[0].partition, PartitionId(2));
        assert_eq!(records[0].headers, vec![("h".to_owned(), Bytes::from_static(b"v"))]);
        let (none, same) = decode_batches(&topic, PartitionId(2), &[], Offset(7)).unwrap();
        assert!(none.is_empty());
        assert_eq!(same, Offset(7));
    }

    /// Guards "verify every batch before yielding records": a flipped byte fails the whole
    /// decode, and a truncated batch too; nothing is yielded from a bad response.
    #[test]
    fn corrupt_or_truncated_batches_are_refused() {
        let topic: Rc<str> = Rc::from("t");
        let good = stamped_batch(0, &["a", "b"]);
        let mut wire = good.clone();
        wire.extend(stamped_batch(2, &["c"]));
        let last = wire.len() - 20;
        wire[last] ^= 0x40;
        assert!(decode_batches(&topic, PartitionId(0), &wire, Offset(0)).is_err());
        let truncated = &good[..good.len() - 8];
        assert!(decode_batches(&topic, PartitionId(0), truncated, Offset(0)).is_err());
        // An unaligned copy decodes too (a network frame need not be 8-aligned).
        let mut unaligned = vec![0u8; 1];
        unaligned.extend_from_slice(&good);
        let (records, _) = decode_batches(&topic, PartitionId(0), &unaligned[1..], Offset(0)).unwrap();
        assert_eq!(records.len(), 2);
    }
}
