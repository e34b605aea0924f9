//! HTTP surface: the `/auth/v1` API as the Supabase gateway exposes it, and
//! the `/__emulator` control plane.
//!
//! One middleware plays the API gateway for every `/auth/v1` request, in
//! this order: count the request ([`crate::stats`]), apply injected faults
//! ([`crate::faults`]), enforce the `apikey` header (everything but the
//! JWKS), and finally render GoTrue errors in the format the request asked
//! for ([`crate::errors`]). Handlers live in submodules by audience.

mod admin;
mod control;
mod gotrue;

use std::sync::Arc;

use axum::Router;
use axum::extract::{OriginalUri, Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};

use crate::errors::{GatewayRefusal, gateway_error, render_for_version, wants_new_format};
use crate::faults::is_auth_path;
use crate::state::AppState;

/// The one path the gateway serves without an API key.
const JWKS_PATH: &str = "/auth/v1/.well-known/jwks.json";

pub(crate) type SharedState = Arc<AppState>;

/// Builds the complete application.
pub(crate) fn router(state: SharedState) -> Router {
    let auth = Router::new()
        .route("/health", get(gotrue::health))
        .route("/settings", get(gotrue::settings))
        .route("/.well-known/jwks.json", get(gotrue::jwks))
        .route("/token", post(gotrue::token))
        .route("/signup", post(gotrue::signup))
        .route("/user", get(gotrue::user))
        .route("/logout", post(gotrue::logout))
        .route("/admin/users", get(admin::list).post(admin::create))
        .route("/admin/users/{user_id}", get(admin::get).put(admin::update).delete(admin::delete))
        .fallback(not_found);
    let control = Router::new()
        .route("/faults", get(control::get_faults).post(control::set_faults).delete(control::clear_faults))
        .route("/stats", get(control::get_stats).delete(control::reset_stats));
    Router::new()
        .nest("/auth/v1", auth)
        .nest("/__emulator", control)
        .fallback(not_found)
        .layer(middleware::from_fn_with_state(state.clone(), gateway))
        .with_state(state)
}

/// chi's default 404.
async fn not_found() -> Response {
    (StatusCode::NOT_FOUND, "404 page not found\n").into_response()
}

/// The `apikey` of a request: the header, or Kong's `?apikey=` fallback.
pub(crate) fn apikey(headers: &HeaderMap, query: Option<&str>) -> Option<String> {
    if let Some(value) = headers.get("apikey").and_then(|v| v.to_str().ok()) {
        return Some(value.to_owned());
    }
    let query = query?;
    serde_urlencoded::from_str::<Vec<(String, String)>>(query)
        .ok()?
        .into_iter()
        .find(|(k, _)| k == "apikey")
        .map(|(_, v)| v)
}

/// The API gateway in front of GoTrue, plus the emulator's instrumentation.
async fn gateway(State(state): State<SharedState>, request: Request, next: Next) -> Response {
    let path = request
        .extensions()
        .get::<OriginalUri>()
        .map(|uri| uri.path().to_owned())
        .unwrap_or_else(|| request.uri().path().to_owned());
    if !is_auth_path(&path) {
        return next.run(request).await;
    }
    state.stats.record(&path);
    if let Some(injected) = state.faults.apply(&path).await {
        return injected;
    }
    if path != JWKS_PATH {
        match apikey(request.headers(), request.uri().query()) {
            None => return gateway_error(GatewayRefusal::NoKey),
            Some(key) if key != state.anon_key && key != state.service_role_key => {
                return gateway_error(GatewayRefusal::UnknownKey);
            }
            Some(_) => {}
        }
    }
    let new_format = wants_new_format(request.headers());
    let response = next.run(request).await;
    render_for_version(response, new_format)
}
