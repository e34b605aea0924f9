//! Tenant isolation on every org-scoped route, enumerated from the router's own route table.

use serde_json::json;

use crate::helpers::{TestApp, email, scalar};

#[tokio::test]
async fn a_member_of_one_org_gets_403_on_every_route_of_another() {
    let (app, a, _org_a) = TestApp::with_org("Route walk A").await;
    let (b, org_b) = app.owned_org("Route walk B").await;
    let b2 = app.member(org_b, "MEMBER").await;
    let k = app.knowledge(&b, org_b, "B only", "secret of B").await;
    let kid = k["id"].as_str().expect("id").to_owned();

    let mut org_paths: Vec<String> =
        intellifill::testing::table().iter().filter(|r| r.org_scoped()).map(|r| r.path.to_owned()).collect();
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
    let attempts: i64 = scalar(
        &app.owner,
        "SELECT count(*) FROM audit_log WHERE user_id = $1 AND metadata->'security'->>'event' = 'cross_tenant_attempt'",
        &[&a.id],
    )
    .await;
    assert_eq!(attempts, served as i64);
}

#[tokio::test]
async fn a_removed_member_loses_access_on_the_next_request() {
    let (app, owner, org) = TestApp::with_org("Removal").await;
    let member = app.member(org, "MEMBER").await;
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

/// Every route with a minimum role refuses a caller one rank below it, and every authenticated route refuses
/// a request without a token: walked from the route table, so a new route is covered by its declaration.
#[tokio::test]
async fn every_declared_minimum_role_and_security_requirement_is_enforced() {
    use intellifill::testing::MinRole;
    let app = TestApp::spawn().await;
    let owner = app.user(&email("owner")).await;
    let org = app.org(&owner, "Role walk").await;
    let k = app.knowledge(&owner, org, "walk", "c").await;
    let kid = k["id"].as_str().expect("id").to_owned();
    let mut below = std::collections::HashMap::new();
    for (role, rank_below) in
        [("VIEWER", None), ("MEMBER", Some("VIEWER")), ("ADMIN", Some("MEMBER")), ("OWNER", Some("ADMIN"))]
    {
        if let Some(r) = rank_below {
            let u = app.user(&email(&format!("as-{r}"))).await;
            app.add_member(org, &u, r).await;
            below.insert(role, u);
        }
    }
    let outsider = app.user(&email("platform-user")).await;
    let (mut checked_roles, mut checked_auth) = (0, 0);
    for route in intellifill::testing::table().iter() {
        let path = route
            .path
            .replace("{orgId}", &org.to_string())
            .replace("{userId}", &owner.id.to_string())
            .replace("{id}", &kid);
        let request = |token: Option<&str>| {
            let mut r = app.http.request(route.method.clone(), app.url(&path));
            if let Some(t) = token {
                r = r.bearer_auth(t);
            }
            if route.has_body {
                r = r.json(&json!({"title": "t", "content": "c", "role": "MEMBER", "name": "n"}));
            }
            if path.ends_with("/search") {
                r = r.query(&[("q", "walk")]);
            }
            r
        };
        let what = format!("{} {}", route.method, route.path);
        if route.authenticated {
            let (s, body) = app.send(request(None)).await;
            assert_eq!((s, body["code"].as_str()), (401, Some("TOKEN_MISSING")), "{what}: {body}");
            checked_auth += 1;
        }
        let caller = match route.min_role {
            Some(MinRole::PlatformAdmin) => &outsider,
            Some(min) => match min.org_role().and_then(|r| below.get(r)) {
                Some(u) => u,
                None => continue,
            },
            None => continue,
        };
        let (s, body) = app.send(request(Some(&caller.token))).await;
        assert_eq!(s, 403, "{what}: a caller below {:?}: {body}", route.min_role);
        assert!(
            matches!(body["code"].as_str(), Some("FORBIDDEN" | "ADMIN_REQUIRED" | "OWNER_REQUIRED")),
            "{what}: {body}"
        );
        checked_roles += 1;
    }
    assert!(checked_auth >= 18 && checked_roles >= 7, "auth {checked_auth}, roles {checked_roles}");
}
