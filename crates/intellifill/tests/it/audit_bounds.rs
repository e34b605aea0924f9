//! The bounds of the audit path through the real server: what is kept of a body, the in-memory backlog
//! (bytes and events) and the admission control in front of it, the disk spool's bound, and a stop during a
//! flood that loses nothing queued.

use serde_json::Value;

use crate::helpers::{TestApp, scalar};

/// Send and return (status, request id, body).
async fn send(request: reqwest::RequestBuilder) -> (u16, String, Value) {
    let response = request.send().await.expect("request");
    let id = response.headers()["x-request-id"].to_str().expect("id").to_owned();
    let status = response.status().as_u16();
    let text = response.text().await.expect("body");
    (status, id, serde_json::from_str(&text).unwrap_or(Value::Null))
}

/// The stored row of a request: (method, path, status, ip, metadata).
async fn row(app: &TestApp, request_id: &str) -> (String, String, i32, Option<String>, Value) {
    let r = app
        .owner
        .query_one(
            "SELECT method, path, status, host(ip), metadata FROM audit_log WHERE request_id = $1",
            &[&request_id],
        )
        .await
        .unwrap_or_else(|e| panic!("one row for {request_id}: {e}"));
    (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4))
}

#[tokio::test]
async fn an_oversized_body_keeps_its_first_complete_members_marked_with_its_size() {
    let (app, u, org) = TestApp::with_org_using(|a| a.audit_max_body_bytes = Some("1024".into()), "Bounded").await;
    // Members in this order: the title fits, the content is cut in the middle.
    let content = format!("{} call +44 20 7946 0958 {}", "a".repeat(900), "z".repeat(4000));
    let body = serde_json::json!({ "content": content }).to_string().replacen('{', r#"{"title":"kept title","#, 1);
    let (status, id, _) = send(
        app.http
            .post(app.url(&format!("/api/organizations/{org}/knowledge")))
            .bearer_auth(&u.token)
            .header("content-type", "application/json")
            .body(body.clone()),
    )
    .await;
    assert_eq!(status, 201, "the handler saw the whole body");
    let stored: String =
        scalar(&app.owner, "SELECT content FROM knowledge_sources WHERE title = 'kept title'", &[]).await;
    assert_eq!(stored, content, "only the audit row is cut, never the request");
    app.state.audit.flush().await;
    let (_, _, _, _, meta) = row(&app, &id).await;
    assert_eq!(meta["bodyTruncated"], true, "{meta}");
    assert_eq!(meta["bodyBytes"], body.len(), "the original size: {meta}");
    assert_eq!(meta["body"]["title"], "kept title", "{meta}");
    assert!(meta["body"].get("content").is_none(), "the member cut in the middle is left out whole: {meta}");
    assert!(!meta.to_string().contains("7946"), "nothing of the cut member survives: {meta}");
    assert!(meta.to_string().len() < 2048, "the row is bounded by the kept prefix: {meta}");

    // A body within the bound is kept whole and not marked.
    let (status, id, _) = send(
        app.http
            .post(app.url(&format!("/api/organizations/{org}/knowledge")))
            .bearer_auth(&u.token)
            .json(&serde_json::json!({"title": "small", "content": "fits"})),
    )
    .await;
    assert_eq!(status, 201);
    app.state.audit.flush().await;
    let (_, _, _, _, meta) = row(&app, &id).await;
    assert!(meta.get("bodyTruncated").is_none(), "{meta}");
    assert_eq!(meta["body"]["content"], "fits");
}

#[tokio::test]
async fn bodies_of_unauthenticated_and_unmatched_requests_are_not_kept_but_their_metadata_is() {
    let (app, u, org) = TestApp::with_org("Strangers").await;
    let body = r#"{"title":"sent by anybody","content":"payload that nobody used"}"#;
    let requests = [
        // No token: refused before the handler, so before any body is used.
        (app.http.post(app.url(&format!("/api/organizations/{org}/knowledge"))), 401, "unauthenticated"),
        // A forged token: never authenticated either.
        (
            app.http.post(app.url(&format!("/api/organizations/{org}/knowledge"))).bearer_auth("not.a.token"),
            401,
            "unauthenticated",
        ),
        // No route, even with a valid token.
        (app.http.post(app.url("/api/nowhere")).bearer_auth(&u.token), 404, "unmatched"),
        (app.http.put(app.url("/nothing/here")), 404, "unmatched"),
    ];
    let mut sent = Vec::new();
    for (request, expected, reason) in requests {
        let (status, id, _) = send(request.header("content-type", "application/json").body(body)).await;
        assert_eq!(status, expected, "{reason}");
        sent.push((id, expected, reason));
    }
    app.state.audit.flush().await;
    for (id, status, reason) in sent {
        let (method, path, stored_status, ip, meta) = row(&app, &id).await;
        assert_eq!(meta["bodyOmitted"], reason, "{meta}");
        assert_eq!(meta["bodyBytes"], body.len(), "{meta}");
        assert_eq!(meta["contentType"], "application/json", "{meta}");
        assert!(meta.get("body").is_none(), "{meta}");
        assert!(!meta.to_string().contains("nobody used"), "{meta}");
        assert!(["POST", "PUT"].contains(&method.as_str()));
        assert!(path.starts_with('/'), "{path}");
        assert_eq!(stored_status, i32::from(status));
        assert_eq!(ip.as_deref(), Some("127.0.0.1"));
    }
}
