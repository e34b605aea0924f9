//! The members list and the knowledge read by id send their query and `COMMIT` in the same round trip as
//! `open_request` (context, caller and membership), as the knowledge list does (`pipelined_open`). These tests
//! hold them to the answers of a route that checks first: on a pool of one connection (a request that waited
//! for a second connection would end as 503), a refused caller gets the refusal and its security event as
//! before, a bad id or query string is answered after the membership check, and a caller whose user row must
//! be written first is opened again and reads the row as written.

use uuid::Uuid;

use crate::helpers::{TestApp, TestUser, assert_error, email, scalar};

/// How many cross-tenant attempts of `user` the audit log holds.
async fn cross_tenant_attempts(app: &TestApp, user: &TestUser) -> i64 {
    app.state.audit.flush().await;
    scalar(
        &app.owner,
        "SELECT count(*) FROM audit_log WHERE user_id = $1 AND metadata->'security'->>'event' = 'cross_tenant_attempt'",
        &[&user.id],
    )
    .await
}

/// Set `user`'s row to an e-mail the auth service does not vouch for, never claimed: the next request claims
/// the vouched one.
async fn stale_email(app: &TestApp, user: &TestUser) {
    app.owner
        .execute("UPDATE users SET email = $2, email_claimed_at = NULL WHERE id = $1", &[&user.id, &email("stale")])
        .await
        .expect("stale e-mail");
}

async fn email_of(app: &TestApp, user: &TestUser) -> Option<String> {
    scalar(&app.owner, "SELECT email FROM users WHERE id = $1", &[&user.id]).await
}

/// An app on a pool of one connection with an organization `name`: its owner, a member with `role`, and one
/// knowledge source (title "Kept", content "the full text"), whose id is returned.
async fn one_connection(name: &str, role: &str) -> (TestApp, TestUser, Uuid, TestUser, String) {
    let (app, owner, org) = TestApp::with_org_using(settings!(db_pool_max_size = "1"), name).await;
    let member = app.member(org, role).await;
    let k = app.knowledge(&owner, org, "Kept", "the full text").await;
    let kid = k["id"].as_str().expect("id").to_owned();
    (app, owner, org, member, kid)
}

#[tokio::test]
async fn the_members_list_and_a_knowledge_read_answer_on_a_pool_of_one() {
    let (app, owner, org, viewer, kid) = one_connection("Pipelined Reads", "VIEWER").await;
    let members = format!("/api/organizations/{org}/members");

    let (s, body) = app.get(&viewer, &format!("{members}?limit=1")).await;
    assert_eq!((s, body["data"][0]["userId"].as_str()), (200, Some(&*owner.id.to_string())), "{body}");
    let cursor = body["nextCursor"].as_str().expect("a second page").to_owned();
    let (s, body) = app.get(&viewer, &format!("{members}?limit=1&cursor={cursor}")).await;
    assert_eq!((s, body["data"][0]["userId"].as_str()), (200, Some(&*viewer.id.to_string())), "{body}");
    assert!(body["nextCursor"].is_null(), "{body}");

    let path = format!("/api/organizations/{org}/knowledge/{kid}");
    let (s, body) = app.get(&viewer, &path).await;
    assert_eq!((s, body["title"].as_str(), body["content"].as_str()), (200, Some("Kept"), Some("the full text")));
    let (s, body) = app.get(&viewer, &format!("/api/organizations/{org}/knowledge/{}", Uuid::new_v4())).await;
    assert_error(s, &body, 404, "NOT_FOUND");
    let (s, body) = app.get(&viewer, &format!("/api/organizations/{org}/knowledge/not-a-uuid")).await;
    assert_error(s, &body, 400, "INVALID_ID");
    let (s, body) = app.get(&viewer, &format!("{members}?limit=0")).await;
    assert_error(s, &body, 400, "VALIDATION_ERROR");
    // The committed reads left nothing open: the owner still writes on the one connection.
    let (s, _) = app.patch(&owner, &path, serde_json::json!({"title": "Renamed"})).await;
    assert_eq!(s, 200);
    assert_eq!(app.get(&viewer, &path).await.1["title"], "Renamed");
}

#[tokio::test]
async fn an_outsider_is_refused_before_the_id_or_query_string_with_a_security_event_each_time() {
    let (app, owner, org, _, kid) = one_connection("Pipelined Victim", "VIEWER").await;
    let (outsider, _) = app.owned_org("Pipelined Prober").await;
    let probes = [
        format!("/api/organizations/{org}/members"),
        format!("/api/organizations/{org}/members?limit=0"),
        format!("/api/organizations/{org}/knowledge/{kid}"),
        format!("/api/organizations/{org}/knowledge/not-a-uuid"),
        format!("/api/organizations/{}/knowledge/{kid}", Uuid::new_v4()),
    ];
    for path in &probes {
        let (s, body) = app.get(&outsider, path).await;
        assert_error(s, &body, 403, "NOT_ORG_MEMBER");
        assert!(!body.to_string().contains("Kept") && !body.to_string().contains(&owner.email), "{path}: {body}");
    }
    assert_eq!(cross_tenant_attempts(&app, &outsider).await, probes.len() as i64);
}

#[tokio::test]
async fn a_removed_member_is_refused_on_both_routes_without_a_cross_tenant_event() {
    let (app, owner, org, gone, kid) = one_connection("Pipelined Removal", "MEMBER").await;
    let paths = [format!("/api/organizations/{org}/members"), format!("/api/organizations/{org}/knowledge/{kid}")];
    for path in &paths {
        assert_eq!(app.get(&gone, path).await.0, 200, "{path}");
    }
    let (s, _) = app.delete(&owner, &format!("/api/organizations/{org}/members/{}", gone.id)).await;
    assert_eq!(s, 204);
    for path in &paths {
        let (s, body) = app.get(&gone, path).await;
        assert_error(s, &body, 403, "NOT_ORG_MEMBER");
        assert!(body.get("data").is_none() && body.get("title").is_none(), "no rows in a refusal: {body}");
    }
    assert_eq!(cross_tenant_attempts(&app, &gone).await, 0, "a former member's requests are not cross-tenant attempts");
}

#[tokio::test]
async fn a_caller_whose_row_must_be_written_is_opened_again_and_reads_the_row_as_written() {
    let (app, _, org, member, kid) = one_connection("Pipelined Claim", "VIEWER").await;
    // The row's e-mail is behind the auth service's: the request writes it (in a transaction opened again on
    // the one connection) and the list, read after the write, shows the caller's e-mail as claimed.
    stale_email(&app, &member).await;
    let (s, body) = app.get(&member, &format!("/api/organizations/{org}/members")).await;
    assert_eq!(s, 200, "{body}");
    let own = body["data"].as_array().expect("data").iter().find(|m| m["userId"] == member.id.to_string()).cloned();
    assert_eq!(own.expect("listed")["email"].as_str(), Some(&*member.email), "{body}");
    assert_eq!(email_of(&app, &member).await.as_deref(), Some(&*member.email));

    stale_email(&app, &member).await;
    let (s, body) = app.get(&member, &format!("/api/organizations/{org}/knowledge/{kid}")).await;
    assert_eq!((s, body["title"].as_str()), (200, Some("Kept")), "{body}");
    assert_eq!(email_of(&app, &member).await.as_deref(), Some(&*member.email));

    // No users row yet, and no member: refused, and the refused request keeps nothing, the row it made included.
    let newcomer = app.auth_only_user(&email("pipelined-newcomer")).await;
    for path in [format!("/api/organizations/{org}/members"), format!("/api/organizations/{org}/knowledge/x")] {
        let (s, body) = app.get(&newcomer, &path).await;
        assert_error(s, &body, 403, "NOT_ORG_MEMBER");
    }
    let rows: i64 = scalar(&app.owner, "SELECT count(*) FROM users WHERE id = $1", &[&newcomer.id]).await;
    assert_eq!(rows, 0, "a refused request's transaction is rolled back");
}
