//! Organizations: create (OWNER + current org), list mine, read, slugs, suspension.

use crate::helpers::{TestApp, assert_error, email};

#[tokio::test]
async fn the_creator_becomes_owner_and_the_org_becomes_current() {
    let (app, u) = TestApp::with_user().await;
    let (s, org) = app.post(&u, "/api/organizations", serde_json::json!({"name": "Acme Holdings GmbH"})).await;
    assert_eq!(s, 201, "{org}");
    assert_eq!(org["slug"], "acme-holdings-gmbh");
    assert_eq!(org["role"], "OWNER");
    assert_eq!(org["status"], "ACTIVE");
    let (_, me) = app.get(&u, "/api/me").await;
    assert_eq!(me["currentOrganizationId"], org["id"]);
    assert_eq!(me["organizations"][0]["role"], "OWNER");

    let (s, got) = app.get(&u, &format!("/api/organizations/{}", org["id"].as_str().expect("id"))).await;
    assert_eq!(s, 200);
    assert_eq!(got["memberCount"], 1);

    let (s, b) =
        app.post(&u, "/api/organizations", serde_json::json!({"name": "Other", "slug": "acme-holdings-gmbh"})).await;
    assert_error(s, &b, 409, "CONFLICT");
    assert_eq!(b["field"], "slug");
    let (s, b) = app.post(&u, "/api/organizations", serde_json::json!({"name": "Bad", "slug": "Not A Slug"})).await;
    assert_error(s, &b, 400, "VALIDATION_ERROR");
    assert_eq!(b["field"], "slug");
    // A name with nothing to derive a slug from gets a generated one.
    let (s, b) = app.post(&u, "/api/organizations", serde_json::json!({"name": "***"})).await;
    assert_eq!(s, 201, "{b}");
    assert!(b["slug"].as_str().is_some_and(|slug| slug.starts_with("org-")), "{b}");
    let (s, b) =
        app.post(&u, "/api/organizations", serde_json::json!({"name": format!(" {} ", "n".repeat(199))})).await;
    assert_error(s, &b, 400, "VALIDATION_ERROR");
    assert_eq!(b["field"], "name", "the limit counts the name as sent");
}

#[tokio::test]
async fn lists_show_only_my_organizations() {
    let app = TestApp::spawn().await;
    let a = app.user(&email("a")).await;
    let b = app.user(&email("b")).await;
    let mine = [app.org(&a, "Mine One").await, app.org(&a, "Mine Two").await];
    app.org(&b, "Not Mine").await;
    let (s, list) = app.get(&a, "/api/organizations?limit=1").await;
    assert_eq!(s, 200);
    assert_eq!(list["data"].as_array().expect("data").len(), 1);
    let cursor = list["nextCursor"].as_str().expect("more");
    let (_, rest) = app.get(&a, &format!("/api/organizations?cursor={cursor}")).await;
    let ids: Vec<String> = list["data"]
        .as_array()
        .into_iter()
        .chain(rest["data"].as_array())
        .flatten()
        .map(|o| o["id"].as_str().expect("id").to_owned())
        .collect();
    assert_eq!(ids, mine.map(|m| m.to_string()));
}

#[tokio::test]
async fn a_suspended_organization_is_closed_to_its_members() {
    let (app, u, org) = TestApp::with_org("Suspended Co").await;
    app.knowledge(&u, org, "kept", "but closed").await;
    app.owner.execute("UPDATE organizations SET status = 'SUSPENDED' WHERE id = $1", &[&org]).await.expect("suspend");
    let (s, b) = app.get(&u, &format!("/api/organizations/{org}/knowledge")).await;
    assert_error(s, &b, 403, "ORG_SUSPENDED");
    // The database agrees on its own: a member's full context opens no row of a suspended org.
    let db = app.runtime_client().await;
    db.batch_execute("BEGIN").await.expect("begin");
    db.execute("SELECT set_user_context($1), set_org_context($2)", &[&u.id, &org]).await.expect("context");
    assert!(db.query("SELECT * FROM knowledge_sources", &[]).await.expect("select").is_empty());
    db.batch_execute("ROLLBACK").await.expect("rollback");
    // The member still sees the organization, and its status, in the list.
    let (s, list) = app.get(&u, "/api/organizations").await;
    assert_eq!(s, 200);
    assert_eq!(list["data"][0]["status"], "SUSPENDED");
}
