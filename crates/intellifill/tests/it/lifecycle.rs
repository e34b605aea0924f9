//! Start-up refuses unsafe database roles; shutdown drains in-flight requests.

use std::time::Duration;

use intellifill::Application;
use intellifill::config::{Config, ServeArgs};

use crate::helpers::{TestApp, email};

#[tokio::test]
async fn startup_refuses_the_owner_role_and_a_missing_schema() {
    let app = TestApp::spawn().await;
    let args = ServeArgs {
        bind_addr: Some("127.0.0.1:0".into()),
        database_url: Some(app.owner_url.clone()),
        supabase_url: Some(app.emulator.base_url()),
        supabase_anon_key: Some(app.emulator.anon_key().into()),
        ..ServeArgs::default()
    };
    let err = Application::build(Config::from_args(&args).expect("config")).await.err().expect("must refuse the owner");
    assert!(err.to_string().contains("owns"), "{err}");

    let shared = testkit::Shared::get().await.expect("shared");
    let empty = shared.create_database(None, None).await.expect("empty db");
    let args = ServeArgs {
        database_url: Some(shared.pg_url(
            intellifill::db::provision::RUNTIME_ROLE,
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
    let mut app = TestApp::spawn().await;
    let u = app.user(&email("u")).await;
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
