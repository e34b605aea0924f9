//! Liveness, readiness, and the detailed health report.
//!
//! - `/health` answers without touching any dependency (a process that can answer is alive).
//! - `/health/ready` exercises every dependency a request needs (a pooled database round trip, the auth
//!   service's health endpoint) and answers 503 when one fails, so a load balancer takes the instance out.
//!   Redis is checked and reported but does not make the instance unready: every instance shares the same
//!   Redis and degrades to in-process state without it, so failing readiness there would turn a degraded
//!   mode into a total outage.
//! - `/health/detailed` (platform ADMIN) shows every moving part: auth service and its breaker, JWKS age,
//!   pool and wait times, Redis, token cache, RLS failures, audit pipeline, rate-limit store.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::Serialize;
use serde_json::{Value, json};

use crate::auth::principal::{PlatformRole, UserTx};
use crate::error::{AppError, ErrorCode};
use crate::state::AppState;

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Live {
    pub status: &'static str,
}

/// Liveness.
#[utoipa::path(get, path = "/health", tag = "health", responses((status = 200, body = Live)),
    extensions(("x-audit-action" = json!("health.live")), ("x-rate-limit" = json!("ip"))))]
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
    /// `not configured`, `ok` or `failing: ...` (never makes the instance unready).
    pub redis: String,
}

fn outcome<E: std::fmt::Display>(r: &Result<(), E>) -> String {
    match r {
        Ok(()) => "ok".to_owned(),
        Err(e) => format!("failing: {e}"),
    }
}

/// Readiness: 200 when the database and the auth service answer, else 503.
#[utoipa::path(get, path = "/health/ready", tag = "health",
    responses((status = 200, body = Ready), (status = 503, body = Ready)),
    extensions(("x-audit-action" = json!("health.ready")), ("x-rate-limit" = json!("ip"))))]
pub async fn ready(State(state): State<AppState>) -> (StatusCode, Json<Ready>) {
    let (db, auth, redis) = tokio::join!(state.db.ping(), state.auth.gotrue().health(), redis_check(&state));
    let ok = db.is_ok() && auth.is_ok();
    let checks = Checks { database: outcome(&db), auth: outcome(&auth), redis };
    let status = if ok { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    (status, Json(Ready { status: if ok { "ready" } else { "not_ready" }, checks }))
}

async fn redis_check(state: &AppState) -> String {
    if !state.kv.is_configured() {
        return "not configured".to_owned();
    }
    match state.kv.ping().await {
        Ok(_) => "ok".to_owned(),
        Err(e) => format!("failing: {e}"),
    }
}

/// Every dependency and internal queue, for operators (platform ADMIN).
#[utoipa::path(get, path = "/health/detailed", tag = "health",
    responses((status = 200, body = Object)),
    extensions(("x-audit-action" = json!("health.detailed")), ("x-rate-limit" = json!("user")), ("x-min-role" = json!("PLATFORM_ADMIN"))),
    security(("bearer" = [])))]
pub async fn detailed(State(state): State<AppState>, ctx: UserTx) -> Result<Json<Value>, AppError> {
    if ctx.user.role != PlatformRole::Admin {
        return Err(AppError::new(ErrorCode::Forbidden, "platform administrators only"));
    }
    drop(ctx.tx);
    let (db, auth, redis_latency) = tokio::join!(state.db.ping(), state.auth.gotrue().health(), async {
        if state.kv.is_configured() { Some(state.kv.ping().await) } else { None }
    });
    let jwks = state.auth.verifier().jwks();
    let (jwks_age, jwks_keys) = match jwks {
        Some(j) => (j.age().await.map(|a| a.as_secs()), Some(j.key_count().await)),
        None => (None, None),
    };
    let cache = &state.auth.cache().stats;
    let load = |c: &std::sync::atomic::AtomicU64| c.load(std::sync::atomic::Ordering::Relaxed);
    let audit = state.audit.stats();
    let db_stats = state.db.stats();
    let healthy = db.is_ok() && auth.is_ok();
    Ok(Json(json!({
        "status": if healthy { "ok" } else { "degraded" },
        "version": env!("CARGO_PKG_VERSION"),
        "supabase": {
            "connected": auth.is_ok(),
            "error": auth.as_ref().err().map(ToString::to_string),
            "verifyMode": format!("{:?}", state.auth.mode()).to_lowercase(),
            "breaker": state.auth.breaker().stats(),
            "jwksAgeSeconds": jwks_age,
            "jwksKeys": jwks_keys,
        },
        "db": {
            "connected": db.is_ok(),
            "pool": state.db.pool_status(),
            "waitTime": db_stats.wait_stats(),
            "acquireTimeouts": load(&db_stats.acquire_timeouts),
        },
        "redis": {
            "configured": state.kv.is_configured(),
            "connected": redis_latency.as_ref().is_some_and(Result::is_ok),
            "latencyMs": redis_latency.as_ref().and_then(|r| r.as_ref().ok()).map(|d| d.as_secs_f64() * 1000.0),
            "breaker": state.kv.breaker().map(|b| b.stats().state),
            // Whether this instance hears other instances' logouts (the revocation channel); null without Redis.
            "revocationsListening": state.auth.revocations().is_listening(),
        },
        "tokenCache": {
            "hits": load(&cache.l1_hits) + load(&cache.l2_hits),
            "l1Hits": load(&cache.l1_hits),
            "l2Hits": load(&cache.l2_hits),
            "misses": load(&cache.misses),
            "staleServed": load(&cache.stale_served),
            "hitRate": cache.hit_rate(),
            "entries": state.auth.cache().entries(),
        },
        "rlsFailures": {
            "last5min": db_stats.rls_failures_last_5_min(),
            "total": load(&db_stats.rls_failures),
        },
        "audit": {
            "queue": state.audit.queue_depth(),
            "spooled": state.audit.spool_pending(),
            "spooledTotal": audit.get(&audit.spooled),
            "replayed": audit.get(&audit.replayed),
            "written": audit.get(&audit.written),
            "dropped": audit.get(&audit.dropped),
        },
        "rateLimiter": {
            "store": state.rate_limits.store_name(),
            "fallbacks": state.rate_limits.fallbacks(),
            "decisions": state.rate_limits.decisions(),
            "redisRoundTrips": state.rate_limits.round_trips(),
        },
    })))
}
