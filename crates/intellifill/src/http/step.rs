//! A middleware step as a tower layer, service and future: an async function of the state, the request and
//! the rest of the stack.
//!
//! Why not `axum::middleware::from_fn`: on every request it clones the inner service and boxes the clone
//! into its `Next`, adds a response-mapping service around it and boxes its own future, then runs an extractor
//! for the state. A [`StepService`] hands its (ready) inner service to the step as a plain closure and boxes
//! only the future (an `async fn`'s future cannot be named). A tuple of steps is one step (they run in order
//! inside one future), so the stack's concerns stay one step each at the cost of three boxed futures per
//! request (`super::middleware`; docs/PERFORMANCE.md, "Middleware overhead"). A step decides synchronously
//! where it can and returns a [`crate::flow::Flow`], so nesting the steps does not nest their futures' state.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use axum::extract::Request;
use axum::response::Response;
use futures::FutureExt;

use crate::state::AppState;

/// One step: runs before `rest` (the inner service), decides whether to call it, and may change the request
/// on the way in and the response on the way out.
pub(crate) trait Step: Copy + Send + Sync + 'static {
    fn run<'a, F>(
        self,
        state: &'a AppState,
        request: Request,
        rest: impl FnOnce(Request) -> F + Send + 'a,
    ) -> impl Future<Output = Response> + Send + 'a
    where
        F: Future<Output = Response> + Send + 'a;
}

/// `impl Step for $ty` (generic over the `$param` steps), `run` being `body` over the given names of the
/// state, the request and the rest, with `self` bound to `pat` first.
macro_rules! impl_step {
    ([$($param:ident),*] $ty:ty as $pat:pat, |$state:ident, $request:ident, $rest:ident| $body:expr) => {
        impl<$($param: $crate::http::step::Step),*> $crate::http::step::Step for $ty {
            fn run<'a, F>(
                self,
                $state: &'a $crate::state::AppState,
                $request: ::axum::extract::Request,
                $rest: impl FnOnce(::axum::extract::Request) -> F + Send + 'a,
            ) -> impl ::std::future::Future<Output = ::axum::response::Response> + Send + 'a
            where
                F: ::std::future::Future<Output = ::axum::response::Response> + Send + 'a,
            {
                let $pat = self;
                $body
            }
        }
    };
}
pub(crate) use impl_step;

// Steps run in order as one step: `(a, b)` is `a` with `b` (and then the rest) as its rest, so a group of
// steps costs one boxed future per request, however many it has. Longer tuples nest into pairs.
impl_step!([A, B](A, B) as (a, b), |state, request, rest| {
    a.run(state, request, move |request| b.run(state, request, rest))
});
impl_step!([A, B, C](A, B, C) as (a, b, c), |state, request, rest| (a, (b, c)).run(state, request, rest));
impl_step!([A, B, C, D](A, B, C, D) as (a, b, c, d), |state, request, rest| {
    (a, (b, (c, d))).run(state, request, rest)
});

/// The layer of `step`.
#[derive(Clone)]
pub(crate) struct StepLayer<K> {
    step: K,
    state: AppState,
}

impl<K: Step> StepLayer<K> {
    pub(crate) fn new(step: K, state: AppState) -> Self {
        StepLayer { step, state }
    }
}

impl<K: Step, S> tower::Layer<S> for StepLayer<K> {
    type Service = StepService<K, S>;

    fn layer(&self, inner: S) -> Self::Service {
        StepService { step: self.step, state: self.state.clone(), inner }
    }
}

/// `step` around `inner`.
#[derive(Clone)]
pub(crate) struct StepService<K, S> {
    step: K,
    state: AppState,
    inner: S,
}

/// The step's future (boxed: it is an `async fn`'s).
pub(crate) type StepFuture = Pin<Box<dyn Future<Output = Result<Response, Infallible>> + Send>>;

impl<K, S> tower::Service<Request> for StepService<K, S>
where
    K: Step,
    S: tower::Service<Request, Response = Response, Error = Infallible> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    type Response = Response;
    type Error = Infallible;
    type Future = StepFuture;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request) -> Self::Future {
        // The service made ready by `poll_ready` goes with the request; a clone takes its place (tower's
        // documented pattern for services whose future calls the inner service later).
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let (step, state) = (self.step, self.state.clone());
        Box::pin(async move {
            let rest = move |request| inner.call(request).map(|answer| answer.unwrap_or_else(|never| match never {}));
            Ok(step.run(&state, request, rest).await)
        })
    }
}
