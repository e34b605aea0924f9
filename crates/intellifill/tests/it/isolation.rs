//! Tenant isolation proven at the database level and under concurrency.

use futures::future::join_all;
use uuid::Uuid;

use crate::helpers::{TestApp, assert_error, email, scalar};

#[tokio::test]
async fn unfiltered_select_returns_only_the_context_organizations_rows() {
    let (app, a, org_a) = TestApp::with_org("Tenant A").await;
    let (b, org_b) = app.owned_org("Tenant B").await;
    for i in 0..3 {
        app.knowledge(&a, org_a, &format!("a-{i}"), "alpha").await;
        app.knowledge(&b, org_b, &format!("b-{i}"), "beta").await;
    }

    let db = app.runtime_client().await;
    db.batch_execute("BEGIN").await.expect("begin");
    db.execute("SELECT set_user_context($1), set_org_context($2)", &[&a.id, &org_a]).await.expect("context");
    // Deliberately no WHERE clause: RLS alone decides.
    let rows = db.query("SELECT organization_id, title FROM knowledge_sources", &[]).await.expect("select");
    assert_eq!(rows.len(), 3);
    assert!(rows.iter().all(|r| r.get::<_, Uuid>(0) == org_a));

    // A's identity with B's organization in the context: still nothing of B's.
    db.execute("SELECT set_org_context($1)", &[&org_b]).await.expect("context");
    let rows = db.query("SELECT * FROM knowledge_sources", &[]).await.expect("select");
    assert!(rows.is_empty(), "a foreign org id in the context must not open that org");
    db.batch_execute("COMMIT").await.expect("commit");

    // No context at all: zero rows, and no write.
    let rows = db.query("SELECT * FROM knowledge_sources", &[]).await.expect("select");
    assert!(rows.is_empty());
    let rows = db.query("SELECT * FROM organizations", &[]).await.expect("select");
    assert!(rows.is_empty());
    let err = db
        .execute("INSERT INTO knowledge_sources (organization_id, title, content) VALUES ($1, 'x', 'y')", &[&org_a])
        .await
        .expect_err("write without context");
    assert_eq!(err.code(), Some(&tokio_postgres::error::SqlState::INSUFFICIENT_PRIVILEGE));
}

#[tokio::test]
async fn context_is_transaction_local_and_never_survives_commit() {
    let (app, a, org_a) = TestApp::with_org("Local").await;
    app.knowledge(&a, org_a, "t", "c").await;
    let db = app.runtime_client().await;
    db.batch_execute("BEGIN").await.expect("begin");
    db.execute("SELECT set_user_context($1), set_org_context($2)", &[&a.id, &org_a]).await.expect("context");
    assert_eq!(db.query("SELECT 1 FROM knowledge_sources", &[]).await.expect("select").len(), 1);
    db.batch_execute("COMMIT").await.expect("commit");
    let setting: Option<Uuid> = db.query_one("SELECT current_user_id()", &[]).await.expect("select").get(0);
    assert_eq!(setting, None, "the user context leaked past the transaction");
}

#[tokio::test]
async fn runtime_role_is_not_owner_cannot_bypass_and_audit_log_is_append_only() {
    let app = TestApp::spawn().await;
    let db = app.runtime_client().await;
    let row = db
        .query_one("SELECT rolsuper, rolbypassrls FROM pg_roles WHERE rolname = current_user", &[])
        .await
        .expect("role");
    assert!(!row.get::<_, bool>(0) && !row.get::<_, bool>(1));
    let forced: i64 = db
        .query_one(
            "SELECT count(*) FROM pg_class WHERE relname IN ('organizations','users','organization_memberships','knowledge_sources','audit_log')
               AND relrowsecurity AND relforcerowsecurity",
            &[],
        )
        .await
        .expect("rls flags")
        .get(0);
    assert_eq!(forced, 5);
    db.execute("INSERT INTO audit_log (action) VALUES ('test.append')", &[]).await.expect("insert is allowed");
    // Reading is filtered by RLS (org admins, platform admins): without a context nothing is visible.
    let visible = db.query("SELECT * FROM audit_log", &[]).await.expect("select is policed, not refused");
    assert!(visible.is_empty(), "no context, no audit rows");
    let stored: i64 = scalar(&app.owner, "SELECT count(*) FROM audit_log", &[]).await;
    assert!(stored >= 1);
    for sql in ["UPDATE audit_log SET action = 'x'", "DELETE FROM audit_log", "TRUNCATE audit_log"] {
        let err = db.execute(sql, &[]).await.expect_err(sql);
        assert_eq!(err.code(), Some(&tokio_postgres::error::SqlState::INSUFFICIENT_PRIVILEGE), "{sql}");
    }
    // A user may not raise their own platform role.
    let err = db.execute("UPDATE users SET role = 'ADMIN'", &[]).await.expect_err("column grant");
    assert_eq!(err.code(), Some(&tokio_postgres::error::SqlState::INSUFFICIENT_PRIVILEGE));
}

#[tokio::test]
async fn interleaved_tenants_on_a_tiny_pool_never_see_each_other() {
    let (app, a, org_a) = TestApp::with_org_using(|a| a.db_pool_max_size = Some("2".into()), "Interleave A").await;
    let (b, org_b) = app.owned_org("Interleave B").await;
    for i in 0..5 {
        app.knowledge(&a, org_a, &format!("A-secret-{i}"), "a").await;
        app.knowledge(&b, org_b, &format!("B-secret-{i}"), "b").await;
    }
    let requests = (0..120).map(|i| {
        let (user, org, prefix) = if i % 2 == 0 { (&a, org_a, "A-") } else { (&b, org_b, "B-") };
        let app = &app;
        async move {
            // Every third request fails inside its transaction (unknown id -> 404, rolled back) to prove a
            // failed transaction leaves nothing behind on the pooled connection either.
            if i % 3 == 0 {
                let (status, body) =
                    app.get(user, &format!("/api/organizations/{org}/knowledge/{}", Uuid::new_v4())).await;
                assert_eq!(status, 404, "{body}");
            }
            let (status, body) = app.get(user, &format!("/api/organizations/{org}/knowledge?limit=100")).await;
            assert_eq!(status, 200, "{body}");
            let titles: Vec<String> = body["data"]
                .as_array()
                .expect("data")
                .iter()
                .map(|k| k["title"].as_str().expect("title").to_owned())
                .collect();
            assert_eq!(titles.len(), 5, "{titles:?}");
            assert!(titles.iter().all(|t| t.starts_with(prefix)), "cross-tenant rows: {titles:?}");
        }
    });
    join_all(requests).await;
}

#[tokio::test]
async fn a_context_that_cannot_be_set_fails_the_request_and_is_counted() {
    let app = TestApp::spawn().await;
    let a = app.user(&email("a")).await;
    app.owner
        .batch_execute("REVOKE EXECUTE ON FUNCTION open_request(uuid, uuid, text) FROM intellifill_app")
        .await
        .expect("revoke");
    let before = app.state.db.stats().rls_failures.load(std::sync::atomic::Ordering::Relaxed);
    let (status, body) = app.get(&a, "/api/me").await;
    assert_error(status, &body, 500, "RLS_CONTEXT_FAILED");
    let after = app.state.db.stats().rls_failures.load(std::sync::atomic::Ordering::Relaxed);
    assert_eq!(after, before + 1);
}
