//! Prometheus metrics: the recorder and the per-route HTTP metrics.
//!
//! Counters and histograms are recorded where things happen (`metrics::counter!` at the call site). Gauges
//! that mirror state (pool, breaker, cache size, audit queue and spool) are set from the app state when
//! `/metrics` is scraped ([`crate::health::scrape`]), so they cost nothing between scrapes and are never
//! stale. The `metrics` facade has one recorder per process by design; it is installed once ([`handle`]) and
//! shared by every `App` in the process (tests run one test per process). Counters that alerts watch are
//! registered at 0 at start, so their first increase is visible to `increase()`.

use std::sync::OnceLock;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// The process's recorder (installed on first use).
pub(crate) fn handle() -> &'static PrometheusHandle {
    HANDLE.get_or_init(|| {
        let buckets = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];
        let recorder = PrometheusBuilder::new()
            .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), &buckets)
            .map(PrometheusBuilder::build_recorder)
            .unwrap_or_else(|_| PrometheusBuilder::new().build_recorder());
        let handle = recorder.handle();
        if metrics::set_global_recorder(recorder).is_err() {
            tracing::warn!("a metrics recorder was already installed: /metrics will be empty");
        }
        let upkeep = handle.clone();
        std::thread::Builder::new()
            .name("metrics-upkeep".into())
            .spawn(move || {
                loop {
                    std::thread::sleep(std::time::Duration::from_secs(5));
                    upkeep.run_upkeep();
                }
            })
            .ok();
        register();
        handle
    })
}

/// Describe the metrics and start the counters alerts watch at 0.
fn register() {
    use metrics::{describe_counter, describe_gauge, describe_histogram};
    describe_counter!("http_requests_total", "HTTP requests by method, route template and status");
    describe_histogram!("http_request_duration_seconds", "HTTP request duration by method and route template");
    describe_gauge!("db_pool_waiting", "requests waiting for a pooled database connection");
    describe_counter!("db_pool_acquire_timeouts_total", "requests shed because no connection became free in time");
    describe_histogram!("db_pool_wait_seconds", "time to get a pooled connection");
    describe_counter!("rls_context_failures_total", "request transactions whose RLS context could not be set");
    describe_gauge!("auth_breaker_state", "auth-service circuit breaker: 0 closed, 1 half-open, 2 open");
    describe_counter!("auth_breaker_transitions_total", "auth-service breaker state entries");
    describe_counter!("auth_token_cache_total", "token cache lookups by result");
    describe_counter!(
        "auth_token_cache_mismatches_total",
        "shared (Redis) token cache entries ignored and deleted: they did not match their token's claims"
    );
    describe_counter!(
        "auth_upstream_key_rejected_total",
        "calls to the auth service its gateway refused for this server's API key (SUPABASE_ANON_KEY); must stay 0"
    );
    describe_counter!(
        "auth_revalidations_total",
        "background re-verifications of cached tokens older than AUTH_REVALIDATE_SECONDS, by result (valid, \
         rejected, outage, shared: another instance's newer verification taken from Redis)"
    );
    describe_counter!(
        "auth_skew_window_checks_total",
        "tokens issued within AUTH_CLOCK_SKEW_BOUND_SECONDS of their user's global/others logout, checked with \
         the auth service, by result (alive, ended, outage)"
    );
    describe_counter!(
        "auth_upstream_revocations_total",
        "sessions and users the auth service reported gone or banned, shared with every instance, by kind \
         (session, user, evict)"
    );
    describe_counter!("auth_logouts_total", "logouts through this server, by scope");
    describe_gauge!("audit_queue_depth", "audit events waiting in memory");
    describe_gauge!("audit_spool_pending", "audit events waiting on disk for the database");
    describe_counter!("audit_events_dropped_total", "audit events lost (must stay 0)");
    describe_gauge!("audit_queue_bytes", "bytes of audit events held in memory (queue, overflow, admitted requests)");
    describe_gauge!("audit_queue_max_bytes", "AUDIT_QUEUE_MAX_BYTES");
    describe_gauge!("audit_spool_bytes", "bytes of the audit spool on disk");
    describe_gauge!("audit_spool_max_bytes", "AUDIT_SPOOL_MAX_BYTES");
    describe_counter!(
        "audit_requests_refused_total",
        "requests refused with 503 AUDIT_UNAVAILABLE before their handler, by reason: queue_full, spool_full, stopping"
    );
    describe_counter!(
        "audit_spool_full_total",
        "times the audit spool reached AUDIT_SPOOL_MAX_BYTES and the writer held events"
    );
    describe_counter!("audit_rows_failed_total", "audit rows that could not be made (a placeholder row was stored)");
    describe_gauge!(
        "audit_partitions_covered_until_seconds",
        "unix time of the end of the last audit partition of the least-covered class"
    );
    describe_gauge!(
        "audit_partition_default_rows",
        "audit rows waiting in DEFAULT partitions after the last maintenance run"
    );
    describe_counter!("audit_partitions_created_total", "audit partitions this instance created");
    describe_counter!("audit_partition_maintenance_failures_total", "audit partition maintenance runs that failed");
    describe_gauge!(
        "audit_partition_maintenance_last_success_seconds",
        "unix time of the last successful audit partition maintenance"
    );
    describe_counter!("audit_seal_digests_total", "audit digests this instance sealed");
    describe_counter!("audit_seal_rows_total", "audit rows this instance sealed");
    describe_counter!(
        "audit_seal_failures_total",
        "sealer runs that failed: database (retried next interval), head_missing or head_forged (refused)"
    );
    describe_gauge!(
        "audit_seal_last_success_seconds",
        "unix time of this instance's last sealer run that committed (with or without rows to seal)"
    );
    describe_counter!("security_events_total", "security events by kind and severity");
    describe_counter!("rate_limit_decisions_total", "rate limit decisions by policy");
    describe_gauge!("http_connections_open", "open client connections, by listener");
    describe_counter!("http_connections_refused_total", "connections refused over HTTP_MAX_CONNECTIONS, by listener");
    describe_counter!(
        "http_head_errors_total",
        "request heads refused: too_large, malformed, timeout (not received within HTTP_HEADER_READ_TIMEOUT_MS)"
    );
    for name in [
        "rls_context_failures_total",
        "db_pool_acquire_timeouts_total",
        "auth_upstream_key_rejected_total",
        "audit_events_dropped_total",
        "audit_events_spooled_total",
        "audit_events_replayed_total",
        "audit_events_written_total",
        "audit_events_captured_total",
        "audit_spool_full_total",
        "audit_rows_failed_total",
    ] {
        metrics::counter!(name).increment(0);
    }
    metrics::counter!("security_events_total", "event" => "cross_tenant_attempt", "severity" => "high").increment(0);
    metrics::counter!("http_connections_refused_total", "listener" => "api").increment(0);
    for reason in ["queue_full", "spool_full", "stopping"] {
        metrics::counter!("audit_requests_refused_total", "reason" => reason).increment(0);
    }
}

/// `http_requests_total` (method, route, status) and `http_request_duration_seconds` (method, route), with
/// their handles kept by route template once registered: recording a request is a read-locked lookup, not
/// two registry lookups with five label strings built for them on every request. Routes are the router's
/// templates (plus `unmatched` and the audit-excluded prefixes) and methods the standard ones (anything else
/// is `OTHER`, so a client inventing methods cannot grow the registry without bound). Recorded by the audit
/// layer, which sees every request with its route template.
#[derive(Default)]
pub struct HttpMetrics {
    by_route: std::sync::RwLock<std::collections::HashMap<String, RouteMetrics>>,
}

/// One route's handles; a handful each, so a linear search.
#[derive(Default)]
struct RouteMetrics {
    requests: Vec<(&'static str, u16, metrics::Counter)>,
    durations: Vec<(&'static str, metrics::Histogram)>,
}

impl RouteMetrics {
    fn find(&self, method: &'static str, status: u16) -> Option<(&metrics::Counter, &metrics::Histogram)> {
        let counter = self.requests.iter().find(|(m, s, _)| *m == method && *s == status).map(|(_, _, c)| c)?;
        let histogram = self.durations.iter().find(|(m, _)| *m == method).map(|(_, h)| h)?;
        Some((counter, histogram))
    }
}

/// The method as a bounded label.
fn method_label(method: &axum::http::Method) -> &'static str {
    use axum::http::Method;
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        Method::CONNECT => "CONNECT",
        Method::TRACE => "TRACE",
        _ => "OTHER",
    }
}

impl HttpMetrics {
    pub fn record(&self, method: &axum::http::Method, route: &str, status: u16, seconds: f64) {
        let method = method_label(method);
        {
            let routes = self.by_route.read().unwrap_or_else(|p| p.into_inner());
            if let Some((counter, histogram)) = routes.get(route).and_then(|r| r.find(method, status)) {
                counter.increment(1);
                histogram.record(seconds);
                return;
            }
        }
        let mut routes = self.by_route.write().unwrap_or_else(|p| p.into_inner());
        let entry = routes.entry(route.to_owned()).or_default();
        if !entry.requests.iter().any(|(m, s, _)| *m == method && *s == status) {
            let counter = metrics::counter!("http_requests_total", "method" => method, "route" => route.to_owned(),
                "status" => status.to_string());
            entry.requests.push((method, status, counter));
        }
        if !entry.durations.iter().any(|(m, _)| *m == method) {
            let histogram =
                metrics::histogram!("http_request_duration_seconds", "method" => method, "route" => route.to_owned());
            entry.durations.push((method, histogram));
        }
        if let Some((counter, histogram)) = entry.find(method, status) {
            counter.increment(1);
            histogram.record(seconds);
        }
    }
}
