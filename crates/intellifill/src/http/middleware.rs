//! The middleware stack, outermost first, in the one function that orders it.
//!
//! 1. request id + error envelope + access log ([`super::request_id`]): every response, even a panic's,
//!    carries `X-Request-ID` and the standard error body;
//! 2. panic catcher: a panicking handler is a 500 `INTERNAL_ERROR`, the process lives on;
//! 3. whole-request timeout: 408 `REQUEST_TIMEOUT`;
//! 4. body size limit for every extractor that reads the body: 413 `PAYLOAD_TOO_LARGE`;
//! 5. [`Admission`]: the per-ip rate limit ([`crate::ratelimit::per_ip`]), so floods are refused before they
//!    cost an audit row, a token verification or a database connection; then audit
//!    ([`crate::audit::layer::capture`]): one event per request, before auth so failed authentications are
//!    audited too;
//! 6. (the routes; the `/api` routes have a route layer, [`ApiGate`], so unknown routes are 404, not 401:
//!    the audit route note first, so even requests refused by auth carry their route template, then
//!    authentication, then the per-user / per-org / auth-endpoint rate limits, which need the caller).
//!
//! The stack wraps the router as a whole (tower's `ServiceBuilder::service`), not each route through
//! `Router::layer`: axum boxes every route again at each `layer` call and clones that boxed stack per request,
//! where a stack around the router is cloned as plain values. Steps 5 and 6 are each one layer running
//! several steps in order rather than one layer per step, and both are [`super::step`] services rather than
//! `axum::middleware::from_fn` layers: every layer costs per request, and these run on every request
//! (docs/PERFORMANCE.md, "Middleware overhead" and "Seventh pass").

use std::any::Any;

use std::convert::Infallible;
use std::future::Future;

use axum::Router;
use axum::extract::{DefaultBodyLimit, Request};
use axum::response::{IntoResponse, Response};
use tower::{Service, ServiceBuilder};
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::timeout::TimeoutLayer;

use super::request_id;
use super::step::{Step, StepLayer};
use crate::error::AppError;
use crate::state::AppState;

/// The layers of [`stack`] the overhead benchmark may leave out (`loadtest overhead --drop-layer`), by name.
/// (The outer three change the response body type, so they are always there.)
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layer {
    BodyLimit,
    Admission,
}

impl Layer {
    pub const fn name(self) -> &'static str {
        match self {
            Layer::BodyLimit => "body-limit",
            Layer::Admission => "admission",
        }
    }
}

/// What the server serves, as `axum::serve` takes it: the stack around the routes.
pub trait Served:
    Service<Request, Response = Response, Error = Infallible, Future: Send + 'static> + Clone + Send + Sync + 'static
{
}

impl<T> Served for T where
    T: Service<Request, Response = Response, Error = Infallible, Future: Send + 'static>
        + Clone
        + Send
        + Sync
        + 'static
{
}

/// The whole stack around `routes` (every route, the fallback, the state applied).
pub fn stack(routes: Router, state: &AppState) -> impl Served + use<> {
    stack_with(routes, state, &|_| true)
}

/// [`stack`] with only the layers `keep` accepts, in the same order: the one place the order is written,
/// shared with the overhead benchmark.
pub fn stack_with(routes: Router, state: &AppState, keep: &dyn Fn(Layer) -> bool) -> impl Served + use<> {
    let http = &state.config.http;
    ServiceBuilder::new()
        .layer(request_id::RequestIdLayer)
        .layer(CatchPanicLayer::custom(panic_response))
        .layer(TimeoutLayer::with_status_code(axum::http::StatusCode::REQUEST_TIMEOUT, http.request_timeout))
        .option_layer(keep(Layer::BodyLimit).then(|| DefaultBodyLimit::max(http.max_body_bytes)))
        .option_layer(keep(Layer::Admission).then(|| StepLayer::new(Admission, state.clone())))
        .service(routes)
}

/// Per-ip rate limit, then audit capture around the rest.
#[derive(Debug, Clone, Copy)]
pub struct Admission;

impl Step for Admission {
    fn run<F>(
        self,
        state: &AppState,
        request: Request,
        rest: impl FnOnce(Request) -> F + Send,
    ) -> impl Future<Output = Response> + Send
    where
        F: Future<Output = Response> + Send,
    {
        crate::ratelimit::per_ip(state, request, move |request| crate::audit::layer::capture(state, request, rest))
    }
}

/// The route layer of every `/api` route: note the route for audit, authenticate, rate-limit the caller.
#[derive(Debug, Clone, Copy)]
pub struct ApiGate;

impl Step for ApiGate {
    async fn run<F>(self, state: &AppState, request: Request, rest: impl FnOnce(Request) -> F + Send) -> Response
    where
        F: Future<Output = Response> + Send,
    {
        let request = crate::audit::layer::note_route(request).await;
        match crate::auth::middleware::authenticate(state, request).await {
            Ok(request) => crate::ratelimit::per_caller(state, request, rest).await,
            Err(refused) => refused,
        }
    }
}

fn panic_response(panic: Box<dyn Any + Send + 'static>) -> Response {
    let detail = panic
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| panic.downcast_ref::<&str>().map(|s| (*s).to_owned()))
        .unwrap_or_else(|| "unknown panic".to_owned());
    AppError::internal(anyhow::anyhow!("handler panicked: {detail}")).into_response()
}
