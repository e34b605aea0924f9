//! The GoTrue API as a backend sees it: gateway, tokens, errors, sessions
//! and the admin API.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::{Harness, PASSWORD, assert_error, json_of, parts};
use gotrue_emulator::{EmulatorConfig, Signing};
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Header, Validation};
use reqwest::Method;
use serde_json::{Value, json};

fn validation(h: &Harness, alg: Algorithm) -> Validation {
    let mut v = Validation::new(alg);
    v.set_audience(&["authenticated"]);
    v.set_issuer(&[h.emu.issuer()]);
    v.leeway = 0;
    v
}

#[tokio::test]
async fn gateway_requires_a_known_apikey_except_for_jwks() {
    let h = Harness::start().await;

    let missing = h.http.get(h.url("/health")).send().await.unwrap();
    let (status, code, body) = parts(missing).await;
    assert_eq!(status, 401);
    assert_eq!(code, None);
    assert_eq!(
        body,
        json!({ "message": "No API key found in request", "hint": "No `apikey` request header or url param was found." })
    );

    let wrong = h.http.get(h.url("/health")).header("apikey", "sb_publishable_nope").send().await.unwrap();
    let (status, code, body) = parts(wrong).await;
    assert_eq!(status, 401);
    assert_eq!(code, None, "the gateway's refusal carries no GoTrue error code");
    assert_eq!(
        body,
        json!({ "message": "Invalid API key", "hint": "Double check your Supabase `anon` or `service_role` API key." })
    );

    // The gateway rejects before GoTrue looks at anything else.
    let token_without_key = h
        .http
        .post(h.url("/token?grant_type=password"))
        .json(&json!({ "email": "a@b.co", "password": "x" }))
        .send()
        .await
        .unwrap();
    assert_eq!(token_without_key.status(), 401);

    for key in [h.emu.anon_key(), h.emu.service_role_key()] {
        let ok = h.http.get(h.url("/health")).header("apikey", key).send().await.unwrap();
        let (status, _, body) = parts(ok).await;
        assert_eq!(status, 200);
        assert_eq!(body["name"], "GoTrue");
        assert!(body["version"].is_string());
        assert!(body["description"].is_string());
    }

    // Kong also takes the key from the query string.
    let query_key = h.http.get(format!("{}?apikey={}", h.url("/health"), h.emu.anon_key())).send().await.unwrap();
    assert_eq!(query_key.status(), 200);

    let jwks = h.http.get(h.url("/.well-known/jwks.json")).send().await.unwrap();
    assert_eq!(jwks.status(), 200);
    let jwks: Value = jwks.json().await.unwrap();
    assert_eq!(jwks, h.emu.jwks());

    // Unknown paths behind a valid key: chi's plain 404.
    let unknown = h.anon(Method::GET, "/nope").send().await.unwrap();
    assert_eq!(unknown.status(), 404);
}

#[tokio::test]
async fn settings_need_only_the_apikey() {
    let h = Harness::start().await;
    let (status, code, body) = parts(h.anon(Method::GET, "/settings").send().await.unwrap()).await;
    assert_eq!((status, code), (200, None));
    assert_eq!(body["external"]["email"], true);
    assert_eq!(body["external"]["phone"], false);
    assert_eq!(body["external"].as_object().unwrap().len(), 25, "GoTrue's provider list: {body}");
    assert_eq!(body["disable_signup"], false);
    assert_eq!(body["mailer_autoconfirm"], true);
    assert!(body["sms_provider"].is_string() && body["saml_enabled"].is_boolean(), "{body}");

    let (status, code, body) =
        parts(h.http.get(h.url("/settings")).header("apikey", "sb_publishable_rotated").send().await.unwrap()).await;
    assert_eq!((status, code), (401, None));
    assert_eq!(body["message"], "Invalid API key");
}

#[tokio::test]
async fn default_keys_look_like_new_supabase_keys() {
    let config = EmulatorConfig::default();
    assert!(config.anon_key.starts_with("sb_publishable_"));
    assert!(config.service_role_key.starts_with("sb_secret_"));
    assert_ne!(config.anon_key, EmulatorConfig::default().anon_key);
    assert_eq!(config.access_token_ttl, Duration::from_secs(3600));
    assert_eq!(config.signing, Signing::Es256);
}

#[tokio::test]
async fn password_grant_issues_es256_tokens_verifiable_with_the_jwks() {
    let h = Harness::start().await;
    let user = h.emu.create_user("Ada@Example.com", PASSWORD).unwrap();
    assert_eq!(user.email, "ada@example.com");

    let response = h.password_grant("ada@example.com", PASSWORD).await;
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["token_type"], "bearer");
    let expires_in = body["expires_in"].as_i64().unwrap();
    assert!((3590..=3600).contains(&expires_in), "{expires_in}");
    let expires_at = body["expires_at"].as_i64().unwrap();
    let refresh_token = body["refresh_token"].as_str().unwrap();
    assert_eq!(refresh_token.len(), 12);
    assert_eq!(body["user"]["id"], user.id.to_string());
    assert_eq!(body["user"]["email"], "ada@example.com");
    assert!(body["user"]["last_sign_in_at"].is_string());

    let access_token = body["access_token"].as_str().unwrap();
    let header = jsonwebtoken::decode_header(access_token).unwrap();
    assert_eq!(header.alg, Algorithm::ES256);
    assert_eq!(header.typ.as_deref(), Some("JWT"));
    assert_eq!(header.kid, h.emu.kid());
    assert!(h.emu.kid().is_some());

    // Verify exactly like a resource server would: JWKS over HTTP, by kid.
    let jwks: JwkSet = h.http.get(h.url("/.well-known/jwks.json")).send().await.unwrap().json().await.unwrap();
    let jwk = jwks.find(header.kid.as_deref().unwrap()).unwrap();
    let raw_jwk = &h.emu.jwks()["keys"][0];
    assert_eq!(raw_jwk["kty"], "EC");
    assert_eq!(raw_jwk["crv"], "P-256");
    assert_eq!(raw_jwk["alg"], "ES256");
    assert_eq!(raw_jwk["use"], "sig");
    assert_eq!(raw_jwk["key_ops"], json!(["verify"]));
    let key = DecodingKey::from_jwk(jwk).unwrap();
    let data = jsonwebtoken::decode::<Value>(access_token, &key, &validation(&h, Algorithm::ES256)).unwrap();
    let c = data.claims;
    assert_eq!(c["iss"], format!("{}/auth/v1", h.emu.base_url()));
    assert_eq!(c["sub"], user.id.to_string());
    assert_eq!(c["aud"], "authenticated");
    assert_eq!(c["exp"], expires_at);
    assert_eq!(c["exp"].as_i64().unwrap() - c["iat"].as_i64().unwrap(), 3600);
    assert_eq!(c["email"], "ada@example.com");
    assert_eq!(c["phone"], "");
    assert_eq!(c["app_metadata"]["provider"], "email");
    assert_eq!(c["app_metadata"]["providers"], json!(["email"]));
    assert!(c["user_metadata"].is_object());
    assert_eq!(c["role"], "authenticated");
    assert_eq!(c["aal"], "aal1");
    assert_eq!(c["amr"][0]["method"], "password");
    assert!(c["amr"][0]["timestamp"].is_i64());
    let session_id = c["session_id"].as_str().unwrap();
    assert!(uuid::Uuid::parse_str(session_id).is_ok());
    assert_eq!(c["is_anonymous"], false);

    // The in-process view of the same token.
    let session = h.emu.sign_in("ada@example.com", PASSWORD).unwrap();
    let claims = h.emu.claims_for(&session);
    assert_eq!(claims["session_id"], session.session_id.to_string());
    assert_eq!(claims["sub"], user.id.to_string());
    assert_ne!(claims["session_id"], c["session_id"]);
}

#[tokio::test]
async fn password_grant_errors_match_gotrue() {
    let h = Harness::start().await;
    h.emu.create_user("bob@example.com", PASSWORD).unwrap();

    let body =
        assert_error(h.password_grant("bob@example.com", "wrong password").await, 400, "invalid_credentials").await;
    assert_eq!(body["msg"], "Invalid login credentials");
    assert_error(h.password_grant("nobody@example.com", PASSWORD).await, 400, "invalid_credentials").await;

    let missing =
        h.anon(Method::POST, "/token?grant_type=password").json(&json!({ "password": PASSWORD })).send().await.unwrap();
    let body = assert_error(missing, 400, "validation_failed").await;
    assert_eq!(body["msg"], "missing email or phone");

    let garbage = h.anon(Method::POST, "/token?grant_type=password").body("{not json").send().await.unwrap();
    assert_error(garbage, 400, "bad_json").await;

    // GoTrue answers unknown grant types with invalid_credentials.
    let unknown = h.anon(Method::POST, "/token?grant_type=magic").json(&json!({})).send().await.unwrap();
    let body = assert_error(unknown, 400, "invalid_credentials").await;
    assert_eq!(body["msg"], "unsupported_grant_type");

    // Users created without confirmation cannot sign in.
    h.create_unconfirmed("unconfirmed@example.com").await;
    let body =
        assert_error(h.password_grant("unconfirmed@example.com", PASSWORD).await, 400, "email_not_confirmed").await;
    assert_eq!(body["msg"], "Email not confirmed");
    assert!(h.emu.sign_in("unconfirmed@example.com", PASSWORD).is_err());
}

#[tokio::test]
async fn hs256_mode_signs_with_the_shared_secret_and_publishes_no_keys() {
    let secret = "super-secret-jwt-token-with-at-least-32-characters-long";
    let h = Harness::with_config(EmulatorConfig {
        signing: Signing::Hs256 { secret: secret.to_owned() },
        ..EmulatorConfig::default()
    })
    .await;
    assert_eq!(h.emu.kid(), None);
    assert_eq!(h.emu.jwks(), json!({ "keys": [] }));
    let jwks: Value = h.http.get(h.url("/.well-known/jwks.json")).send().await.unwrap().json().await.unwrap();
    assert_eq!(jwks, json!({ "keys": [] }));

    let user = h.emu.create_user("hs@example.com", PASSWORD).unwrap();
    let body: Value = h.password_grant("hs@example.com", PASSWORD).await.json().await.unwrap();
    let token = body["access_token"].as_str().unwrap();
    let header = jsonwebtoken::decode_header(token).unwrap();
    assert_eq!(header.alg, Algorithm::HS256);
    assert_eq!(header.kid, None);
    let data = jsonwebtoken::decode::<Value>(
        token,
        &DecodingKey::from_secret(secret.as_bytes()),
        &validation(&h, Algorithm::HS256),
    )
    .unwrap();
    assert_eq!(data.claims["sub"], user.id.to_string());

    let me = h.get_user(token).await;
    assert_eq!(me.status(), 200);

    // A token signed with another secret is rejected.
    let forged = jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &data.claims,
        &jsonwebtoken::EncodingKey::from_secret(b"another secret"),
    )
    .unwrap();
    let body = assert_error(h.get_user(&forged).await, 403, "bad_jwt").await;
    assert!(body["msg"].as_str().unwrap().contains("signature is invalid"));
}

#[tokio::test]
async fn errors_come_in_both_formats_with_the_code_header() {
    let h = Harness::start().await;

    let legacy = h.get_user("not-a-jwt").await;
    let body = assert_error(legacy, 403, "bad_jwt").await;
    assert_eq!(
        body["msg"],
        "invalid JWT: unable to parse or verify signature, token is malformed: token contains an invalid number of segments"
    );
    assert_eq!(body.as_object().unwrap().len(), 3, "{body}");

    let versioned = h
        .anon(Method::GET, "/user")
        .bearer_auth("not-a-jwt")
        .header("X-Supabase-Api-Version", "2024-01-01")
        .send()
        .await
        .unwrap();
    assert_eq!(versioned.headers().get("x-supabase-api-version").map(|v| v.to_str().unwrap()), Some("2024-01-01"));
    let (status, code, body) = parts(versioned).await;
    assert_eq!(status, 403);
    assert_eq!(code.as_deref(), Some("bad_jwt"));
    assert_eq!(body["code"], "bad_jwt");
    assert!(body["message"].as_str().unwrap().starts_with("invalid JWT"));
    assert_eq!(body.as_object().unwrap().len(), 2, "{body}");

    // Dates before 2024-01-01 (and garbage) keep the initial format.
    for version in ["2023-12-31", "yesterday"] {
        let old = h.anon(Method::GET, "/user").header("X-Supabase-Api-Version", version).send().await.unwrap();
        let body = assert_error(old, 401, "no_authorization").await;
        assert_eq!(body["msg"], "This endpoint requires a valid Bearer token");
    }

    // Weak passwords carry their reasons in both formats.
    let weak = h
        .anon(Method::POST, "/signup")
        .header("X-Supabase-Api-Version", "2024-01-01")
        .json(&json!({ "email": "weak@example.com", "password": "123" }))
        .send()
        .await
        .unwrap();
    let (status, code, body) = parts(weak).await;
    assert_eq!(status, 422);
    assert_eq!(code.as_deref(), Some("weak_password"));
    assert_eq!(body["code"], "weak_password");
    assert_eq!(body["weak_password"]["reasons"], json!(["length"]));
}

#[tokio::test]
async fn user_endpoint_verifies_tokens_sessions_users_and_bans() {
    let h = Harness::start().await;
    let user = h.emu.create_user("carol@example.com", PASSWORD).unwrap();
    let session = h.emu.sign_in("carol@example.com", PASSWORD).unwrap();

    // Valid token.
    let (status, _, body) = parts(h.get_user(&session.access_token).await).await;
    assert_eq!(status, 200);
    assert_eq!(body["id"], user.id.to_string());
    assert_eq!(body["aud"], "authenticated");
    assert_eq!(body["role"], "authenticated");
    assert_eq!(body["email"], "carol@example.com");
    assert_eq!(body["phone"], "");
    assert!(body["email_confirmed_at"].is_string());
    assert!(body["confirmed_at"].is_string());
    assert!(body["last_sign_in_at"].is_string());
    assert_eq!(body["app_metadata"]["provider"], "email");
    assert_eq!(body["user_metadata"]["email_verified"], true);
    assert_eq!(body["identities"][0]["provider"], "email");
    assert_eq!(body["identities"][0]["user_id"], user.id.to_string());
    assert!(body["created_at"].is_string());
    assert!(body["updated_at"].is_string());
    assert_eq!(body["is_anonymous"], false);
    assert!(body.get("banned_until").is_none());

    // No bearer at all.
    let none = h.anon(Method::GET, "/user").send().await.unwrap();
    assert_error(none, 401, "no_authorization").await;

    // Expired token, otherwise genuine.
    let mut claims = h.emu.claims_for(&session);
    let now = chrono::Utc::now().timestamp();
    claims["iat"] = json!(now - 7200);
    claims["exp"] = json!(now - 3600);
    let expired = h.emu.mint_token(h.emu.token_header(), &claims);
    let body = assert_error(h.get_user(&expired).await, 403, "bad_jwt").await;
    assert!(body["msg"].as_str().unwrap().ends_with("token is expired"), "{body}");

    // Garbage.
    assert_error(h.get_user("a.b.c").await, 403, "bad_jwt").await;

    // Signed by a different key under our kid.
    let other = Harness::start().await;
    let mut forged_header = other.emu.token_header();
    forged_header.kid = h.emu.kid();
    let forged = other.emu.mint_token(forged_header, &h.emu.claims_for(&session));
    let body = assert_error(h.get_user(&forged).await, 403, "bad_jwt").await;
    assert!(body["msg"].as_str().unwrap().contains("signature is invalid"));

    // Unknown kid.
    let foreign = other.emu.mint_token(other.emu.token_header(), &h.emu.claims_for(&session));
    let body = assert_error(h.get_user(&foreign).await, 403, "bad_jwt").await;
    assert!(body["msg"].as_str().unwrap().contains("unrecognized JWT kid"));

    // sub that is not a UUID.
    let mut bad_sub = h.emu.claims_for(&session);
    bad_sub["sub"] = json!("not-a-uuid");
    let token = h.emu.mint_token(h.emu.token_header(), &bad_sub);
    assert_error(h.get_user(&token).await, 400, "bad_jwt").await;

    // Wrong audience.
    let mut anon_aud = h.emu.claims_for(&session);
    anon_aud["aud"] = json!("somebody-else");
    let token = h.emu.mint_token(h.emu.token_header(), &anon_aud);
    assert_error(h.get_user(&token).await, 400, "validation_failed").await;

    // Banned: existing tokens stop working, and come back after unbanning.
    h.emu.ban_user(user.id, Some(Duration::from_secs(3600))).unwrap();
    let body = assert_error(h.get_user(&session.access_token).await, 403, "user_banned").await;
    assert_eq!(body["msg"], "User is banned");
    assert_eq!(h.emu.session_count(user.id), 1, "bans keep sessions");
    h.emu.ban_user(user.id, None).unwrap();
    assert_eq!(h.get_user(&session.access_token).await.status(), 200);

    // Logged out: the session is gone.
    assert_eq!(h.logout(&session.access_token, None).await.status(), 204);
    let body = assert_error(h.get_user(&session.access_token).await, 403, "session_not_found").await;
    assert_eq!(body["msg"], "Session from session_id claim in JWT does not exist");

    // Deleted user.
    let session = h.emu.sign_in("carol@example.com", PASSWORD).unwrap();
    h.emu.delete_user(user.id).unwrap();
    let body = assert_error(h.get_user(&session.access_token).await, 403, "user_not_found").await;
    assert_eq!(body["msg"], "User from sub claim in JWT does not exist");
    assert!(h.emu.user(user.id).is_none());
}

#[tokio::test]
async fn logout_scopes_end_the_right_sessions() {
    let h = Harness::start().await;
    let (user, [a, b, c]) = h.user_with_sessions("dave@example.com");
    assert_eq!(h.emu.session_count(user.id), 3);

    let bad_scope = h.logout(&a.access_token, Some("everywhere")).await;
    let body = assert_error(bad_scope, 400, "validation_failed").await;
    assert_eq!(body["msg"], "Unsupported logout scope \"everywhere\"");
    assert_eq!(h.emu.session_count(user.id), 3);

    // local: only a's session.
    assert_eq!(h.logout(&a.access_token, Some("local")).await.status(), 204);
    assert_error(h.get_user(&a.access_token).await, 403, "session_not_found").await;
    assert_eq!(h.get_user(&b.access_token).await.status(), 200);
    assert_eq!(h.get_user(&c.access_token).await.status(), 200);
    assert_error(h.refresh(&a.refresh_token).await, 400, "refresh_token_not_found").await;

    // others: everything but b.
    assert_eq!(h.logout(&b.access_token, Some("others")).await.status(), 204);
    assert_eq!(h.get_user(&b.access_token).await.status(), 200);
    assert_error(h.get_user(&c.access_token).await, 403, "session_not_found").await;
    assert_error(h.refresh(&c.refresh_token).await, 400, "refresh_token_not_found").await;
    assert_eq!(h.emu.session_count(user.id), 1);

    // global (the default): everything.
    let d = h.emu.sign_in("dave@example.com", PASSWORD).unwrap();
    assert_eq!(h.logout(&b.access_token, None).await.status(), 204);
    assert_error(h.get_user(&b.access_token).await, 403, "session_not_found").await;
    assert_error(h.get_user(&d.access_token).await, 403, "session_not_found").await;
    let body = assert_error(h.refresh(&d.refresh_token).await, 400, "refresh_token_not_found").await;
    assert_eq!(body["msg"], "Invalid Refresh Token: Refresh Token Not Found");
    assert_eq!(h.emu.session_count(user.id), 0);

    // A logged-out token cannot log out again.
    assert_error(h.logout(&b.access_token, None).await, 403, "session_not_found").await;
    let no_bearer = h.anon(Method::POST, "/logout").send().await.unwrap();
    assert_error(no_bearer, 401, "no_authorization").await;
}

#[tokio::test]
async fn refresh_tokens_rotate_within_the_same_session() {
    let h = Harness::start().await;
    let user = h.emu.create_user("erin@example.com", PASSWORD).unwrap();
    let first: Value = h.password_grant("erin@example.com", PASSWORD).await.json().await.unwrap();
    let rt1 = first["refresh_token"].as_str().unwrap().to_owned();
    let session_id = jsonwebtoken::dangerous::insecure_decode::<Value>(first["access_token"].as_str().unwrap())
        .unwrap()
        .claims["session_id"]
        .clone();

    let second = h.refresh(&rt1).await;
    assert_eq!(second.status(), 200);
    let second: Value = second.json().await.unwrap();
    let rt2 = second["refresh_token"].as_str().unwrap().to_owned();
    assert_ne!(rt1, rt2);
    assert_eq!(second["user"]["id"], user.id.to_string());
    assert_eq!(second["token_type"], "bearer");
    let access2 = second["access_token"].as_str().unwrap();
    let claims2 = jsonwebtoken::dangerous::insecure_decode::<Value>(access2).unwrap().claims;
    assert_eq!(claims2["session_id"], session_id);
    assert_eq!(claims2["amr"][0]["method"], "password");
    assert_eq!(h.get_user(access2).await.status(), 200);

    // GoTrue hands the active token back to a client that lost the answer
    // and retries with the direct parent...
    let retried: Value = h.refresh(&rt1).await.json().await.unwrap();
    assert_eq!(retried["refresh_token"], rt2.as_str());

    // ...but an older token is reuse: the whole family is revoked.
    let third: Value = h.refresh(&rt2).await.json().await.unwrap();
    let rt3 = third["refresh_token"].as_str().unwrap().to_owned();
    let body = assert_error(h.refresh(&rt1).await, 400, "refresh_token_already_used").await;
    assert_eq!(body["msg"], "Invalid Refresh Token: Already Used");
    assert_error(h.refresh(&rt3).await, 400, "refresh_token_already_used").await;

    // Format and existence checks.
    let body = assert_error(h.refresh("short").await, 400, "validation_failed").await;
    assert_eq!(body["msg"], "Refresh token is not valid");
    assert_error(h.refresh("").await, 400, "validation_failed").await;
    assert_error(h.refresh("zzzzzzzzzzzz").await, 400, "refresh_token_not_found").await;

    // Banned users cannot refresh.
    let session = h.emu.sign_in("erin@example.com", PASSWORD).unwrap();
    h.emu.ban_user(user.id, Some(Duration::from_secs(60))).unwrap();
    let body = assert_error(h.refresh(&session.refresh_token).await, 400, "user_banned").await;
    assert_eq!(body["msg"], "Invalid Refresh Token: User Banned");
    h.emu.ban_user(user.id, None).unwrap();
    let refreshed = h.emu.refresh(&session.refresh_token).unwrap();
    assert_eq!(refreshed.session_id, session.session_id);
}

#[tokio::test]
async fn signup_autoconfirms_and_signs_in() {
    let h = Harness::start().await;
    let response = h
        .signup(json!({
            "email": "Frank@Example.com",
            "password": PASSWORD,
            "data": { "display_name": "Frank" }
        }))
        .await;
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["token_type"], "bearer");
    assert_eq!(body["user"]["email"], "frank@example.com");
    assert_eq!(body["user"]["user_metadata"]["display_name"], "Frank");
    assert!(body["user"]["email_confirmed_at"].is_string());
    let me = h.get_user(body["access_token"].as_str().unwrap()).await;
    assert_eq!(me.status(), 200);
    assert!(h.emu.sign_in("frank@example.com", PASSWORD).is_ok());

    let again = h.signup(json!({ "email": "frank@example.com", "password": PASSWORD })).await;
    let body = assert_error(again, 422, "user_already_exists").await;
    assert_eq!(body["msg"], "User already registered");

    let weak = h.signup(json!({ "email": "g@example.com", "password": "12345" })).await;
    let body = assert_error(weak, 422, "weak_password").await;
    assert_eq!(body["weak_password"]["reasons"], json!(["length"]));

    let no_password = h.signup(json!({ "email": "g@example.com" })).await;
    assert_error(no_password, 400, "validation_failed").await;

    let bad_email = h.signup(json!({ "email": "not-an-email", "password": PASSWORD })).await;
    assert_error(bad_email, 400, "validation_failed").await;
}

#[tokio::test]
async fn admin_endpoints_require_the_service_role() {
    let h = Harness::start().await;
    h.emu.create_user("henry@example.com", PASSWORD).unwrap();
    let session = h.emu.sign_in("henry@example.com", PASSWORD).unwrap();

    // Anon key only: the gateway's anon role is not an admin.
    let anon = h.anon(Method::GET, "/admin/users").send().await.unwrap();
    let body = assert_error(anon, 403, "not_admin").await;
    assert_eq!(body["msg"], "User not allowed");

    // A user's token is not an admin token, even next to the service key.
    let user_token = h.list_users(h.emu.service_role_key(), Some(&session.access_token)).await;
    assert_error(user_token, 403, "not_admin").await;

    // Garbage bearer.
    let garbage = h.list_users(h.emu.anon_key(), Some("garbage")).await;
    assert_error(garbage, 403, "bad_jwt").await;

    // The service key as apikey alone, or as bearer.
    let as_apikey = h.list_users(h.emu.service_role_key(), None).await;
    assert_eq!(as_apikey.status(), 200);
    let as_bearer = h.list_users(h.emu.anon_key(), Some(h.emu.service_role_key())).await;
    assert_eq!(as_bearer.status(), 200);

    // A service_role JWT signed with the project key works too.
    let now = chrono::Utc::now().timestamp();
    let service_jwt = h.emu.mint_token(
        h.emu.token_header(),
        &json!({ "iss": "supabase", "role": "service_role", "iat": now, "exp": now + 60 }),
    );
    let as_jwt = h.list_users(h.emu.anon_key(), Some(&service_jwt)).await;
    assert_eq!(as_jwt.status(), 200);
}

#[tokio::test]
async fn admin_user_lifecycle() {
    let h = Harness::start().await;

    let created = h
        .admin_create(json!({
            "email": "Ivy@Example.com",
            "password": PASSWORD,
            "email_confirm": true,
            "user_metadata": { "name": "Ivy" },
            "app_metadata": { "tenant": "t1" }
        }))
        .await;
    assert_eq!(created.status(), 200);
    let created: Value = created.json().await.unwrap();
    let id = created["id"].as_str().unwrap().to_owned();
    assert_eq!(created["email"], "ivy@example.com");
    assert_eq!(created["aud"], "authenticated");
    assert_eq!(created["role"], "authenticated");
    assert_eq!(created["user_metadata"]["name"], "Ivy");
    assert_eq!(created["app_metadata"]["tenant"], "t1");
    assert_eq!(created["app_metadata"]["provider"], "email");
    assert!(created["email_confirmed_at"].is_string());

    // The app_metadata shows up in tokens.
    let session = h.emu.sign_in("ivy@example.com", PASSWORD).unwrap();
    assert_eq!(h.emu.claims_for(&session)["app_metadata"]["tenant"], "t1");

    let duplicate = h.admin_create(json!({ "email": "ivy@example.com", "password": PASSWORD })).await;
    let body = assert_error(duplicate, 422, "email_exists").await;
    assert_eq!(body["msg"], "A user with this email address has already been registered");
    assert!(h.emu.create_user("ivy@example.com", PASSWORD).is_err());

    let nothing = h.admin_create(json!({})).await;
    assert_error(nothing, 400, "validation_failed").await;

    h.emu.create_user("jack@example.com", PASSWORD).unwrap();
    let list: Value = h.service(Method::GET, "/admin/users").send().await.unwrap().json().await.unwrap();
    assert_eq!(list["aud"], "authenticated");
    let emails: Vec<&str> = list["users"].as_array().unwrap().iter().map(|u| u["email"].as_str().unwrap()).collect();
    assert_eq!(emails, ["jack@example.com", "ivy@example.com"]);

    let got = h.service(Method::GET, &format!("/admin/users/{id}")).send().await.unwrap();
    assert_eq!(got.status(), 200);
    assert_eq!(got.json::<Value>().await.unwrap()["id"], id.as_str());
    let missing = h.service(Method::GET, &format!("/admin/users/{}", uuid::Uuid::new_v4())).send().await.unwrap();
    let body = assert_error(missing, 404, "user_not_found").await;
    assert_eq!(body["msg"], "User not found");
    let not_uuid = h.service(Method::GET, "/admin/users/123").send().await.unwrap();
    assert_error(not_uuid, 404, "validation_failed").await;

    // Ban: sessions survive (GoTrue only sets banned_until), but are refused.
    let banned = h
        .service(Method::PUT, &format!("/admin/users/{id}"))
        .json(&json!({ "ban_duration": "24h", "user_metadata": { "name": null, "plan": "pro" } }))
        .send()
        .await
        .unwrap();
    assert_eq!(banned.status(), 200);
    let banned: Value = banned.json().await.unwrap();
    assert!(banned["banned_until"].is_string());
    assert!(banned["user_metadata"].get("name").is_none());
    assert_eq!(banned["user_metadata"]["plan"], "pro");
    let uid = uuid::Uuid::parse_str(&id).unwrap();
    assert_eq!(h.emu.session_count(uid), 1);
    assert_error(h.get_user(&session.access_token).await, 403, "user_banned").await;
    let body = assert_error(h.password_grant("ivy@example.com", PASSWORD).await, 400, "user_banned").await;
    assert_eq!(body["msg"], "User is banned");

    let bad_duration = h
        .service(Method::PUT, &format!("/admin/users/{id}"))
        .json(&json!({ "ban_duration": "1d" }))
        .send()
        .await
        .unwrap();
    let body = assert_error(bad_duration, 400, "validation_failed").await;
    assert_eq!(body["msg"], "invalid format for ban duration: time: unknown unit \"d\" in duration \"1d\"");

    let unbanned: Value =
        json_of(h.service(Method::PUT, &format!("/admin/users/{id}")).json(&json!({ "ban_duration": "none" }))).await;
    assert!(unbanned.get("banned_until").is_none());
    assert_eq!(h.get_user(&session.access_token).await.status(), 200);

    // Password change through the admin API.
    let changed = h
        .service(Method::PUT, &format!("/admin/users/{id}"))
        .json(&json!({ "password": "a-brand-new-password" }))
        .send()
        .await
        .unwrap();
    assert_eq!(changed.status(), 200);
    assert!(h.emu.sign_in("ivy@example.com", PASSWORD).is_err());
    assert!(h.emu.sign_in("ivy@example.com", "a-brand-new-password").is_ok());

    // Delete: the user and its sessions are gone.
    let deleted = h.service(Method::DELETE, &format!("/admin/users/{id}")).send().await.unwrap();
    assert_eq!(deleted.status(), 200);
    assert_eq!(deleted.json::<Value>().await.unwrap(), json!({}));
    assert_error(h.get_user(&session.access_token).await, 403, "user_not_found").await;
    let gone = h.service(Method::GET, &format!("/admin/users/{id}")).send().await.unwrap();
    assert_error(gone, 404, "user_not_found").await;
    let again = h.service(Method::DELETE, &format!("/admin/users/{id}")).send().await.unwrap();
    assert_error(again, 404, "user_not_found").await;
}

#[tokio::test]
async fn in_process_api_round_trips() {
    let h = Harness::start().await;
    assert_eq!(h.emu.issuer(), format!("{}/auth/v1", h.emu.base_url()));
    assert!(h.emu.base_url().starts_with("http://127.0.0.1:"));

    let user = h.emu.create_user("kim@example.com", PASSWORD).unwrap();
    let session = h.emu.sign_in("kim@example.com", PASSWORD).unwrap();
    assert_eq!(session.user, h.emu.user(user.id).unwrap());
    assert!(session.expires_at > chrono::Utc::now().timestamp());

    // Re-signing the claims of a real token yields a token GoTrue accepts.
    let claims = h.emu.claims_for(&session);
    let resigned = h.emu.mint_token(h.emu.token_header(), &claims);
    assert_eq!(h.get_user(&resigned).await.status(), 200);

    // Tokens without kid are rejected in ES256 mode.
    let no_kid = h.emu.mint_token(Header::new(Algorithm::ES256), &claims);
    assert_error(h.get_user(&no_kid).await, 403, "bad_jwt").await;

    let err = h.emu.sign_in("kim@example.com", "wrong").unwrap_err();
    let api = err.downcast_ref::<gotrue_emulator::ApiError>().unwrap();
    assert_eq!(api.code, "invalid_credentials");

    assert!(h.emu.ban_user(uuid::Uuid::new_v4(), None).is_err());
    assert!(h.emu.delete_user(uuid::Uuid::new_v4()).is_err());
    h.emu.shutdown().await;
    h.emu.shutdown().await;
}
