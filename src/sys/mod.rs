//! Kernel-facing helpers that both sides use, with no runtime in them: the broker's
//! connections and the client's glommio glue (`crate::runtime`) receive large frames with
//! [`socket_recv`], and the runtime-agnostic client names its outcome, [`socket_recv::Recv`].
//! [`cpu_wait`] reads how long a thread waited for its CPU: each shard watches its own, and the
//! load generator reports every thread's over the measured window.

pub mod cpu_wait;
pub mod socket_recv;
