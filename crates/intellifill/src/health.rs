//! Liveness and readiness.
//!
//! `/health` answers without touching any dependency (a process that can answer is alive); `/health/ready`
//! exercises every dependency the server needs to serve a request (a pooled database round trip, the auth
//! service's health endpoint) and answers 503 when any fails, so a load balancer takes the instance out.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::Serialize;

use crate::state::AppState;

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Live {
    pub status: &'static str,
}

/// Liveness.
#[utoipa::path(get, path = "/health", tag = "health", responses((status = 200, body = Live)))]
pub async fn live() -> Json<Live> {
    Json(Live { status: "ok" })
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Ready {
    pub status: &'static str,
    pub checks: Checks,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Checks {
    pub database: String,
    pub auth: String,
}

fn outcome<E: std::fmt::Display>(r: &Result<(), E>) -> String {
    match r {
        Ok(()) => "ok".to_owned(),
        Err(e) => format!("failing: {e}"),
    }
}

/// Readiness: 200 when the database and the auth service answer, else 503.
#[utoipa::path(get, path = "/health/ready", tag = "health",
    responses((status = 200, body = Ready), (status = 503, body = Ready)))]
pub async fn ready(State(state): State<AppState>) -> (StatusCode, Json<Ready>) {
    let (db, auth) = tokio::join!(state.db.ping(), state.auth.gotrue().health());
    let ok = db.is_ok() && auth.is_ok();
    let checks = Checks { database: outcome(&db), auth: outcome(&auth) };
    let status = if ok { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    (status, Json(Ready { status: if ok { "ready" } else { "not_ready" }, checks }))
}
