//! Every route of the server, in one place. Middleware order lives in [`super::middleware::stack`].

use axum::Router;
use axum::routing::get;

use super::{middleware, openapi};
use crate::api::{audit, knowledge, me, members, organizations, session};
use crate::error::{AppError, ErrorCode};
use crate::health;
use crate::state::AppState;

/// The authenticated API (`/api/...`).
fn api(state: &AppState) -> Router<AppState> {
    Router::new()
        .route("/me", get(me::get))
        .route("/auth/session", get(session::session))
        .route("/auth/logout", axum::routing::post(session::logout))
        .route("/organizations", get(organizations::list).post(organizations::create))
        .route("/organizations/{orgId}", get(organizations::get))
        .route("/organizations/{orgId}/members", get(members::list).post(members::add))
        .route("/organizations/{orgId}/members/{userId}", axum::routing::patch(members::update).delete(members::remove))
        .route("/organizations/{orgId}/audit", get(audit::org_log))
        .route("/admin/audit", get(audit::all))
        .route("/organizations/{orgId}/knowledge", get(knowledge::list).post(knowledge::create))
        .route("/organizations/{orgId}/knowledge/search", get(knowledge::search))
        .route(
            "/organizations/{orgId}/knowledge/{id}",
            get(knowledge::get).patch(knowledge::update).delete(knowledge::delete),
        )
        .route_layer(axum::middleware::from_fn_with_state(state.clone(), crate::ratelimit::api))
        .route_layer(axum::middleware::from_fn_with_state(state.clone(), crate::auth::middleware::require_auth))
        .route_layer(axum::middleware::from_fn(crate::audit::layer::note_route))
}

/// The whole application: public routes, the API, the fallback, and the middleware stack.
pub fn router(state: AppState) -> Router {
    let routes = Router::new()
        .route("/health", get(health::live))
        .route("/health/ready", get(health::ready))
        .route("/api/docs/openapi.json", get(openapi::document))
        .nest("/api", api(&state))
        .fallback(not_found);
    middleware::stack(routes, &state).with_state(state)
}

async fn not_found() -> AppError {
    AppError::new(ErrorCode::RouteNotFound, "no such route")
}
