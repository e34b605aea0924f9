//! `DATABASE_STATEMENTS`: named statements cached per connection, or the unnamed statement, with the same
//! guarantees either way (RLS context, tenant isolation, a removed member refused on the next request).
//! The PgBouncer run of the suite (`TEST_DB_VIA_PGBOUNCER=1`) runs every test with `unnamed`.

use crate::helpers::{TestApp, member_removal_revokes_access};

fn via_pgbouncer() -> bool {
    std::env::var("TEST_DB_VIA_PGBOUNCER").is_ok_and(|v| v == "1")
}

/// Named statements on the one pooled connection, as seen from that connection.
async fn named_statements(app: &TestApp) -> i64 {
    let rows = app
        .state
        .db
        .unscoped("SELECT count(*) FROM pg_prepared_statements WHERE NOT from_sql", &[])
        .await
        .expect("pg_prepared_statements");
    rows[0].get(0)
}

/// Both modes on a one-connection pool: two tenants interleaved, a member removed between two requests, and
/// what the connection holds afterwards (named statements, or none).
async fn exercise(mode: &str) -> i64 {
    let (app, owner, org) = TestApp::with_org_using(
        settings!(db_pool_max_size = "1", database_statements = mode),
        &format!("Statements {mode}"),
    )
    .await;
    let (other, other_org) = app.owned_org(&format!("Statements {mode} other")).await;
    app.knowledge(&owner, org, "mine", "alpha").await;
    app.knowledge(&other, other_org, "theirs", "beta").await;
    for _ in 0..3 {
        for (user, org, title) in [(&owner, org, "mine"), (&other, other_org, "theirs")] {
            let (s, b) = app.get(user, &format!("/api/organizations/{org}/knowledge")).await;
            assert_eq!(s, 200, "{b}");
            let titles: Vec<&str> =
                b["data"].as_array().expect("data").iter().filter_map(|k| k["title"].as_str()).collect();
            assert_eq!(titles, [title], "{mode}: {b}");
        }
    }
    member_removal_revokes_access(&app, &owner, org).await;
    named_statements(&app).await
}

#[tokio::test]
async fn prepared_statements_are_named_once_per_connection_and_keep_every_guarantee() {
    if via_pgbouncer() {
        // PgBouncer 1.18 cannot carry named statements; the unnamed test below covers this run.
        return;
    }
    let named = exercise("prepared").await;
    // At least open_request (context, user row and membership) and the page query.
    assert!(named >= 2, "expected cached named statements on the connection, found {named}");
}

#[tokio::test]
async fn unnamed_statements_leave_nothing_on_the_connection_and_keep_every_guarantee() {
    assert_eq!(exercise("unnamed").await, 0);
}

#[tokio::test]
async fn a_schema_change_under_cached_statements_fails_at_most_one_request_per_connection() {
    if via_pgbouncer() {
        return;
    }
    let (app, user) =
        TestApp::with_user_using(settings!(db_pool_max_size = "1", database_statements = "prepared")).await;
    assert_eq!(app.get(&user, "/api/me").await.0, 200);
    // A migration step changes the type of a column that open_request and the cached statements of /api/me read.
    app.owner.batch_execute("ALTER TABLE users ALTER COLUMN role TYPE varchar(16)").await.expect("alter");
    let (first, body) = app.get(&user, "/api/me").await;
    assert!(first == 200 || first == 500, "{first} {body}");
    let (s, b) = app.get(&user, "/api/me").await;
    assert_eq!(s, 200, "the next request prepares its statements afresh: {b}");
}
