//! Sessions ended elsewhere than through this server (a sign-out straight to the auth service, an admin ban or
//! delete, a password change): refused on every instance within the revalidation interval, with no request
//! waiting for the auth service meanwhile. Instances share Redis; `c` verifies locally.

use std::time::{Duration, Instant};

use intellifill::testing::Entry;
use intellifill::testing::TokenHash;
use serde_json::json;

use crate::helpers::{TestApp, TestUser, email};

/// `AUTH_REVALIDATE_SECONDS` in these tests.
const REVALIDATE: Duration = Duration::from_secs(2);

const MODES: [&str; 3] = ["a (remote)", "b (remote)", "c (local)"];

fn settings(args: &mut intellifill::ServeArgs) {
    args.auth_revalidate_seconds = Some(REVALIDATE.as_secs().to_string());
    // Polled every 10 ms below: not a client to limit.
    args.rate_limit_user_per_minute = Some("0".into());
}

async fn three() -> (TestApp, TestApp, TestApp) {
    let a = TestApp::spawn_with(settings).await;
    let b = a.peer(settings).await;
    let c = a
        .peer(|args| {
            settings(args);
            args.auth_verify_mode = Some("local".into());
        })
        .await;
    (a, b, c)
}

/// How a session can end without this server being told, as a client of the auth service does it.
#[derive(Debug, Clone, Copy)]
enum Ending {
    /// supabase-js `signOut({ scope: 'local' })` straight to the auth service.
    SignOut,
    /// `admin.updateUserById(id, { ban_duration })`.
    Ban,
    /// `admin.deleteUser(id)`.
    Delete,
    /// `updateUser({ password })` from another session of the user: every other session ends.
    PasswordChange,
}

impl Ending {
    /// The refusal the server answers with once it knows.
    fn code(self) -> &'static str {
        match self {
            Ending::SignOut | Ending::PasswordChange => "SESSION_REVOKED",
            Ending::Ban => "USER_BANNED",
            Ending::Delete => "TOKEN_INVALID",
        }
    }

    async fn end(self, app: &TestApp, user: &TestUser, other_session: &TestUser) {
        let auth = format!("{}/auth/v1", app.emulator.base_url());
        let anon = app.emulator.anon_key();
        let service = app.emulator.service_role_key();
        let request = match self {
            Ending::SignOut => {
                app.http.post(format!("{auth}/logout?scope=local")).header("apikey", anon).bearer_auth(&user.token)
            }
            Ending::Ban => app
                .http
                .put(format!("{auth}/admin/users/{}", user.id))
                .header("apikey", service)
                .bearer_auth(service)
                .json(&json!({ "ban_duration": "24h" })),
            Ending::Delete => app
                .http
                .delete(format!("{auth}/admin/users/{}", user.id))
                .header("apikey", service)
                .bearer_auth(service),
            Ending::PasswordChange => app
                .http
                .put(format!("{auth}/user"))
                .header("apikey", anon)
                .bearer_auth(&other_session.token)
                .json(&json!({ "password": "an-entirely-new-one" })),
        };
        let response = request.send().await.expect("auth service");
        assert!(response.status().is_success(), "{self:?}: {}", response.status());
    }
}

async fn ended_elsewhere(ending: Ending) {
    let (a, b, c) = three().await;
    let u = a.user(&email("u")).await;
    let other = a.sign_in_again(&u);
    for app in [&a, &b, &c] {
        assert_eq!(app.get(&u, "/api/me").await.0, 200, "verified (and cached) everywhere first");
    }
    ending.end(&a, &u, &other).await;
    let ended = Instant::now();
    for (app, mode) in [&a, &b, &c].into_iter().zip(MODES) {
        app.refused_within(&u, ending.code(), REVALIDATE + Duration::from_secs(2)).await;
        eprintln!("revocation latency: {ending:?} at the auth service, {mode}: {:?}", ended.elapsed());
    }
    if let Ending::PasswordChange = ending {
        assert_eq!(a.get(&other, "/api/me").await.0, 200, "the session that changed the password stays");
    }
}

#[tokio::test]
async fn a_sign_out_straight_at_the_auth_service_is_refused_within_the_interval() {
    ended_elsewhere(Ending::SignOut).await;
}

#[tokio::test]
async fn an_admin_ban_is_refused_within_the_interval() {
    ended_elsewhere(Ending::Ban).await;
}

#[tokio::test]
async fn a_deleted_user_is_refused_within_the_interval() {
    ended_elsewhere(Ending::Delete).await;
}

#[tokio::test]
async fn a_password_change_elsewhere_is_refused_within_the_interval() {
    ended_elsewhere(Ending::PasswordChange).await;
}

#[tokio::test]
async fn a_stale_entry_is_served_from_the_cache_while_one_background_call_checks_it() {
    // A long call timeout: the held call below must not time out while the test looks.
    let slow = |args: &mut intellifill::ServeArgs| {
        settings(args);
        args.auth_http_timeout_ms = Some("20000".into());
    };
    let a = TestApp::spawn_with(slow).await;
    let c = a
        .peer(|args| {
            slow(args);
            args.auth_verify_mode = Some("local".into());
        })
        .await;
    let u = a.user(&email("u")).await;
    let other = a.sign_in_again(&u);
    for app in [&a, &c] {
        assert_eq!(app.get(&u, "/api/me").await.0, 200);
    }
    Ending::SignOut.end(&a, &u, &other).await;
    tokio::time::sleep(REVALIDATE + Duration::from_millis(100)).await;

    // The auth service now holds every /user call: a request that waited for one would never be answered.
    a.emulator.faults().only_paths(vec!["user".into()]);
    a.emulator.faults().set_hang(true);
    for app in [&a, &c] {
        let calls = a.emulator.stats().user;
        let hits = app.state.auth.cache().stats.l1_hits.load(std::sync::atomic::Ordering::Relaxed);
        for _ in 0..5 {
            let response =
                app.http.get(app.url("/api/me")).bearer_auth(&u.token).timeout(Duration::from_secs(5)).send();
            assert_eq!(response.await.expect("served without waiting for the auth service").status(), 200);
        }
        let served = app.state.auth.cache().stats.l1_hits.load(std::sync::atomic::Ordering::Relaxed) - hits;
        assert_eq!(served, 5, "every request was an L1 hit");
        assert_eq!(a.emulator.stats().user - calls, 1, "one background call for five stale hits");
    }

    // The held calls answer: the ended session is refused on both instances.
    a.emulator.faults().clear();
    for app in [&a, &c] {
        app.refused_within(&u, "SESSION_REVOKED", Duration::from_secs(1)).await;
    }
    let metrics = intellifill::testing::render_metrics(&a.state);
    assert!(metrics.contains(r#"auth_revalidations_total{result="rejected"}"#), "{metrics}");
    assert!(metrics.contains(r#"auth_upstream_revocations_total{kind="session"}"#), "{metrics}");
}

#[tokio::test]
async fn a_fresh_verification_is_shared_and_not_repeated_by_other_instances() {
    let (a, b, _c) = three().await;
    let u = a.user(&email("u")).await;
    assert_eq!(a.get(&u, "/api/me").await.0, 200);
    assert_eq!(b.get(&u, "/api/me").await.0, 200);
    tokio::time::sleep(REVALIDATE + Duration::from_millis(100)).await;
    let hash = TokenHash::of(&u.token);
    let verified_at = |entry: Option<Entry>| match entry {
        Some(Entry::Valid { cached_at, .. }) => cached_at,
        other => panic!("not a verified entry: {other:?}"),
    };
    let first = verified_at(a.state.auth.cache().get_l2(&hash).await);
    let calls = a.emulator.stats().user;
    assert_eq!(a.get(&u, "/api/me").await.0, 200, "stale: served, re-verified in the background");
    let deadline = Instant::now() + Duration::from_secs(2);
    while verified_at(a.state.auth.cache().get_l2(&hash).await) == first {
        assert!(Instant::now() < deadline, "the background verification never landed in L2");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // b's own entry is as old, but a's newer verification in Redis is taken instead of a second call.
    assert_eq!(b.get(&u, "/api/me").await.0, 200);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(a.emulator.stats().user - calls, 1, "one call for the fleet");
}

#[tokio::test]
async fn local_mode_keeps_serving_while_the_auth_service_is_unreachable() {
    let (a, _b, c) = three().await;
    let u = a.user(&email("u")).await;
    let other = a.sign_in_again(&u);
    assert_eq!(c.get(&u, "/api/me").await.0, 200);
    Ending::SignOut.end(&a, &u, &other).await;
    a.emulator.faults().refuse_connections(None);
    tokio::time::sleep(REVALIDATE + Duration::from_millis(100)).await;
    // The documented bound without the auth service: the token's exp. Never a 503 in local mode.
    for _ in 0..3 {
        let (s, body) = c.get(&u, "/api/me").await;
        assert_eq!(s, 200, "{body}");
    }
    // Once it answers again, the next background call finds the session gone.
    a.emulator.faults().clear();
    c.refused_within(&u, "SESSION_REVOKED", Duration::from_secs(3)).await;
}
