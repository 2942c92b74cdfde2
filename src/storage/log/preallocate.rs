//! Pre-allocation ahead of the appends: the active segment's file grows by fallocate in a
//! task of its own, started while a good part of the current allocation is still free, so an
//! append seldom waits for one.
//!
//! Why: a fallocate usually takes 30–60 µs, but now and then 2–3 ms, probably waiting for
//! ext4's journal (traced on the development VM at 311 k msgs/s: 40 fallocates in 4 s, seven
//! over 0.3 ms), and an append that waits for it holds the append lock, so every produce to
//! the partition waits too.
//!
//! Rules: at most one pre-allocation per log is in flight; it is started, finished and
//! forgotten only with the append lock held; roll, truncation and close finish it first, so
//! no fallocate runs on a file being cut or closed. A failed pre-allocation is logged and not
//! retried at that file length: the append that needs the room then fallocates itself and
//! reports its own error.

use glommio::task::JoinHandle;

use super::PartitionLog;
use crate::model::Offset;

/// A fallocate of the active segment running ahead of the appends.
pub(super) struct Preallocation {
    /// The segment being grown, to ignore the result if it is no longer the active one.
    segment_base: Offset,
    /// The file length once the fallocate completes.
    target_bytes: u64,
    task: JoinHandle<glommio::Result<(), ()>>,
}

/// Whether a file with `free_bytes` left past its logical end, whose next allocation step is
/// `step_bytes`, should start growing now: when half a step or less is left.
pub(super) fn is_running_low(free_bytes: u64, step_bytes: u64) -> bool {
    step_bytes > 0 && free_bytes <= step_bytes / 2
}

impl PartitionLog {
    /// Starts growing the active segment if its free room is running low and nothing is
    /// growing it yet. Never waits. Called with the append lock held, after an append.
    pub(super) fn preallocate_ahead(&self) {
        let mut state = self.state.borrow_mut();
        if state.preallocation.is_some() || state.poisoned.is_some() || state.closed {
            return;
        }
        let active = state.active();
        let allocated = active.allocated_bytes;
        if state.preallocation_refused_at == Some((active.base_offset, allocated)) {
            return;
        }
        let target_bytes = self.config.preallocation_target(allocated, allocated + 1);
        let free_bytes = allocated.saturating_sub(active.size_bytes);
        if !is_running_low(free_bytes, target_bytes.saturating_sub(allocated)) {
            return;
        }
        let file = active.file.clone();
        let segment_base = active.base_offset;
        let task = glommio::spawn_local(async move { file.pre_allocate(target_bytes, false).await }).detach();
        state.preallocation = Some(Preallocation { segment_base, target_bytes, task });
    }

    /// Waits for the pre-allocation in flight, if any, and records the room it made. Called
    /// with the append lock held.
    pub(super) async fn finish_preallocation(&self) {
        let Some(preallocation) = self.state.borrow_mut().preallocation.take() else {
            return;
        };
        let result = preallocation.task.await;
        let mut state = self.state.borrow_mut();
        let active = state.active_mut();
        match result {
            Some(Ok(())) if active.base_offset == preallocation.segment_base => {
                active.allocated_bytes = active.allocated_bytes.max(preallocation.target_bytes);
            }
            Some(Ok(())) => {}
            Some(Err(error)) => {
                // Not again at this length: the appends that need the room fallocate themselves.
                state.preallocation_refused_at = Some((active.base_offset, active.allocated_bytes));
                tracing::warn!(dir = %self.dir.display(), %error, "pre-allocating ahead failed; appends will fallocate themselves");
            }
            None => {}
        }
    }

    /// Whether a pre-allocation is in flight (tests).
    #[cfg(test)]
    pub(super) fn is_preallocating(&self) -> bool {
        self.state.borrow().preallocation.is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::is_running_low;

    #[test]
    fn runs_low_at_half_a_step() {
        assert!(!is_running_low(600, 1000));
        assert!(is_running_low(500, 1000));
        assert!(is_running_low(0, 1000));
        assert!(!is_running_low(0, 0), "a file at the segment's end never grows");
    }
}
