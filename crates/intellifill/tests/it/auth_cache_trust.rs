//! Redis is inside the auth trust boundary only as far as it must be: an L2 (shared) token cache entry is
//! used for a token only when it names that token's own user, session and lifetime. A forged entry (anyone who
//! can write to Redis) never makes a token act as someone else: it is deleted and the token verified again.

use std::time::Duration;

use intellifill::testing::Key;
use intellifill::testing::TokenHash;
use intellifill::testing::{CachedUser, Entry};
use serde_json::Value;

use crate::auth_pipeline::unverified_claims;
use crate::helpers::{TestApp, TestUser, email};
use crate::observability::{metrics, sample};

/// Write `entry` into Redis as the L2 entry of `token` (what an attacker with Redis access could do).
async fn plant(app: &TestApp, token: &str, entry: &Entry) {
    let kv = &app.state.kv;
    let key = kv.key(Key::Token(&TokenHash::of(token).hex()));
    let json = serde_json::to_string(entry).expect("json");
    kv.set_px(key, json, Duration::from_secs(600)).await.expect("redis write");
}

/// A fresh verification of `victim` planted for `token`'s key, with the token's own lifetime.
fn entry_naming(victim: &TestUser, token: &str, session: Option<uuid::Uuid>) -> Entry {
    let claims = unverified_claims(token);
    Entry::Valid {
        user: CachedUser {
            id: victim.id,
            email: victim.email.as_str().into(),
            session_id: session,
            issued_at: claims["iat"].as_i64().expect("iat"),
            expires_at: claims["exp"].as_i64().expect("exp"),
            aal: Some("aal1".into()),
            email_confirmed: true,
            is_anonymous: false,
        },
        cached_at: chrono::Utc::now().timestamp_millis(),
    }
}

fn session_of(token: &str) -> Option<uuid::Uuid> {
    unverified_claims(token)["session_id"].as_str().and_then(|s| s.parse().ok())
}

#[tokio::test]
async fn a_forged_l2_entry_never_serves_a_token_as_another_user() {
    let app = TestApp::spawn().await;
    let (mallory, admin) = (app.user(&email("mallory")).await, app.user(&email("admin")).await);

    // Remote mode: Mallory's token, never seen by this instance, with an L2 entry that says "admin".
    plant(&app, &mallory.token, &entry_naming(&admin, &mallory.token, session_of(&admin.token))).await;
    let calls = app.emulator.stats().user;
    let (s, me) = app.get(&mallory, "/api/me").await;
    assert_eq!(s, 200, "{me}");
    assert_eq!(me["id"], mallory.id.to_string(), "served as the token's own user");
    assert_eq!(app.emulator.stats().user - calls, 1, "verified again with the auth service");
    let hash = TokenHash::of(&mallory.token);
    let repaired = app.state.auth.cache().get_l2(&hash).await;
    assert!(matches!(&repaired, Some(Entry::Valid { user, .. }) if user.id == mallory.id), "{repaired:?}");

    // The right user with another session (one not revoked when this one is): refused as well.
    let other = app.peer(|_| {}).await;
    plant(&other, &mallory.token, &entry_naming(&mallory, &mallory.token, Some(uuid::Uuid::new_v4()))).await;
    let calls = app.emulator.stats().user;
    assert_eq!(other.get(&mallory, "/api/me").await.0, 200);
    assert_eq!(app.emulator.stats().user - calls, 1, "a session that is not the token's: verified again");
    let l1 = other.state.auth.cache().get_l1(&hash).expect("cached");
    assert!(matches!(l1.as_ref(), Entry::Valid { user, .. } if user.session_id == session_of(&mallory.token)));

    // Local mode: no upstream call, the token's own claims decide, the forged entry is gone.
    let local = app.peer(|a| a.auth_verify_mode = Some("local".into())).await;
    plant(&local, &mallory.token, &entry_naming(&admin, &mallory.token, session_of(&admin.token))).await;
    let calls = app.emulator.stats().user;
    let (s, me): (u16, Value) = local.get(&mallory, "/api/me").await;
    assert_eq!((s, me["id"].as_str()), (200, Some(mallory.id.to_string().as_str())), "{me}");
    assert_eq!(app.emulator.stats().user, calls);
    assert!(local.state.auth.cache().get_l2(&hash).await.is_none(), "the forged entry was deleted");

    // Every forgery was counted (one recorder per test process, shared by the three instances).
    assert_eq!(sample(&metrics(&app).await, "auth_token_cache_mismatches_total"), Some(3.0));
    // A genuine L2 entry is still used as before: the admin's token verified on one instance is an L2 hit on
    // another.
    assert_eq!(app.get(&admin, "/api/me").await.0, 200);
    let calls = app.emulator.stats().user;
    let (s, me) = other.get(&admin, "/api/me").await;
    assert_eq!((s, me["id"].as_str()), (200, Some(admin.id.to_string().as_str())));
    assert_eq!(app.emulator.stats().user, calls, "a matching entry needs no upstream call");
}
