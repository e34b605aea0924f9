//! Bad input gets a clear 4xx in the one error body, with the request id; never a 500.

use crate::helpers::{TestApp, assert_error, assert_field_error};

#[tokio::test]
async fn bad_requests_get_clear_errors_naming_the_field() {
    let (app, u, org) = TestApp::with_org_using(|a| a.max_body_bytes = Some("2048".into()), "Errors Inc").await;
    let path = format!("/api/organizations/{org}/knowledge");

    let (s, b) = app
        .send(
            app.http
                .post(app.url(&path))
                .bearer_auth(&u.token)
                .header("content-type", "application/json")
                .body("{\"title\": "),
        )
        .await;
    assert_error(s, &b, 400, "INVALID_JSON");

    let (s, b) = app.send(app.http.post(app.url(&path)).bearer_auth(&u.token).body("title=x")).await;
    assert_error(s, &b, 415, "UNSUPPORTED_MEDIA_TYPE");

    let big = serde_json::json!({"title": "big", "content": "x".repeat(4096)});
    let (s, b) = app.post(&u, &path, big).await;
    assert_error(s, &b, 413, "PAYLOAD_TOO_LARGE");

    let (s, b) = app.post(&u, &path, serde_json::json!({"title": "   ", "content": "c"})).await;
    assert_field_error(s, &b, 400, "VALIDATION_ERROR", "title");

    let (s, b) = app.post(&u, &path, serde_json::json!({"title": 5, "content": "c"})).await;
    assert_field_error(s, &b, 400, "VALIDATION_ERROR", "title");

    let (s, b) = app.post(&u, &path, serde_json::json!({"title": "t", "content": "c", "extra": 1})).await;
    assert_error(s, &b, 400, "VALIDATION_ERROR");

    let (s, b) = app.get(&u, "/api/organizations/not-a-uuid/knowledge").await;
    assert_field_error(s, &b, 400, "INVALID_ID", "orgId");

    let (s, b) = app.get(&u, &format!("{path}/123")).await;
    assert_field_error(s, &b, 400, "INVALID_ID", "id");

    let (s, b) = app.get(&u, &format!("{path}?limit=0")).await;
    assert_field_error(s, &b, 400, "VALIDATION_ERROR", "limit");

    let (s, b) = app.get(&u, &format!("{path}?limit=abc")).await;
    assert_field_error(s, &b, 400, "VALIDATION_ERROR", "limit");

    let (s, b) = app.get(&u, &format!("{path}?cursor=%%%")).await;
    assert_error(s, &b, 400, "VALIDATION_ERROR");

    // Well-formed cursors whose time Postgres cannot hold (a forged or corrupted cursor): 400, not 500.
    use base64::Engine as _;
    for micros in [i64::MIN / 2, -8_000_000_000_000_000_000, 9_000_000_000_000_000_000] {
        let forged = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(format!("{micros}:{}", uuid::Uuid::new_v4().simple()));
        let (s, b) = app.get(&u, &format!("{path}?cursor={forged}")).await;
        assert_field_error(s, &b, 400, "VALIDATION_ERROR", "cursor");
    }

    let (s, b) = app.get(&u, &format!("{path}/search")).await;
    assert_field_error(s, &b, 400, "VALIDATION_ERROR", "q");
}

#[tokio::test]
async fn unknown_routes_and_methods_use_the_same_body() {
    let app = TestApp::spawn().await;
    let (s, b) = app.send(app.http.get(app.url("/nope"))).await;
    assert_error(s, &b, 404, "ROUTE_NOT_FOUND");
    let (s, b) = app.send(app.http.delete(app.url("/health"))).await;
    assert_error(s, &b, 405, "METHOD_NOT_ALLOWED");
}

#[tokio::test]
async fn request_id_is_returned_and_matches_the_error_body() {
    let app = TestApp::spawn().await;
    let response = app.http.get(app.url("/api/me")).send().await.expect("request");
    let header = response.headers()["x-request-id"].to_str().expect("header").to_owned();
    let body: serde_json::Value = response.json().await.expect("json");
    assert_eq!(body["requestId"], header.as_str());
    assert_eq!(body["code"], "TOKEN_MISSING");
    // Generated ids are time-ordered UUIDs (v7), in the canonical lowercase hyphenated form.
    let generated = uuid::Uuid::parse_str(&header).expect("a generated id is a UUID");
    assert_eq!(generated.get_version_num(), 7, "{header}");
    assert_eq!(header, generated.hyphenated().to_string(), "canonical form");

    // A client's id never becomes the request's id (the key of its audit row and log lines).
    let response =
        app.http.get(app.url("/health")).header("x-request-id", "client-id-42").send().await.expect("request");
    let own = response.headers()["x-request-id"].to_str().expect("header");
    assert_eq!(uuid::Uuid::parse_str(own).expect("the server's id").get_version_num(), 7);
    let response = app.http.get(app.url("/health")).header("x-request-id", "bad id <>").send().await.expect("request");
    let replaced = response.headers()["x-request-id"].to_str().expect("header");
    assert_ne!(replaced, "bad id <>");
    assert_eq!(uuid::Uuid::parse_str(replaced).expect("replaced by a generated id").get_version_num(), 7);
}

#[tokio::test]
async fn a_panicking_handler_is_a_500_in_the_error_body_and_the_server_lives_on() {
    // No route of the API panics on purpose: one is served here behind the server's own stack and state.
    let app = TestApp::spawn().await;
    async fn boom() -> &'static str {
        panic!("secret detail")
    }
    let routes = axum::Router::new().route("/boom", axum::routing::get(boom)).with_state(app.state.clone());
    let router = intellifill::testing::stack(routes, &app.state);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    let service =
        axum::ServiceExt::<axum::extract::Request>::into_make_service_with_connect_info::<std::net::SocketAddr>(router);
    tokio::spawn(async move { axum::serve(listener, service).await });
    for _ in 0..2 {
        let response = app.http.get(format!("{base}/boom")).send().await.expect("the server still answers");
        let id = response.headers()["x-request-id"].to_str().expect("header").to_owned();
        let (status, body) = (response.status().as_u16(), response.json::<serde_json::Value>().await.expect("json"));
        assert_error(status, &body, 500, "INTERNAL_ERROR");
        assert_eq!(body["requestId"], id.as_str());
        assert!(!body.to_string().contains("secret detail"), "the panic message stays in the log: {body}");
    }
}

#[tokio::test]
async fn nul_characters_are_refused_as_bad_input_and_the_audit_row_is_still_written() {
    let (app, u, org) = TestApp::with_org_using(|a| a.audit_flush_interval_ms = Some("50".into()), "Nul Inc").await;
    let path = format!("/api/organizations/{org}/knowledge");
    let (s, b) = app.post(&u, &path, serde_json::json!({"title": "a\u{0}b", "content": "c"})).await;
    assert_field_error(s, &b, 400, "VALIDATION_ERROR", "title");
    let (s, b) = app.post(&u, &path, serde_json::json!({"title": "t", "content": "x\u{0}y"})).await;
    assert_field_error(s, &b, 400, "VALIDATION_ERROR", "content");
    let (s, b) = app.get(&u, &format!("{path}/search?q=a%00b")).await;
    assert_field_error(s, &b, 400, "VALIDATION_ERROR", "q");
    // Both refused writes are audited, their bodies (with the NUL) included: the row is stored without it.
    app.state.audit.flush().await;
    let rows = app
        .owner
        .query("SELECT metadata FROM audit_log WHERE user_id = $1 AND status = 400 AND path = $2", &[&u.id, &path])
        .await
        .expect("audit rows");
    assert_eq!(rows.len(), 2, "one row per refused request");
    for row in rows {
        let metadata: serde_json::Value = row.get(0);
        assert!(!metadata.to_string().contains("\\u0000"), "{metadata}");
    }
}
