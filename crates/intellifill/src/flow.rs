//! [`Flow`]: what a middleware step makes of a request, as one small future.
//!
//! A step that is written as an `async` block keeps everything it captured (the request, 240 bytes) and the
//! whole future of the rest of the stack in its own state, and each step's future is built and then moved
//! into its parent's: with every step of the stack nested this way, a request's futures were kilobytes that
//! were copied again at each level (docs/PERFORMANCE.md, "Instructions per request"). A step that decides at
//! once (the usual case: a cached token, a leased rate-limit cell) returns the rest's future itself
//! ([`Flow::Pass`]), or with a function over its response ([`Flow::Then`]), or its own answer
//! ([`Flow::Now`]); only a step that must wait (Redis, the auth service, a body to read, a refusal held)
//! boxes that path ([`Flow::Later`]), so the size of the waiting code is paid where it runs.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use axum::response::Response;
use futures::future::BoxFuture;

/// A function over the rest's response, for [`Flow::Then`].
pub(crate) type Keep = fn(Response) -> Response;

pin_project_lite::pin_project! {
    /// The future of a step whose rest's future is `F`, changing its response with `C` when it is
    /// [`Flow::Then`].
    #[project = FlowProj]
    pub(crate) enum Flow<'a, F, C = Keep> {
        /// The rest's response, as it is.
        Pass { #[pin] rest: F },
        /// The rest's response, through `then` (dropped unrun when the request is: see its captures' `Drop`).
        Then { #[pin] rest: F, then: Option<C> },
        /// The step's own answer; the rest never runs.
        Now { response: Option<Response> },
        /// A path that waits, boxed.
        Later { future: BoxFuture<'a, Response> },
    }
}

impl<'a, F, C> Flow<'a, F, C> {
    pub(crate) fn pass(rest: F) -> Self {
        Flow::Pass { rest }
    }

    pub(crate) fn then(rest: F, then: C) -> Self {
        Flow::Then { rest, then: Some(then) }
    }

    pub(crate) fn now(response: Response) -> Self {
        Flow::Now { response: Some(response) }
    }

    pub(crate) fn later(future: impl Future<Output = Response> + Send + 'a) -> Self {
        Flow::Later { future: Box::pin(future) }
    }
}

impl<F, C> Future for Flow<'_, F, C>
where
    F: Future<Output = Response>,
    C: FnOnce(Response) -> Response,
{
    type Output = Response;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Response> {
        match self.project() {
            FlowProj::Pass { rest } => rest.poll(cx),
            FlowProj::Then { rest, then } => {
                let response = std::task::ready!(rest.poll(cx));
                Poll::Ready((then.take().expect("a Flow is not polled after it completed"))(response))
            }
            FlowProj::Now { response } => {
                Poll::Ready(response.take().expect("a Flow is not polled after it completed"))
            }
            FlowProj::Later { future } => future.as_mut().poll(cx),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::StatusCode;
    use axum::response::IntoResponse;
    use futures::FutureExt;

    fn answer(status: StatusCode) -> impl Future<Output = Response> {
        std::future::ready(status.into_response())
    }

    #[test]
    fn each_kind_of_flow_answers_as_it_says() {
        let pass: Flow<'_, _> = Flow::pass(answer(StatusCode::OK));
        assert_eq!(pass.now_or_never().map(|r| r.status()), Some(StatusCode::OK));

        let then = Flow::then(answer(StatusCode::OK), |mut r: Response| {
            *r.status_mut() = StatusCode::ACCEPTED;
            r
        });
        assert_eq!(then.now_or_never().map(|r| r.status()), Some(StatusCode::ACCEPTED));

        let now: Flow<'_, std::future::Ready<Response>> = Flow::now(StatusCode::TOO_MANY_REQUESTS.into_response());
        assert_eq!(now.now_or_never().map(|r| r.status()), Some(StatusCode::TOO_MANY_REQUESTS));

        let later: Flow<'_, std::future::Ready<Response>> = Flow::later(async {
            tokio::task::yield_now().await;
            StatusCode::CREATED.into_response()
        });
        let runtime = tokio::runtime::Builder::new_current_thread().build().expect("runtime");
        assert_eq!(runtime.block_on(later).status(), StatusCode::CREATED);
    }

    #[test]
    fn a_dropped_then_flow_drops_its_function_unrun() {
        struct Flag(std::sync::Arc<std::sync::atomic::AtomicBool>);
        impl Drop for Flag {
            fn drop(&mut self) {
                self.0.store(true, std::sync::atomic::Ordering::SeqCst);
            }
        }
        let dropped = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = Flag(dropped.clone());
        let flow = Flow::then(std::future::pending::<Response>(), move |r: Response| {
            let _keep = &flag;
            r
        });
        drop(flow);
        assert!(dropped.load(std::sync::atomic::Ordering::SeqCst));
    }
}
