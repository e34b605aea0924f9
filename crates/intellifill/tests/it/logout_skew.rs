//! Logout through the server while the auth service's clock is ahead of or behind ours: every ended session is
//! refused on every instance within a second, a sign-in right after the logout works at once, and a token the
//! cut-off cannot place is asked about once, never guessed. Instances share Redis; `c` verifies locally.

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Value, json};

use crate::helpers::{TestApp, TestUser, assert_error, email};

const WITHIN: Duration = Duration::from_secs(1);

/// The instances of [`three`], for the latency figures.
const MODES: [&str; 3] = ["a (remote, handled the logout)", "b (remote)", "c (local)"];

fn claims(token: &str) -> Value {
    let payload = token.split('.').nth(1).expect("payload");
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).expect("base64")).expect("json")
}

/// A token of `session`'s session signed by the auth service's key, issued `age_s` seconds before the
/// auth service's clock says now (an older access token of a live session, as a refresh earlier would give).
fn older_token(app: &TestApp, session: &TestUser, age_s: i64) -> TestUser {
    let mut c = claims(&session.token);
    c["iat"] = json!(c["iat"].as_i64().expect("iat") - age_s);
    TestUser { token: app.emulator.mint_token(app.emulator.token_header(), &c), ..session.clone() }
}

async fn logout(app: &TestApp, user: &TestUser, scope: &str) {
    let (s, body) =
        app.send(app.http.post(app.url(&format!("/api/auth/logout?scope={scope}"))).bearer_auth(&user.token)).await;
    assert_eq!(s, 204, "logout {scope}: {body}");
}

async fn all_accept(apps: &[&TestApp], users: &[&TestUser]) {
    for app in apps {
        for u in users {
            let (s, body) = app.get(u, "/api/me").await;
            assert_eq!(s, 200, "{}: {body}", app.base);
        }
    }
}

/// Three instances on one Redis: `a` and `b` in remote mode, `c` in local mode.
async fn three() -> (TestApp, TestApp, TestApp) {
    let a = TestApp::spawn().await;
    let b = a.peer(|_| {}).await;
    let c = a.peer(|args| args.auth_verify_mode = Some("local".into())).await;
    (a, b, c)
}

/// [`three`] with the auth service's clock `skew` seconds off ours, and a user signed in three times on `a`
/// (its sessions, the first one first).
async fn three_with_skew(skew: i64) -> (TestApp, TestApp, TestApp, [TestUser; 3]) {
    let (a, b, c) = three().await;
    a.emulator.faults().set_clock_skew(skew);
    let u = a.user(&email("u")).await;
    let second = a.sign_in_again(&u);
    let third = a.sign_in_again(&u);
    (a, b, c, [u, second, third])
}

async fn global_logout_under_skew(skew: i64) {
    let (a, b, c, [u, other, third]) = three_with_skew(skew).await;
    let apps = [&a, &b, &c];
    let old = older_token(&a, &third, 600);
    all_accept(&apps, &[&u, &other, &third, &old]).await;

    logout(&a, &u, "global").await;

    // Issued long before the logout, whatever the clocks: refused from the cut-off alone, no call.
    let calls = a.emulator.stats().user;
    for app in apps {
        let (s, body) = app.get(&old, "/api/me").await;
        assert_error(s, &body, 401, "SESSION_REVOKED");
    }
    assert_eq!(a.emulator.stats().user, calls, "decided without the auth service");

    // Issued seconds around it (the auth clock {skew:+} s off): asked once, refused on every instance.
    for (app, mode) in apps.iter().zip(MODES) {
        for t in [&u, &other, &third] {
            let took = app.refused_within(t, "SESSION_REVOKED", WITHIN).await;
            eprintln!("revocation latency: global logout, auth clock {skew:+} s, {mode}: {took:?}");
        }
    }

    // A sign-in right after the logout works at once, everywhere: one question to the auth service for the
    // whole fleet (the answer is cached and remembered for its session in Redis).
    let fresh = a.sign_in_again(&u);
    let calls = a.emulator.stats().user;
    all_accept(&apps, &[&fresh]).await;
    assert_eq!(a.emulator.stats().user - calls, 1, "one upstream check for three instances");
    let fresher = a.sign_in_again(&u);
    all_accept(&apps, &[&fresher, &fresh]).await;
    let metrics = intellifill::testing::render_metrics(&a.state);
    for result in ["ended", "alive"] {
        let series = format!("auth_skew_window_checks_total{{result=\"{result}\"}}");
        assert!(metrics.contains(&series), "{series} missing from {metrics}");
    }
}

#[tokio::test]
async fn global_logout_with_the_auth_clock_20_s_ahead() {
    global_logout_under_skew(20).await;
}

#[tokio::test]
async fn global_logout_with_the_auth_clock_20_s_behind() {
    global_logout_under_skew(-20).await;
}

#[tokio::test]
async fn others_and_local_scopes_under_skew() {
    for skew in [20, -20] {
        let (a, b, c, [u, second, third]) = three_with_skew(skew).await;
        let apps = [&a, &b, &c];
        let old_mine = older_token(&a, &u, 600);
        all_accept(&apps, &[&u, &second, &third, &old_mine]).await;

        // others: every session but the caller's, including its older tokens.
        logout(&b, &u, "others").await;
        for (app, mode) in apps.iter().zip(MODES) {
            for t in [&second, &third] {
                let took = app.refused_within(t, "SESSION_REVOKED", WITHIN).await;
                eprintln!("revocation latency: others logout (through b), auth clock {skew:+} s, {mode}: {took:?}");
            }
        }
        all_accept(&apps, &[&u, &old_mine]).await;
        let fresh = a.sign_in_again(&u);
        all_accept(&apps, &[&fresh]).await;

        // local: the caller's session only; the fresh one stays.
        logout(&c, &u, "local").await;
        for (app, mode) in apps.iter().zip(MODES) {
            for t in [&u, &old_mine] {
                let took = app.refused_within(t, "SESSION_REVOKED", WITHIN).await;
                eprintln!("revocation latency: local logout (through c), auth clock {skew:+} s, {mode}: {took:?}");
            }
        }
        all_accept(&apps, &[&fresh]).await;
    }
}

#[tokio::test]
async fn remote_mode_nothing_verified_before_a_global_logout_survives_it() {
    // Long cache TTL and no background revalidation: only the logout can make the instances look again.
    let ttl = settings!(token_cache_ttl_seconds = "3600", auth_revalidate_seconds = "0");
    let a = TestApp::spawn_with(ttl).await;
    let b = a.peer(ttl).await;
    // The auth clock ahead: the tokens' iat is after the logout by our clock (what a cut-off at the logout
    // second let through).
    a.emulator.faults().set_clock_skew(20);
    let u = a.user(&email("u")).await;
    let other = a.sign_in_again(&u);
    all_accept(&[&a, &b], &[&u, &other]).await;
    let calls = a.emulator.stats().user;
    all_accept(&[&a, &b], &[&u, &other]).await;
    assert_eq!(a.emulator.stats().user, calls, "cached (L1, and L2 for b)");

    logout(&a, &u, "global").await;
    let calls = a.emulator.stats().user;
    b.refused_within(&other, "SESSION_REVOKED", WITHIN).await;
    assert!(a.emulator.stats().user > calls, "re-verified upstream, not served from the cache");
    // A new instance finds the verified entry in L2 but not the right to use it.
    let d = a.peer(ttl).await;
    for t in [&u, &other] {
        let (s, body) = d.get(t, "/api/me").await;
        assert_error(s, &body, 401, "SESSION_REVOKED");
    }
}

#[tokio::test]
async fn a_token_in_the_skew_window_is_never_guessed_during_an_auth_outage() {
    let (a, _b, c) = three().await;
    let u = a.user(&email("u")).await;
    all_accept(&[&a, &c], &[&u]).await;
    logout(&a, &u, "global").await;
    let fresh = a.sign_in_again(&u);
    a.emulator.faults().set_error_rate(1.0, 503);
    a.emulator.faults().only_paths(vec!["user".into()]);
    for app in [&a, &c] {
        let (s, body) = app.get(&fresh, "/api/me").await;
        assert_error(s, &body, 503, "AUTH_SERVICE_UNAVAILABLE");
    }
    a.emulator.faults().clear();
    all_accept(&[&a, &c], &[&fresh]).await;
    // Without the logout the local instance never needs the auth service.
    let v = c.user(&email("v")).await;
    a.emulator.faults().set_error_rate(1.0, 503);
    a.emulator.faults().only_paths(vec!["user".into()]);
    let (s, _) = c.get(&v, "/api/me").await;
    assert_eq!(s, 200);
    a.emulator.faults().clear();
}

#[tokio::test]
async fn a_skew_bound_of_zero_decides_everything_outside_the_logout_second_locally() {
    let zero = |args: &mut intellifill::ServeArgs| args.auth_clock_skew_bound_seconds = Some("0".into());
    let a = TestApp::spawn_with(zero).await;
    let u = a.user(&email("u")).await;
    let old = older_token(&a, &a.sign_in_again(&u), 2);
    assert_eq!(a.get(&old, "/api/me").await.0, 200);
    logout(&a, &u, "global").await;
    let calls = a.emulator.stats().user;
    let (s, body) = a.get(&old, "/api/me").await;
    assert_error(s, &body, 401, "SESSION_REVOKED");
    assert_eq!(a.emulator.stats().user, calls, "2 s before the logout is outside a zero window");
    // What a skewed auth service then gets wrong is the operator's choice (DEPLOY 1.5): a sign-in on a clock
    // 20 s behind looks like an old token and is refused.
    a.emulator.faults().set_clock_skew(-20);
    let behind = a.sign_in_again(&u);
    let (s, body) = a.get(&behind, "/api/me").await;
    assert_error(s, &body, 401, "SESSION_REVOKED");
}

#[tokio::test]
async fn the_latest_cutoff_wins_in_redis_whatever_order_it_arrives_in() {
    use intellifill::testing::{Cutoff, Revocation};
    let a = TestApp::spawn().await;
    let u = a.user(&email("u")).await;
    let live = a.sign_in_again(&u);
    let ten_minutes_old = older_token(&a, &live, 600);
    let now_ms = chrono::Utc::now().timestamp_millis();
    let cutoff =
        |at_ms: i64| Revocation::User { id: u.id, cutoff: Cutoff { sent_ms: at_ms, done_ms: at_ms, except: None } };
    // The later cut-off (now) first, then an earlier one (an hour ago) from a slower instance.
    a.state.auth.revocations().revoke(cutoff(now_ms)).await;
    a.state.auth.revocations().revoke(cutoff(now_ms - 3_600_000)).await;
    // A fresh instance in local mode knows only what Redis says: the later cut-off covers the token.
    let d = a.peer(|args| args.auth_verify_mode = Some("local".into())).await;
    let (s, body) = d.get(&ten_minutes_old, "/api/me").await;
    assert_error(s, &body, 401, "SESSION_REVOKED");
    // And so does the instance that received both.
    let (s, body) = a.get(&ten_minutes_old, "/api/me").await;
    assert_error(s, &body, 401, "SESSION_REVOKED");
}
