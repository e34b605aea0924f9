//! The verification pipeline: local JWT check, token cache (L1 + Redis), breaker, outage modes, logout.

use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use breaker::State;
use gotrue_emulator::{Emulator, EmulatorConfig, Signing};
use serde_json::{Value, json};

use crate::helpers::{TestApp, TestUser, assert_error, dead_redis_url, email, until_revoked};

pub(crate) fn with_token(user: &TestUser, token: String) -> TestUser {
    TestUser { token, ..user.clone() }
}

/// A token signed by the emulator's real key with tweaked claims / header.
pub(crate) fn minted(
    app: &TestApp,
    user: &TestUser,
    tweak: impl FnOnce(&mut Value, &mut jsonwebtoken::Header),
) -> String {
    let mut claims = unverified_claims(&user.token);
    let mut header = app.emulator.token_header();
    tweak(&mut claims, &mut header);
    app.emulator.mint_token(header, &claims)
}

pub(crate) fn unverified_claims(token: &str) -> Value {
    let payload = token.split('.').nth(1).expect("payload");
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).expect("base64")).expect("json")
}

fn b64(v: &Value) -> String {
    URL_SAFE_NO_PAD.encode(serde_json::to_vec(v).expect("json"))
}

pub(crate) fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

#[tokio::test]
async fn a_second_request_is_served_from_the_cache_and_peers_share_it_through_redis() {
    let (app, u) = TestApp::with_user().await;
    let before = app.emulator.stats().user;
    for _ in 0..5 {
        assert_eq!(app.get(&u, "/api/me").await.0, 200);
    }
    assert_eq!(app.emulator.stats().user - before, 1, "one upstream call, then cache hits");
    let stats = &app.state.auth.cache().stats;
    assert_eq!(stats.misses.load(std::sync::atomic::Ordering::Relaxed), 1);
    assert_eq!(stats.l1_hits.load(std::sync::atomic::Ordering::Relaxed), 4);
    assert!((stats.hit_rate() - 0.8).abs() < 1e-9);

    // Another instance finds the verification in the shared L2 cache: no upstream call either.
    let peer = app.peer(|_| {}).await;
    assert_eq!(peer.get(&u, "/api/me").await.0, 200);
    assert_eq!(app.emulator.stats().user - before, 1);
    assert_eq!(peer.state.auth.cache().stats.l2_hits.load(std::sync::atomic::Ordering::Relaxed), 1);
}

#[tokio::test]
async fn concurrent_misses_for_one_token_make_one_upstream_call() {
    let (app, u) = TestApp::with_user().await;
    app.emulator.faults().set_latency(Duration::from_millis(300));
    let before = app.emulator.stats().user;
    let requests = (0..20).map(|_| app.get(&u, "/api/me"));
    let results = futures::future::join_all(requests).await;
    app.emulator.faults().clear();
    assert!(results.iter().all(|(s, _)| *s == 200), "{results:?}");
    assert_eq!(app.emulator.stats().user - before, 1);
}

#[tokio::test]
async fn cache_entries_never_outlive_the_token() {
    let (app, u) = TestApp::with_user_using(|a| a.auth_jwt_leeway_seconds = Some("0".into())).await;
    let short = with_token(&u, minted(&app, &u, |c, _| c["exp"] = json!(now() + 2)));
    assert_eq!(app.get(&short, "/api/me").await.0, 200);
    let hash = intellifill::testing::TokenHash::of(&short.token);
    assert!(app.state.auth.cache().get_l1(&hash).is_some(), "cached while the token lives");
    tokio::time::sleep(Duration::from_millis(2_600)).await;
    assert!(app.state.auth.cache().get_l1(&hash).is_none(), "the L1 entry expired with the token");
    let before = app.emulator.stats().user;
    let (s, b) = app.get(&short, "/api/me").await;
    assert_error(s, &b, 401, "TOKEN_EXPIRED");
    assert_eq!(app.emulator.stats().user, before);
}

#[tokio::test]
async fn forged_and_broken_tokens_are_refused_locally_without_upstream_calls() {
    let (app, u) = TestApp::with_user().await;
    let claims = unverified_claims(&u.token);
    let real_header = app.emulator.token_header();
    let sig = u.token.rsplit('.').next().expect("signature").to_owned();
    let jwks_secret = serde_json::to_vec(&app.emulator.jwks()).expect("jwks");
    let hs256_with_public_key = jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(&jwks_secret),
    )
    .expect("hs256");
    let cases: Vec<(&str, String, &str)> = vec![
        (
            "alg none",
            format!("{}.{}.{}", b64(&json!({"alg": "none", "typ": "JWT"})), b64(&claims), sig),
            "TOKEN_INVALID",
        ),
        ("HS256 signed with the public key", hs256_with_public_key, "TOKEN_INVALID"),
        ("unknown kid", minted(&app, &u, |_, h| h.kid = Some("not-a-key".into())), "TOKEN_INVALID"),
        ("no kid", minted(&app, &u, |_, h| h.kid = None), "TOKEN_INVALID"),
        ("wrong audience", minted(&app, &u, |c, _| c["aud"] = json!("someone-else")), "TOKEN_INVALID"),
        ("wrong issuer", minted(&app, &u, |c, _| c["iss"] = json!("https://evil.example/auth/v1")), "TOKEN_INVALID"),
        ("expired", minted(&app, &u, |c, _| c["exp"] = json!(now() - 3600)), "TOKEN_EXPIRED"),
        (
            "payload swapped",
            {
                let mut parts: Vec<String> = u.token.split('.').map(str::to_owned).collect();
                let mut other = claims.clone();
                other["sub"] = json!(uuid::Uuid::new_v4());
                parts[1] = b64(&other);
                parts.join(".")
            },
            "TOKEN_INVALID",
        ),
        ("truncated signature", u.token[..u.token.len() - 10].to_owned(), "TOKEN_INVALID"),
        ("huge", format!("{}.{}.{}", b64(&json!(real_header)), "a".repeat(5000), sig), "TOKEN_MALFORMED"),
    ];
    let before = app.emulator.stats().user;
    let jwks_before = app.emulator.stats().jwks;
    let breaker_before = app.state.auth.breaker().stats().totals.fires;
    for (name, token, code) in cases {
        let (s, b) = app.get(&with_token(&u, token), "/api/me").await;
        assert_eq!(s, 401, "{name}: {b}");
        assert_eq!(b["code"], code, "{name}: {b}");
    }
    assert_eq!(app.emulator.stats().user, before, "no forged token reached the auth service");
    assert_eq!(app.state.auth.breaker().stats().totals.fires, breaker_before, "nor the breaker");
    assert!(app.emulator.stats().jwks - jwks_before <= 1, "unknown kids refetch the JWKS at most once per interval");
    // The genuine token still works.
    assert_eq!(app.get(&u, "/api/me").await.0, 200);
}

#[tokio::test]
async fn legacy_hs256_projects_verify_with_the_shared_secret() {
    let secret = "a-legacy-jwt-secret-of-at-least-32-chars";
    let config = EmulatorConfig { signing: Signing::Hs256 { secret: secret.into() }, ..EmulatorConfig::default() };
    let emulator = Emulator::start(config, ([127, 0, 0, 1], 0).into()).await.expect("emulator");
    let db = crate::helpers::fresh_database().await;
    let app = TestApp::spawn_on(db, emulator, |a| a.auth_jwt_secret = Some(secret.into())).await;
    let u = app.user(&email("u")).await;
    assert_eq!(app.get(&u, "/api/me").await.0, 200);
    // Same claims signed with another secret: refused locally.
    let forged = jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &unverified_claims(&u.token),
        &jsonwebtoken::EncodingKey::from_secret(b"another-secret-another-secret-xx"),
    )
    .expect("encode");
    let before = app.emulator.stats().user;
    let (s, b) = app.get(&with_token(&u, forged), "/api/me").await;
    assert_error(s, &b, 401, "TOKEN_INVALID");
    assert_eq!(app.emulator.stats().user, before);
}

#[tokio::test]
async fn client_errors_from_the_auth_service_never_open_the_breaker() {
    let app =
        TestApp::spawn_with(settings!(auth_breaker_volume_threshold = "3", token_cache_negative_ttl_seconds = "0"))
            .await;
    for i in 0..8 {
        let u = app.user(&email(&format!("banned{i}"))).await;
        app.emulator.ban_user(u.id, Some(Duration::from_secs(3600))).expect("ban");
        let (s, b) = app.get(&u, "/api/me").await;
        assert_error(s, &b, 401, "USER_BANNED");
    }
    let stats = app.state.auth.breaker().stats();
    assert_eq!(stats.state, State::Closed);
    assert_eq!(stats.totals.failures, 0);
    assert!(stats.totals.successes >= 8, "{stats:?}");
}

#[tokio::test]
async fn negative_results_are_cached_briefly() {
    let (app, u) = TestApp::with_user().await;
    app.emulator.ban_user(u.id, Some(Duration::from_secs(3600))).expect("ban");
    let before = app.emulator.stats().user;
    for _ in 0..3 {
        let (s, b) = app.get(&u, "/api/me").await;
        assert_error(s, &b, 401, "USER_BANNED");
    }
    assert_eq!(app.emulator.stats().user - before, 1);
}

#[tokio::test]
async fn an_outage_opens_the_breaker_and_cached_mode_keeps_known_users_in() {
    let app = TestApp::spawn_with(settings!(
        auth_http_timeout_ms = "300",
        auth_breaker_volume_threshold = "3",
        auth_breaker_reset_timeout_ms = "700",
        auth_outage_mode = "cached",
        token_cache_ttl_seconds = "1",
        auth_stale_max_seconds = "60"
    ))
    .await;
    let known = app.user(&email("known")).await;
    assert_eq!(app.get(&known, "/api/me").await.0, 200);
    let strangers = [app.user(&email("s1")).await, app.user(&email("s2")).await, app.user(&email("s3")).await];
    let late = app.user(&email("late")).await;

    app.emulator.faults().set_hang(true);
    for s in &strangers {
        let started = Instant::now();
        let (status, body) = app.get(s, "/api/me").await;
        assert_error(status, &body, 503, "AUTH_SERVICE_UNAVAILABLE");
        assert!(started.elapsed() < Duration::from_millis(1_500), "answered within the timeout");
    }
    assert_eq!(app.state.auth.breaker().state(), State::Open);

    // Open: refused at once, without calling the auth service.
    let calls = app.emulator.stats().user;
    let response = app.http.get(app.url("/api/me")).bearer_auth(&late.token).send().await.expect("request");
    assert_eq!(response.status().as_u16(), 503);
    assert!(response.headers().get("retry-after").is_some());
    assert_eq!(app.emulator.stats().user, calls);

    // The known user's entry is past its TTL but within the stale window: served.
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    assert_eq!(app.get(&known, "/api/me").await.0, 200);
    assert!(app.state.auth.cache().stats.stale_served.load(std::sync::atomic::Ordering::Relaxed) >= 1);

    // Recovery: after the reset timeout one trial goes through and closes the breaker.
    app.emulator.faults().clear();
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(app.get(&late, "/api/me").await.0, 200);
    assert_eq!(app.state.auth.breaker().state(), State::Closed);
}

#[tokio::test]
async fn closed_outage_mode_refuses_stale_entries() {
    let (app, u) =
        TestApp::with_user_using(settings!(token_cache_ttl_seconds = "1", auth_http_timeout_ms = "300")).await;
    assert_eq!(app.get(&u, "/api/me").await.0, 200);
    app.emulator.faults().refuse_connections(None);
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    let (s, b) = app.get(&u, "/api/me").await;
    assert_error(s, &b, 503, "AUTH_SERVICE_UNAVAILABLE");
    app.emulator.faults().clear();
}

#[tokio::test]
async fn a_redis_outage_degrades_to_the_in_process_cache_without_errors() {
    let (app, u) = TestApp::with_user_using(settings!(redis_url = dead_redis_url(), redis_op_timeout_ms = "50")).await;
    let before = app.emulator.stats().user;
    for _ in 0..3 {
        assert_eq!(app.get(&u, "/api/me").await.0, 200);
    }
    assert_eq!(app.emulator.stats().user - before, 1, "L1 alone still caches");
    let (s, _) = app.send(app.http.post(app.url("/api/auth/logout")).bearer_auth(&u.token)).await;
    assert_eq!(s, 204);
    let (s, b) = app.get(&u, "/api/me").await;
    assert_error(s, &b, 401, "SESSION_REVOKED");
}

#[tokio::test]
async fn logout_on_one_instance_is_refused_on_every_instance_within_a_second() {
    let a = TestApp::spawn().await;
    let b = a.peer(|_| {}).await;
    let c = a.peer(|args| args.auth_verify_mode = Some("local".into())).await;
    let u = a.user(&email("u")).await;
    for app in [&a, &b, &c] {
        assert_eq!(app.get(&u, "/api/me").await.0, 200, "cached everywhere first");
    }
    let (s, body) = a.send(a.http.post(a.url("/api/auth/logout?scope=local")).bearer_auth(&u.token)).await;
    assert_eq!(s, 204, "{body}");
    let logged_out = Instant::now();
    for app in [&b, &c] {
        until_revoked(app, &u, logged_out).await;
    }
    let (s, body) = a.get(&u, "/api/me").await;
    assert_error(s, &body, 401, "SESSION_REVOKED");
    // A new instance (empty memory) reads the revocation from Redis.
    let d = a.peer(|args| args.auth_verify_mode = Some("local".into())).await;
    let (s, body) = d.get(&u, "/api/me").await;
    assert_error(s, &body, 401, "SESSION_REVOKED");
}

#[tokio::test]
async fn logout_scopes_end_the_right_sessions() {
    let (app, u) = TestApp::with_user().await;
    let second = |app: &TestApp| {
        let session = app.emulator.sign_in(&u.email, "password123").expect("sign in");
        with_token(&u, session.access_token)
    };

    // local: only this session.
    let other = second(&app);
    let (s, _) = app.send(app.http.post(app.url("/api/auth/logout?scope=local")).bearer_auth(&u.token)).await;
    assert_eq!(s, 204);
    assert_eq!(app.get(&u, "/api/me").await.0, 401);
    assert_eq!(app.get(&other, "/api/me").await.0, 200);

    // others: every session but this one.
    let third = second(&app);
    assert_eq!(app.get(&third, "/api/me").await.0, 200);
    let (s, _) = app.send(app.http.post(app.url("/api/auth/logout?scope=others")).bearer_auth(&other.token)).await;
    assert_eq!(s, 204);
    assert_eq!(app.get(&other, "/api/me").await.0, 200);
    assert_eq!(app.get(&third, "/api/me").await.0, 401);

    // global (the default): everything.
    let (s, _) = app.send(app.http.post(app.url("/api/auth/logout")).bearer_auth(&other.token)).await;
    assert_eq!(s, 204);
    assert_eq!(app.get(&other, "/api/me").await.0, 401);

    // A sign-in right after the global logout works at once; a bad scope is a clear 400.
    let fresh = second(&app);
    assert_eq!(app.get(&fresh, "/api/me").await.0, 200);
    let (s, b) = app.send(app.http.post(app.url("/api/auth/logout?scope=everything")).bearer_auth(&fresh.token)).await;
    assert_eq!(s, 400, "{b}");
}

#[tokio::test]
async fn logout_during_an_outage_changes_nothing_and_says_so() {
    let (app, u) = TestApp::with_user_using(|a| a.auth_http_timeout_ms = Some("300".into())).await;
    assert_eq!(app.get(&u, "/api/me").await.0, 200);
    app.emulator.faults().set_error_rate(1.0, 503);
    let (s, b) = app.send(app.http.post(app.url("/api/auth/logout")).bearer_auth(&u.token)).await;
    assert_error(s, &b, 503, "AUTH_SERVICE_UNAVAILABLE");
    app.emulator.faults().clear();
    assert_eq!(app.get(&u, "/api/me").await.0, 200, "the client can retry the logout");
    let (s, _) = app.send(app.http.post(app.url("/api/auth/logout")).bearer_auth(&u.token)).await;
    assert_eq!(s, 204);
}

#[tokio::test]
async fn local_mode_never_calls_the_auth_service_per_token() {
    let (app, u) = TestApp::with_user_using(|a| a.auth_verify_mode = Some("local".into())).await;
    let before = app.emulator.stats().user;
    for _ in 0..3 {
        assert_eq!(app.get(&u, "/api/me").await.0, 200);
    }
    assert_eq!(app.emulator.stats().user, before);
    // The trade-off, documented: a session ended elsewhere stays usable until exp ...
    app.emulator.faults().set_error_rate(1.0, 503);
    assert_eq!(app.get(&u, "/api/me").await.0, 200, "an auth outage does not matter in local mode");
    app.emulator.faults().clear();
}

#[tokio::test]
async fn the_session_endpoint_says_who_and_until_when() {
    let (app, u) = TestApp::with_user().await;
    let claims = unverified_claims(&u.token);
    let (s, b) = app.get(&u, "/api/auth/session").await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(b["userId"], u.id.to_string());
    assert_eq!(b["email"], u.email.as_str());
    assert_eq!(b["sessionId"], claims["session_id"]);
    assert_eq!(b["expiresAt"], claims["exp"]);
    assert!(b["expiresIn"].as_i64().is_some_and(|s| s > 0 && s <= 3600), "{b}");
}

#[tokio::test]
async fn a_logout_during_a_redis_outage_reaches_the_other_instances_when_redis_returns() {
    let redis = testkit::RedisServer::start().await.expect("redis");
    let url = redis.url();
    let url_b = url.clone();
    let a = TestApp::spawn_with(|args| args.redis_url = Some(url)).await;
    let b = a.peer(|args| args.redis_url = Some(url_b)).await;
    let u = a.user(&email("u")).await;
    assert_eq!(a.get(&u, "/api/me").await.0, 200);
    assert_eq!(b.get(&u, "/api/me").await.0, 200);

    redis.stop().await.expect("stop redis");
    let (s, _) = a.send(a.http.post(a.url("/api/auth/logout?scope=local")).bearer_auth(&u.token)).await;
    assert_eq!(s, 204, "logout works without Redis");
    assert_eq!(a.get(&u, "/api/me").await.0, 401, "refused at once where it happened");
    assert_eq!(a.state.auth.revocations().pending(), 2, "token and session, kept for the shared store");

    redis.restart().await.expect("restart redis");
    let deadline = Instant::now() + Duration::from_secs(15);
    let what = "the other instance never learned of the logout";
    let body = b.get_until(&u, "/api/me", 401, Duration::from_secs(15), what).await;
    assert_eq!(body["code"], "SESSION_REVOKED");
    // The deferred revocation reaches the shared store: an instance in local mode (which never asks the auth
    // service) started afterwards refuses the token too.
    while a.state.auth.revocations().pending() > 0 {
        assert!(Instant::now() < deadline, "the deferred revocation was never shared");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let url_c = redis.url();
    let c = a.peer(settings!(redis_url = url_c, auth_verify_mode = "local")).await;
    let (s, body) = c.get(&u, "/api/me").await;
    assert_error(s, &body, 401, "SESSION_REVOKED");
}
