//! A wrong `SUPABASE_ANON_KEY` is the operator's misconfiguration, never "everyone is logged out": the auth
//! service's gateway refusing our key is 503 `AUTH_SERVICE_MISCONFIGURED`, counted, never cached, never the
//! user's failure (no anomaly, no security event, not a breaker failure).

use std::time::Duration;

use breaker::State;
use intellifill::testing::TokenHash;
use serde_json::Value;

use crate::helpers::{TestApp, assert_error, email, scalar};
use crate::observability::{metrics, sample};

const WRONG_KEY: &str = "sb_publishable_revoked0000000000000000";

/// Flush the audit queue until `sql` counts at least `at_least` rows (or 10 s passed); returns the count.
async fn count_rows(app: &TestApp, sql: &str, at_least: i64) -> i64 {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        app.state.audit.flush().await;
        let n: i64 = scalar(&app.owner, sql, &[]).await;
        if n >= at_least || std::time::Instant::now() > deadline {
            return n;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn a_refused_api_key_is_503_misconfigured_and_never_the_users_fault() {
    let (app, u) = TestApp::with_user_using(|a| {
        a.supabase_anon_key = Some(WRONG_KEY.into());
        a.anomaly_auth_failures_per_minute = Some("3".into());
        a.auth_breaker_volume_threshold = Some("3".into());
        // Requests alone are counted below (the start-up check is the cli tests' business).
        a.auth_startup_key_check = Some("off".into());
    })
    .await;
    assert_eq!(app.emulator.stats().settings, 0, "no start-up check when it is off");
    let calls = app.emulator.stats().user;
    for _ in 0..10 {
        let response = app.http.get(app.url("/api/me")).bearer_auth(&u.token).send().await.expect("request");
        assert!(response.headers().get("retry-after").is_none(), "no retry helps until the key is fixed");
        let (s, b) = (response.status().as_u16(), response.json::<Value>().await.expect("json"));
        assert_error(s, &b, 503, "AUTH_SERVICE_MISCONFIGURED");
    }
    // Never negative-cached: each request asked again (and would pass at once once the key is right).
    assert_eq!(app.emulator.stats().user - calls, 10);
    let hash = TokenHash::of(&u.token);
    assert!(app.state.auth.cache().get_l1(&hash).is_none());
    assert!(app.state.auth.cache().get_l2(&hash).await.is_none());
    // Not a failure of the auth service's health: the breaker stays closed.
    let breaker = app.state.auth.breaker().stats();
    assert_eq!((breaker.state, breaker.totals.failures), (State::Closed, 0), "{breaker:?}");
    // Counted for the alert (AuthServiceRejectsApiKey).
    let text = metrics(&app).await;
    assert_eq!(sample(&text, "auth_upstream_key_rejected_total"), Some(10.0), "{text}");
    // Readiness says why.
    let (s, b) = app.send(app.http.get(app.url("/health/ready"))).await;
    assert_eq!(s, 503);
    assert!(b["checks"]["auth"].as_str().is_some_and(|a| a.contains("SUPABASE_ANON_KEY")), "{b}");

    // No security event on those requests, and they are not auth failures for the anomaly detector: two
    // forged tokens stay under its threshold of 3 ...
    let forged = format!("{}AAAA", &u.token[..u.token.len() - 4]);
    for _ in 0..2 {
        let (s, _) = app.send(app.http.get(app.url("/api/me")).bearer_auth(&forged)).await;
        assert_eq!(s, 401);
    }
    let misconfigured = "SELECT count(*) FROM audit_log WHERE status = 503";
    assert_eq!(count_rows(&app, misconfigured, 10).await, 10, "the 503s are audited");
    let marked =
        "SELECT count(*) FROM audit_log WHERE status = 503 AND (severity IS NOT NULL OR metadata ? 'security')";
    assert_eq!(scalar::<i64>(&app.owner, marked, &[]).await, 0);
    let anomalies = "SELECT count(*) FROM audit_log WHERE action = 'security.anomaly'";
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(count_rows(&app, anomalies, 0).await, 0, "ten 503s and two 401s are not a burst of four");
    // ... and two more cross it: the detector was watching all along, and the request that crossed it is the
    // fourth 401 (had the 503s counted, the report would name one of them).
    let mut last = String::new();
    for _ in 0..2 {
        let response = app.http.get(app.url("/api/me")).bearer_auth(&forged).send().await.expect("request");
        assert_eq!(response.status().as_u16(), 401);
        last = response.headers()["x-request-id"].to_str().expect("ascii").to_owned();
    }
    assert_eq!(count_rows(&app, anomalies, 1).await, 1);
    let row = app
        .owner
        .query_one(
            "SELECT request_id, metadata->'security'->'details' FROM audit_log WHERE action = 'security.anomaly'",
            &[],
        )
        .await
        .expect("anomaly row");
    let (request_id, details): (Option<String>, Value) = (row.get(0), row.get(1));
    assert_eq!(request_id.as_deref(), Some(last.as_str()));
    assert_eq!((details["kind"].as_str(), details["count"].as_i64()), (Some("auth_failure_burst"), Some(4)));
}

#[tokio::test]
async fn logout_with_a_refused_api_key_is_503_misconfigured_and_revokes_nothing() {
    // Local mode verifies without the auth service, so the request gets as far as the logout call.
    let (app, u) = TestApp::with_user_using(settings!(supabase_anon_key = WRONG_KEY, auth_verify_mode = "local")).await;
    assert_eq!(app.get(&u, "/api/me").await.0, 200, "local verification needs no API key");
    let (s, b) = app.send(app.http.post(app.url("/api/auth/logout")).bearer_auth(&u.token)).await;
    assert_error(s, &b, 503, "AUTH_SERVICE_MISCONFIGURED");
    assert_eq!(app.emulator.session_count(u.id), 1, "the session still exists at the auth service");
    assert_eq!(app.get(&u, "/api/me").await.0, 200, "nothing revoked here either: the client can retry");
}

#[tokio::test]
async fn in_cached_outage_mode_known_users_stay_in_while_the_key_is_refused() {
    let good = TestApp::spawn().await;
    let u = good.user(&email("u")).await;
    assert_eq!(good.get(&u, "/api/me").await.0, 200, "verified once, kept in L2");
    // An instance deployed with a wrong key, sharing the cache: fresh entries are served, stale ones too in
    // `cached` mode, since the auth service gives no verdict on them.
    let wrong = good
        .peer(settings!(supabase_anon_key = WRONG_KEY, auth_outage_mode = "cached", token_cache_ttl_seconds = "1"))
        .await;
    assert_eq!(wrong.get(&u, "/api/me").await.0, 200);
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    assert_eq!(wrong.get(&u, "/api/me").await.0, 200, "stale entry served");
    assert!(wrong.state.auth.cache().stats.stale_served.load(std::sync::atomic::Ordering::Relaxed) >= 1);
    let stranger = good.user(&email("stranger")).await;
    let (s, b) = wrong.get(&stranger, "/api/me").await;
    assert_error(s, &b, 503, "AUTH_SERVICE_MISCONFIGURED");
}
