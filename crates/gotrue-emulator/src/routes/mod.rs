//! HTTP surface: the `/auth/v1` API as the Supabase gateway exposes it, and
//! the `/__emulator` control plane.
//!
//! One middleware plays the API gateway for every `/auth/v1` request, in
//! this order: count the request ([`crate::stats`]), apply injected faults
//! ([`crate::faults`]), enforce the `apikey` header (everything but the
//! JWKS), and finally render GoTrue errors in the format the request asked
//! for ([`crate::errors`]). CORS sits outside the gateway, so a browser's
//! preflight needs no key. Handlers live in submodules by audience.

mod admin;
mod control;
mod flows;
mod gotrue;

use std::sync::Arc;

use axum::Router;
use axum::extract::{OriginalUri, Request, State};
use axum::http::{HeaderMap, HeaderName, Method, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use tower_http::cors::{Any, CorsLayer};

use crate::errors::{GatewayRefusal, gateway_error, render_for_version, wants_new_format};
use crate::faults::is_auth_path;
use crate::state::AppState;

/// The paths the gateway serves without an API key (Kong's open routes):
/// the JWKS, and the verification links people open from emails.
const OPEN_PATHS: &[&str] = &["/auth/v1/.well-known/jwks.json", "/auth/v1/verify"];

pub(crate) type SharedState = Arc<AppState>;

/// Builds the complete application.
pub(crate) fn router(state: SharedState) -> Router {
    let auth = Router::new()
        .route("/health", get(gotrue::health))
        .route("/settings", get(gotrue::settings))
        .route("/.well-known/jwks.json", get(gotrue::jwks))
        .route("/token", post(gotrue::token))
        .route("/signup", post(gotrue::signup))
        .route("/user", get(gotrue::user).put(gotrue::update_user))
        .route("/logout", post(gotrue::logout))
        .route("/otp", post(flows::otp))
        .route("/recover", post(flows::recover))
        .route("/resend", post(flows::resend))
        .route("/verify", get(flows::verify_get).post(flows::verify_post))
        .route("/invite", post(flows::invite))
        .route("/admin/generate_link", post(flows::generate_link))
        .route("/admin/users", get(admin::list).post(admin::create))
        .route("/admin/users/{user_id}", get(admin::get).put(admin::update).delete(admin::delete))
        .fallback(not_found);
    let control = Router::new()
        .route("/faults", get(control::get_faults).post(control::set_faults).delete(control::clear_faults))
        .route("/stats", get(control::get_stats).delete(control::reset_stats))
        .route("/mailbox", get(control::get_mailbox).delete(control::clear_mailbox));
    Router::new()
        .nest("/auth/v1", auth)
        .nest("/__emulator", control)
        .fallback(not_found)
        .layer(middleware::from_fn_with_state(state.clone(), gateway))
        .layer(cors())
        .with_state(state)
}

/// Browser calls from any origin, as GoTrue and the gateway allow them:
/// preflights are answered here, before the gateway (no API key, not
/// counted, not faulted), with the headers supabase-js sends; the
/// pagination and error headers are readable by the page.
fn cors() -> CorsLayer {
    CorsLayer::new()
        .allow_origin(Any)
        .allow_methods([Method::GET, Method::POST, Method::PUT, Method::PATCH, Method::DELETE, Method::OPTIONS])
        .allow_headers([
            HeaderName::from_static("apikey"),
            header::AUTHORIZATION,
            header::CONTENT_TYPE,
            header::ACCEPT,
            HeaderName::from_static("x-client-info"),
            HeaderName::from_static("x-supabase-api-version"),
            HeaderName::from_static("x-jwt-aud"),
        ])
        .expose_headers([
            HeaderName::from_static("x-total-count"),
            header::LINK,
            HeaderName::from_static("x-supabase-api-version"),
            HeaderName::from_static("x-sb-error-code"),
        ])
        .max_age(std::time::Duration::from_secs(86_400))
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
    if !OPEN_PATHS.contains(&path.as_str()) {
        match apikey(request.headers(), request.uri().query()) {
            None => return gateway_error(GatewayRefusal::NoKey),
            Some(key) if !state.is_api_key(&key) => {
                return gateway_error(GatewayRefusal::UnknownKey);
            }
            Some(_) => {}
        }
    }
    let new_format = wants_new_format(request.headers());
    let response = next.run(request).await;
    render_for_version(response, new_format)
}
