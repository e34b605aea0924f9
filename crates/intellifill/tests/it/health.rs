//! Liveness and readiness exercise what they claim to.

use std::time::{Duration, Instant};

use serde_json::Value;

use crate::helpers::TestApp;

#[tokio::test]
async fn liveness_is_cheap_and_readiness_follows_dependencies() {
    let app = TestApp::spawn_with(|a| a.health_ready_cache_ms = Some("200".into())).await;
    let (s, b) = app.send(app.http.get(app.url("/health"))).await;
    assert_eq!((s, b["status"].as_str()), (200, Some("ok")));
    let (s, b) = app.send(app.http.get(app.url("/health/ready"))).await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(b["checks"]["database"], "ok");
    assert!(b["ageMs"].as_u64().is_some_and(|age| age <= 200), "{b}");

    // The auth service going down shows once the verdict in hand is older than the interval.
    app.emulator.faults().set_error_rate(1.0, 500);
    let b = ready_until(&app, 503, "the auth outage never showed in readiness").await;
    assert_eq!(b["status"], "not_ready");
    assert_eq!(b["checks"]["database"], "ok");
    assert!(b["checks"]["auth"].as_str().is_some_and(|s| s.starts_with("failing")), "{b}");
    // Liveness does not depend on the auth service.
    assert_eq!(app.send(app.http.get(app.url("/health"))).await.0, 200);
    // And the recovery shows the same way.
    app.emulator.faults().clear();
    let b = ready_until(&app, 200, "the recovery never showed in readiness").await;
    assert_eq!(b["checks"]["auth"], "ok");
}

/// `GET /health/ready` every 50 ms until it answers `status`, for at most 10 s.
async fn ready_until(app: &TestApp, status: u16, what: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (s, b) = app.send(app.http.get(app.url("/health/ready"))).await;
        if s == status {
            return b;
        }
        assert!(Instant::now() < deadline, "{what}: {s} {b}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn readiness_probes_the_auth_service_once_per_interval_however_many_callers() {
    // An interval no test step reaches, and a probe slow enough that every caller arrives while it runs.
    let app = TestApp::spawn_with(|a| a.health_ready_cache_ms = Some("10000".into())).await;
    app.emulator.faults().set_latency(Duration::from_millis(300));
    let before = app.emulator.stats().health;
    let calls = (0..50).map(|_| app.send(app.http.get(app.url("/health/ready"))));
    let answers = futures::future::join_all(calls).await;
    assert!(answers.iter().all(|(s, b)| *s == 200 && b["checks"]["auth"] == "ok"), "{answers:?}");
    assert_eq!(app.emulator.stats().health - before, 1, "50 concurrent callers share one probe");

    // Within the interval, later callers get the same verdict, even once the auth service fails.
    app.emulator.faults().set_error_rate(1.0, 500);
    for _ in 0..20 {
        let (s, b) = app.send(app.http.get(app.url("/health/ready"))).await;
        assert_eq!((s, &b["checks"]["auth"]), (200, &Value::from("ok")), "{b}");
    }
    assert_eq!(app.emulator.stats().health - before, 1, "no probe before the interval is over");
}

#[tokio::test]
async fn callers_that_hang_up_neither_cancel_the_probe_nor_start_more() {
    let app = TestApp::spawn_with(|a| a.health_ready_cache_ms = Some("10000".into())).await;
    app.emulator.faults().set_latency(Duration::from_millis(1000));
    let before = app.emulator.stats().health;
    // Each of these gives up long before the probe answers, one after the other.
    let impatient = reqwest::Client::builder().timeout(Duration::from_millis(50)).build().expect("client");
    for _ in 0..5 {
        assert!(impatient.get(app.url("/health/ready")).send().await.is_err(), "the probe takes a second");
    }
    // The one probe they started finished on its own; a patient caller gets its verdict without another.
    let (s, b) = app.send(app.http.get(app.url("/health/ready"))).await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(app.emulator.stats().health - before, 1, "one probe for every caller of the interval");
}

#[tokio::test]
async fn openapi_document_lists_every_declared_route_with_its_facts() {
    let app = TestApp::spawn().await;
    let (s, doc) = app.send(app.http.get(app.url("/api/docs/openapi.json"))).await;
    assert_eq!(s, 200);
    let paths = doc["paths"].as_object().expect("paths");
    let table = intellifill::testing::table();
    assert!(table.iter().count() >= 22, "the route table lists every route");
    for route in table.iter() {
        let op = &paths[route.path][route.method.as_str().to_lowercase()];
        assert!(op.is_object(), "{} {} missing from the OpenAPI document", route.method, route.path);
        assert_eq!(op["x-audit-action"], route.action, "{} {}", route.method, route.path);
        assert!(op["x-rate-limit"].is_string(), "{} {}", route.method, route.path);
        let responses = op["responses"].as_object().expect("responses");
        assert!(responses.contains_key("429"), "{} {}: every operation can be rate limited", route.method, route.path);
        if route.authenticated {
            for code in ["401", "403", "503"] {
                assert!(responses.contains_key(code), "{} {}: {code} undeclared", route.method, route.path);
                assert_eq!(
                    responses[code]["content"]["application/json"]["schema"]["$ref"],
                    "#/components/schemas/ErrorBody"
                );
            }
        }
        if route.has_body {
            for code in ["400", "413", "415"] {
                assert!(responses.contains_key(code), "{} {}: {code} undeclared", route.method, route.path);
            }
        }
    }
    // Every operation of the document is a declared route: nothing served is undocumented, nothing
    // documented is unserved.
    let documented: usize = paths.values().map(|item| item.as_object().map_or(0, |m| m.len())).sum();
    assert_eq!(documented, table.iter().count());
    assert!(doc["components"]["securitySchemes"]["bearer"].is_object());
}
