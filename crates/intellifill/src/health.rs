//! Liveness, readiness, the detailed health report, and the Prometheus scrape.
//!
//! - `/health` answers without touching any dependency (a process that can answer is alive).
//! - `/health/ready` exercises every dependency a request needs (a pooled database round trip, the auth
//!   service's health endpoint) and answers 503 when one fails, so a load balancer takes the instance out.
//!   Redis is checked and reported but does not make the instance unready: every instance shares the same
//!   Redis and degrades to in-process state without it, so failing readiness there would turn a degraded
//!   mode into a total outage. The verdict is at most `HEALTH_READY_CACHE_MS` old and probed once per
//!   interval however many callers ask ([`crate::readiness`]); `ageMs` says how old it is.
//! - `/health/detailed` (platform ADMIN) shows every moving part: auth service and its breaker, JWKS age,
//!   pool and wait times, Redis, token cache, RLS failures, audit pipeline, rate-limit store.
//! - `/metrics` ([`scrape`]) renders the process's recorder ([`crate::metrics`]) after setting the gauges that
//!   mirror the app state.

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use secrecy::ExposeSecret;
use serde::Serialize;
use serde_json::{Value, json};

use crate::error::{AppError, ErrorCode};
use crate::principal::{PlatformRole, UserTx};
use crate::state::AppState;

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct Live {
    pub status: &'static str,
}

/// Liveness.
#[utoipa::path(get, path = "/health", tag = "health", responses((status = 200, body = Live)),
    extensions(("x-audit-action" = json!("health.live")), ("x-rate-limit" = json!("ip"))))]
pub(crate) async fn live() -> Json<Live> {
    Json(Live { status: "ok" })
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct Ready {
    pub status: &'static str,
    pub checks: Checks,
    /// Milliseconds since the probe behind this answer ended (at most `HEALTH_READY_CACHE_MS`).
    #[serde(rename = "ageMs")]
    pub age_ms: u64,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct Checks {
    pub database: String,
    pub auth: String,
    /// `not configured`, `ok` or `failing: ...` (never makes the instance unready).
    pub redis: String,
}

fn outcome(r: &Result<(), String>) -> String {
    match r {
        Ok(()) => "ok".to_owned(),
        Err(e) => format!("failing: {e}"),
    }
}

/// Readiness: 200 when the database and the auth service answer, else 503.
#[utoipa::path(get, path = "/health/ready", tag = "health",
    responses((status = 200, body = Ready), (status = 503, body = Ready)),
    extensions(("x-audit-action" = json!("health.ready")), ("x-rate-limit" = json!("ip"))))]
pub(crate) async fn ready(State(state): State<AppState>) -> (StatusCode, Json<Ready>) {
    let verdict = state.readiness.verdict().await;
    let ok = verdict.is_ready();
    let checks = Checks {
        database: outcome(&verdict.database),
        auth: outcome(&verdict.auth),
        redis: verdict.redis.as_ref().map_or_else(|| "not configured".to_owned(), outcome),
    };
    let age_ms = u64::try_from(verdict.checked_at.elapsed().as_millis()).unwrap_or(u64::MAX);
    let status = if ok { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    (status, Json(Ready { status: if ok { "ready" } else { "not_ready" }, checks, age_ms }))
}

/// Every dependency and internal queue, for operators (platform ADMIN).
#[utoipa::path(get, path = "/health/detailed", tag = "health",
    responses((status = 200, body = Object)),
    extensions(("x-audit-action" = json!("health.detailed")), ("x-rate-limit" = json!("user")), ("x-min-role" = json!("PLATFORM_ADMIN"))),
    security(("bearer" = [])))]
pub(crate) async fn detailed(State(state): State<AppState>, ctx: UserTx) -> Result<Json<Value>, AppError> {
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
            "queueBytes": state.audit.queue_bytes(),
            "spooled": state.audit.spool_pending(),
            "spoolBytes": state.audit.spool_bytes(),
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

/// Set the state gauges from the app.
fn refresh(state: &AppState) {
    let pool = state.db.pool_status();
    metrics::gauge!("db_pool_size").set(pool.size as f64);
    metrics::gauge!("db_pool_max").set(pool.max as f64);
    metrics::gauge!("db_pool_connections", "state" => "active").set(pool.active as f64);
    metrics::gauge!("db_pool_connections", "state" => "idle").set(pool.idle as f64);
    metrics::gauge!("db_pool_waiting").set(pool.waiting as f64);
    let breaker = state.auth.breaker().stats();
    let code = match breaker.state {
        breaker::State::Closed => 0.0,
        breaker::State::HalfOpen => 1.0,
        breaker::State::Open => 2.0,
    };
    metrics::gauge!("auth_breaker_state").set(code);
    metrics::counter!("auth_breaker_transitions_total", "to" => "open").absolute(breaker.transitions.opened);
    metrics::counter!("auth_breaker_transitions_total", "to" => "half_open").absolute(breaker.transitions.half_opened);
    metrics::counter!("auth_breaker_transitions_total", "to" => "closed").absolute(breaker.transitions.closed);
    metrics::gauge!("auth_token_cache_entries").set(state.auth.cache().entries() as f64);
    metrics::gauge!("audit_queue_depth").set(state.audit.queue_depth() as f64);
    metrics::gauge!("audit_spool_pending").set(state.audit.spool_pending() as f64);
    metrics::gauge!("audit_queue_bytes").set(state.audit.queue_bytes() as f64);
    metrics::gauge!("audit_spool_bytes").set(state.audit.spool_bytes() as f64);
    if state.kv.is_configured() {
        metrics::gauge!("redis_up").set(if state.kv.is_healthy() { 1.0 } else { 0.0 });
    }
    let memory = state.rate_limits.store_name() == "memory";
    metrics::gauge!("rate_limit_store_fallback").set(if memory { 1.0 } else { 0.0 });
}

/// The Prometheus text of this process.
pub fn render(state: &AppState) -> String {
    let handle = crate::metrics::handle();
    refresh(state);
    handle.render()
}

/// `GET /metrics` (Prometheus text; bearer token when `METRICS_BEARER_TOKEN` is set).
pub(crate) async fn scrape(State(state): State<AppState>, headers: HeaderMap) -> Response {
    if let Some(expected) = &state.config.metrics.bearer_token {
        let given = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")));
        let ok = given.is_some_and(|g| constant_time_eq(g.as_bytes(), expected.expose_secret().as_bytes()));
        if !ok {
            return AppError::new(ErrorCode::TokenInvalid, "a valid metrics bearer token is required").into_response();
        }
    }
    let body = render(&state);
    (StatusCode::OK, [(header::CONTENT_TYPE, "text/plain; version=0.0.4")], body).into_response()
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}
