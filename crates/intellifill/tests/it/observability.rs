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
    let (app, u) =
        TestApp::with_user_using(settings!(auth_http_timeout_ms = "300", auth_breaker_volume_threshold = "2")).await;
    let (other, org) = app.owned_org("Target").await;

    // CrossTenantAttempts
    assert_eq!(app.get(&u, &format!("/api/organizations/{org}/knowledge")).await.0, 403);
    // RlsContextFailures: the runtime role loses the right to set its context.
    let restore = deny_context(&app).await;
    let (s, b) = app.get(&u, "/api/me").await;
    assert_error(s, &b, 500, "RLS_CONTEXT_FAILED");
    restore.await;
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

/// Lines the server process writes to stderr, collected as they come.
struct Stderr(std::sync::Arc<std::sync::Mutex<Vec<String>>>);

impl Stderr {
    fn collect(child: &mut std::process::Child) -> Stderr {
        use std::io::BufRead;
        let lines = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let pipe = child.stderr.take().expect("piped stderr");
        let sink = lines.clone();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(pipe).lines().map_while(Result::ok) {
                sink.lock().expect("lines").push(line);
            }
        });
        Stderr(lines)
    }

    /// Every JSON line with `"message": message` (panics on a line that is not JSON).
    fn json(&self, message: &str) -> Vec<serde_json::Value> {
        let lines = self.0.lock().expect("lines");
        let parsed =
            lines.iter().map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap_or_else(|e| panic!("{e}: {l}")));
        parsed.filter(|v| v["message"] == message).collect()
    }
}

/// Every string anywhere in `v` (keys and values).
fn strings(v: &serde_json::Value, out: &mut Vec<String>) {
    match v {
        serde_json::Value::String(s) => out.push(s.clone()),
        serde_json::Value::Array(a) => a.iter().for_each(|x| strings(x, out)),
        serde_json::Value::Object(o) => o.iter().for_each(|(k, x)| {
            out.push(k.clone());
            strings(x, out);
        }),
        _ => {}
    }
}

#[tokio::test]
async fn security_log_lines_carry_values_a_log_pipeline_can_parse() {
    let (app, attacker, own_org) = TestApp::with_org("Logging").await;
    let (_, target) = app.owned_org("Probed by a logger").await;
    let port = testkit::free_port().expect("port");
    let spool = tempfile::tempdir().expect("spool");
    let mut child = app
        .serve_command(spool.path())
        .env("BIND_ADDR", format!("127.0.0.1:{port}"))
        .env("AUDIT_FLUSH_INTERVAL_MS", "50")
        .env("ANOMALY_SEARCHES_PER_MINUTE", "2")
        .env("RUST_LOG", "info")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn intellifill serve");
    let stderr = Stderr::collect(&mut child);
    let base = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while !http.get(format!("{base}/health")).send().await.is_ok_and(|r| r.status().is_success()) {
        let exited = child.try_wait().expect("child status");
        assert!(exited.is_none(), "the server exited ({exited:?}): {:?}", stderr.0.lock());
        assert!(std::time::Instant::now() < deadline, "the server did not come up: {:?}", stderr.0.lock());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let get = |path: String, token: &str| http.get(format!("{base}{path}")).bearer_auth(token).send();

    // A forged token (no user known: no user_id field at all), a cross-tenant attempt, a search burst.
    let forged = format!("{}AAAA", &attacker.token[..attacker.token.len() - 4]);
    assert_eq!(get("/api/me".into(), &forged).await.expect("forged").status(), 401);
    let probe = get(format!("/api/organizations/{target}/knowledge"), &attacker.token).await.expect("probe");
    assert_eq!(probe.status(), 403);
    let probe_id = probe.headers()["x-request-id"].to_str().expect("id").to_owned();
    for _ in 0..3 {
        let search = get(format!("/api/organizations/{own_org}/knowledge/search?q=x"), &attacker.token).await;
        assert_eq!(search.expect("search").status(), 200);
    }
    // An RLS context failure for a user without an organization: its ERROR line has no organization_id.
    let restore = deny_context(&app).await;
    let loner = app.user(&email("loner")).await;
    assert_eq!(get("/api/me".into(), &loner.token).await.expect("me").status(), 500);
    restore.await;

    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    let events = loop {
        let events = stderr.json("security event");
        let kinds: Vec<&str> = events.iter().filter_map(|e| e["event"].as_str()).collect();
        let wanted = ["security.forged_token", "security.cross_tenant_attempt", "security.anomaly"];
        if wanted.iter().all(|w| kinds.contains(w)) && !stderr.json("could not set the RLS context").is_empty() {
            break events;
        }
        assert!(std::time::Instant::now() < deadline, "security lines missing: {kinds:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let _ = child.kill();
    let _ = child.wait();

    let rls = stderr.json("could not set the RLS context");
    let lines: Vec<&serde_json::Value> = events.iter().chain(&rls).collect();
    for line in &lines {
        let mut found = Vec::new();
        strings(line, &mut found);
        for s in found {
            assert!(!s.starts_with("Some(") && s != "None", "Debug formatting in {line}");
            assert!(!s.trim_start().starts_with('{'), "JSON inside a string in {line}");
        }
    }
    let of = |kind: &str| events.iter().find(|e| e["event"] == kind).expect("line");

    let cross = of("security.cross_tenant_attempt");
    assert_eq!(cross["level"], "WARN");
    assert_eq!(cross["severity"], "high");
    assert_eq!(cross["user_id"], attacker.id.to_string());
    assert_eq!(cross["organization_id"], target.to_string(), "the organization asked for");
    assert_eq!(cross["request_id"], probe_id);
    assert_eq!(cross["ip"], "127.0.0.1");
    assert_eq!(cross["action"], "knowledge.list");
    assert_eq!(cross["details.status"], 403, "a number: {cross}");
    assert_eq!(cross["details.route"], "/api/organizations/{orgId}/knowledge");
    assert!(cross.get("details.kind").is_none() && cross.get("details").is_none(), "{cross}");

    let forged = of("security.forged_token");
    assert!(forged.get("user_id").is_none() && forged.get("organization_id").is_none(), "absent, not null: {forged}");
    assert_eq!(forged["details.status"], 401);

    let anomaly = of("security.anomaly");
    assert_eq!(anomaly["details.kind"], "search_burst");
    assert!(anomaly["details.count"].as_i64().is_some_and(|n| n > 2), "{anomaly}");
    assert_eq!((anomaly["details.threshold"].as_i64(), anomaly["details.windowSeconds"].as_i64()), (Some(2), Some(60)));
    assert_eq!(anomaly["details.lastAction"], "knowledge.search");
    assert_eq!(anomaly["organization_id"], own_org.to_string());

    assert_eq!(rls[0]["user_id"], loner.id.to_string());
    assert!(rls[0].get("organization_id").is_none(), "{}", rls[0]);
    assert!(rls[0]["error"].is_string());
}

/// Takes from the runtime role the right to run `open_request` (every request's context statement
/// then fails: `RLS_CONTEXT_FAILED`); awaiting the returned future gives it back.
async fn deny_context(app: &TestApp) -> impl std::future::Future<Output = ()> + '_ {
    app.owner
        .batch_execute("REVOKE EXECUTE ON FUNCTION open_request(uuid, uuid, text) FROM intellifill_app")
        .await
        .expect("revoke");
    async move {
        app.owner
            .batch_execute("GRANT EXECUTE ON FUNCTION open_request(uuid, uuid, text) TO intellifill_app")
            .await
            .expect("grant");
    }
}
