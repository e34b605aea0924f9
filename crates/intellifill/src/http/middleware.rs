//! The middleware stack, outermost first, in the one function that orders it.
//!
//! 1. request id + error envelope + access log ([`super::request_id`]): every response, even a panic's,
//!    carries `X-Request-ID` and the standard error body;
//! 2. panic catcher: a panicking handler is a 500 `INTERNAL_ERROR`, the process lives on;
//! 3. whole-request timeout: 408 `REQUEST_TIMEOUT`;
//! 4. body size limit for every extractor that reads the body: 413 `PAYLOAD_TOO_LARGE`;
//! 5. per-ip rate limit ([`crate::ratelimit::global`]): floods are refused before they cost an audit row,
//!    a token verification or a database connection;
//! 6. audit ([`crate::audit::layer`]): one event per request, before auth so failed authentications are
//!    audited too;
//! 7. (the routes; auth is a `route_layer` of the `/api` router, so unknown routes are 404, not 401; the
//!    audit route note sits outside it, so even requests refused by auth carry their route template).

use std::any::Any;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::response::{IntoResponse, Response};
use tower::ServiceBuilder;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::timeout::TimeoutLayer;

use super::request_id;
use crate::error::AppError;
use crate::state::AppState;

pub fn stack(routes: Router<AppState>, state: &AppState) -> Router<AppState> {
    let http = &state.config.http;
    routes.layer(
        ServiceBuilder::new()
            .layer(axum::middleware::from_fn(request_id::layer))
            .layer(CatchPanicLayer::custom(panic_response))
            .layer(TimeoutLayer::with_status_code(axum::http::StatusCode::REQUEST_TIMEOUT, http.request_timeout))
            .layer(DefaultBodyLimit::max(http.max_body_bytes))
            .layer(axum::middleware::from_fn_with_state(state.clone(), crate::ratelimit::global))
            .layer(axum::middleware::from_fn_with_state(state.clone(), crate::audit::layer::capture)),
    )
}

fn panic_response(panic: Box<dyn Any + Send + 'static>) -> Response {
    let detail = panic
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| panic.downcast_ref::<&str>().map(|s| (*s).to_owned()))
        .unwrap_or_else(|| "unknown panic".to_owned());
    AppError::internal(anyhow::anyhow!("handler panicked: {detail}")).into_response()
}
