//! The `users` row of a Supabase user, through the real server and the emulator: provisioned on the first
//! request of a confirmed user (once, however many requests race), refused while unconfirmed or anonymous
//! (unless allowed), and an address that moves to the next confirmed sign-up when its holder was deleted in
//! Supabase, while the old row keeps its id, memberships and audit history.

use std::net::SocketAddr;
use std::time::Duration;

use gotrue_emulator::{Emulator, EmulatorConfig, SignupSettings};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::helpers::{TestApp, TestUser, assert_error, email, fresh_database, scalar};

/// The `email` that `GET /api/me` shows `user`, which must be answered 200 (`what` names the case).
async fn me_email(app: &TestApp, user: &TestUser, what: &str) -> Value {
    let (s, b) = app.get(user, "/api/me").await;
    assert_eq!(s, 200, "{what}: {b}");
    b["email"].clone()
}

const PASSWORD: &str = "password123";
const MODES: [&str; 2] = ["remote", "local"];

/// A server in `mode` against an emulator with the given sign-up settings.
async fn app_with(signup: SignupSettings, customize: impl FnOnce(&mut intellifill::ServeArgs)) -> TestApp {
    let emulator =
        Emulator::start(EmulatorConfig { signup, ..EmulatorConfig::default() }, SocketAddr::from(([127, 0, 0, 1], 0)))
            .await
            .expect("emulator");
    TestApp::spawn_on(fresh_database().await, emulator, customize).await
}

fn in_mode(mode: &'static str) -> impl FnOnce(&mut intellifill::ServeArgs) {
    move |a| a.auth_verify_mode = Some(mode.into())
}

async fn rows_of(app: &TestApp, id: Uuid) -> i64 {
    scalar(&app.owner, "SELECT count(*) FROM users WHERE id = $1", &[&id]).await
}

/// Audit rows written for `user_id` with `action`.
async fn audited(app: &TestApp, user_id: Uuid, action: &str) -> i64 {
    scalar(&app.owner, "SELECT count(*) FROM audit_log WHERE user_id = $1 AND action = $2", &[&user_id, &action]).await
}

/// The token's `iat` is in whole seconds: wait for the next second, so a later token is a newer claim.
async fn next_second() {
    tokio::time::sleep(Duration::from_millis(1100)).await;
}

async fn signed_in(app: &TestApp, address: &str) -> TestUser {
    let session = app.emulator.sign_in(address, PASSWORD).expect("sign in");
    TestUser { id: session.user.id, email: address.to_owned(), token: session.access_token }
}

#[tokio::test]
async fn a_user_who_signs_up_and_confirms_is_provisioned_on_the_first_request() {
    // Email confirmation on (autoconfirm off), as a production Supabase project.
    let signup = SignupSettings { autoconfirm: false, anonymous: false };
    for mode in MODES {
        let app = app_with(signup, in_mode(mode)).await;
        let address = email("signup");
        let auth = format!("{}/auth/v1", app.emulator.base_url());
        let (s, user) = app
            .send(
                app.http
                    .post(format!("{auth}/signup"))
                    .header("apikey", app.emulator.anon_key())
                    .json(&json!({ "email": address, "password": PASSWORD })),
            )
            .await;
        assert_eq!(s, 200, "{user}");
        assert!(user.get("access_token").is_none(), "no session before the address is confirmed: {user}");
        let id: Uuid = user["id"].as_str().and_then(|s| s.parse().ok()).expect("user id");
        assert!(app.emulator.sign_in(&address, PASSWORD).is_err(), "the password grant needs a confirmed address");

        app.emulator.confirm_email(id).expect("confirm");
        let u = signed_in(&app, &address).await;
        assert_eq!(u.id, id);
        assert_eq!(rows_of(&app, id).await, 0, "{mode}: no operator step happened");
        let (s, b) = app.get(&u, "/api/me").await;
        assert_eq!(s, 200, "{mode}: {b}");
        assert_eq!(b["id"], id.to_string());
        assert_eq!(b["email"], address.as_str());
        assert_eq!(b["role"], "USER");
        let stored: Option<String> = scalar(&app.owner, "SELECT email FROM users WHERE id = $1", &[&id]).await;
        assert_eq!(stored.as_deref(), Some(address.as_str()));
        assert_eq!(audited(&app, id, "user.provisioned").await, 1);
        // The new user works like any other: it can create an organization at once.
        app.org(&u, "Fresh Co").await;
    }
}

#[tokio::test]
async fn an_unconfirmed_user_is_refused_with_a_clear_code_until_the_address_is_confirmed() {
    let app = TestApp::spawn().await;
    let address = email("unconfirmed");
    // A session for an unconfirmed address: what an OAuth sign-in hands out when the project allows
    // unverified e-mail sign-ins.
    let user = app.emulator.create_unconfirmed_user(&address, PASSWORD).expect("user");
    let session = app.emulator.start_session(user.id).expect("session");
    let u = TestUser { id: user.id, email: address.clone(), token: session.access_token };
    for _ in 0..2 {
        let (s, b) = app.get(&u, "/api/me").await;
        assert_error(s, &b, 403, "EMAIL_NOT_CONFIRMED");
    }
    assert_eq!(rows_of(&app, u.id).await, 0);

    // Confirmed: the very next request gets in (the refusal was not kept in the token cache).
    app.emulator.confirm_email(u.id).expect("confirm");
    assert_eq!(me_email(&app, &u, "confirmed").await, address.as_str());
}

#[tokio::test]
async fn an_unconfirmed_claim_never_takes_an_address_from_its_row() {
    let app = TestApp::spawn().await;
    let address = email("held");
    let holder = app.auth_only_user(&address).await;
    assert_eq!(app.get(&holder, "/api/me").await.0, 200);
    // The holder leaves Supabase; someone registers the address without confirming it (they do not own the
    // inbox) and gets a session anyway.
    app.emulator.delete_user(holder.id).expect("delete");
    next_second().await;
    let squatter = app.emulator.create_unconfirmed_user(&address, PASSWORD).expect("user");
    let session = app.emulator.start_session(squatter.id).expect("session");
    let squatter = TestUser { id: squatter.id, email: address.clone(), token: session.access_token };
    let (s, b) = app.get(&squatter, "/api/me").await;
    assert_error(s, &b, 403, "EMAIL_NOT_CONFIRMED");
    let kept: Option<String> = scalar(&app.owner, "SELECT email FROM users WHERE id = $1", &[&holder.id]).await;
    assert_eq!(kept.as_deref(), Some(address.as_str()), "an unconfirmed claim moved the address");
    assert_eq!(rows_of(&app, squatter.id).await, 0);
}

#[tokio::test]
async fn anonymous_users_are_refused_unless_allowed() {
    let signup = SignupSettings { autoconfirm: true, anonymous: true };
    for mode in MODES {
        let app = app_with(signup, in_mode(mode)).await;
        let session = app.emulator.sign_in_anonymously().expect("anonymous sign-in");
        let anon = TestUser { id: session.user.id, email: String::new(), token: session.access_token };
        let (s, b) = app.get(&anon, "/api/me").await;
        assert_error(s, &b, 403, "ANONYMOUS_NOT_ALLOWED");
        assert_eq!(rows_of(&app, anon.id).await, 0, "{mode}: a refused anonymous user got a row");

        let allowing = app.peer(settings!(auth_verify_mode = mode, auth_allow_anonymous = "true")).await;
        assert_eq!(me_email(&allowing, &anon, mode).await, Value::Null);
        let stored: Option<String> = scalar(&app.owner, "SELECT email FROM users WHERE id = $1", &[&anon.id]).await;
        assert_eq!(stored, None);
        // Two anonymous users: no e-mail is not a shared e-mail.
        let second = app.emulator.sign_in_anonymously().expect("anonymous sign-in");
        let second = TestUser { id: second.user.id, email: String::new(), token: second.access_token };
        assert_eq!(allowing.get(&second, "/api/me").await.0, 200);

        // An instance that does not allow them refuses the user even now that it has a row.
        let (s, b) = app.get(&anon, "/api/me").await;
        assert_error(s, &b, 403, "ANONYMOUS_NOT_ALLOWED");
    }
}

#[tokio::test]
async fn concurrent_first_requests_of_a_new_user_provision_it_once() {
    let app = TestApp::spawn().await;
    let peer = app.peer(|_| {}).await;
    for round in 0..3 {
        let u = app.auth_only_user(&email(&format!("rush{round}"))).await;
        let requests = (0..16).map(|i| {
            let target = if i % 2 == 0 { &app } else { &peer };
            let request = target.http.get(target.url("/api/me")).bearer_auth(&u.token);
            async move { request.send().await.map(|r| r.status().as_u16()) }
        });
        let statuses: Vec<u16> =
            futures::future::join_all(requests).await.into_iter().map(|r| r.expect("response")).collect();
        assert!(statuses.iter().all(|s| *s == 200), "round {round}: {statuses:?}");
        assert_eq!(rows_of(&app, u.id).await, 1);
        assert_eq!(audited(&app, u.id, "user.provisioned").await, 1, "round {round}: provisioned more than once");
    }
}

#[tokio::test]
async fn a_user_deleted_in_supabase_frees_the_address_for_the_next_sign_up() {
    for mode in MODES {
        let app = TestApp::spawn_with(in_mode(mode)).await;
        let address = email("reused");
        let old = app.auth_only_user(&address).await;
        let org = app.org(&old, "Old Co").await;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        let history = loop {
            let n: i64 = scalar(
                &app.owner,
                "SELECT count(*) FROM audit_log WHERE user_id = $1 AND action = 'organizations.create'",
                &[&old.id],
            )
            .await;
            if n > 0 || tokio::time::Instant::now() > deadline {
                break n;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        assert!(history > 0, "{mode}: the old user's requests were not audited");
        let old_rows: i64 = scalar(&app.owner, "SELECT count(*) FROM audit_log WHERE user_id = $1", &[&old.id]).await;

        app.emulator.delete_user(old.id).expect("delete");
        next_second().await;
        let new = app.auth_only_user(&address).await;
        assert_ne!(new.id, old.id);
        let (s, b) = app.get(&new, "/api/me").await;
        assert_eq!(s, 200, "{mode}: the new user is locked out: {b}");
        assert_eq!(b["email"], address.as_str());
        assert_eq!(b["organizations"], json!([]), "{mode}: the new user inherited the old one's memberships");
        let (s, b) = app.get(&new, &format!("/api/organizations/{org}")).await;
        assert_error(s, &b, 403, "NOT_ORG_MEMBER");

        // The old row: kept by id, address gone, still active (nothing says the old user cannot come back with
        // another address), its OWNER membership and audit history untouched and still its own.
        let row = app
            .owner
            .query_one("SELECT email, email_released_at IS NOT NULL, is_active FROM users WHERE id = $1", &[&old.id])
            .await
            .expect("old row");
        assert_eq!(row.get::<_, Option<String>>(0), None, "{mode}");
        assert!(row.get::<_, bool>(1));
        assert!(row.get::<_, bool>(2));
        let role: String = scalar(
            &app.owner,
            "SELECT role FROM organization_memberships WHERE user_id = $1 AND organization_id = $2",
            &[&old.id, &org],
        )
        .await;
        assert_eq!(role, "OWNER");
        let still: i64 = scalar(&app.owner, "SELECT count(*) FROM audit_log WHERE user_id = $1", &[&old.id]).await;
        assert!(still >= old_rows, "{mode}: audit rows of the old user were lost ({old_rows} -> {still})");
        let released: i64 = scalar(
            &app.owner,
            "SELECT count(*) FROM audit_log WHERE action = 'user.email_released' AND user_id = $1 AND entity_id = $2",
            &[&new.id, &old.id.to_string()],
        )
        .await;
        assert_eq!(released, 1, "{mode}: the release is not audited");

        // The old user's unexpired token passes as long as this mode trusts it (local: until `exp`; remote:
        // until its cached verification is re-checked), but its claim is older than the new user's and does
        // not take the address back.
        let (s, b) = app.get(&old, "/api/me").await;
        assert!(s == 401 || (s == 200 && b["email"].is_null()), "{mode}: {s} {b}");
        let holder: Uuid = scalar(&app.owner, "SELECT id FROM users WHERE lower(email) = lower($1)", &[&address]).await;
        assert_eq!(holder, new.id);
    }
}

#[tokio::test]
async fn an_address_follows_its_user_and_a_stale_token_does_not_take_it_back() {
    for mode in MODES {
        let app = TestApp::spawn_with(in_mode(mode)).await;
        let first = email("first");
        let second = email("second");
        let old = app.auth_only_user(&first).await;
        assert_eq!(app.get(&old, "/api/me").await.0, 200);

        // The user moves to another address in Supabase; someone else signs up with the first one.
        let moved = app
            .http
            .put(format!("{}/auth/v1/admin/users/{}", app.emulator.base_url(), old.id))
            .header("apikey", app.emulator.service_role_key())
            .bearer_auth(app.emulator.service_role_key())
            .json(&json!({ "email": second, "email_confirm": true }))
            .send()
            .await
            .expect("admin update");
        assert_eq!(moved.status().as_u16(), 200);
        next_second().await;
        let newcomer = app.auth_only_user(&first).await;
        assert_eq!(me_email(&app, &newcomer, mode).await, first.as_str());

        // The user's token from before the move still says the first address: it passes, and changes nothing.
        assert_eq!(me_email(&app, &old, mode).await, Value::Null, "{mode}: a stale token took the address back");
        let holder: Uuid = scalar(&app.owner, "SELECT id FROM users WHERE lower(email) = lower($1)", &[&first]).await;
        assert_eq!(holder, newcomer.id);

        // A fresh sign-in carries the new address: the row follows.
        let fresh = signed_in(&app, &second).await;
        assert_eq!(fresh.id, old.id);
        assert_eq!(me_email(&app, &fresh, mode).await, second.as_str());
    }
}

#[tokio::test]
async fn the_claim_function_needs_a_user_context_and_moves_an_address_only_to_a_newer_claim() {
    let app = TestApp::spawn().await;
    let holder = app.auth_only_user(&email("holder")).await;
    assert_eq!(app.get(&holder, "/api/me").await.0, 200);
    let mut db = app.runtime_client().await;
    use tokio_postgres::error::SqlState;

    let me = Uuid::new_v4();
    // Without a user context the function refuses.
    let err = db.query("SELECT * FROM claim_current_user('x@example.test', now())", &[]).await.expect_err("no context");
    assert_eq!(err.code(), Some(&SqlState::INSUFFICIENT_PRIVILEGE));

    // A claim no newer than the holder's own moves nothing: the row is created without the address.
    let tx = db.transaction().await.expect("tx");
    tx.execute("SELECT set_user_context($1)", &[&me]).await.expect("context");
    let row = tx
        .query_one("SELECT r_id, r_email FROM claim_current_user($1, to_timestamp(0))", &[&holder.email])
        .await
        .expect("claim");
    assert_eq!(row.get::<_, Uuid>(0), me);
    assert_eq!(row.get::<_, Option<String>>(1), None);
    tx.rollback().await.expect("rollback");
    let kept: Option<String> = scalar(&app.owner, "SELECT email FROM users WHERE id = $1", &[&holder.id]).await;
    assert_eq!(kept.as_deref(), Some(holder.email.as_str()));
}
