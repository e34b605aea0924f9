//! Shared helpers of the integration tests.
#![allow(dead_code, clippy::unwrap_used)]

use std::time::Duration;

use gotrue_emulator::{Emulator, EmulatorConfig, Session, User};
use reqwest::{Client, Method, RequestBuilder, Response};
use serde_json::Value;

pub const PASSWORD: &str = "hunter2-but-longer";

pub struct Harness {
    pub emu: Emulator,
    pub http: Client,
}

pub fn client() -> Client {
    Client::builder().no_proxy().timeout(Duration::from_secs(20)).build().unwrap()
}

impl Harness {
    pub async fn start() -> Self {
        Self::with_config(EmulatorConfig::default()).await
    }

    pub async fn with_config(config: EmulatorConfig) -> Self {
        let emu = Emulator::start(config, "127.0.0.1:0".parse().unwrap()).await.unwrap();
        Self { emu, http: client() }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}/auth/v1{}", self.emu.base_url(), path)
    }

    /// A request carrying the anon key, like any supabase client sends.
    pub fn anon(&self, method: Method, path: &str) -> RequestBuilder {
        self.http.request(method, self.url(path)).header("apikey", self.emu.anon_key())
    }

    /// A request carrying the service-role key as apikey and bearer.
    pub fn service(&self, method: Method, path: &str) -> RequestBuilder {
        self.http
            .request(method, self.url(path))
            .header("apikey", self.emu.service_role_key())
            .bearer_auth(self.emu.service_role_key())
    }

    /// `POST /signup` with `body`, as a client sends it.
    pub async fn signup(&self, body: Value) -> Response {
        self.anon(Method::POST, "/signup").json(&body).send().await.unwrap()
    }

    /// `POST /admin/users` with `body`, as the service role.
    pub async fn admin_create(&self, body: Value) -> Response {
        self.service(Method::POST, "/admin/users").json(&body).send().await.unwrap()
    }

    /// An email user with the test password, created through the admin API without confirmation.
    pub async fn create_unconfirmed(&self, email: &str) {
        let created = self.admin_create(serde_json::json!({ "email": email, "password": PASSWORD })).await;
        assert_eq!(created.status(), 200);
    }

    /// A confirmed user with the test password, signed in `N` times (its sessions, oldest first).
    pub fn user_with_sessions<const N: usize>(&self, email: &str) -> (User, [Session; N]) {
        let user = self.emu.create_user(email, PASSWORD).unwrap();
        (user, std::array::from_fn(|_| self.emu.sign_in(email, PASSWORD).unwrap()))
    }

    /// `GET /admin/users` with `apikey` and, when given, `bearer` as the Authorization.
    pub async fn list_users(&self, apikey: &str, bearer: Option<&str>) -> Response {
        let request = self.http.get(self.url("/admin/users")).header("apikey", apikey);
        let request = match bearer {
            Some(token) => request.bearer_auth(token),
            None => request,
        };
        request.send().await.unwrap()
    }

    pub async fn get_user(&self, token: &str) -> Response {
        self.anon(Method::GET, "/user").bearer_auth(token).send().await.unwrap()
    }

    pub async fn password_grant(&self, email: &str, password: &str) -> Response {
        self.anon(Method::POST, "/token?grant_type=password")
            .json(&serde_json::json!({ "email": email, "password": password }))
            .send()
            .await
            .unwrap()
    }

    pub async fn refresh(&self, refresh_token: &str) -> Response {
        self.anon(Method::POST, "/token?grant_type=refresh_token")
            .json(&serde_json::json!({ "refresh_token": refresh_token }))
            .send()
            .await
            .unwrap()
    }

    pub async fn logout(&self, token: &str, scope: Option<&str>) -> Response {
        let path = match scope {
            Some(scope) => format!("/logout?scope={scope}"),
            None => "/logout".to_owned(),
        };
        self.anon(Method::POST, &path).bearer_auth(token).send().await.unwrap()
    }
}

/// Status, `x-sb-error-code` header and JSON body of a response.
pub async fn parts(response: Response) -> (u16, Option<String>, Value) {
    let status = response.status().as_u16();
    let code = response.headers().get("x-sb-error-code").map(|v| v.to_str().unwrap().to_owned());
    let text = response.text().await.unwrap();
    let body = if text.is_empty() { Value::Null } else { serde_json::from_str(&text).unwrap_or(Value::String(text)) };
    (status, code, body)
}

/// Asserts a legacy-format GoTrue error.
pub async fn assert_error(response: Response, status: u16, code: &str) -> Value {
    let (got_status, header, body) = parts(response).await;
    assert_eq!(got_status, status, "status; body: {body}");
    assert_eq!(header.as_deref(), Some(code), "x-sb-error-code; body: {body}");
    assert_eq!(body["code"], status, "body.code: {body}");
    assert_eq!(body["error_code"], code, "body.error_code: {body}");
    assert!(body["msg"].is_string(), "body.msg: {body}");
    body
}

/// Sends `request` and reads the response body as JSON (any status).
pub async fn json_of(request: RequestBuilder) -> Value {
    request.send().await.unwrap().json().await.unwrap()
}
