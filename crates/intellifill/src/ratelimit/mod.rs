//! Rate limits: policies per route group, one key function, a shared store with an in-process fallback.
//!
//! | policy | scope | applies to | where |
//! | --- | --- | --- | --- |
//! | `ip` | client ip | every request | [`global`], before audit and auth (cheap floods never reach them) |
//! | `user` | user | every authenticated `/api` request | [`api`], after auth |
//! | `org` | organization | searches and writes under `/api/organizations/{orgId}` | [`api`] |
//! | `auth` | user + ip | `/api/auth/*` (session, logout) | [`api`] |
//!
//! Every answer carries the IETF `RateLimit-Limit`, `RateLimit-Remaining`, `RateLimit-Reset` and
//! `RateLimit-Policy` headers of the tightest policy that applied; a refusal is 429 `RATE_LIMITED` with
//! `Retry-After`. Counts live in Redis (one GCRA script, server clock) so limits hold in total across
//! instances, taken in small leases so a busy key does not cost a round trip per request; see [`store`]
//! for both and for the fallback.

pub mod key;
pub mod store;

use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{RawPathParams, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

pub use key::{KeyParts, Scope, rate_limit_key};
use store::{Decision, Store};

use crate::auth::AuthUser;
use crate::error::{AppError, ErrorCode};
use crate::http::client_ip::client_ip;
use crate::kv::{Key, Kv};
use crate::state::AppState;

/// Limits per minute of each policy (0 disables that policy).
#[derive(Debug, Clone)]
pub struct RateLimitConfig {
    pub enabled: bool,
    pub ip_per_minute: u32,
    pub user_per_minute: u32,
    pub org_per_minute: u32,
    pub auth_per_minute: u32,
}

/// One named limit.
pub struct Policy {
    pub name: &'static str,
    pub scope: Scope,
    pub limit: u32,
    pub window: Duration,
    store: Store,
}

impl Policy {
    fn new(kv: &Kv, name: &'static str, scope: Scope, per_minute: u32) -> Option<Policy> {
        let limit = NonZeroU32::new(per_minute)?;
        let window = Duration::from_secs(60);
        Some(Policy { name, scope, limit: limit.get(), window, store: Store::new(kv.clone(), limit, window) })
    }

    async fn check(&self, kv: &Kv, parts: &KeyParts) -> Decision {
        let key = format!("{}:{}", self.name, rate_limit_key(parts, self.scope));
        // `gcra2`: the leased script's values are microseconds; a different key keeps instances of an older
        // release (milliseconds) from reading them during a rolling upgrade.
        let redis_key = kv.key(Key::RateLimit(&format!("gcra2:{key}")));
        let decision = self.store.check(key, redis_key).await;
        let outcome = if decision.allowed { "allowed" } else { "limited" };
        metrics::counter!("rate_limit_decisions_total", "policy" => self.name, "decision" => outcome).increment(1);
        decision
    }

    /// `RateLimit-Policy` value, e.g. `300;w=60`.
    fn header(&self) -> String {
        format!("{};w={}", self.limit, self.window.as_secs())
    }
}

/// Every policy of the process.
pub struct RateLimits {
    kv: Kv,
    enabled: bool,
    decisions: std::sync::atomic::AtomicU64,
    ip: Option<Policy>,
    user: Option<Policy>,
    org: Option<Policy>,
    auth: Option<Policy>,
}

impl RateLimits {
    pub fn new(config: &RateLimitConfig, kv: Kv) -> Arc<RateLimits> {
        let limits = Arc::new(RateLimits {
            ip: Policy::new(&kv, "ip", Scope::Ip, config.ip_per_minute),
            user: Policy::new(&kv, "user", Scope::User, config.user_per_minute),
            org: Policy::new(&kv, "org", Scope::Org, config.org_per_minute),
            auth: Policy::new(&kv, "auth", Scope::UserIp, config.auth_per_minute),
            enabled: config.enabled,
            decisions: Default::default(),
            kv,
        });
        let weak = Arc::downgrade(&limits);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(60));
            loop {
                tick.tick().await;
                let Some(limits) = weak.upgrade() else { return };
                for p in limits.policies() {
                    p.store.shrink();
                }
            }
        });
        limits
    }

    fn policies(&self) -> impl Iterator<Item = &Policy> {
        [&self.ip, &self.user, &self.org, &self.auth].into_iter().flatten()
    }

    /// `redis` or `memory` (health).
    pub fn store_name(&self) -> &'static str {
        if self.policies().any(|p| p.store.is_local()) { "memory" } else { "redis" }
    }

    /// Switches to the in-process fallback since start (health).
    pub fn fallbacks(&self) -> u64 {
        self.policies().map(|p| p.store.fallbacks.load(std::sync::atomic::Ordering::Relaxed)).sum()
    }

    /// Decisions taken since start (every policy).
    pub fn decisions(&self) -> u64 {
        self.decisions.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Round trips to Redis since start: far fewer than [`Self::decisions`] for busy keys (leases).
    pub fn round_trips(&self) -> u64 {
        self.policies().map(|p| p.store.round_trips.load(std::sync::atomic::Ordering::Relaxed)).sum()
    }

    /// Check `policies` in order; the first refusal wins, else the tightest allowance is reported.
    async fn check_all(&self, policies: &[&Policy], parts: &KeyParts) -> Option<(Decision, &'static str, String)> {
        let mut tightest: Option<(Decision, &'static str, String)> = None;
        for p in policies {
            self.decisions.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let d = p.check(&self.kv, parts).await;
            if !d.allowed {
                return Some((d, p.name, p.header()));
            }
            if tightest.as_ref().is_none_or(|(t, _, _)| d.remaining < t.remaining) {
                tightest = Some((d, p.name, p.header()));
            }
        }
        tightest
    }
}

fn set_headers(headers: &mut HeaderMap, d: &Decision, policy: &str) {
    let mut put = |name: &'static str, value: String| {
        if let Ok(v) = HeaderValue::from_str(&value) {
            headers.insert(name, v);
        }
    };
    put("ratelimit-limit", d.limit.to_string());
    put("ratelimit-remaining", d.remaining.to_string());
    put("ratelimit-reset", d.reset_secs.to_string());
    put("ratelimit-policy", policy.to_owned());
    if !d.allowed {
        put("retry-after", d.retry_after_secs.to_string());
    }
}

fn refusal(d: &Decision, name: &str, policy: &str) -> Response {
    let mut response = AppError::new(ErrorCode::RateLimited, format!("too many requests ({name} limit), retry later"))
        .with_retry_after(d.retry_after_secs)
        .into_response();
    set_headers(response.headers_mut(), d, policy);
    response
}

async fn apply(state: &AppState, policies: &[&Policy], parts: KeyParts, request: Request, next: Next) -> Response {
    match state.rate_limits.check_all(policies, &parts).await {
        Some((d, name, policy)) if !d.allowed => refusal(&d, name, &policy),
        Some((d, _, policy)) => {
            let mut response = next.run(request).await;
            // An inner, tighter limiter's headers stay.
            let inner =
                response.headers().get("ratelimit-remaining").and_then(|v| v.to_str().ok()?.parse::<u32>().ok());
            if inner.is_none_or(|r| d.remaining < r) {
                set_headers(response.headers_mut(), &d, &policy);
            }
            response
        }
        None => next.run(request).await,
    }
}

/// The per-ip limit on every request (outer stack, before audit and auth).
pub async fn global(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let limits = state.rate_limits.clone();
    let Some(ip_policy) = limits.ip.as_ref().filter(|_| limits.enabled) else {
        return next.run(request).await;
    };
    let (parts, body) = request.into_parts();
    let key_parts = KeyParts { ip: client_ip(&parts, &state.config.http.trusted_proxies), ..KeyParts::default() };
    apply(&state, &[ip_policy], key_parts, Request::from_parts(parts, body), next).await
}

/// User, org and auth-endpoint limits (a route layer inside auth, so the user is known).
pub async fn api(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let limits = state.rate_limits.clone();
    if !limits.enabled {
        return next.run(request).await;
    }
    let (mut parts, body) = request.into_parts();
    let org = match RawPathParams::from_request_parts(&mut parts, &()).await {
        Ok(p) => p.iter().find(|(k, _)| *k == "orgId").and_then(|(_, v)| uuid::Uuid::parse_str(v).ok()),
        Err(_) => None,
    };
    let key_parts = KeyParts {
        user: parts.extensions.get::<AuthUser>().map(|u| u.id),
        org,
        ip: client_ip(&parts, &state.config.http.trusted_proxies),
    };
    let path = parts.uri.path();
    let is_write = !matches!(parts.method, Method::GET | Method::HEAD | Method::OPTIONS);
    let mut policies: Vec<&Policy> = Vec::with_capacity(3);
    if let Some(p) = &limits.auth
        && path.starts_with("/api/auth/")
    {
        policies.push(p);
    }
    if let Some(p) = &limits.org
        && org.is_some()
        && (is_write || path.ends_with("/search"))
    {
        policies.push(p);
    }
    if let Some(p) = &limits.user {
        policies.push(p);
    }
    apply(&state, &policies, key_parts, Request::from_parts(parts, body), next).await
}

use axum::extract::FromRequestParts;
