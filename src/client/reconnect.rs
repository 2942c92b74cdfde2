//! How a producer opens a new connection after its connection broke: a [`Connect`] the caller
//! provides (on glommio: [`crate::runtime::tcp_connector`]). Runtime-agnostic: any async
//! closure that returns a [`Connection`] will do.

use std::future::Future;
use std::pin::Pin;

use super::connection::Connection;
use super::error::ClientResult;

/// Opens a fresh connection to the broker.
pub trait Connect<S> {
    fn connect(&self) -> Pin<Box<dyn Future<Output = ClientResult<Connection<S>>>>>;
}

impl<S, F, Fut> Connect<S> for F
where
    F: Fn() -> Fut,
    Fut: Future<Output = ClientResult<Connection<S>>> + 'static,
{
    fn connect(&self) -> Pin<Box<dyn Future<Output = ClientResult<Connection<S>>>>> {
        Box::pin(self())
    }
}
