//! `PUT /user`: password and metadata changes, and the sessions a new password ends.
#![allow(clippy::unwrap_used)]

mod common;

use common::{Harness, PASSWORD, assert_error, parts};
use reqwest::Method;
use serde_json::json;

async fn put_user(h: &Harness, token: &str, body: serde_json::Value) -> reqwest::Response {
    h.anon(Method::PUT, "/user").bearer_auth(token).json(&body).send().await.unwrap()
}

#[tokio::test]
async fn a_new_password_ends_every_other_session() {
    let h = Harness::start().await;
    let (user, [mine, other, third]) = h.user_with_sessions("pat@example.com");
    assert_eq!(h.emu.session_count(user.id), 3);

    let (status, _, body) = parts(put_user(&h, &mine.access_token, json!({ "password": "a-new-secret" })).await).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["id"], user.id.to_string());
    assert_eq!(h.emu.session_count(user.id), 1, "LogoutAllExceptMe");
    assert_eq!(h.get_user(&mine.access_token).await.status(), 200, "the caller's session stays");
    assert_error(h.get_user(&other.access_token).await, 403, "session_not_found").await;
    assert_error(h.get_user(&third.access_token).await, 403, "session_not_found").await;
    assert_error(h.refresh(&other.refresh_token).await, 400, "refresh_token_not_found").await;

    // The new password is the one that signs in.
    assert_error(h.password_grant("pat@example.com", PASSWORD).await, 400, "invalid_credentials").await;
    assert_eq!(h.password_grant("pat@example.com", "a-new-secret").await.status(), 200);
}

#[tokio::test]
async fn password_rules_and_metadata() {
    let h = Harness::start().await;
    let (user, [mine, other]) = h.user_with_sessions("kim@example.com");

    assert_error(put_user(&h, &mine.access_token, json!({ "password": "short" })).await, 422, "weak_password").await;
    let same =
        assert_error(put_user(&h, &mine.access_token, json!({ "password": PASSWORD })).await, 422, "same_password");
    assert_eq!(same.await["msg"], "New password should be different from the old password.");
    let app = put_user(&h, &mine.access_token, json!({ "app_metadata": { "plan": "pro" } })).await;
    assert_eq!(app.status(), 401);
    let phone = put_user(&h, &mine.access_token, json!({ "phone": "15550100" })).await;
    assert_error(phone, 400, "validation_failed").await;

    // Metadata alone ends no session.
    let (status, _, body) = parts(put_user(&h, &mine.access_token, json!({ "data": { "theme": "dark" } })).await).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["user_metadata"]["theme"], "dark");
    assert_eq!(h.emu.session_count(user.id), 2);
    assert_eq!(h.get_user(&other.access_token).await.status(), 200);

    // Like every authenticated endpoint: an ended session cannot update.
    assert_eq!(h.logout(&other.access_token, Some("local")).await.status(), 204);
    let gone = put_user(&h, &other.access_token, json!({ "password": "whatever-else" })).await;
    assert_error(gone, 403, "session_not_found").await;
    assert_error(h.anon(Method::PUT, "/user").json(&json!({})).send().await.unwrap(), 401, "no_authorization").await;
}
