//! Start-up refuses unsafe database roles; shutdown drains in-flight requests; a broadcast subscription lives
//! as long as its handle.

use std::time::Duration;

use intellifill::Application;
use intellifill::{Config, ServeArgs};

use crate::helpers::TestApp;

#[tokio::test]
async fn startup_refuses_the_owner_role_and_a_missing_schema() {
    let app = TestApp::spawn().await;
    let args = ServeArgs {
        bind_addr: Some("127.0.0.1:0".into()),
        database_url: Some(app.owner_url.clone()),
        supabase_url: Some(app.emulator.base_url()),
        supabase_anon_key: Some(app.emulator.anon_key().into()),
        app_env: Some("test".into()),
        ..ServeArgs::default()
    };
    let err = Application::build(Config::from_args(&args).expect("config")).await.err().expect("must refuse the owner");
    assert!(err.to_string().contains("owns"), "{err}");

    let shared = testkit::Shared::get().await.expect("shared");
    let empty = shared.create_database(None, None).await.expect("empty db");
    let args = ServeArgs {
        database_url: Some(shared.pg_url(
            intellifill::testing::schema::RUNTIME_ROLE,
            Some(crate::helpers::RUNTIME_PASSWORD),
            &empty,
        )),
        ..args
    };
    let err = Application::build(Config::from_args(&args).expect("config")).await.err().expect("must refuse");
    assert!(err.to_string().contains("migrate"), "{err}");
}

#[tokio::test]
async fn shutdown_drains_in_flight_requests_then_stops_accepting() {
    let (mut app, u) = TestApp::with_user().await;
    // Slow the auth service so the request is still in flight when shutdown starts.
    app.emulator.faults().set_latency(Duration::from_millis(600));
    let in_flight = {
        let request = app.http.get(app.url("/api/me")).bearer_auth(&u.token);
        tokio::spawn(async move { request.send().await.map(|r| r.status().as_u16()) })
    };
    tokio::time::sleep(Duration::from_millis(150)).await;
    app.stop().await.expect("clean stop");
    assert_eq!(in_flight.await.expect("join").expect("response"), 200, "the in-flight request was dropped");
    let after = reqwest::Client::new().get(app.url("/health")).timeout(Duration::from_secs(2)).send().await;
    assert!(after.is_err(), "the server still accepts connections after shutdown");
}

#[tokio::test]
async fn a_broadcast_subscription_ends_with_its_handle_and_a_live_one_reconnects() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    let redis = testkit::RedisServer::start().await.expect("redis");
    let kv = intellifill::testing::Kv::connect(&redis.url(), None, "lifecycle:", Duration::from_secs(1)).expect("kv");
    let subscribe = |connects: Arc<AtomicUsize>| {
        intellifill::testing::subscribe(
            &kv,
            "lifecycle:channel".into(),
            move || {
                connects.fetch_add(1, Ordering::SeqCst);
            },
            |_| {},
        )
        .expect("a shared store is configured")
    };
    let (kept_connects, dropped_connects) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let kept = subscribe(kept_connects.clone());
    let dropped = subscribe(dropped_connects.clone());
    let listening = |s: &intellifill::testing::Subscription| s.is_listening();
    crate::helpers::wait_until(Duration::from_secs(5), || listening(&kept) && listening(&dropped)).await;
    drop(dropped);

    redis.restart().await.expect("restart redis");
    crate::helpers::wait_until(Duration::from_secs(10), || kept_connects.load(Ordering::SeqCst) == 2).await;
    assert!(kept.is_listening(), "the live subscription is listening again");
    // Its sibling had the same connection loss and the same time to come back.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(dropped_connects.load(Ordering::SeqCst), 1, "a dropped subscription does not reconnect");
}
