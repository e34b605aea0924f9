//! The knowledge list sends its page query in the same round trip as `open_request` (context, caller and
//! membership), before the membership answer is known. These tests hold it to every guarantee of the route
//! that checks first: a removed member is refused on their next request on any instance, a cross-org request
//! gets the same refusal and its read returned nothing, a bad query string is answered after the membership
//! check as before, and the statement timeout applies to the pipelined query. `COMMIT` goes in the same
//! pipeline: a request that must write the user row first, or a refused one, opens another transaction.

use tokio_postgres::NoTls;
use tokio_postgres::types::{ToSql, Type};

use crate::helpers::{TestApp, assert_error, email, scalar};

#[tokio::test]
async fn a_member_removed_on_one_instance_is_refused_on_the_next_list_on_another() {
    let (a, owner, org) = TestApp::with_org("Pipelined Removal").await;
    let b = a.peer(|_| {}).await;
    let member = a.member(org, "MEMBER").await;
    a.knowledge(&owner, org, "Kept", "for members only").await;
    let path = format!("/api/organizations/{org}/knowledge");
    for app in [&a, &b] {
        let (s, body) = app.get(&member, &path).await;
        assert_eq!((s, body["data"].as_array().map(Vec::len)), (200, Some(1)), "{body}");
    }

    let (s, _) = b.delete(&owner, &format!("/api/organizations/{org}/members/{}", member.id)).await;
    assert_eq!(s, 204);
    for app in [&a, &b] {
        let (s, body) = app.get(&member, &path).await;
        assert_error(s, &body, 403, "NOT_ORG_MEMBER");
        assert!(body.get("data").is_none(), "no rows in a refusal: {body}");
    }
    // A suspended membership is refused the same way.
    let other = a.member(org, "VIEWER").await;
    a.owner
        .execute("UPDATE organization_memberships SET status = 'SUSPENDED' WHERE user_id = $1", &[&other.id])
        .await
        .expect("suspend");
    let (s, body) = b.get(&other, &path).await;
    assert_error(s, &body, 403, "NOT_ORG_MEMBER");
}

#[tokio::test]
async fn a_cross_org_list_is_refused_as_before_and_its_pipelined_read_saw_nothing() {
    let (app, owner, org) = TestApp::with_org("Pipelined Victim").await;
    let (outsider, own_org) = app.owned_org("Pipelined Outsider").await;
    app.knowledge(&owner, org, "Secret", "victim's text").await;
    app.knowledge(&outsider, own_org, "Mine", "outsider's text").await;
    let path = format!("/api/organizations/{org}/knowledge");

    let (s, body) = app.get(&outsider, &path).await;
    assert_error(s, &body, 403, "NOT_ORG_MEMBER");
    assert!(!body.to_string().contains("Secret"), "{body}");
    // Membership is checked before the query string, as on every route: an outsider's bad limit is still a
    // refusal, a member's is a validation error.
    let (s, body) = app.get(&outsider, &format!("{path}?limit=0")).await;
    assert_error(s, &body, 403, "NOT_ORG_MEMBER");
    let (s, body) = app.get(&owner, &format!("{path}?limit=0")).await;
    assert_error(s, &body, 400, "VALIDATION_ERROR");
    // The outsider's own list is unaffected.
    let (s, body) = app.get(&outsider, &format!("/api/organizations/{own_org}/knowledge")).await;
    assert_eq!((s, body["data"][0]["title"].as_str()), (200, Some("Mine")), "{body}");

    // What the server's pipeline read for the refused request, sent the same way as the runtime role: the
    // context is the outsider's in the victim's organization, and RLS answers the page query with no rows.
    let (db, conn) = tokio_postgres::connect(&app.runtime_url, NoTls).await.expect("runtime connection");
    tokio::spawn(conn);
    let timeout = "5000";
    let page = "SELECT id FROM knowledge_sources WHERE organization_id = $1 ORDER BY created_at DESC, id DESC LIMIT 21";
    let open_params: [(&(dyn ToSql + Sync), Type); 3] =
        [(&outsider.id, Type::UUID), (&org, Type::UUID), (&timeout, Type::TEXT)];
    let page_params: [(&(dyn ToSql + Sync), Type); 1] = [(&org, Type::UUID)];
    // Unnamed statements, each written on its first poll: the server runs them in this order.
    let (begun, opened, rows) = futures::join!(
        db.batch_execute("BEGIN"),
        db.query_typed("SELECT r_id, r_member_role FROM open_request($1, $2, $3)", &open_params),
        db.query_typed(page, &page_params)
    );
    begun.expect("begin");
    let opened = opened.expect("open_request");
    assert_eq!(opened[0].get::<_, Option<String>>(1), None, "no membership");
    assert!(rows.expect("page").is_empty(), "the pipelined read returned nothing");
    db.batch_execute("COMMIT").await.expect("commit");
}

#[tokio::test]
async fn the_statement_timeout_applies_to_the_pipelined_page_query() {
    let (app, owner, org) =
        TestApp::with_org_using(settings!(db_statement_timeout_ms = "300"), "Pipelined Timeout").await;
    let path = format!("/api/organizations/{org}/knowledge");
    app.owner.batch_execute("BEGIN; LOCK TABLE knowledge_sources IN ACCESS EXCLUSIVE MODE").await.expect("lock");
    // The page query waits for the lock until the timeout set in the same round trip cancels it (without the
    // timeout, the request would end at its deadline instead: 408).
    let (s, body) = app.get(&owner, &path).await;
    assert_error(s, &body, 503, "DATABASE_UNAVAILABLE");
    app.owner.batch_execute("COMMIT").await.expect("unlock");
    assert_eq!(app.get(&owner, &path).await.0, 200);
}

#[tokio::test]
async fn a_list_that_must_make_the_user_row_or_is_refused_opens_a_transaction_of_its_own_on_a_pool_of_one() {
    let (app, owner, org) = TestApp::with_org_using(settings!(db_pool_max_size = "1"), "Pipelined Commit").await;
    app.knowledge(&owner, org, "Kept", "for members only").await;
    let path = format!("/api/organizations/{org}/knowledge");

    // No users row yet: the read's committed transaction cannot make it, so the request is opened again (on
    // the one connection, given back first: else this would wait for it and end as 503). The newcomer is no
    // member: refused, and a refused request keeps nothing, the row it made included.
    let newcomer = app.auth_only_user(&email("pipelined-newcomer")).await;
    let (s, body) = app.get(&newcomer, &path).await;
    assert_error(s, &body, 403, "NOT_ORG_MEMBER");
    let rows: i64 = scalar(&app.owner, "SELECT count(*) FROM users WHERE id = $1", &[&newcomer.id]).await;
    assert_eq!(rows, 0, "a refused request's transaction is rolled back");
    assert_eq!(app.get(&newcomer, "/api/me").await.0, 200, "the row is made by a request that succeeds");

    // Refused with the row in place: the former-member check gets a transaction of its own.
    let (s, body) = app.get(&newcomer, &path).await;
    assert_error(s, &body, 403, "NOT_ORG_MEMBER");
    app.add_member(org, &newcomer, "VIEWER").await;
    let (s, body) = app.get(&newcomer, &path).await;
    assert_eq!((s, body["data"][0]["title"].as_str()), (200, Some("Kept")), "{body}");
    // The committed reads left nothing open: the owner still writes on the one connection.
    let (s, _) = app.post(&owner, &path, serde_json::json!({"title": "Next", "content": "c"})).await;
    assert_eq!(s, 201);
}
