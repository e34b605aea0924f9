//! Members: roles, who may change what, last-OWNER protection, removal closes access.

use crate::helpers::{TestApp, assert_error, assert_field_error, email, scalar};

#[tokio::test]
async fn admins_manage_members_and_only_owners_touch_owners() {
    let (app, owner, org) = TestApp::with_org("Roles Ltd").await;
    let admin = app.user(&email("admin")).await;
    let member = app.user(&email("member")).await;
    let newbie = app.user(&email("newbie")).await;
    let members = format!("/api/organizations/{org}/members");

    let (s, b) = app.post(&owner, &members, serde_json::json!({"email": admin.email, "role": "ADMIN"})).await;
    assert_eq!(s, 201, "{b}");
    assert_eq!(b["role"], "ADMIN");
    let (s, b) = app.post(&admin, &members, serde_json::json!({"userId": member.id, "role": "MEMBER"})).await;
    assert_eq!(s, 201, "{b}");
    let (s, b) = app.post(&admin, &members, serde_json::json!({"userId": member.id})).await;
    assert_error(s, &b, 409, "CONFLICT");

    let (s, b) = app.post(&member, &members, serde_json::json!({"userId": newbie.id})).await;
    assert_error(s, &b, 403, "ADMIN_REQUIRED");
    let (s, b) = app.post(&admin, &members, serde_json::json!({"userId": newbie.id, "role": "OWNER"})).await;
    assert_error(s, &b, 403, "OWNER_REQUIRED");
    let (s, b) = app.patch(&admin, &format!("{members}/{}", owner.id), serde_json::json!({"role": "MEMBER"})).await;
    assert_error(s, &b, 403, "OWNER_REQUIRED");
    let (s, b) = app.post(&admin, &members, serde_json::json!({"email": "nobody@nowhere.test"})).await;
    assert_error(s, &b, 404, "NOT_FOUND");
    let (s, b) = app.post(&admin, &members, serde_json::json!({"userId": newbie.id, "role": "KING"})).await;
    assert_field_error(s, &b, 400, "VALIDATION_ERROR", "role");

    let (s, list) = app.get(&member, &members).await;
    assert_eq!(s, 200);
    let emails: Vec<&str> =
        list["data"].as_array().expect("data").iter().map(|m| m["email"].as_str().expect("e")).collect();
    assert_eq!(emails, [owner.email.as_str(), admin.email.as_str(), member.email.as_str()]);

    let (s, b) = app.patch(&admin, &format!("{members}/{}", member.id), serde_json::json!({"role": "VIEWER"})).await;
    assert_eq!((s, &b["role"]), (200, &serde_json::json!("VIEWER")));
    let (s, b) = app
        .post(&member, &format!("/api/organizations/{org}/knowledge"), serde_json::json!({"title":"t","content":"c"}))
        .await;
    assert_error(s, &b, 403, "FORBIDDEN");
}

#[tokio::test]
async fn the_last_owner_can_neither_leave_nor_be_demoted() {
    let (app, owner, org) = TestApp::with_org("Owners").await;
    let me = format!("/api/organizations/{org}/members/{}", owner.id);

    let (s, b) = app.delete(&owner, &me).await;
    assert_error(s, &b, 409, "LAST_OWNER");
    let (s, b) = app.patch(&owner, &me, serde_json::json!({"role": "ADMIN"})).await;
    assert_error(s, &b, 409, "LAST_OWNER");
    let (s, b) = app.patch(&owner, &me, serde_json::json!({"status": "SUSPENDED"})).await;
    assert_error(s, &b, 409, "LAST_OWNER");

    let second = app.member(org, "OWNER").await;
    let (s, b) = app.patch(&owner, &me, serde_json::json!({"role": "ADMIN"})).await;
    assert_eq!(s, 200, "{b}");
    let second_path = format!("/api/organizations/{org}/members/{}", second.id);
    let (s, b) = app.delete(&second, &second_path).await;
    assert_error(s, &b, 409, "LAST_OWNER");
}

#[tokio::test]
async fn two_owners_demoting_each_other_at_once_leave_one_owner() {
    let (app, a, org) = TestApp::with_org("Race").await;
    let b = app.member(org, "OWNER").await;
    let pa = format!("/api/organizations/{org}/members/{}", b.id);
    let pb = format!("/api/organizations/{org}/members/{}", a.id);
    let demote = serde_json::json!({"role": "ADMIN"});
    let (ra, rb) = tokio::join!(app.patch(&a, &pa, demote.clone()), app.patch(&b, &pb, demote.clone()));
    let statuses = [ra.0, rb.0];
    assert!(statuses.contains(&200), "{ra:?} {rb:?}");
    let owners: i64 = scalar(
        &app.owner,
        "SELECT count(*) FROM organization_memberships WHERE organization_id = $1 AND role = 'OWNER'",
        &[&org],
    )
    .await;
    assert_eq!(owners, 1, "{ra:?} {rb:?}");
}

#[tokio::test]
async fn a_removed_member_loses_access_at_once() {
    let (app, owner, org) = TestApp::with_org("Removal").await;
    let gone = app.member(org, "MEMBER").await;
    let path = format!("/api/organizations/{org}/knowledge");
    assert_eq!(app.get(&gone, &path).await.0, 200);
    let (s, _) = app.delete(&owner, &format!("/api/organizations/{org}/members/{}", gone.id)).await;
    assert_eq!(s, 204);
    let (s, b) = app.get(&gone, &path).await;
    assert_error(s, &b, 403, "NOT_ORG_MEMBER");

    // A member may leave by themself.
    let leaver = app.member(org, "VIEWER").await;
    let (s, _) = app.delete(&leaver, &format!("/api/organizations/{org}/members/{}", leaver.id)).await;
    assert_eq!(s, 204);
}
