//! The breaker as a tower [`Layer`]/[`Service`].
//!
//! Admission happens in [`Service::call`]: a rejected request never reaches
//! the inner service (its `call` is not invoked) and resolves at once to
//! [`BreakerError::Open`]. `poll_ready` just delegates, so back-pressure from
//! the inner service is unchanged and its readiness errors come back as
//! [`BreakerError::Inner`] without being counted (no call was made).
//!
//! The response future is a plain pin-projected struct, with no boxing; it is
//! `Send` whenever the inner future and the classifier are.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use pin_project_lite::pin_project;
use tower::{Layer, Service};

use crate::guard::Guarded;
use crate::{BreakerError, CircuitBreaker, Outcome};

/// A [`Layer`] that puts every request of the wrapped service through a
/// [`CircuitBreaker`], classifying results with `classify`
/// (`Fn(&Result<S::Response, S::Error>) -> Outcome + Clone`, e.g. [`Outcome::of`]).
///
/// All services built from one layer share its breaker.
#[derive(Debug, Clone)]
pub struct BreakerLayer<C> {
    breaker: CircuitBreaker,
    classify: C,
}

impl<C> BreakerLayer<C> {
    /// A layer guarding services with `breaker`.
    pub fn new(breaker: CircuitBreaker, classify: C) -> Self {
        Self { breaker, classify }
    }

    /// The breaker the layer's services share.
    pub fn breaker(&self) -> &CircuitBreaker {
        &self.breaker
    }
}

impl<S, C: Clone> Layer<S> for BreakerLayer<C> {
    type Service = BreakerService<S, C>;

    fn layer(&self, inner: S) -> Self::Service {
        BreakerService::new(inner, self.breaker.clone(), self.classify.clone())
    }
}

/// A [`Service`] guarded by a [`CircuitBreaker`]; see [`BreakerLayer`].
/// Its error type is [`BreakerError<S::Error>`](BreakerError).
#[derive(Debug, Clone)]
pub struct BreakerService<S, C> {
    inner: S,
    breaker: CircuitBreaker,
    classify: C,
}

impl<S, C> BreakerService<S, C> {
    /// Wraps `inner` with `breaker`.
    pub fn new(inner: S, breaker: CircuitBreaker, classify: C) -> Self {
        Self { inner, breaker, classify }
    }

    /// The guarding breaker.
    pub fn breaker(&self) -> &CircuitBreaker {
        &self.breaker
    }

    /// The wrapped service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The wrapped service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// Unwraps the inner service.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S, C, Req> Service<Req> for BreakerService<S, C>
where
    S: Service<Req>,
    C: Fn(&Result<S::Response, S::Error>) -> Outcome + Clone,
{
    type Response = S::Response;
    type Error = BreakerError<S::Error>;
    type Future = ResponseFuture<S::Future, C>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(BreakerError::Inner)
    }

    fn call(&mut self, req: Req) -> Self::Future {
        let kind = match self.breaker.admit() {
            Ok(permit) => {
                let fut = self.inner.call(req);
                Kind::Running { guarded: self.breaker.guard(fut, self.classify.clone(), permit) }
            }
            Err(retry_after) => Kind::Rejected { retry_after },
        };
        ResponseFuture { kind }
    }
}

pin_project! {
    /// The response future of [`BreakerService`].
    pub struct ResponseFuture<F, C> {
        #[pin]
        kind: Kind<F, C>,
    }
}

pin_project! {
    #[project = KindProj]
    enum Kind<F, C> {
        Running { #[pin] guarded: Guarded<F, C> },
        Rejected { retry_after: Duration },
    }
}

impl<F, C, T, E> Future for ResponseFuture<F, C>
where
    F: Future<Output = Result<T, E>>,
    C: FnOnce(&Result<T, E>) -> Outcome,
{
    type Output = Result<T, BreakerError<E>>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().kind.project() {
            KindProj::Running { guarded } => guarded.poll(cx).map(|(result, _outcome)| result),
            KindProj::Rejected { retry_after } => Poll::Ready(Err(BreakerError::Open { retry_after: *retry_after })),
        }
    }
}

impl<F, C> std::fmt::Debug for ResponseFuture<F, C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}
