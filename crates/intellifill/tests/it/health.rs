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
async fn openapi_document_lists_every_declared_route_with_its_facts() {
    let app = TestApp::spawn().await;
    let (s, doc) = app.send(app.http.get(app.url("/api/docs/openapi.json"))).await;
    assert_eq!(s, 200);
    let paths = doc["paths"].as_object().expect("paths");
    let table = intellifill::router::table();
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
