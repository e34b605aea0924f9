//! `SUPABASE_ANON_KEY` in either of Supabase's forms: the new `sb_publishable_…` key and the legacy JWT anon
//! key both work, because the server sends the key only as `apikey` (the auth service refuses the new keys
//! as a bearer; the bearer is always the user's own token).

use std::net::SocketAddr;

use gotrue_emulator::{Emulator, EmulatorConfig};
use serde_json::Value;

use crate::helpers::{TestApp, email, fresh_database};

#[tokio::test]
async fn the_server_works_with_the_publishable_key_and_with_the_legacy_anon_key() {
    let emulator =
        Emulator::start(EmulatorConfig::default(), SocketAddr::from(([127, 0, 0, 1], 0))).await.expect("emulator");
    let keys = emulator.api_keys();
    assert!(keys.publishable.starts_with("sb_publishable_"));
    assert_eq!(keys.anon.split('.').count(), 3, "the legacy key is a JWT");
    for key in [keys.publishable.clone(), keys.anon.clone()] {
        let app = TestApp::spawn_on(fresh_database().await, emulator.clone(), |a| {
            a.supabase_anon_key = Some(key.clone());
            // Every request asks the auth service, with the key, about the user's token.
            a.auth_verify_mode = Some("remote".into());
        })
        .await;
        let user = app.user(&email("keys")).await;
        let before = app.emulator.stats().user;
        let response = app.http.get(app.url("/api/me")).bearer_auth(&user.token).send().await.expect("request");
        let status = response.status().as_u16();
        let body: Value = response.json().await.expect("json");
        assert_eq!(status, 200, "with key {key}: {body}");
        assert_eq!(body["id"], user.id.to_string(), "{body}");
        assert!(app.emulator.stats().user > before, "GET /user was asked with key {key}");
        let (status, body) = app.send(app.http.get(app.url("/health/ready"))).await;
        assert_eq!(status, 200, "with key {key}: {body}");
    }
}
