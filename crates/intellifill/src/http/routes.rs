//! Every route of the server, in one place. Middleware order lives in [`super::middleware::stack`].

use axum::Router;
use axum::routing::{MethodRouter, get, patch, post};

use super::middleware::{self, Served};
use super::openapi;
use super::step::StepLayer;
use crate::api::{audit, knowledge, me, members, organizations, session};
use crate::error::{AppError, ErrorCode};
use crate::health;
use crate::state::AppState;

/// The authenticated API: the one table the router is built from (tests walk it). Full paths, not a router
/// nested at `/api`: a nested route sees its path with the prefix stripped (so a route layer matching on
/// `/api/auth/` never matched), and stripping it costs a URI rebuild per request.
fn api_routes() -> Vec<(&'static str, MethodRouter<AppState>)> {
    vec![
        ("/api/me", get(me::get)),
        ("/api/auth/session", get(session::session)),
        ("/api/auth/logout", post(session::logout)),
        ("/api/organizations", get(organizations::list).post(organizations::create)),
        ("/api/organizations/{orgId}", get(organizations::get)),
        ("/api/organizations/{orgId}/members", get(members::list).post(members::add)),
        ("/api/organizations/{orgId}/members/{userId}", patch(members::update).delete(members::remove)),
        ("/api/organizations/{orgId}/audit", get(audit::org_log)),
        ("/api/admin/audit", get(audit::all)),
        ("/api/organizations/{orgId}/knowledge", get(knowledge::list).post(knowledge::create)),
        ("/api/organizations/{orgId}/knowledge/search", get(knowledge::search)),
        (
            "/api/organizations/{orgId}/knowledge/{id}",
            get(knowledge::get).patch(knowledge::update).delete(knowledge::delete),
        ),
    ]
}

/// Every `/api` route path (with their `{parameters}`).
pub fn api_paths() -> Vec<String> {
    api_routes().into_iter().map(|(path, _)| path.to_owned()).collect()
}

/// The authenticated API (`/api/...`).
fn api(state: &AppState) -> Router<AppState> {
    api_layers(
        api_routes().into_iter().fold(Router::new(), |router, (path, methods)| router.route(path, methods)),
        state,
    )
}

/// The route layer of every `/api` route ([`middleware::ApiGate`]: note the route for audit, authenticate,
/// rate-limit the caller). Public so the overhead benchmark can wrap a no-op route in exactly this layer.
pub fn api_layers(routes: Router<AppState>, state: &AppState) -> Router<AppState> {
    routes.route_layer(StepLayer::new(middleware::ApiGate, state.clone()))
}

/// `/metrics` alone, for `METRICS_BIND_ADDR`.
pub fn metrics_router(state: AppState) -> Router {
    Router::new().route("/metrics", get(crate::metrics::endpoint)).with_state(state)
}

/// The whole application: the middleware stack around [`routes`].
pub fn app(state: AppState) -> impl Served + use<> {
    middleware::stack(routes(state.clone()), &state)
}

/// Every route: public routes, the API, the fallback (the middleware stack goes around them, [`app`]).
pub fn routes(state: AppState) -> Router {
    let routes = Router::new()
        .route("/health", get(health::live))
        .route("/health/ready", get(health::ready))
        .route(
            "/health/detailed",
            get(health::detailed).route_layer(StepLayer::new(crate::auth::middleware::RequireAuth, state.clone())),
        )
        .route("/api/docs/openapi.json", get(openapi::document))
        .merge(api(&state))
        .fallback(not_found);
    let routes = match state.config.metrics.bind_addr {
        // Served on a listener of its own (see startup).
        Some(_) => routes,
        None => routes.route("/metrics", get(crate::metrics::endpoint)),
    };
    routes.with_state(state)
}

async fn not_found() -> AppError {
    AppError::new(ErrorCode::RouteNotFound, "no such route")
}
