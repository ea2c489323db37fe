//! Load shedding for the identity API alone: beyond the configured number
//! of calls in flight, a call is refused at once with RESOURCE_EXHAUSTED
//! instead of queueing (a queue under overload only turns fast failures
//! into slow ones). Health and reflection sit outside the limit, so probes
//! keep answering while the API sheds.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::sync::Semaphore;
use tonic::body::Body;
use tonic::server::NamedService;

/// Wraps a gRPC service with a shared limit on calls in flight.
pub struct Shed<S> {
    inner: S,
    permits: Arc<Semaphore>,
}

impl<S: Clone> Clone for Shed<S> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            permits: Arc::clone(&self.permits),
        }
    }
}

impl<S> Shed<S> {
    /// At most `limit` calls of `inner` in flight, across all connections.
    pub fn new(inner: S, limit: usize) -> Self {
        Self {
            inner,
            permits: Arc::new(Semaphore::new(limit)),
        }
    }
}

impl<S: NamedService> NamedService for Shed<S> {
    const NAME: &'static str = S::NAME;
}

impl<S> tower::Service<http::Request<Body>> for Shed<S>
where
    S: tower::Service<http::Request<Body>, Response = http::Response<Body>, Error = Infallible>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
{
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        // Readiness is decided per call, below: never make a caller wait.
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<Body>) -> Self::Future {
        let Ok(permit) = Arc::clone(&self.permits).try_acquire_owned() else {
            let status = crate::errors::overloaded();
            return Box::pin(async move { Ok(status.into_http()) });
        };
        // The clone is the one that is ready (tower's usual swap), since
        // poll_ready of a tonic service is always ready.
        let mut inner = self.inner.clone();
        Box::pin(async move {
            let response = inner.call(req).await;
            drop(permit);
            response
        })
    }
}
