//! Detailed health, Prometheus metrics, and the conditions the alerts watch, produced for real.

use std::time::Duration;

use crate::helpers::{TestApp, assert_error, email, scalar};

pub(crate) async fn metrics(app: &TestApp) -> String {
    let r = app.http.get(app.url("/metrics")).send().await.expect("scrape");
    assert_eq!(r.status().as_u16(), 200);
    r.text().await.expect("text")
}

/// The value of the first sample whose line starts with `series` (name and labels as rendered).
pub(crate) fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines().filter(|l| !l.starts_with('#')).find(|l| l.starts_with(series))?.rsplit(' ').next()?.parse().ok()
}

#[tokio::test]
async fn detailed_health_is_for_platform_admins_and_covers_every_dependency() {
    let (app, u) = TestApp::with_user().await;
    let (s, b) = app.get(&u, "/health/detailed").await;
    assert_error(s, &b, 403, "FORBIDDEN");
    let (s, b) = app.send(app.http.get(app.url("/health/detailed"))).await;
    assert_error(s, &b, 401, "TOKEN_MISSING");
    app.owner.execute("UPDATE users SET role = 'ADMIN' WHERE id = $1", &[&u.id]).await.expect("promote");
    let (s, b) = app.get(&u, "/health/detailed").await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(b["status"], "ok");
    assert_eq!(b["supabase"]["connected"], true);
    assert_eq!(b["supabase"]["breaker"]["state"], "closed");
    assert!(b["supabase"]["jwksAgeSeconds"].is_u64(), "{b}");
    for field in ["size", "active", "idle", "waiting", "max"] {
        assert!(b["db"]["pool"][field].is_u64(), "db.pool.{field}: {b}");
    }
    assert!(b["db"]["waitTime"]["p99Ms"].is_number());
    assert_eq!(b["redis"]["connected"], true);
    assert!(b["redis"]["latencyMs"].is_number());
    assert!(b["tokenCache"]["hitRate"].is_number() && b["tokenCache"]["entries"].is_u64());
    assert_eq!(b["rlsFailures"]["total"], 0);
    assert_eq!(b["audit"]["dropped"], 0);
    assert_eq!(b["rateLimiter"]["store"], "redis");
    assert!(b["rateLimiter"]["decisions"].is_u64() && b["rateLimiter"]["redisRoundTrips"].is_u64(), "{b}");
    // The revocation channel's subscription is made in the background: it shows up within seconds.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        let (_, b) = app.get(&u, "/health/detailed").await;
        if b["redis"]["revocationsListening"] == true {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "revocation channel not listening: {}", b["redis"]);
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    // Readiness reports Redis too.
    let (s, ready) = app.send(app.http.get(app.url("/health/ready"))).await;
    assert_eq!((s, ready["checks"]["redis"].as_str()), (200, Some("ok")));
}

#[tokio::test]
async fn metrics_expose_requests_by_route_pool_breaker_cache_and_audit() {
    let (app, u, org) = TestApp::with_org("Metered").await;
    for _ in 0..3 {
        assert_eq!(app.get(&u, &format!("/api/organizations/{org}/knowledge")).await.0, 200);
    }
    // Invented methods share one label value: a client cannot grow the registry without bound.
    for method in ["BREW", "WHEN", "PROPFIND"] {
        let method = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
        let (status, _) = app.send(app.http.request(method, app.url("/nowhere"))).await;
        assert_eq!(status, 404);
    }
    let text = metrics(&app).await;
    let other = "http_requests_total{method=\"OTHER\",route=\"unmatched\",status=\"404\"}";
    assert_eq!(sample(&text, other), Some(3.0), "{text}");
    assert!(!text.contains("BREW") && !text.contains("PROPFIND"));
    let route = "http_requests_total{method=\"GET\",route=\"/api/organizations/{orgId}/knowledge\",status=\"200\"}";
    assert_eq!(sample(&text, route), Some(3.0), "requests are labelled by route template, never raw ids");
    assert!(!text.contains(&org.to_string()), "no raw ids in labels");
    for series in [
        "db_pool_waiting",
        "db_pool_max",
        "auth_breaker_state",
        "auth_token_cache_entries",
        "audit_queue_depth",
        "audit_spool_pending",
        "rls_context_failures_total",
        "audit_events_dropped_total",
        "db_pool_acquire_timeouts_total",
    ] {
        assert!(sample(&text, series).is_some(), "{series} missing");
    }
    assert!(text.contains("http_request_duration_seconds_bucket"));
    assert!(text.contains("auth_token_cache_total{result=\"l1_hit\"}"));
    assert!(text.contains("rate_limit_decisions_total{policy=\"user\",decision=\"allowed\"}"));
}

#[tokio::test]
async fn metrics_can_require_a_token_or_live_on_their_own_port() {
    let app = TestApp::spawn_with(|a| a.metrics_bearer_token = Some("scrape-secret".into())).await;
    let (s, b) = app.send(app.http.get(app.url("/metrics"))).await;
    assert_error(s, &b, 401, "TOKEN_INVALID");
    let r = app.http.get(app.url("/metrics")).bearer_auth("scrape-secret").send().await.expect("scrape");
    assert_eq!(r.status().as_u16(), 200);

    let port = testkit::free_port().expect("port");
    let app = TestApp::spawn_with(|a| a.metrics_bind_addr = Some(format!("127.0.0.1:{port}"))).await;
    assert_eq!(app.send(app.http.get(app.url("/metrics"))).await.0, 404, "not on the API port");
    let r = app.http.get(format!("http://127.0.0.1:{port}/metrics")).send().await.expect("scrape");
    assert_eq!(r.status().as_u16(), 200);
}

/// The series each alert watches reach the alerting value when the real condition happens
/// (`deploy/prometheus/alerts_test.yml` proves, with promtool, that such series fire the alerts).
#[tokio::test]
async fn alert_conditions_show_up_in_the_metrics() {
    let (app, u) = TestApp::with_user_using(|a| {
        a.auth_http_timeout_ms = Some("300".into());
        a.auth_breaker_volume_threshold = Some("2".into());
    })
    .await;
    let (other, org) = app.owned_org("Target").await;

    // CrossTenantAttempts
    assert_eq!(app.get(&u, &format!("/api/organizations/{org}/knowledge")).await.0, 403);
    // RlsContextFailures: the runtime role loses the right to set its context.
    app.owner
        .batch_execute(
            "REVOKE EXECUTE ON FUNCTION set_org_context(uuid) FROM PUBLIC;
             REVOKE EXECUTE ON FUNCTION set_org_context(uuid) FROM intellifill_app;",
        )
        .await
        .expect("revoke");
    let (s, b) = app.get(&u, "/api/me").await;
    assert_error(s, &b, 500, "RLS_CONTEXT_FAILED");
    app.owner.batch_execute("GRANT EXECUTE ON FUNCTION set_org_context(uuid) TO intellifill_app").await.expect("grant");
    // AuthBreakerOpen
    app.emulator.faults().set_error_rate(1.0, 503);
    for i in 0..3 {
        let stranger = app.user(&email(&format!("s{i}"))).await;
        assert_eq!(app.get(&stranger, "/api/me").await.0, 503);
    }
    app.emulator.faults().clear();

    app.state.audit.flush().await;
    let text = metrics(&app).await;
    assert_eq!(sample(&text, "auth_breaker_state"), Some(2.0));
    assert!(sample(&text, "rls_context_failures_total").is_some_and(|v| v >= 1.0));
    assert!(
        sample(&text, "security_events_total{event=\"cross_tenant_attempt\",severity=\"high\"}")
            .is_some_and(|v| v >= 1.0),
        "{text}"
    );
    assert_eq!(sample(&text, "audit_events_dropped_total"), Some(0.0));

    // The RLS failure is also in the detailed health and on its audit row, as a critical event.
    app.owner.execute("UPDATE users SET role = 'ADMIN' WHERE id = $1", &[&other.id]).await.expect("promote");
    let (_, health) = app.get(&other, "/health/detailed").await;
    assert_eq!(health["rlsFailures"]["last5min"], 1, "{health}");
    assert_eq!(health["supabase"]["breaker"]["state"], "open");
    let severity: Option<String> = scalar(
        &app.owner,
        "SELECT severity FROM audit_log WHERE metadata->'security'->>'event' = 'rls_context_failed'",
        &[],
    )
    .await;
    assert_eq!(severity.as_deref(), Some("critical"));
    tokio::time::sleep(Duration::from_millis(10)).await;
}

#[test]
fn the_alert_rules_pass_their_promtool_tests() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let output = std::process::Command::new(root.join("scripts/check-alerts")).current_dir(&root).output();
    let output = output.expect("run scripts/check-alerts");
    assert!(
        output.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}
