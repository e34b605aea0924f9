//! The observability section: `METRICS_BIND_ADDR`, `METRICS_BEARER_TOKEN`, `SERVER_TIMING`, `HEALTH_READY_CACHE_MS`.
//!
//! In production `/metrics` is never open on the API port to anyone: a separate listener (reachable only by
//! the scraper's network) or a bearer token is required, so an operator cannot expose the pool, the breaker and
//! the security counters by omission.

use std::net::SocketAddr;
use std::time::Duration;

use secrecy::SecretString;

use super::check::{Checker, Section};
use super::{AppEnv, ServeArgs};

#[derive(Debug, Clone)]
pub struct MetricsConfig {
    /// A listener of its own for /metrics; `None`: served on the API port.
    pub bind_addr: Option<SocketAddr>,
    pub bearer_token: Option<SecretString>,
    /// `SERVER_TIMING`: the `Server-Timing` response header (`http::timing`).
    pub server_timing: bool,
}

/// Health endpoints.
#[derive(Debug, Clone)]
pub struct HealthConfig {
    /// How long a readiness verdict is answered before the dependencies are probed again.
    pub ready_cache: Duration,
}

/// Longest a readiness verdict may be reused: the answer must stay "at most a few seconds old".
const MAX_READY_CACHE_MS: u64 = 10_000;

/// `HEALTH_READY_CACHE_MS`.
pub(super) fn health(args: &ServeArgs) -> Section<HealthConfig> {
    let mut c = Checker::default();
    let ready_cache = c.millis("HEALTH_READY_CACHE_MS", &args.health_ready_cache_ms, MAX_READY_CACHE_MS);
    c.finish(HealthConfig { ready_cache })
}

/// The metrics section.
pub(super) fn from_args(args: &ServeArgs, env: Option<AppEnv>) -> Section<MetricsConfig> {
    let mut c = Checker::default();
    let metrics = MetricsConfig {
        bind_addr: c.socket_addr("METRICS_BIND_ADDR", &args.metrics_bind_addr, "127.0.0.1:9090"),
        bearer_token: c
            .optional("METRICS_BEARER_TOKEN", &args.metrics_bearer_token)
            .map(|v| SecretString::from(v.to_owned())),
        server_timing: c.boolean("SERVER_TIMING", &args.server_timing),
    };
    if env == Some(AppEnv::Production) && metrics.bind_addr.is_none() && args.metrics_bearer_token.is_none() {
        c.problem(
            "METRICS_BEARER_TOKEN",
            "in production /metrics needs METRICS_BEARER_TOKEN (a scrape token) or METRICS_BIND_ADDR (a listener of \
             its own); set one of them",
        );
    }
    c.finish(metrics)
}
