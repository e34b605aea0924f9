//! Sign-up as a project configures it: email autoconfirm off (the user must confirm before signing in),
//! anonymous sign-ins on or off, and sessions started by flows without a password.
#![allow(clippy::unwrap_used)]

mod common;

use common::{Harness, PASSWORD, assert_error};
use gotrue_emulator::{EmulatorConfig, SignupSettings};
use reqwest::Method;
use serde_json::{Value, json};

fn with_signup(signup: SignupSettings) -> EmulatorConfig {
    EmulatorConfig { signup, ..EmulatorConfig::default() }
}

#[tokio::test]
async fn without_autoconfirm_sign_up_starts_no_session_until_the_address_is_confirmed() {
    let h = Harness::with_config(with_signup(SignupSettings { autoconfirm: false, anonymous: false })).await;
    let response =
        h.anon(Method::POST, "/signup").json(&json!({ "email": "Ivy@Example.com", "password": PASSWORD })).send();
    let response = response.await.unwrap();
    assert_eq!(response.status(), 200);
    let user: Value = response.json().await.unwrap();
    assert!(user.get("access_token").is_none(), "no session before confirmation: {user}");
    assert_eq!(user["email"], "ivy@example.com");
    assert!(user.get("email_confirmed_at").is_none(), "{user}");
    let id = user["id"].as_str().unwrap().parse().unwrap();

    let body = assert_error(h.password_grant("ivy@example.com", PASSWORD).await, 400, "email_not_confirmed").await;
    assert_eq!(body["msg"], "Email not confirmed");

    // Signing up again with a registered address looks the same (a made-up user), so sign-up does not reveal
    // who has an account.
    let again =
        h.anon(Method::POST, "/signup").json(&json!({ "email": "ivy@example.com", "password": PASSWORD })).send();
    let again: Value = again.await.unwrap().json().await.unwrap();
    assert_eq!(again["email"], "ivy@example.com");
    assert_ne!(again["id"], user["id"]);

    h.emu.confirm_email(id).unwrap();
    let token: Value = h.password_grant("ivy@example.com", PASSWORD).await.json().await.unwrap();
    assert!(token["user"]["email_confirmed_at"].is_string(), "{token}");
    assert_eq!(token["user"]["user_metadata"]["email_verified"], true);
    let me: Value = h.get_user(token["access_token"].as_str().unwrap()).await.json().await.unwrap();
    assert!(me["email_confirmed_at"].is_string());
    assert!(h.emu.user(id).unwrap().email_confirmed_at.is_some());
}

#[tokio::test]
async fn anonymous_sign_ins_are_refused_unless_enabled() {
    let h = Harness::start().await;
    let refused = h.signup(json!({})).await;
    let body = assert_error(refused, 422, "anonymous_provider_disabled").await;
    assert_eq!(body["msg"], "Anonymous sign-ins are disabled");
    assert!(h.emu.sign_in_anonymously().is_err());

    let h = Harness::with_config(with_signup(SignupSettings { autoconfirm: true, anonymous: true })).await;
    let response = h.anon(Method::POST, "/signup").json(&json!({ "data": { "theme": "dark" } })).send();
    let body: Value = response.await.unwrap().json().await.unwrap();
    let token = body["access_token"].as_str().unwrap();
    assert_eq!(body["user"]["is_anonymous"], true);
    assert_eq!(body["user"]["email"], "");
    assert_eq!(body["user"]["app_metadata"]["provider"], "anonymous");
    assert_eq!(body["user"]["identities"], json!([]));
    let claims: Value = serde_json::from_slice(&base64_url_decode(token.split('.').nth(1).unwrap())).unwrap();
    assert_eq!(claims["is_anonymous"], true);
    assert_eq!(claims["role"], "authenticated");
    assert_eq!(claims["amr"][0]["method"], "anonymous");
    let me: Value = h.get_user(token).await.json().await.unwrap();
    assert_eq!(me["is_anonymous"], true);

    let session = h.emu.sign_in_anonymously().unwrap();
    assert!(session.user.is_anonymous);
    assert_ne!(session.user.id, body["user"]["id"].as_str().unwrap().parse::<uuid::Uuid>().unwrap());
}

#[tokio::test]
async fn a_session_without_the_password_grant_may_belong_to_an_unconfirmed_user() {
    let h = Harness::start().await;
    let user = h.emu.create_unconfirmed_user("oauth@example.com", PASSWORD).unwrap();
    assert!(user.email_confirmed_at.is_none());
    assert!(h.emu.sign_in("oauth@example.com", PASSWORD).is_err());
    let session = h.emu.start_session(user.id).unwrap();
    let me = h.get_user(&session.access_token).await;
    assert_eq!(me.status(), 200);
    let me: Value = me.json().await.unwrap();
    assert!(me.get("email_confirmed_at").is_none(), "{me}");
    assert_eq!(me["email"], "oauth@example.com");

    h.emu.ban_user(user.id, Some(std::time::Duration::from_secs(60))).unwrap();
    assert!(h.emu.start_session(user.id).is_err());
    assert!(h.emu.start_session(uuid::Uuid::new_v4()).is_err());
}

fn base64_url_decode(s: &str) -> Vec<u8> {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(s).unwrap()
}

#[tokio::test]
async fn without_autoconfirm_the_confirmation_email_signs_the_user_in() {
    let h = Harness::with_config(with_signup(SignupSettings { autoconfirm: false, anonymous: false })).await;
    let settings: Value = h.anon(Method::GET, "/settings").send().await.unwrap().json().await.unwrap();
    assert_eq!(settings["mailer_autoconfirm"], false, "{settings}");

    let signup = h.anon(Method::POST, "/signup?redirect_to=http://localhost:5173/welcome");
    let response = signup.json(&json!({ "email": "June@Example.com", "password": PASSWORD })).send().await.unwrap();
    let user: Value = response.json().await.unwrap();
    assert!(user["confirmation_sent_at"].is_string(), "{user}");
    let mail = h.emu.mailbox_for("june@example.com");
    assert_eq!(mail.len(), 1, "one confirmation email: {mail:?}");
    assert_eq!(mail[0].kind, gotrue_emulator::EmailKind::Signup);
    assert!(mail[0].link.contains("type=signup"), "{}", mail[0].link);

    // A registered address signing up again gets no email (the answer is a made-up user).
    let again = h.anon(Method::POST, "/signup").json(&json!({ "email": "june@example.com", "password": PASSWORD }));
    assert_eq!(again.send().await.unwrap().status(), 200);
    assert_eq!(h.emu.mailbox_for("june@example.com").len(), 1);

    let client = reqwest::Client::builder().no_proxy().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let followed = client.get(&mail[0].link).send().await.unwrap();
    assert_eq!(followed.status(), 303);
    let location = followed.headers()["location"].to_str().unwrap().to_owned();
    assert!(location.starts_with("http://localhost:5173/welcome#access_token="), "{location}");
    let token: Value = h.password_grant("june@example.com", PASSWORD).await.json().await.unwrap();
    assert!(token["user"]["email_confirmed_at"].is_string(), "{token}");
}
