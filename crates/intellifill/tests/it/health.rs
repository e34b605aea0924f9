//! Liveness and readiness exercise what they claim to.

use crate::helpers::TestApp;

#[tokio::test]
async fn liveness_is_cheap_and_readiness_follows_dependencies() {
    let app = TestApp::spawn().await;
    let (s, b) = app.send(app.http.get(app.url("/health"))).await;
    assert_eq!((s, b["status"].as_str()), (200, Some("ok")));
    let (s, b) = app.send(app.http.get(app.url("/health/ready"))).await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(b["checks"]["database"], "ok");

    app.emulator.faults().set_error_rate(1.0, 500);
    let (s, b) = app.send(app.http.get(app.url("/health/ready"))).await;
    assert_eq!(s, 503, "{b}");
    assert_eq!(b["checks"]["database"], "ok");
    assert!(b["checks"]["auth"].as_str().is_some_and(|s| s.starts_with("failing")), "{b}");
    // Liveness does not depend on the auth service.
    assert_eq!(app.send(app.http.get(app.url("/health"))).await.0, 200);
}

#[tokio::test]
async fn openapi_document_lists_every_api_route() {
    let app = TestApp::spawn().await;
    let (s, doc) = app.send(app.http.get(app.url("/api/docs/openapi.json"))).await;
    assert_eq!(s, 200);
    let paths = doc["paths"].as_object().expect("paths");
    for p in [
        "/api/me",
        "/api/organizations",
        "/api/organizations/{orgId}",
        "/api/organizations/{orgId}/members",
        "/api/organizations/{orgId}/members/{userId}",
        "/api/organizations/{orgId}/knowledge",
        "/api/organizations/{orgId}/knowledge/search",
        "/api/organizations/{orgId}/knowledge/{id}",
    ] {
        assert!(paths.contains_key(p), "{p} missing from the OpenAPI document");
    }
    assert!(doc["components"]["securitySchemes"]["bearer"].is_object());
}
