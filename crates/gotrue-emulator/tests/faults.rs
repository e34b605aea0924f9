//! Fault injection (in-process and over HTTP) and request counters.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::{Duration, Instant};

use common::{Harness, PASSWORD, client, parts};
use gotrue_emulator::Stats;
use reqwest::Method;
use serde_json::{Value, json};

async fn health_status(h: &Harness) -> u16 {
    h.anon(Method::GET, "/health").send().await.unwrap().status().as_u16()
}

#[tokio::test]
async fn latency_delays_responses() {
    let h = Harness::start().await;
    h.emu.faults().set_latency(Duration::from_millis(250));
    let started = Instant::now();
    assert_eq!(health_status(&h).await, 200);
    assert!(started.elapsed() >= Duration::from_millis(250));
    assert_eq!(h.emu.faults().settings().latency, Duration::from_millis(250));
    h.emu.faults().clear();
    assert_eq!(h.emu.faults().settings().latency, Duration::ZERO);
}

#[tokio::test]
async fn error_rate_answers_with_the_given_status() {
    let h = Harness::start().await;
    h.emu.create_user("lee@example.com", PASSWORD).unwrap();
    let faults = h.emu.faults();

    faults.set_error_rate(1.0, 503);
    for _ in 0..5 {
        let response = h.password_grant("lee@example.com", PASSWORD).await;
        assert_eq!(response.headers().get("x-emulator-fault").unwrap(), "error");
        let (status, code, body) = parts(response).await;
        assert_eq!(status, 503);
        assert_eq!(code, None);
        assert_eq!(body["message"], "Service Unavailable");
    }
    // Faults come before the gateway: even keyless requests get the 5xx.
    let keyless = h.http.get(h.url("/health")).send().await.unwrap();
    assert_eq!(keyless.status(), 503);

    faults.set_error_rate(1.0, 500);
    assert_eq!(health_status(&h).await, 500);

    faults.set_error_rate(0.0, 503);
    for _ in 0..5 {
        assert_eq!(health_status(&h).await, 200);
    }

    // In between, a random share fails.
    faults.set_error_rate(0.5, 502);
    let mut failed = 0;
    let mut ok = 0;
    for _ in 0..100 {
        match health_status(&h).await {
            502 => failed += 1,
            200 => ok += 1,
            other => panic!("unexpected status {other}"),
        }
    }
    assert!(failed > 0 && ok > 0, "failed {failed}, ok {ok}");

    // Only listed paths are affected.
    faults.set_error_rate(1.0, 503);
    faults.only_paths(vec!["user".to_owned()]);
    assert_eq!(health_status(&h).await, 200);
    let user = h.anon(Method::GET, "/user").send().await.unwrap();
    assert_eq!(user.status(), 503);
    assert_eq!(h.emu.faults().settings().paths, vec!["/auth/v1/user".to_owned()]);

    faults.clear();
    assert_eq!(h.password_grant("lee@example.com", PASSWORD).await.status(), 200);
}

#[tokio::test]
async fn hang_holds_requests_until_cleared() {
    let h = Harness::start().await;
    h.emu.faults().set_hang(true);

    let impatient = client()
        .get(h.url("/health"))
        .header("apikey", h.emu.anon_key())
        .timeout(Duration::from_millis(300))
        .send()
        .await
        .unwrap_err();
    assert!(impatient.is_timeout(), "{impatient:?}");

    // A patient request is answered once the hang is lifted.
    let patient = {
        let request = h.anon(Method::GET, "/health").timeout(Duration::from_secs(20));
        tokio::spawn(async move { request.send().await })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(!patient.is_finished());
    h.emu.faults().set_hang(false);
    let response = patient.await.unwrap().unwrap();
    assert_eq!(response.status(), 200);

    // Hanging only some paths leaves the others alone.
    h.emu.faults().set_hang(true);
    h.emu.faults().only_paths(vec!["/auth/v1/user".to_owned()]);
    assert_eq!(health_status(&h).await, 200);
    h.emu.faults().clear();
}

#[tokio::test]
async fn refusing_closes_the_port_and_open_connections_then_recovers() {
    let h = Harness::start().await;
    let base = h.emu.base_url();
    assert_eq!(health_status(&h).await, 200);

    // Hold a request open so there is a live connection to drop.
    h.emu.faults().set_hang(true);
    let held = {
        let request = h.anon(Method::GET, "/health").timeout(Duration::from_secs(20));
        tokio::spawn(async move { request.send().await })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;

    h.emu.faults().refuse_connections(None);
    assert!(h.emu.faults().settings().refusing);
    let counted = h.emu.stats().health;
    let dropped = held.await.unwrap().unwrap_err();
    assert!(!dropped.is_timeout(), "{dropped:?}");

    let refused =
        client().get(format!("{base}/auth/v1/health")).header("apikey", h.emu.anon_key()).send().await.unwrap_err();
    assert!(refused.is_connect(), "{refused:?}");
    assert_eq!(h.emu.stats().health, counted, "refused requests never arrive");

    // Clearing re-binds the same port before returning.
    h.emu.faults().clear();
    assert!(!h.emu.faults().settings().refusing);
    assert_eq!(h.emu.base_url(), base);
    let back = client().get(format!("{base}/auth/v1/health")).header("apikey", h.emu.anon_key()).send().await.unwrap();
    assert_eq!(back.status(), 200);
}

#[tokio::test]
async fn refusing_for_a_duration_recovers_by_itself() {
    let h = Harness::start().await;
    h.emu.faults().refuse_connections(Some(Duration::from_millis(300)));
    let refused = client().get(h.url("/health")).header("apikey", h.emu.anon_key()).send().await.unwrap_err();
    assert!(refused.is_connect(), "{refused:?}");

    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let attempt = client().get(h.url("/health")).header("apikey", h.emu.anon_key()).send().await;
        if let Ok(response) = attempt {
            assert_eq!(response.status(), 200);
            break;
        }
        assert!(Instant::now() < deadline, "the port never came back");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(!h.emu.faults().settings().refusing);
}

#[tokio::test]
async fn faults_can_be_driven_over_http() {
    let h = Harness::start().await;
    let control = format!("{}/__emulator/faults", h.emu.base_url());

    let set = h
        .http
        .post(&control)
        .json(&json!({ "errorRate": 1.0, "errorStatus": 502, "paths": ["/auth/v1/health"] }))
        .send()
        .await
        .unwrap();
    assert_eq!(set.status(), 200);
    let settings: Value = set.json().await.unwrap();
    assert_eq!(settings["errorRate"], 1.0);
    assert_eq!(settings["errorStatus"], 502);
    assert_eq!(health_status(&h).await, 502);
    let jwks = h.http.get(h.url("/.well-known/jwks.json")).send().await.unwrap();
    assert_eq!(jwks.status(), 200);

    let current: Value = h.http.get(&control).send().await.unwrap().json().await.unwrap();
    assert_eq!(current["paths"], json!(["/auth/v1/health"]));

    // Posting replaces the whole configuration.
    h.http.post(&control).json(&json!({ "latencyMs": 200 })).send().await.unwrap();
    let started = Instant::now();
    assert_eq!(health_status(&h).await, 200);
    assert!(started.elapsed() >= Duration::from_millis(200));

    h.http.post(&control).json(&json!({ "hang": true })).send().await.unwrap();
    let hung = h.anon(Method::GET, "/health").timeout(Duration::from_millis(300)).send().await.unwrap_err();
    assert!(hung.is_timeout());

    let cleared = h.http.delete(&control).send().await.unwrap();
    assert_eq!(cleared.status(), 204);
    assert_eq!(health_status(&h).await, 200);

    let invalid = h.http.post(&control).json(&json!({ "errorRate": 2.0 })).send().await.unwrap();
    assert_eq!(invalid.status(), 400);
    let unknown_field = h.http.post(&control).json(&json!({ "latency": 5 })).send().await.unwrap();
    assert_eq!(unknown_field.status(), 400);

    // Refusal over HTTP is always bounded, and starts after the answer.
    let refuse = h.http.post(&control).json(&json!({ "refuseForMs": 500 })).send().await.unwrap();
    assert_eq!(refuse.status(), 200);
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let attempt = client().get(h.url("/health")).send().await;
        match attempt {
            Err(e) if e.is_connect() => break,
            _ => {
                assert!(Instant::now() < deadline, "the port was never closed");
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match client().get(h.url("/health")).header("apikey", h.emu.anon_key()).send().await {
            Ok(response) => {
                assert_eq!(response.status(), 200);
                break;
            }
            Err(_) => {
                assert!(Instant::now() < deadline, "the port never came back");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

#[tokio::test]
async fn stats_count_upstream_calls_per_endpoint() {
    let h = Harness::start().await;
    assert_eq!(h.emu.stats(), Stats::default());

    h.emu.create_user("max@example.com", PASSWORD).unwrap();
    // In-process calls are not HTTP calls.
    let session = h.emu.sign_in("max@example.com", PASSWORD).unwrap();
    assert_eq!(h.emu.stats().total(), 0);

    health_status(&h).await;
    health_status(&h).await;
    h.http.get(h.url("/.well-known/jwks.json")).send().await.unwrap();
    h.password_grant("max@example.com", PASSWORD).await;
    h.get_user(&session.access_token).await;
    h.anon(Method::POST, "/signup")
        .json(&json!({ "email": "new@example.com", "password": PASSWORD }))
        .send()
        .await
        .unwrap();
    h.service(Method::GET, "/admin/users").send().await.unwrap();
    h.service(Method::GET, &format!("/admin/users/{}", session.user.id)).send().await.unwrap();
    h.logout(&session.access_token, Some("local")).await;
    // Rejected by the gateway: still a call that reached "Supabase".
    h.http.get(h.url("/user")).send().await.unwrap();
    h.anon(Method::GET, "/settings").send().await.unwrap();
    h.anon(Method::GET, "/otp").send().await.unwrap();

    // The control plane is not counted.
    let over_http: Value =
        h.http.get(format!("{}/__emulator/stats", h.emu.base_url())).send().await.unwrap().json().await.unwrap();

    let stats = h.emu.stats();
    assert_eq!(
        stats,
        Stats { user: 2, token: 1, logout: 1, jwks: 1, health: 2, admin: 2, signup: 1, settings: 1, other: 1 }
    );
    assert_eq!(stats.total(), 12);
    assert_eq!(over_http["user"], 2);
    assert_eq!(over_http["admin"], 2);
    assert_eq!(over_http["settings"], 1);
    assert_eq!(over_http["total"], 12);

    // Faulted requests still count: they reached the upstream.
    h.emu.faults().set_error_rate(1.0, 503);
    h.get_user(&session.access_token).await;
    assert_eq!(h.emu.stats().user, 3);
    h.emu.faults().clear();

    let reset = h.http.delete(format!("{}/__emulator/stats", h.emu.base_url())).send().await.unwrap();
    assert_eq!(reset.status(), 204);
    assert_eq!(h.emu.stats().total(), 0);
    h.emu.reset_stats();
    assert_eq!(h.emu.stats(), Stats::default());
}

#[tokio::test]
async fn shutdown_closes_the_port() {
    let h = Harness::start().await;
    assert_eq!(health_status(&h).await, 200);
    h.emu.shutdown().await;
    let err = client().get(h.url("/health")).header("apikey", h.emu.anon_key()).send().await.unwrap_err();
    assert!(err.is_connect(), "{err:?}");
    // Fault setters on a stopped emulator are harmless no-ops.
    h.emu.faults().refuse_connections(None);
    h.emu.faults().clear();
}
