//! The flows that need an email: the mailbox, `/otp`, `/verify` (links and
//! codes), `/recover`, `/resend`, email change through `PUT /user`,
//! `/invite` and `/admin/generate_link`.
#![allow(clippy::unwrap_used)]

mod common;

use common::{Harness, PASSWORD, assert_error, json_of, parts};
use gotrue_emulator::EmailKind;
use reqwest::Method;
use serde_json::{Value, json};

/// The fragment of a redirect's `Location` as key/value pairs.
fn fragment(location: &str) -> Vec<(String, String)> {
    let (_, fragment) = location.split_once('#').unwrap_or((location, ""));
    serde_urlencoded::from_str(fragment).unwrap()
}

fn get<'a>(pairs: &'a [(String, String)], key: &str) -> Option<&'a str> {
    pairs.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
}

/// Follows an email's link without following the redirect; returns the
/// status and the `Location`.
async fn open_link(link: &str) -> (u16, String) {
    let client = reqwest::Client::builder().no_proxy().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let response = client.get(link).send().await.unwrap();
    let location = response.headers().get("location").map(|v| v.to_str().unwrap().to_owned()).unwrap_or_default();
    (response.status().as_u16(), location)
}

async fn post(h: &Harness, path: &str, body: Value) -> reqwest::Response {
    h.anon(Method::POST, path).json(&body).send().await.unwrap()
}

#[tokio::test]
async fn invite_link_confirms_and_signs_in_through_the_redirect_fragment() {
    let h = Harness::start().await;
    let invite = h
        .service(Method::POST, "/invite?redirect_to=http://localhost:5173/welcome")
        .json(&json!({ "email": "Newbie@Example.com", "data": { "team": "blue" } }))
        .send()
        .await
        .unwrap();
    let (status, _, user) = parts(invite).await;
    assert_eq!(status, 200, "{user}");
    assert_eq!(user["email"], "newbie@example.com");
    assert!(user["invited_at"].is_string() && user["confirmation_sent_at"].is_string(), "{user}");
    assert!(user.get("email_confirmed_at").is_none());

    // The mailbox over HTTP, in the agreed shape.
    let mailbox: Value =
        json_of(h.http.get(format!("{}/__emulator/mailbox?to=newbie@example.com", h.emu.base_url()))).await;
    let messages = mailbox["messages"].as_array().unwrap();
    assert_eq!(messages.len(), 1, "{mailbox}");
    let message = &messages[0];
    let mut keys: Vec<&str> = message.as_object().unwrap().keys().map(String::as_str).collect();
    keys.sort_unstable();
    assert_eq!(keys, ["code", "id", "kind", "link", "sentAt", "subject", "to"]);
    assert_eq!(message["kind"], "invite");
    assert_eq!(message["to"], "newbie@example.com");
    assert_eq!(message["code"].as_str().unwrap().len(), 6);
    let link = message["link"].as_str().unwrap();
    assert!(link.starts_with(&format!("{}/auth/v1/verify?token=", h.emu.base_url())), "{link}");
    assert!(link.contains("type=invite") && link.contains("redirect_to=http%3A%2F%2Flocalhost%3A5173%2Fwelcome"));

    // Following the link (no apikey: an open route) signs in.
    let (status, location) = open_link(link).await;
    assert_eq!(status, 303);
    assert!(location.starts_with("http://localhost:5173/welcome#"), "{location}");
    let pairs = fragment(&location);
    let keys: Vec<&str> = pairs.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(keys, ["access_token", "expires_at", "expires_in", "refresh_token", "token_type", "type"]);
    assert_eq!(get(&pairs, "token_type"), Some("bearer"));
    assert_eq!(get(&pairs, "type"), Some("invite"));
    let me = h.get_user(get(&pairs, "access_token").unwrap()).await;
    let (status, _, me) = parts(me).await;
    assert_eq!(status, 200);
    assert!(me["email_confirmed_at"].is_string(), "{me}");
    assert_eq!(me["user_metadata"]["team"], "blue");
    assert_eq!(h.refresh(get(&pairs, "refresh_token").unwrap()).await.status(), 200);

    // Single use: the same link again is an error in the fragment, query dropped.
    let (status, location) = open_link(link).await;
    assert_eq!(status, 303);
    let pairs = fragment(&location);
    assert!(location.starts_with("http://localhost:5173/welcome#"), "{location}");
    assert_eq!(get(&pairs, "error"), Some("access_denied"));
    assert_eq!(get(&pairs, "error_code"), Some("otp_expired"));
    assert_eq!(get(&pairs, "error_description"), Some("Email link is invalid or has expired"));

    // A confirmed address cannot be invited again; invite needs the service role.
    let again = h.service(Method::POST, "/invite").json(&json!({ "email": "newbie@example.com" })).send().await;
    assert_error(again.unwrap(), 422, "email_exists").await;
    let anon = h.anon(Method::POST, "/invite").json(&json!({ "email": "x@example.com" })).send().await.unwrap();
    assert_error(anon, 403, "not_admin").await;

    // The in-process accessor and DELETE.
    assert_eq!(h.emu.mailbox_for("NEWBIE@example.com").len(), 1);
    let cleared = h.http.delete(format!("{}/__emulator/mailbox", h.emu.base_url())).send().await.unwrap();
    assert_eq!(cleared.status(), 204);
    assert!(h.emu.mailbox().is_empty());
}

#[tokio::test]
async fn magic_link_and_email_code() {
    let h = Harness::start().await;
    let refused = post(&h, "/otp", json!({ "email": "nobody@example.com", "create_user": false })).await;
    assert_error(refused, 422, "otp_disabled").await;
    assert!(h.emu.mailbox().is_empty());
    assert_error(post(&h, "/otp", json!({})).await, 400, "validation_failed").await;
    assert_error(post(&h, "/otp", json!({ "email": "not-an-email" })).await, 400, "validation_failed").await;

    // An unknown address becomes a user (autoconfirm) and gets a magic link with a code.
    let (status, _, body) = parts(post(&h, "/otp", json!({ "email": "mo@example.com" })).await).await;
    assert_eq!((status, body), (200, json!({})));
    let mail = h.emu.mailbox_for("mo@example.com");
    assert_eq!(mail.len(), 1);
    assert_eq!(mail[0].kind, EmailKind::Magiclink);

    // A wrong code, then the right one with type=email.
    let wrong = if mail[0].code == "000000" { "111111" } else { "000000" };
    let bad = post(&h, "/verify", json!({ "type": "email", "email": "mo@example.com", "token": wrong })).await;
    let body = assert_error(bad, 403, "otp_expired").await;
    assert_eq!(body["msg"], "Token has expired or is invalid");
    let ok = post(&h, "/verify", json!({ "type": "email", "email": "MO@example.com", "token": mail[0].code })).await;
    let (status, _, session) = parts(ok).await;
    assert_eq!(status, 200, "{session}");
    assert_eq!(session["token_type"], "bearer");
    assert_eq!(session["user"]["email"], "mo@example.com");
    let claims = h.emu.claims_for(&h.emu.refresh(session["refresh_token"].as_str().unwrap()).unwrap());
    assert_eq!(claims["amr"][0]["method"], "otp");
    // Used: the code and the link are both spent.
    let reuse = post(&h, "/verify", json!({ "type": "email", "email": "mo@example.com", "token": mail[0].code })).await;
    assert_error(reuse, 403, "otp_expired").await;
    let missing = post(&h, "/verify", json!({ "type": "email" })).await;
    assert_error(missing, 400, "validation_failed").await;
    let unknown_type = post(&h, "/verify", json!({ "type": "bogus", "token_hash": "abc" })).await;
    assert_error(unknown_type, 400, "validation_failed").await;

    // Too soon for another magic link to the same user.
    let again = post(&h, "/otp", json!({ "email": "mo@example.com" })).await;
    let body = assert_error(again, 429, "over_email_send_rate_limit").await;
    assert!(body["msg"].as_str().unwrap().starts_with("For security purposes, you can only request this after"));
}

#[tokio::test]
async fn recovery_by_token_hash_expires_with_the_clock() {
    let h = Harness::start().await;
    h.emu.create_user("rae@example.com", PASSWORD).unwrap();
    // No leak for unknown addresses.
    let (status, _, body) = parts(post(&h, "/recover", json!({ "email": "ghost@example.com" })).await).await;
    assert_eq!((status, body), (200, json!({})));
    assert!(h.emu.mailbox().is_empty());
    assert_error(post(&h, "/recover", json!({})).await, 400, "validation_failed").await;

    assert_eq!(post(&h, "/recover?redirect_to=not a url", json!({ "email": "rae@example.com" })).await.status(), 200);
    let mail = h.emu.mailbox_for("rae@example.com");
    assert_eq!(mail[0].kind, EmailKind::Recovery);
    assert_eq!(mail[0].subject, "Reset Your Password");
    // An invalid redirect_to falls back to the site URL.
    assert!(mail[0].link.ends_with("redirect_to=http%3A%2F%2F127.0.0.1%3A3000"), "{}", mail[0].link);
    let hash = mail[0].link.split("token=").nth(1).unwrap().split('&').next().unwrap().to_owned();

    // A day later (GoTrue's default OTP lifetime) the token is expired.
    h.emu.faults().set_clock_skew(24 * 3600 + 60);
    let late = post(&h, "/verify", json!({ "type": "recovery", "token_hash": hash })).await;
    assert_error(late, 403, "otp_expired").await;
    // A new request after the rate-limit window works, and replaces the old token.
    assert_eq!(post(&h, "/recover", json!({ "email": "rae@example.com" })).await.status(), 200);
    let mail = h.emu.mailbox_for("rae@example.com");
    assert_eq!(mail.len(), 2);
    let fresh = mail[1].link.split("token=").nth(1).unwrap().split('&').next().unwrap().to_owned();
    let ok = post(&h, "/verify", json!({ "type": "recovery", "token_hash": fresh })).await;
    let (status, _, session) = parts(ok).await;
    assert_eq!(status, 200, "{session}");
    // The recovery session can set a new password.
    let token = session["access_token"].as_str().unwrap();
    let put = h.anon(Method::PUT, "/user").bearer_auth(token).json(&json!({ "password": "brand-new-pass" })).send();
    assert_eq!(put.await.unwrap().status(), 200);
    h.emu.faults().set_clock_skew(0);
    assert_eq!(h.password_grant("rae@example.com", "brand-new-pass").await.status(), 200);
}

#[tokio::test]
async fn resend_confirms_an_unconfirmed_sign_up() {
    let h = Harness::start().await;
    h.create_unconfirmed("una@example.com").await;
    assert_error(h.password_grant("una@example.com", PASSWORD).await, 400, "email_not_confirmed").await;

    let bad_type = post(&h, "/resend", json!({ "type": "nope", "email": "una@example.com" })).await;
    assert_error(bad_type, 400, "validation_failed").await;
    let no_email = post(&h, "/resend", json!({ "type": "signup" })).await;
    assert_error(no_email, 400, "validation_failed").await;
    assert_eq!(post(&h, "/resend", json!({ "type": "signup", "email": "ghost@example.com" })).await.status(), 200);
    assert!(h.emu.mailbox().is_empty());

    let sent =
        post(&h, "/resend?redirect_to=http://app.test/done", json!({ "type": "signup", "email": "una@example.com" }));
    assert_eq!(sent.await.status(), 200);
    let mail = h.emu.mailbox_for("una@example.com");
    assert_eq!((mail.len(), mail[0].kind), (1, EmailKind::Signup));
    let (status, location) = open_link(&mail[0].link).await;
    assert_eq!(status, 303);
    assert_eq!(get(&fragment(&location), "type"), Some("signup"));
    assert!(location.starts_with("http://app.test/done#access_token="), "{location}");
    assert_eq!(h.password_grant("una@example.com", PASSWORD).await.status(), 200);
    // Confirmed: nothing more is sent.
    assert_eq!(post(&h, "/resend", json!({ "type": "signup", "email": "una@example.com" })).await.status(), 200);
    assert_eq!(h.emu.mailbox_for("una@example.com").len(), 1);
}

#[tokio::test]
async fn email_change_needs_both_links() {
    let h = Harness::start().await;
    h.emu.create_user("old@example.com", PASSWORD).unwrap();
    h.emu.create_user("taken@example.com", PASSWORD).unwrap();
    let session = h.emu.sign_in("old@example.com", PASSWORD).unwrap();
    let put = |body: Value| h.anon(Method::PUT, "/user").bearer_auth(&session.access_token).json(&body).send();

    assert_error(put(json!({ "email": "taken@example.com" })).await.unwrap(), 422, "email_exists").await;
    assert_error(put(json!({ "email": "nope" })).await.unwrap(), 400, "validation_failed").await;
    let (status, _, user) = parts(put(json!({ "email": "New@example.com", "data": { "a": 1 } })).await.unwrap()).await;
    assert_eq!(status, 200, "{user}");
    assert_eq!(user["email"], "old@example.com");
    assert_eq!(user["new_email"], "new@example.com");
    assert_eq!(user["user_metadata"]["a"], 1);
    assert!(user["email_change_sent_at"].is_string());

    let to_old = h.emu.mailbox_for("old@example.com");
    let to_new = h.emu.mailbox_for("new@example.com");
    assert_eq!((to_old.len(), to_new.len()), (1, 1));
    assert_eq!(to_old[0].kind, EmailKind::EmailChange);
    let (status, location) = open_link(&to_old[0].link).await;
    assert_eq!(status, 303);
    assert_eq!(
        get(&fragment(&location), "message"),
        Some("Confirmation link accepted. Please proceed to confirm link sent to the other email")
    );
    assert_eq!(h.emu.user(session.user.id).unwrap().email, "old@example.com");
    let code = to_new[0].code.clone();
    let done = post(&h, "/verify", json!({ "type": "email_change", "email": "new@example.com", "token": code })).await;
    let (status, _, body) = parts(done).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["user"]["email"], "new@example.com");
    assert!(body["user"].get("new_email").is_none());
    assert_eq!(h.password_grant("new@example.com", PASSWORD).await.status(), 200);
    assert_error(h.password_grant("old@example.com", PASSWORD).await, 400, "invalid_credentials").await;
}

#[tokio::test]
async fn generate_link_returns_the_link_without_sending() {
    let h = Harness::start().await;
    h.emu.create_user("gil@example.com", PASSWORD).unwrap();
    let generate = |body: Value| h.service(Method::POST, "/admin/generate_link").json(&body).send();

    let (status, _, body) = parts(
        generate(json!({ "type": "magiclink", "email": "gil@example.com", "redirect_to": "http://app.test/in" }))
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["email"], "gil@example.com");
    assert_eq!(body["verification_type"], "magiclink");
    assert_eq!(body["redirect_to"], "http://app.test/in");
    assert_eq!(body["email_otp"].as_str().unwrap().len(), 6);
    let action_link = body["action_link"].as_str().unwrap();
    assert!(action_link.contains(&format!("token={}", body["hashed_token"].as_str().unwrap())));
    assert!(h.emu.mailbox().is_empty(), "generate_link sends nothing");
    let (status, location) = open_link(action_link).await;
    assert_eq!(status, 303);
    assert!(location.starts_with("http://app.test/in#access_token="), "{location}");

    let signup = generate(json!({ "type": "signup", "email": "sid@example.com", "password": PASSWORD })).await;
    let (status, _, body) = parts(signup.unwrap()).await;
    assert_eq!((status, body["verification_type"].as_str()), (200, Some("signup")), "{body}");
    let exists = generate(json!({ "type": "signup", "email": "gil@example.com", "password": PASSWORD })).await;
    assert_error(exists.unwrap(), 422, "email_exists").await;
    let unknown = generate(json!({ "type": "recovery", "email": "ghost@example.com" })).await;
    assert_error(unknown.unwrap(), 404, "user_not_found").await;
    let bad = generate(json!({ "type": "teleport", "email": "gil@example.com" })).await;
    assert_error(bad.unwrap(), 400, "validation_failed").await;
    let anon = h.anon(Method::POST, "/admin/generate_link").bearer_auth(h.emu.anon_key());
    let anon = anon.json(&json!({ "type": "recovery", "email": "gil@example.com" })).send().await.unwrap();
    assert_error(anon, 403, "not_admin").await;
}

#[tokio::test]
async fn a_link_never_redirects_outside_http_urls() {
    let h = Harness::start().await;
    h.emu.create_user("ray@example.com", PASSWORD).unwrap();
    assert_eq!(post(&h, "/recover", json!({ "email": "ray@example.com" })).await.status(), 200);
    let link = h.emu.mailbox_for("ray@example.com")[0].link.clone();
    // A tampered redirect_to (script URL) is replaced by the site URL, on success and on error.
    let hostile = format!("{}&redirect_to=javascript%3Aalert(1)", link.split("&redirect_to=").next().unwrap());
    let (status, location) = open_link(&hostile).await;
    assert_eq!(status, 303);
    assert!(location.starts_with("http://127.0.0.1:3000/#access_token="), "{location}");
    let (status, location) = open_link(&hostile).await;
    assert_eq!(status, 303);
    assert!(location.starts_with("http://127.0.0.1:3000/#error=access_denied"), "{location}");
    // Missing parameters are a JSON error, not a redirect.
    let bare = h.http.get(h.url("/verify?type=signup")).send().await.unwrap();
    assert_error(bare, 400, "validation_failed").await;
}
