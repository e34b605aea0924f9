//! Members: roles, who may change what (through the API; `roles_sql` holds the database to the same rules),
//! last-OWNER protection, removal closes access.

use crate::helpers::{TestApp, assert_error, assert_field_error, email, member_removal_revokes_access, scalar};

#[tokio::test]
async fn admins_manage_members_and_only_owners_touch_owners() {
    let (app, owner, org) = TestApp::with_org("Roles Ltd").await;
    let admin = app.user(&email("admin")).await;
    let member = app.user(&email("member")).await;
    let newbie = app.user(&email("newbie")).await;
    let members = format!("/api/organizations/{org}/members");
    let invitations = format!("/api/organizations/{org}/invitations");

    let (s, b) = app.post(&owner, &invitations, serde_json::json!({"email": admin.email, "role": "ADMIN"})).await;
    assert_eq!(s, 201, "{b}");
    assert_eq!(b["role"], "ADMIN");
    let id = b["id"].as_str().expect("id").to_owned();
    let (s, b) = app.post(&admin, &format!("/api/invitations/{id}/accept"), serde_json::json!({})).await;
    assert_eq!((s, &b["role"]), (200, &serde_json::json!("ADMIN")), "{b}");
    app.join(&admin, org, &member, "MEMBER").await;
    let (s, b) = app.post(&admin, &invitations, serde_json::json!({"email": member.email})).await;
    assert_field_error(s, &b, 409, "CONFLICT", "email");

    let (s, b) = app.post(&member, &invitations, serde_json::json!({"email": newbie.email})).await;
    assert_error(s, &b, 403, "ADMIN_REQUIRED");
    let (s, b) = app.post(&admin, &invitations, serde_json::json!({"email": newbie.email, "role": "OWNER"})).await;
    assert_error(s, &b, 403, "OWNER_REQUIRED");
    let (s, b) = app.patch(&admin, &format!("{members}/{}", owner.id), serde_json::json!({"role": "MEMBER"})).await;
    assert_error(s, &b, 403, "OWNER_REQUIRED");
    // The old forced-membership body is no longer a way in.
    let (s, b) = app.post(&admin, &invitations, serde_json::json!({"userId": newbie.id})).await;
    assert_error(s, &b, 400, "VALIDATION_ERROR");
    let (s, b) = app.post(&admin, &invitations, serde_json::json!({"email": newbie.email, "role": "KING"})).await;
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
async fn an_admin_changes_only_lower_ranks_and_grants_at_most_admin() {
    let (app, owner, org) = TestApp::with_org("Ranks").await;
    let admin = app.member(org, "ADMIN").await;
    let other_admin = app.member(org, "ADMIN").await;
    let viewer = app.member(org, "VIEWER").await;
    let path = |u: &crate::helpers::TestUser| format!("/api/organizations/{org}/members/{}", u.id);

    let (s, b) = app.patch(&admin, &path(&viewer), serde_json::json!({"role": "ADMIN"})).await;
    assert_eq!((s, &b["role"]), (200, &serde_json::json!("ADMIN")), "an admin may grant up to its own rank");
    for body in [serde_json::json!({"role": "MEMBER"}), serde_json::json!({"status": "SUSPENDED"})] {
        let (s, b) = app.patch(&admin, &path(&other_admin), body).await;
        assert_error(s, &b, 403, "OWNER_REQUIRED");
    }
    let (s, b) = app.delete(&admin, &path(&other_admin)).await;
    assert_error(s, &b, 403, "OWNER_REQUIRED");
    let (s, b) = app.patch(&admin, &path(&admin), serde_json::json!({"role": "OWNER"})).await;
    assert_error(s, &b, 403, "OWNER_REQUIRED");
    let (s, b) = app.patch(&owner, &path(&other_admin), serde_json::json!({"status": "SUSPENDED"})).await;
    assert_eq!((s, &b["status"]), (200, &serde_json::json!("SUSPENDED")), "{b}");
    assert_eq!(app.delete(&owner, &path(&other_admin)).await.0, 204);
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
    member_removal_revokes_access(&app, &owner, org).await;

    // A member may leave by themself.
    let leaver = app.member(org, "VIEWER").await;
    let (s, _) = app.delete(&leaver, &format!("/api/organizations/{org}/members/{}", leaver.id)).await;
    assert_eq!(s, 204);
}
