//! Knowledge sources: CRUD, keyset pagination, full-text search, and 404 for foreign ids.

use std::collections::HashSet;

use uuid::Uuid;

use crate::helpers::{TestApp, assert_error};

#[tokio::test]
async fn crud_round_trip() {
    let (app, u, org) = TestApp::with_org("Crud").await;
    let base = format!("/api/organizations/{org}/knowledge");
    let created = app.knowledge(&u, org, "  Tax forms  ", "W-9 and 1099 guidance").await;
    assert_eq!(created["title"], "Tax forms", "titles are trimmed");
    assert_eq!(created["createdBy"], u.id.to_string());
    assert_eq!(created["organizationId"], org.to_string());
    let id = created["id"].as_str().expect("id");

    let (s, got) = app.get(&u, &format!("{base}/{id}")).await;
    assert_eq!((s, &got["content"]), (200, &serde_json::json!("W-9 and 1099 guidance")));

    let (s, patched) = app.patch(&u, &format!("{base}/{id}"), serde_json::json!({"content": "updated"})).await;
    assert_eq!(s, 200, "{patched}");
    assert_eq!(patched["title"], "Tax forms");
    assert_eq!(patched["content"], "updated");

    // An empty patch changes nothing (as in JSON merge patch); a blank title is refused.
    let (s, same) = app.patch(&u, &format!("{base}/{id}"), serde_json::json!({})).await;
    assert_eq!((s, &same["title"], &same["content"]), (200, &patched["title"], &patched["content"]), "{same}");
    let (s, b) = app.patch(&u, &format!("{base}/{id}"), serde_json::json!({"title": " \t "})).await;
    assert_error(s, &b, 400, "VALIDATION_ERROR");
    let (s, b) = app.patch(&u, &format!("{base}/{id}"), serde_json::json!([null, null])).await;
    assert_error(s, &b, 400, "VALIDATION_ERROR");

    let (s, _) = app.delete(&u, &format!("{base}/{id}")).await;
    assert_eq!(s, 204);
    let (s, b) = app.get(&u, &format!("{base}/{id}")).await;
    assert_error(s, &b, 404, "NOT_FOUND");
    let (s, b) = app.delete(&u, &format!("{base}/{id}")).await;
    assert_error(s, &b, 404, "NOT_FOUND");
}

#[tokio::test]
async fn pages_cover_everything_once_with_a_bounded_size() {
    let (app, u, org) = TestApp::with_org("Pages").await;
    for i in 0..25 {
        app.knowledge(&u, org, &format!("doc {i}"), "body").await;
    }
    let mut seen = HashSet::new();
    let mut cursor: Option<String> = None;
    let mut pages = 0;
    loop {
        let path = match &cursor {
            Some(c) => format!("/api/organizations/{org}/knowledge?limit=10&cursor={c}"),
            None => format!("/api/organizations/{org}/knowledge?limit=10"),
        };
        let (s, page) = app.get(&u, &path).await;
        assert_eq!(s, 200, "{page}");
        pages += 1;
        for k in page["data"].as_array().expect("data") {
            assert!(seen.insert(k["id"].as_str().expect("id").to_owned()), "duplicate row across pages");
            assert!(k.get("content").is_none() && k["excerpt"].is_string());
        }
        match page["nextCursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => break,
        }
    }
    assert_eq!((seen.len(), pages), (25, 3));
    let (s, b) = app.get(&u, &format!("/api/organizations/{org}/knowledge?limit=1000")).await;
    assert_error(s, &b, 400, "VALIDATION_ERROR");
}

#[tokio::test]
async fn search_ranks_matches_and_stays_in_the_tenant() {
    let (app, a, org_a) = TestApp::with_org("Search A").await;
    let (b, org_b) = app.owned_org("Search B").await;
    app.knowledge(&a, org_a, "Invoice template", "purchase order numbers and payment terms").await;
    app.knowledge(&a, org_a, "Holiday plan", "nothing about billing here").await;
    app.knowledge(&b, org_b, "Invoice secrets", "invoice invoice invoice").await;

    let (s, res) = app.get(&a, &format!("/api/organizations/{org_a}/knowledge/search?q=invoices")).await;
    assert_eq!(s, 200, "{res}");
    let titles: Vec<&str> =
        res["data"].as_array().expect("data").iter().map(|k| k["title"].as_str().expect("t")).collect();
    assert_eq!(titles, ["Invoice template"], "stemmed match in own org only");
    assert!(res["data"][0]["rank"].as_f64().is_some_and(|r| r > 0.0));

    let (s, res) =
        app.get(&a, &format!("/api/organizations/{org_a}/knowledge/search?q=%22payment%20terms%22%20-holiday")).await;
    assert_eq!(s, 200);
    assert_eq!(res["data"].as_array().expect("data").len(), 1);
}

#[tokio::test]
async fn foreign_and_unknown_ids_are_404_and_foreign_orgs_are_refused() {
    let (app, a, org_a) = TestApp::with_org("Foreign A").await;
    let (b, org_b) = app.owned_org("Foreign B").await;
    let theirs = app.knowledge(&b, org_b, "B only", "b").await;
    let theirs_id = theirs["id"].as_str().expect("id");

    // B's row through A's organization: indistinguishable from an unknown id.
    for id in [theirs_id.to_owned(), Uuid::new_v4().to_string()] {
        let path = format!("/api/organizations/{org_a}/knowledge/{id}");
        let (s, body) = app.get(&a, &path).await;
        assert_error(s, &body, 404, "NOT_FOUND");
        let (s, body) = app.patch(&a, &path, serde_json::json!({"title": "pwned"})).await;
        assert_error(s, &body, 404, "NOT_FOUND");
        let (s, body) = app.delete(&a, &path).await;
        assert_error(s, &body, 404, "NOT_FOUND");
    }
    // B's organization itself, and an organization that does not exist: the same answer.
    for org in [org_b, Uuid::new_v4()] {
        let (s, body) = app.get(&a, &format!("/api/organizations/{org}/knowledge/{theirs_id}")).await;
        assert_error(s, &body, 403, "NOT_ORG_MEMBER");
        let (s, body) = app
            .post(&a, &format!("/api/organizations/{org}/knowledge"), serde_json::json!({"title":"x","content":"y"}))
            .await;
        assert_error(s, &body, 403, "NOT_ORG_MEMBER");
    }
    let (_, after) = app.get(&b, &format!("/api/organizations/{org_b}/knowledge/{theirs_id}")).await;
    assert_eq!(after["title"], "B only");
}

/// The list excerpt is the first 280 characters (not bytes) of the content, kept by the database on insert and
/// on every change of the content (migration 0010), the same for a row written before the stored excerpt
/// (NULL: cut on read), and never writable by the runtime role.
#[tokio::test]
async fn list_excerpts_are_the_contents_first_280_characters_stored_or_not() {
    const EXCERPT: usize = 280;
    let (app, u, org) = TestApp::with_org("Excerpts").await;
    let base = format!("/api/organizations/{org}/knowledge");
    let excerpt_of = async |id: &str| -> serde_json::Value {
        let (s, page) = app.get(&u, &base).await;
        assert_eq!(s, 200, "{page}");
        let row = page["data"].as_array().expect("data").iter().find(|k| k["id"] == id).cloned();
        row.expect("the row is listed")["excerpt"].clone()
    };
    // Multi-byte characters: a byte cut would split them.
    let long: String = "Zoë’s résumé — 東京 ".chars().cycle().take(400).collect();
    let created = app.knowledge(&u, org, "Long", &long).await;
    let id = created["id"].as_str().expect("id").to_owned();
    let first: String = long.chars().take(EXCERPT).collect();
    assert_eq!(excerpt_of(&id).await, serde_json::json!(first));

    let short = "short content";
    let (s, patched) = app.patch(&u, &format!("{base}/{id}"), serde_json::json!({"content": short})).await;
    assert_eq!(s, 200, "{patched}");
    assert_eq!(excerpt_of(&id).await, serde_json::json!(short), "a content change renews the excerpt");
    let (s, patched) = app.patch(&u, &format!("{base}/{id}"), serde_json::json!({"title": "Renamed"})).await;
    assert_eq!((s, &patched["content"]), (200, &serde_json::json!(short)));
    assert_eq!(excerpt_of(&id).await, serde_json::json!(short), "a title change keeps it");

    // A row from before the stored excerpt answers the same, cut on read; a backfill keeps `updated_at`.
    let owner = &app.owner;
    let uuid: Uuid = id.parse().expect("uuid");
    owner.execute("UPDATE knowledge_sources SET excerpt = NULL WHERE id = $1", &[&uuid]).await.expect("unset");
    let (s, patched) = app.patch(&u, &format!("{base}/{id}"), serde_json::json!({"content": long})).await;
    assert_eq!(s, 200, "{patched}");
    owner.execute("UPDATE knowledge_sources SET excerpt = NULL WHERE id = $1", &[&uuid]).await.expect("unset");
    assert_eq!(excerpt_of(&id).await, serde_json::json!(first), "NULL excerpt: cut on read");
    let before: chrono::DateTime<chrono::Utc> =
        owner.query_one("SELECT updated_at FROM knowledge_sources WHERE id = $1", &[&uuid]).await.expect("row").get(0);
    let n = owner
        .execute(
            "UPDATE knowledge_sources SET excerpt = left(content, 280) WHERE excerpt IS NULL AND id = $1",
            &[&uuid],
        )
        .await
        .expect("backfill");
    assert_eq!(n, 1);
    let (stored, after): (Option<String>, chrono::DateTime<chrono::Utc>) = {
        let row = owner.query_one("SELECT excerpt, updated_at FROM knowledge_sources WHERE id = $1", &[&uuid]).await;
        let row = row.expect("row");
        (row.get(0), row.get(1))
    };
    assert_eq!((stored.as_deref(), after), (Some(first.as_str()), before), "the backfill keeps updated_at");
    assert_eq!(excerpt_of(&id).await, serde_json::json!(first));

    // The runtime role has no grant on the column.
    let runtime = app.runtime_client().await;
    let err = runtime
        .execute("UPDATE knowledge_sources SET excerpt = 'forged' WHERE id = $1", &[&uuid])
        .await
        .expect_err("the runtime role cannot write excerpts");
    assert_eq!(err.code(), Some(&tokio_postgres::error::SqlState::INSUFFICIENT_PRIVILEGE), "{err}");
}
