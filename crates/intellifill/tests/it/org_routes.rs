//! Tenant isolation on every org-scoped route, enumerated from the router's own route table.

use serde_json::json;

use crate::helpers::{TestApp, email};

#[tokio::test]
async fn a_member_of_one_org_gets_403_on_every_route_of_another() {
    let app = TestApp::spawn().await;
    let a = app.user(&email("a")).await;
    let b = app.user(&email("b")).await;
    let b2 = app.user(&email("b2")).await;
    let _org_a = app.org(&a, "Route walk A").await;
    let org_b = app.org(&b, "Route walk B").await;
    app.add_member(org_b, &b2, "MEMBER").await;
    let k = app.knowledge(&b, org_b, "B only", "secret of B").await;
    let kid = k["id"].as_str().expect("id").to_owned();

    let mut org_paths: Vec<String> =
        intellifill::router::table().iter().filter(|r| r.org_scoped()).map(|r| r.path.to_owned()).collect();
    org_paths.dedup();
    assert!(org_paths.len() >= 7, "the route table lists the org routes: {org_paths:?}");
    let mut served = 0;
    for template in &org_paths {
        let path = template
            .replace("{orgId}", &org_b.to_string())
            .replace("{userId}", &b2.id.to_string())
            .replace("{id}", &kid);
        for method in [
            reqwest::Method::GET,
            reqwest::Method::POST,
            reqwest::Method::PATCH,
            reqwest::Method::PUT,
            reqwest::Method::DELETE,
        ] {
            let mut request = app.http.request(method.clone(), app.url(&path)).bearer_auth(&a.token);
            if method != reqwest::Method::GET && method != reqwest::Method::DELETE {
                request = request.json(&json!({"title": "x", "content": "y", "email": a.email, "role": "ADMIN"}));
            }
            if path.ends_with("/search") {
                request = request.query(&[("q", "secret")]);
            }
            let (status, body) = app.send(request).await;
            if status == 405 {
                continue; // the router does not serve this method here
            }
            served += 1;
            assert!(status == 403 || status == 404, "{method} {template}: {status} {body}");
            assert!(
                matches!(body["code"].as_str(), Some("NOT_ORG_MEMBER" | "NOT_FOUND")),
                "{method} {template}: {body}"
            );
            assert!(!body.to_string().contains("secret of B"), "{method} {template} leaked data: {body}");
        }
    }
    assert!(served >= 12, "every served method was tried ({served})");
    // Nothing of B's changed.
    let (s, body) = app.get(&b, &format!("/api/organizations/{org_b}/knowledge/{kid}")).await;
    assert_eq!((s, body["title"].as_str()), (200, Some("B only")));
    let (s, body) = app.get(&b, &format!("/api/organizations/{org_b}/members")).await;
    assert_eq!(s, 200);
    assert_eq!(body["data"].as_array().or(body.as_array()).map(Vec::len), Some(2), "{body}");
    // Each attempt was a security event.
    app.state.audit.flush().await;
    let attempts: i64 = app
        .owner
        .query_one(
            "SELECT count(*) FROM audit_log WHERE user_id = $1 AND metadata->'security'->>'event' = 'cross_tenant_attempt'",
            &[&a.id],
        )
        .await
        .expect("count")
        .get(0);
    assert_eq!(attempts, served as i64);
}

#[tokio::test]
async fn a_removed_member_loses_access_on_the_next_request() {
    let app = TestApp::spawn().await;
    let owner = app.user(&email("owner")).await;
    let member = app.user(&email("member")).await;
    let org = app.org(&owner, "Removal").await;
    app.add_member(org, &member, "MEMBER").await;
    let peer = app.peer(|_| {}).await;
    let path = format!("/api/organizations/{org}/knowledge");
    assert_eq!(app.get(&member, &path).await.0, 200);
    assert_eq!(peer.get(&member, &path).await.0, 200);
    let (s, _) = app.delete(&owner, &format!("/api/organizations/{org}/members/{}", member.id)).await;
    assert_eq!(s, 204);
    // No membership cache: both instances check the membership in the request's own transaction.
    for instance in [&app, &peer] {
        let (s, body) = instance.get(&member, &path).await;
        assert_eq!((s, body["code"].as_str()), (403, Some("NOT_ORG_MEMBER")));
    }
}
