//! Helpers shared by the unit tests, the integration tests and the benchmarks: run a future on
//! a fresh glommio executor, build record batches with recognizable contents, and pin a
//! thread to a CPU.

use std::future::Future;

use bytes::BytesMut;

use crate::model::TimestampMs;
use crate::storage::batch::{BatchBuilder, BatchBuilderConfig};

/// Runs `make_future()` on a new single-threaded glommio executor (not pinned) and returns its
/// output. Panics if the executor cannot start: only for tests and benches.
pub fn run_local<T, F>(make_future: impl FnOnce() -> F + Send + 'static) -> T
where
    T: Send + 'static,
    F: Future<Output = T> + 'static,
{
    glommio::LocalExecutorBuilder::new(glommio::Placement::Unbound)
        .spawn(make_future)
        .expect("starting a glommio executor")
        .join()
        .expect("the executor thread panicked")
}

/// A batch of `record_count` records whose values are `"<tag>-<i>"` padded with `x` to
/// `value_bytes`, all stamped with `timestamp`.
pub fn make_batch(tag: u64, record_count: usize, value_bytes: usize, timestamp: TimestampMs) -> BytesMut {
    let mut builder = BatchBuilder::new(BatchBuilderConfig::default());
    for i in 0..record_count {
        let mut value = format!("{tag}-{i}").into_bytes();
        value.resize(value_bytes.max(value.len()), b'x');
        builder.push(timestamp, Some(format!("key-{i}").as_bytes()), &value, &[]);
    }
    BytesMut::from(&builder.build().expect("a test batch builds")[..])
}

/// The tag that [`make_batch`] put into the first record of `batch`.
pub fn batch_tag(batch: &[u8]) -> Option<u64> {
    let mut tag = None;
    crate::storage::batch::for_each_record(batch, |record| {
        if tag.is_none() {
            let text = String::from_utf8_lossy(record.value);
            tag = text.split('-').next().and_then(|t| t.parse().ok());
        }
    })
    .ok()?;
    tag
}

/// Pins the calling thread to `cpu`; whether the kernel accepted it.
pub fn pin_this_thread_to(cpu: usize) -> bool {
    // SAFETY: `set` is a plain bit set owned by this frame, passed with its exact size.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) == 0
    }
}
