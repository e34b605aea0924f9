//! CORS and the security headers, through the real server: preflights answered before authentication and
//! audit (never an auth failure or an anomaly) yet limited per ip, disallowed origins told nothing, the
//! headers a browser client reads exposed, and the security headers on every kind of response.

use std::time::Duration;

use reqwest::Method;
use reqwest::header::HeaderMap;

use crate::helpers::*;

const FRONTEND: &str = "http://localhost:5173";

fn cors(args: &mut intellifill::ServeArgs) {
    args.cors_allowed_origins = Some(format!("{FRONTEND}, https://app.example.com"));
}

/// [`cors`], then `more`.
fn cors_and(more: impl FnOnce(&mut intellifill::ServeArgs)) -> impl FnOnce(&mut intellifill::ServeArgs) {
    move |args| {
        cors(args);
        more(args);
    }
}

async fn preflight(app: &TestApp, path: &str, origin: &str) -> reqwest::Response {
    app.http
        .request(Method::OPTIONS, app.url(path))
        .header("origin", origin)
        .header("access-control-request-method", "POST")
        .header("access-control-request-headers", "authorization, content-type")
        .send()
        .await
        .expect("preflight")
}

fn header<'h>(headers: &'h HeaderMap, name: &str) -> &'h str {
    headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or_else(|| panic!("no {name} in {headers:?}"))
}

fn assert_security_headers(headers: &HeaderMap, what: &str) {
    for (name, value) in [
        ("x-content-type-options", "nosniff"),
        ("cache-control", "no-store"),
        ("referrer-policy", "no-referrer"),
        ("x-frame-options", "DENY"),
        ("content-security-policy", "default-src 'none'; frame-ancestors 'none'"),
        ("cross-origin-resource-policy", "same-origin"),
    ] {
        assert_eq!(headers.get(name).and_then(|v| v.to_str().ok()), Some(value), "{name} on {what}: {headers:?}");
    }
    assert!(headers.get("strict-transport-security").is_none(), "HSTS only when configured: {what}");
}

#[tokio::test]
async fn a_preflight_from_an_allowed_origin_is_answered_without_credentials() {
    let app = TestApp::spawn_with(cors).await;
    let r = preflight(&app, "/api/me", FRONTEND).await;
    assert!(r.status().is_success(), "{}", r.status());
    let h = r.headers();
    assert_eq!(header(h, "access-control-allow-origin"), FRONTEND);
    let methods = header(h, "access-control-allow-methods").to_ascii_uppercase();
    for m in ["GET", "POST", "PATCH", "DELETE"] {
        assert!(methods.contains(m), "{methods}");
    }
    let allowed = header(h, "access-control-allow-headers").to_ascii_lowercase();
    assert!(allowed.contains("authorization") && allowed.contains("content-type"), "{allowed}");
    assert_eq!(header(h, "access-control-max-age"), "600");
    assert!(h.get("access-control-allow-credentials").is_none(), "credentials are off by default");
    assert!(header(h, "vary").to_ascii_lowercase().contains("origin"));
    assert!(h.get("x-request-id").is_some());
    assert_security_headers(h, "a preflight");
    // Any path, declared or not: the answer does not depend on routing or on a token.
    let r = preflight(&app, "/api/organizations/00000000-0000-0000-0000-000000000000/knowledge", FRONTEND).await;
    assert!(r.status().is_success());
    assert_eq!(header(r.headers(), "access-control-allow-origin"), FRONTEND);
}

#[tokio::test]
async fn a_disallowed_origin_gets_no_cors_headers() {
    let (app, u) = TestApp::with_user_using(cors).await;
    for origin in ["http://evil.example", "http://localhost:5173.evil.example", "https://localhost:5173", "null"] {
        let r = preflight(&app, "/api/me", origin).await;
        assert!(r.headers().get("access-control-allow-origin").is_none(), "{origin}: {:?}", r.headers());
        let r =
            app.http.get(app.url("/api/me")).bearer_auth(&u.token).header("origin", origin).send().await.expect("ok");
        assert_eq!(r.status(), 200, "CORS is the browser's check; the server still answers");
        assert!(r.headers().get("access-control-allow-origin").is_none(), "{origin}: {:?}", r.headers());
    }
}

#[tokio::test]
async fn an_actual_request_exposes_the_headers_a_client_reads() {
    let (app, u) = TestApp::with_user_using(cors).await;
    let r = app.http.get(app.url("/api/me")).bearer_auth(&u.token).header("origin", FRONTEND).send().await.expect("ok");
    assert_eq!(r.status(), 200);
    let h = r.headers();
    assert_eq!(header(h, "access-control-allow-origin"), FRONTEND);
    let exposed: Vec<String> =
        header(h, "access-control-expose-headers").split(',').map(|s| s.trim().to_ascii_lowercase()).collect();
    for name in
        ["x-request-id", "retry-after", "ratelimit-limit", "ratelimit-remaining", "ratelimit-reset", "ratelimit-policy"]
    {
        assert!(exposed.iter().any(|e| e == name), "{name} not exposed: {exposed:?}");
    }
    // Every exposed rate-limit header is one the server actually sends.
    for name in exposed.iter().filter(|e| e.starts_with("ratelimit-")) {
        assert!(h.get(name.as_str()).is_some(), "{name} exposed but not sent: {h:?}");
    }
    // Errors carry the CORS headers too, so a browser can read the error body.
    let r = app.http.get(app.url("/api/me")).header("origin", FRONTEND).send().await.expect("ok");
    assert_eq!(r.status(), 401);
    assert_eq!(header(r.headers(), "access-control-allow-origin"), FRONTEND);
}

#[tokio::test]
async fn credentials_are_allowed_only_when_configured() {
    let app = TestApp::spawn_with(cors_and(settings!(cors_allow_credentials = "true"))).await;
    let r = preflight(&app, "/api/me", FRONTEND).await;
    assert_eq!(header(r.headers(), "access-control-allow-credentials"), "true");
    assert_eq!(header(r.headers(), "access-control-allow-origin"), FRONTEND, "never `*` with credentials");
}

#[tokio::test]
async fn a_preflight_flood_from_one_ip_is_refused() {
    let (app, u) = TestApp::with_user_using(cors_and(settings!(rate_limit_ip_per_minute = "5"))).await;
    let mut statuses = Vec::new();
    for _ in 0..8 {
        statuses.push(preflight(&app, "/api/me", FRONTEND).await.status().as_u16());
    }
    assert_eq!(&statuses[..5], &[200; 5], "{statuses:?}");
    assert_eq!(&statuses[5..], &[429; 3], "{statuses:?}");
    // The same ip's bucket: an actual request is refused too, and the refusal is readable cross-origin.
    let r = app.http.get(app.url("/api/me")).bearer_auth(&u.token).header("origin", FRONTEND).send().await.expect("ok");
    assert_eq!(r.status(), 429);
    assert_eq!(header(r.headers(), "access-control-allow-origin"), FRONTEND);
    assert!(r.headers().get("retry-after").is_some());
    assert_security_headers(r.headers(), "a 429");
    let body: serde_json::Value = r.json().await.expect("ok");
    assert_eq!(body["code"], "RATE_LIMITED");
}

#[tokio::test]
async fn preflights_are_neither_audited_nor_auth_failures_nor_anomalies() {
    let app = TestApp::spawn_with(cors_and(settings!(anomaly_auth_failures_per_minute = "5"))).await;
    for _ in 0..20 {
        assert!(preflight(&app, "/api/me", FRONTEND).await.status().is_success());
    }
    app.state.audit.flush().await;
    let rows: i64 = scalar(&app.owner, "SELECT count(*) FROM audit_log", &[]).await;
    assert_eq!(rows, 0, "a preflight writes no audit row");
    // Four real authentication failures from the same ip stay under the threshold: had the twenty preflights
    // counted, the window would be far past it.
    for _ in 0..4 {
        let (s, b) = app.send(app.http.get(app.url("/api/me")).header("origin", FRONTEND)).await;
        assert_error(s, &b, 401, "TOKEN_MISSING");
    }
    app.state.audit.flush().await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    app.state.audit.flush().await;
    let audited: i64 = scalar(&app.owner, "SELECT count(*) FROM audit_log WHERE status = 401", &[]).await;
    assert_eq!(audited, 4, "the failures themselves are audited");
    let anomalies = "SELECT count(*) FROM audit_log WHERE action = 'security.anomaly'";
    assert_eq!(scalar::<i64>(&app.owner, anomalies, &[]).await, 0, "preflights were counted as auth failures");
    // The detector is live: more real failures cross the threshold and are reported.
    for _ in 0..4 {
        app.send(app.http.get(app.url("/api/me"))).await;
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        app.state.audit.flush().await;
        if scalar::<i64>(&app.owner, anomalies, &[]).await >= 1 {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "the auth-failure anomaly was never reported");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn without_configured_origins_there_is_no_cors() {
    let app = TestApp::spawn().await;
    let r = preflight(&app, "/api/me", FRONTEND).await;
    assert!(r.headers().get("access-control-allow-origin").is_none(), "{:?}", r.headers());
    assert!(!r.status().is_success(), "an OPTIONS is an ordinary request then: {}", r.status());
    assert_security_headers(r.headers(), "an OPTIONS without CORS");
}

#[tokio::test]
async fn every_response_carries_the_security_headers() {
    let (app, u) = TestApp::with_user_using(cors).await;
    let ok = app.http.get(app.url("/api/me")).bearer_auth(&u.token).send().await.expect("ok");
    assert_eq!(ok.status(), 200);
    assert_security_headers(ok.headers(), "a 200");
    let health = app.http.get(app.url("/health")).send().await.expect("ok");
    assert_security_headers(health.headers(), "/health");
    let missing = app.http.get(app.url("/api/me")).send().await.expect("ok");
    assert_eq!(missing.status(), 401);
    assert_security_headers(missing.headers(), "a 401");
    let unknown = app.http.get(app.url("/no/such/route")).send().await.expect("ok");
    assert_eq!(unknown.status(), 404);
    assert_security_headers(unknown.headers(), "a 404");
    let bad_json = app
        .http
        .post(app.url("/api/organizations"))
        .bearer_auth(&u.token)
        .header("content-type", "application/json")
        .body("{")
        .send()
        .await
        .expect("ok");
    assert_eq!(bad_json.status(), 400);
    assert_security_headers(bad_json.headers(), "a 400 from an extractor");
    // A 5xx: the auth service refuses connections and the token was never verified.
    let fresh = app.user(&email("fresh")).await;
    app.emulator.faults().refuse_connections(None);
    let unavailable = app.http.get(app.url("/api/me")).bearer_auth(&fresh.token).send().await.expect("ok");
    app.emulator.faults().clear();
    assert_eq!(unavailable.status(), 503);
    assert_security_headers(unavailable.headers(), "a 503");
    let body: serde_json::Value = unavailable.json().await.expect("ok");
    assert_eq!(body["code"], "AUTH_SERVICE_UNAVAILABLE");
}

#[tokio::test]
async fn hsts_is_sent_only_when_configured() {
    let app = TestApp::spawn_with(|a| a.hsts_max_age_seconds = Some("31536000".into())).await;
    let r = app.http.get(app.url("/health")).send().await.expect("ok");
    assert_eq!(header(r.headers(), "strict-transport-security"), "max-age=31536000");
}

#[tokio::test]
async fn a_bad_origin_list_refuses_to_start_naming_the_variable() {
    let args = intellifill::ServeArgs {
        cors_allowed_origins: Some("https://app.example.com/".into()),
        cors_allow_credentials: Some("true".into()),
        ..intellifill::ServeArgs::default()
    };
    let e = intellifill::Config::from_args(&args).expect_err("refused").to_string();
    assert!(e.contains("CORS_ALLOWED_ORIGINS") && e.contains("\"https://app.example.com\""), "{e}");
}

#[tokio::test]
async fn serve_has_no_demo_page() {
    let app = TestApp::spawn().await;
    for path in ["/", "/supabase.js", "/demo.js", "/dev-config.json"] {
        let (s, b) = app.send(app.http.get(app.url(path))).await;
        assert_error(s, &b, 404, "ROUTE_NOT_FOUND");
    }
}
