//! Kernel-facing helpers that both sides use, with no runtime in them: the broker's
//! connections and the client's glommio glue (`crate::runtime`) receive large frames with
//! [`socket_recv`], and the runtime-agnostic client names its outcome, [`socket_recv::Recv`].

pub mod socket_recv;
