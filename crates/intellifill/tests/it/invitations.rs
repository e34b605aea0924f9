//! Invitations through the real server: create / list / accept / decline / revoke / expire, the invitee who
//! signs up afterwards, identical answers for known and unknown addresses, races, quotas, and a removed
//! member's polling that no longer locks their account.

use std::time::Duration;

use serde_json::{Value, json};
use uuid::Uuid;

use crate::helpers::{TestApp, TestUser, assert_error, email, scalar};

fn pending_ids(list: &Value) -> Vec<String> {
    list["data"].as_array().expect("data").iter().map(|i| i["id"].as_str().expect("id").to_owned()).collect()
}

async fn is_member(app: &TestApp, org: Uuid, user: &TestUser) -> bool {
    scalar::<i64>(
        &app.owner,
        "SELECT count(*) FROM organization_memberships WHERE organization_id = $1 AND user_id = $2 AND status = 'ACTIVE'",
        &[&org, &user.id],
    )
    .await
        == 1
}

#[tokio::test]
async fn an_invitation_becomes_a_membership_only_when_accepted() {
    let (app, owner, org) = TestApp::with_org("Consent Inc").await;
    let invitee = app.user(&email("invitee")).await;
    let id = app.invite(&owner, org, &invitee.email.to_uppercase(), "ADMIN").await;
    assert!(!is_member(&app, org, &invitee).await, "an invitation is not a membership");

    let (s, mine) = app.get(&invitee, "/api/invitations").await;
    assert_eq!(s, 200, "{mine}");
    assert_eq!(pending_ids(&mine), [id.to_string()]);
    assert_eq!(mine["data"][0]["organizationName"], "Consent Inc");
    assert_eq!(mine["data"][0]["role"], "ADMIN");
    let (s, listed) = app.get(&owner, &format!("/api/organizations/{org}/invitations")).await;
    assert_eq!(s, 200, "{listed}");
    assert_eq!(pending_ids(&listed), [id.to_string()]);
    assert_eq!(listed["data"][0]["invitedBy"], owner.id.to_string());
    assert_eq!(listed["data"][0]["email"], invitee.email.to_lowercase());

    let joined = app.accept(&invitee, id).await;
    assert_eq!((&joined["id"], &joined["role"]), (&json!(org.to_string()), &json!("ADMIN")));
    assert!(is_member(&app, org, &invitee).await);
    let (_, me) = app.get(&invitee, "/api/me").await;
    assert_eq!(me["currentOrganizationId"], org.to_string(), "the first organization becomes the current one");
    assert_eq!(app.get(&invitee, &format!("/api/organizations/{org}/knowledge")).await.0, 200);
    assert!(pending_ids(&app.get(&invitee, "/api/invitations").await.1).is_empty());
    assert!(pending_ids(&app.get(&owner, &format!("/api/organizations/{org}/invitations")).await.1).is_empty());
    let (s, b) = app.post(&invitee, &format!("/api/invitations/{id}/accept"), json!({})).await;
    assert_error(s, &b, 404, "NOT_FOUND");
}

#[tokio::test]
async fn only_the_addressee_sees_accepts_or_declines() {
    let (app, owner, org) = TestApp::with_org("Addressed").await;
    let invitee = app.user(&email("invitee")).await;
    let stranger = app.user(&email("stranger")).await;
    let id = app.invite(&owner, org, &invitee.email, "MEMBER").await;
    assert!(pending_ids(&app.get(&stranger, "/api/invitations").await.1).is_empty());
    for action in ["accept", "decline"] {
        let (s, b) = app.post(&stranger, &format!("/api/invitations/{id}/{action}"), json!({})).await;
        assert_error(s, &b, 404, "NOT_FOUND");
    }
    let unknown = Uuid::new_v4();
    let (s, b) = app.post(&stranger, &format!("/api/invitations/{unknown}/accept"), json!({})).await;
    assert_error(s, &b, 404, "NOT_FOUND");
    assert!(!is_member(&app, org, &stranger).await);
    // A member of the organization who is not an admin does not see its invitations.
    let viewer = app.member(org, "VIEWER").await;
    let (s, b) = app.get(&viewer, &format!("/api/organizations/{org}/invitations")).await;
    assert_error(s, &b, 403, "ADMIN_REQUIRED");
}

#[tokio::test]
async fn declined_and_revoked_invitations_cannot_be_accepted() {
    let (app, owner, org) = TestApp::with_org("No Thanks").await;
    let admin = app.member(org, "ADMIN").await;
    let a = app.user(&email("decliner")).await;
    let b = app.user(&email("revoked")).await;

    let id = app.invite(&admin, org, &a.email, "MEMBER").await;
    let (s, body) = app.post(&a, &format!("/api/invitations/{id}/decline"), json!({})).await;
    assert_eq!(s, 204, "{body}");
    assert!(pending_ids(&app.get(&a, "/api/invitations").await.1).is_empty());
    let (s, body) = app.post(&a, &format!("/api/invitations/{id}/accept"), json!({})).await;
    assert_error(s, &body, 404, "NOT_FOUND");

    let id = app.invite(&admin, org, &b.email, "VIEWER").await;
    let (s, _) = app.delete(&admin, &format!("/api/organizations/{org}/invitations/{id}")).await;
    assert_eq!(s, 204);
    let (s, body) = app.delete(&admin, &format!("/api/organizations/{org}/invitations/{id}")).await;
    assert_error(s, &body, 404, "NOT_FOUND");
    let (s, body) = app.post(&b, &format!("/api/invitations/{id}/accept"), json!({})).await;
    assert_error(s, &body, 404, "NOT_FOUND");
    assert!(!is_member(&app, org, &a).await && !is_member(&app, org, &b).await);

    // An OWNER invitation is revoked by an OWNER only.
    let id = app.invite(&owner, org, &b.email, "OWNER").await;
    let (s, body) = app.delete(&admin, &format!("/api/organizations/{org}/invitations/{id}")).await;
    assert_error(s, &body, 403, "OWNER_REQUIRED");
    assert_eq!(app.delete(&owner, &format!("/api/organizations/{org}/invitations/{id}")).await.0, 204);
}

#[tokio::test]
async fn an_expired_invitation_is_neither_listed_nor_accepted_and_inviting_again_renews_it() {
    let (app, owner, org) = TestApp::with_org("Expiry").await;
    let invitee = app.user(&email("late")).await;
    let id = app.invite(&owner, org, &invitee.email, "MEMBER").await;
    app.owner
        .execute(
            "UPDATE organization_invitations SET created_at = now() - interval '9 days',
                    expires_at = now() - interval '1 second' WHERE id = $1",
            &[&id],
        )
        .await
        .expect("age the invitation");
    assert!(pending_ids(&app.get(&invitee, "/api/invitations").await.1).is_empty());
    assert!(pending_ids(&app.get(&owner, &format!("/api/organizations/{org}/invitations")).await.1).is_empty());
    let (s, b) = app.post(&invitee, &format!("/api/invitations/{id}/accept"), json!({})).await;
    assert_error(s, &b, 410, "INVITATION_EXPIRED");
    assert!(!is_member(&app, org, &invitee).await);

    let again = app.invite(&owner, org, &invitee.email, "VIEWER").await;
    assert_eq!(again, id, "the pending invitation is renewed, not duplicated");
    let joined = app.accept(&invitee, again).await;
    assert_eq!(joined["role"], "VIEWER");
}

/// Everything of an invitation answer that may differ between two invitations of different addresses.
fn shape(mut body: Value) -> Value {
    for field in ["id", "email", "createdAt", "expiresAt"] {
        assert!(body[field].is_string(), "{field} missing: {body}");
        body[field] = json!("*");
    }
    body
}

#[tokio::test]
async fn known_and_unknown_addresses_get_the_same_answer_and_no_user_id() {
    let (app, owner, org) = TestApp::with_org("No Oracle").await;
    let existing = app.user(&email("exists")).await;
    let invitations = format!("/api/organizations/{org}/invitations");
    let (s1, known) = app.post(&owner, &invitations, json!({"email": existing.email, "role": "MEMBER"})).await;
    let (s2, unknown) = app.post(&owner, &invitations, json!({"email": email("nobody"), "role": "MEMBER"})).await;
    assert_eq!((s1, s2), (201, 201), "{known} {unknown}");
    assert!(!known.to_string().contains(&existing.id.to_string()), "the invitee's id is not revealed: {known}");
    assert_eq!(shape(known), shape(unknown));

    // The old by-id body is refused before anything is looked up: the same answer for a real and a made-up id.
    let (s1, real) = app.post(&owner, &invitations, json!({"userId": existing.id})).await;
    let (s2, made_up) = app.post(&owner, &invitations, json!({"userId": Uuid::new_v4()})).await;
    assert_eq!((s1, s2), (400, 400));
    assert_eq!(
        (&real["code"], &real["message"], &real["field"]),
        (&made_up["code"], &made_up["message"], &made_up["field"])
    );
    let (s, gone) =
        app.post(&owner, &format!("/api/organizations/{org}/members"), json!({"userId": existing.id})).await;
    assert_eq!(s, 405, "members are not added any more: {gone}");
}

#[tokio::test]
async fn someone_invited_before_signing_up_claims_the_invitation_after() {
    let (app, owner, org) =
        TestApp::with_org_using(|a| a.auth_auto_provision = Some("true".into()), "Before Sign-up").await;
    let address = email("future");
    let id = app.invite(&owner, org, &address, "MEMBER").await;

    // Sign up with the auth service (the emulator confirms the address at once, as autoconfirm projects do).
    let response = app
        .http
        .post(format!("{}/auth/v1/signup", app.emulator.base_url()))
        .header("apikey", app.emulator.anon_key())
        .json(&json!({"email": address, "password": "a-Strong-password-1"}))
        .send()
        .await
        .expect("signup");
    assert!(response.status().is_success(), "signup: {}", response.status());
    let session: Value = response.json().await.expect("session");
    let token = session["access_token"].as_str().expect("access token").to_owned();
    let user_id: Uuid = session["user"]["id"].as_str().and_then(|s| s.parse().ok()).expect("user id");
    let newcomer = TestUser { id: user_id, email: address, token };

    let (s, mine) = app.get(&newcomer, "/api/invitations").await;
    assert_eq!(s, 200, "{mine}");
    assert_eq!(pending_ids(&mine), [id.to_string()]);
    app.accept(&newcomer, id).await;
    assert_eq!(app.get(&newcomer, &format!("/api/organizations/{org}")).await.0, 200);
}

#[tokio::test]
async fn an_accept_racing_a_revoke_has_exactly_one_winner() {
    let (app, owner, org) = TestApp::with_org("Race Invites").await;
    for _ in 0..6 {
        let invitee = app.user(&email("racer")).await;
        let id = app.invite(&owner, org, &invitee.email, "MEMBER").await;
        let (accept_path, revoke_path) =
            (format!("/api/invitations/{id}/accept"), format!("/api/organizations/{org}/invitations/{id}"));
        let accept = app.post(&invitee, &accept_path, json!({}));
        let revoke = app.delete(&owner, &revoke_path);
        let ((sa, ba), (sr, br)) = tokio::join!(accept, revoke);
        match (sa, sr) {
            (200, 404) => assert!(is_member(&app, org, &invitee).await),
            (404, 204) => assert!(!is_member(&app, org, &invitee).await),
            other => panic!("both or neither won: {other:?} {ba} {br}"),
        }
    }
}

#[tokio::test]
async fn quotas_refuse_with_clear_codes() {
    let (app, owner, org) =
        TestApp::with_org_using(settings!(org_max_per_user = "2", org_max_pending_invitations = "2"), "Quota One")
            .await;
    app.org(&owner, "Quota Two").await;
    let (s, b) = app.post(&owner, "/api/organizations", json!({"name": "Quota Three"})).await;
    assert_error(s, &b, 409, "ORG_QUOTA_EXCEEDED");

    let first = email("q1");
    let id = app.invite(&owner, org, &first, "MEMBER").await;
    app.invite(&owner, org, &email("q2"), "MEMBER").await;
    let invitations = format!("/api/organizations/{org}/invitations");
    let (s, b) = app.post(&owner, &invitations, json!({"email": email("q3")})).await;
    assert_error(s, &b, 409, "INVITATION_QUOTA_EXCEEDED");
    // Renewing a pending invitation is not a new one.
    assert_eq!(app.invite(&owner, org, &first, "VIEWER").await, id);
    assert_eq!(app.delete(&owner, &format!("{invitations}/{id}")).await.0, 204);
    app.invite(&owner, org, &email("q3"), "MEMBER").await;
}

#[tokio::test]
async fn a_removed_members_polling_does_not_lock_their_account() {
    let app = TestApp::with_auto_lock().await;
    let (owner, org) = app.owned_org("Hostile Owner").await;
    let victim = app.user(&email("victim")).await;
    app.join(&owner, org, &victim, "MEMBER").await;
    let path = format!("/api/organizations/{org}/knowledge");
    assert_eq!(app.get(&victim, &path).await.0, 200);
    assert_eq!(app.delete(&owner, &format!("/api/organizations/{org}/members/{}", victim.id)).await.0, 204);
    for _ in 0..6 {
        let (s, b) = app.get(&victim, &path).await;
        assert_error(s, &b, 403, "NOT_ORG_MEMBER");
    }
    app.state.audit.flush().await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    app.state.audit.flush().await;
    let (s, b) = app.get(&victim, "/api/me").await;
    assert_eq!(s, 200, "the victim was locked out: {b}");
    let marked: i64 = scalar(
        &app.owner,
        "SELECT count(*) FROM audit_log WHERE user_id = $1 AND metadata->'security'->>'event' = 'cross_tenant_attempt'",
        &[&victim.id],
    )
    .await;
    assert_eq!(marked, 0, "a former member's requests are not cross-tenant attempts");
    let refused: i64 = scalar(
        &app.owner,
        "SELECT count(*) FROM audit_log WHERE user_id = $1 AND status = 403 AND organization_id = $2",
        &[&victim.id, &org],
    )
    .await;
    assert_eq!(refused, 6, "the refusals are on the organization's audit trail");
    let active: bool = scalar(&app.owner, "SELECT is_active FROM users WHERE id = $1", &[&victim.id]).await;
    assert!(active);
}
