//! The middleware stack, outermost first, in the one function that orders it.
//!
//! 1. request id + error envelope + access log ([`super::request_id`]): every response, even a panic's,
//!    carries `X-Request-ID` and the standard error body;
//! 2. panic catcher: a panicking handler is a 500 `INTERNAL_ERROR`, the process lives on;
//! 3. whole-request timeout: 408 `REQUEST_TIMEOUT`;
//! 4. body size limit for every extractor that reads the body: 413 `PAYLOAD_TOO_LARGE`;
//! 5. [`admission`]: the per-ip rate limit ([`crate::ratelimit::per_ip`]), so floods are refused before they
//!    cost an audit row, a token verification or a database connection; then audit
//!    ([`crate::audit::layer::capture`]): one event per request, before auth so failed authentications are
//!    audited too;
//! 6. (the routes; the `/api` routes have a route layer, [`api_gate`], so unknown routes are 404, not 401:
//!    the audit route note first, so even requests refused by auth carry their route template, then
//!    authentication, then the per-user / per-org / auth-endpoint rate limits, which need the caller).
//!
//! Steps 5 and 6 are each one layer running several steps in order rather than one layer per step: every
//! `from_fn` layer costs a boxed future, a cloned inner service and a boxed response mapping per request,
//! and these run on every request (docs/PERFORMANCE.md, "Middleware overhead").

use std::any::Any;

use axum::Router;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use tower::ServiceBuilder;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::timeout::TimeoutLayer;

use super::request_id;
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

pub fn stack(routes: Router<AppState>, state: &AppState) -> Router<AppState> {
    stack_with(routes, state, |_| true)
}

/// [`stack`] with only the layers `keep` accepts, in the same order: the one place the order is written,
/// shared with the overhead benchmark. One `Router::layer` call for all of them: axum boxes the routes again
/// at every call, which would cost allocations per layer and request.
pub fn stack_with(routes: Router<AppState>, state: &AppState, keep: impl Fn(Layer) -> bool) -> Router<AppState> {
    let http = &state.config.http;
    routes.layer(
        ServiceBuilder::new()
            .layer(request_id::RequestIdLayer)
            .layer(CatchPanicLayer::custom(panic_response))
            .layer(TimeoutLayer::with_status_code(axum::http::StatusCode::REQUEST_TIMEOUT, http.request_timeout))
            .option_layer(keep(Layer::BodyLimit).then(|| DefaultBodyLimit::max(http.max_body_bytes)))
            .option_layer(
                keep(Layer::Admission).then(|| axum::middleware::from_fn_with_state(state.clone(), admission)),
            ),
    )
}

/// Per-ip rate limit, then audit capture around the rest.
pub async fn admission(State(state): State<AppState>, request: Request, next: Next) -> Response {
    crate::ratelimit::per_ip(&state, request, |request| crate::audit::layer::capture(&state, request, next)).await
}

/// The route layer of every `/api` route: note the route for audit, authenticate, rate-limit the caller.
pub async fn api_gate(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let request = crate::audit::layer::note_route(request).await;
    match crate::auth::middleware::authenticate(&state, request).await {
        Ok(request) => crate::ratelimit::per_caller(&state, request, next).await,
        Err(refused) => refused,
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
