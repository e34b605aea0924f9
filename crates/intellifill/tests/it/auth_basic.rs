//! Bearer tokens verified by the auth service; provisioning and deactivation checked on every request.

use std::time::Duration;

use crate::helpers::{TestApp, assert_error, email};

#[tokio::test]
async fn missing_and_malformed_tokens_are_rejected_without_calling_the_auth_service() {
    let app = TestApp::spawn().await;
    let before = app.emulator.stats().user;
    let (s, b) = app.send(app.http.get(app.url("/api/me"))).await;
    assert_error(s, &b, 401, "TOKEN_MISSING");
    for value in [
        "Bearer",
        "Basic abc",
        "Bearer short",
        "Bearer aaaaaaaaaaaaaaaaaaaaaaaa",
        "Bearer a.b.c.d.eeeeeeeeeeeeeeeeeeee",
    ] {
        let (s, b) = app.send(app.http.get(app.url("/api/me")).header("authorization", value)).await;
        assert_eq!(s, 401, "{value}: {b}");
        assert!(matches!(b["code"].as_str(), Some("TOKEN_MALFORMED" | "TOKEN_MISSING")), "{value}: {b}");
    }
    assert_eq!(app.emulator.stats().user, before, "shape checks must not reach the auth service");
}

#[tokio::test]
async fn tokens_the_auth_service_rejects_map_to_clear_codes() {
    // No positive caching: every request asks the auth service, so its verdicts show at once.
    let (app, u) = TestApp::with_user_using(|a| a.token_cache_ttl_seconds = Some("0".into())).await;
    let (s, _) = app.get(&u, "/api/me").await;
    assert_eq!(s, 200);

    let garbage =
        crate::helpers::TestUser { token: "eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJl".into(), ..u.clone() };
    let (s, b) = app.get(&garbage, "/api/me").await;
    assert_error(s, &b, 401, "TOKEN_INVALID");

    let banned = app.user(&email("banned")).await;
    app.emulator.ban_user(banned.id, Some(Duration::from_secs(3600))).expect("ban");
    let (s, b) = app.get(&banned, "/api/me").await;
    assert_eq!(s, 401, "{b}");
    assert!(matches!(b["code"].as_str(), Some("USER_BANNED" | "SESSION_REVOKED")), "{b}");

    // Log out at the auth service: the token's session is gone.
    let out = app
        .http
        .post(format!("{}/auth/v1/logout?scope=global", app.emulator.base_url()))
        .header("apikey", app.emulator.anon_key())
        .bearer_auth(&u.token)
        .send()
        .await
        .expect("logout");
    assert_eq!(out.status().as_u16(), 204);
    let (s, b) = app.get(&u, "/api/me").await;
    assert_error(s, &b, 401, "SESSION_REVOKED");
}

#[tokio::test]
async fn users_are_provisioned_on_first_sight_unless_auto_provisioning_is_off() {
    let app = TestApp::spawn().await;
    let fresh = app.auth_only_user(&email("fresh")).await;
    let (s, b) = app.get(&fresh, "/api/me").await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(b["email"], fresh.email.as_str());
    assert_eq!(b["role"], "USER");
    let rows = app.owner.query("SELECT 1 FROM users WHERE id = $1", &[&fresh.id]).await.expect("select");
    assert_eq!(rows.len(), 1);

    let app = TestApp::spawn_with(|a| a.auth_auto_provision = Some("false".into())).await;
    let ghost = app.auth_only_user(&email("ghost")).await;
    let (s, b) = app.get(&ghost, "/api/me").await;
    assert_error(s, &b, 401, "USER_NOT_PROVISIONED");
    let rows = app.owner.query("SELECT 1 FROM users WHERE id = $1", &[&ghost.id]).await.expect("select");
    assert!(rows.is_empty());
}

#[tokio::test]
async fn a_deactivated_user_is_locked_out_on_the_next_request() {
    let (app, u) = TestApp::with_user().await;
    assert_eq!(app.get(&u, "/api/me").await.0, 200);
    app.owner.execute("UPDATE users SET is_active = false WHERE id = $1", &[&u.id]).await.expect("deactivate");
    let (s, b) = app.get(&u, "/api/me").await;
    assert_error(s, &b, 403, "ACCOUNT_DEACTIVATED");
}

#[tokio::test]
async fn an_auth_service_outage_is_a_503_never_a_401() {
    let (app, u) = TestApp::with_user().await;
    app.emulator.faults().set_error_rate(1.0, 503);
    let response = app.http.get(app.url("/api/me")).bearer_auth(&u.token).send().await.expect("request");
    assert_eq!(response.status().as_u16(), 503);
    assert!(response.headers().get("retry-after").is_some());
    let body: serde_json::Value = response.json().await.expect("json");
    assert_eq!(body["code"], "AUTH_SERVICE_UNAVAILABLE");

    app.emulator.faults().clear();
    app.emulator.faults().refuse_connections(None);
    let (s, b) = app.get(&u, "/api/me").await;
    assert_error(s, &b, 503, "AUTH_SERVICE_UNAVAILABLE");
    app.emulator.faults().clear();
}
