//! Claims and clocks: `nbf` and `exp` are decided locally, to the second, in every verify mode, and a token
//! refused for its time never reaches the auth service.

use std::time::Duration;

use serde_json::json;

use crate::auth_pipeline::{minted, now, with_token};
use crate::helpers::{TestApp, assert_error};

const MODES: [&str; 2] = ["remote", "local"];

#[tokio::test]
async fn a_token_not_valid_yet_is_refused_locally_in_every_mode() {
    for mode in MODES {
        let (app, u) = TestApp::with_user_using(|a| a.auth_verify_mode = Some(mode.into())).await;
        let early = with_token(&u, minted(&app, &u, |c, _| c["nbf"] = json!(now() + 3600)));
        let calls = app.emulator.stats().user;
        let fires = app.state.auth.breaker().stats().totals.fires;
        for _ in 0..3 {
            let (s, b) = app.get(&early, "/api/me").await;
            assert_error(s, &b, 401, "TOKEN_INVALID");
            assert_eq!(b["message"], "the token is not valid yet", "{mode}");
        }
        assert_eq!(app.emulator.stats().user, calls, "{mode}: refused without asking the auth service");
        assert_eq!(app.state.auth.breaker().stats().totals.fires, fires, "{mode}: nor the breaker");

        // An `nbf` already passed is fine.
        let started = with_token(&u, minted(&app, &u, |c, _| c["nbf"] = json!(now() - 60)));
        assert_eq!(app.get(&started, "/api/me").await.0, 200, "{mode}");
    }
}

#[tokio::test]
async fn nbf_within_the_leeway_is_accepted_and_beyond_it_refused() {
    // Local mode: the local check is the whole verdict (in remote mode the auth service judges `nbf` by its own
    // clock as well).
    let (app, u) =
        TestApp::with_user_using(settings!(auth_verify_mode = "local", auth_jwt_leeway_seconds = "30")).await;
    let inside = with_token(&u, minted(&app, &u, |c, _| c["nbf"] = json!(now() + 20)));
    assert_eq!(app.get(&inside, "/api/me").await.0, 200, "the auth service's clock 20 s ahead: within the leeway");
    let beyond = with_token(&u, minted(&app, &u, |c, _| c["nbf"] = json!(now() + 45)));
    let (s, b) = app.get(&beyond, "/api/me").await;
    assert_error(s, &b, 401, "TOKEN_INVALID");
}

#[tokio::test]
async fn an_expired_token_is_token_expired_in_every_mode_without_an_upstream_call() {
    for mode in MODES {
        // The default leeway (10 s) applies to `nbf` only: `exp` is strict.
        let (app, u) = TestApp::with_user_using(|a| a.auth_verify_mode = Some(mode.into())).await;
        let calls = app.emulator.stats().user;
        let fires = app.state.auth.breaker().stats().totals.fires;
        for (what, exp) in
            [("expiring this second", now()), ("one second ago", now() - 1), ("an hour ago", now() - 3600)]
        {
            let expired = with_token(&u, minted(&app, &u, |c, _| c["exp"] = json!(exp)));
            for _ in 0..3 {
                let (s, b) = app.get(&expired, "/api/me").await;
                assert_eq!((s, b["code"].as_str()), (401, Some("TOKEN_EXPIRED")), "{mode}, {what}: {b}");
            }
        }
        assert_eq!(app.emulator.stats().user, calls, "{mode}: every expiry decided locally");
        assert_eq!(app.state.auth.breaker().stats().totals.fires, fires, "{mode}: nor the breaker");
    }
}

#[tokio::test]
async fn a_token_that_expires_while_cached_is_token_expired_on_every_instance_from_its_exp_second() {
    let app = TestApp::spawn().await;
    let peer = app.peer(|_| {}).await;
    let u = app.user(&crate::helpers::email("u")).await;
    let exp = now() + 2;
    let short = with_token(&u, minted(&app, &u, |c, _| c["exp"] = json!(exp)));
    assert_eq!(app.get(&short, "/api/me").await.0, 200);
    assert_eq!(peer.get(&short, "/api/me").await.0, 200, "the peer found it in L2");
    let calls = app.emulator.stats().user;
    while now() < exp {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for instance in [&app, &peer] {
        for _ in 0..3 {
            let (s, b) = instance.get(&short, "/api/me").await;
            assert_error(s, &b, 401, "TOKEN_EXPIRED");
        }
    }
    assert_eq!(app.emulator.stats().user, calls, "no upstream call for an expired token");
}

#[tokio::test]
async fn a_token_the_auth_service_finds_expired_by_its_clock_is_token_expired_asked_once() {
    // Remote mode, the auth service's clock 30 s ahead of ours: a token with 10 s left here has expired there.
    let (app, u) = TestApp::with_user_using(|a| a.auth_verify_mode = Some("remote".into())).await;
    let ending = with_token(&u, minted(&app, &u, |c, _| c["exp"] = json!(now() + 10)));
    app.emulator.faults().set_clock_skew(30);
    let calls = app.emulator.stats().user;
    for _ in 0..3 {
        let (s, b) = app.get(&ending, "/api/me").await;
        assert_error(s, &b, 401, "TOKEN_EXPIRED");
    }
    assert_eq!(app.emulator.stats().user, calls + 1, "asked once, the answer remembered");
    app.emulator.faults().set_clock_skew(0);
    // Any other refusal keeps its own code.
    let forged = with_token(&u, minted(&app, &u, |c, _| c["session_id"] = json!(uuid::Uuid::new_v4())));
    let (s, b) = app.get(&forged, "/api/me").await;
    assert_eq!(s, 401, "{b}");
    assert_ne!(b["code"], "TOKEN_EXPIRED", "{b}");
}
