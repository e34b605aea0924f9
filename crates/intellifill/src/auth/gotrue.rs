//! Client for the Supabase Auth (GoTrue) API.
//!
//! Sends `apikey` on every call and asks for the 2024-01-01 error format, so errors carry a string code
//! (also in the `x-sb-error-code` header). The distinction that matters downstream: [`GoTrueError::Rejected`]
//! (the service answered 4xx: the caller's token is bad) versus [`GoTrueError::Unavailable`] (timeout,
//! connection error, 5xx, 429: the service is in trouble, which must never be reported as a bad token).

use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use uuid::Uuid;

/// The part of the GoTrue user object the server uses.
#[derive(Debug, Clone, Deserialize)]
pub struct GoTrueUser {
    pub id: Uuid,
    pub email: Option<String>,
    /// Set once the address is confirmed (absent for an unconfirmed or anonymous user).
    #[serde(default)]
    pub email_confirmed_at: Option<String>,
    #[serde(default)]
    pub is_anonymous: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum GoTrueError {
    #[error("auth service rejected the request: {status} {code}")]
    Rejected { status: u16, code: String, message: String },
    #[error("auth service unavailable: {0}")]
    Unavailable(String),
}

#[derive(Clone)]
pub struct GoTrueClient {
    http: reqwest::Client,
    base: String,
    apikey: SecretString,
}

#[derive(Deserialize)]
struct ErrorBody {
    code: Option<serde_json::Value>,
    error_code: Option<String>,
    message: Option<String>,
    msg: Option<String>,
}

impl GoTrueClient {
    /// `base` is `<SUPABASE_URL>/auth/v1`.
    pub fn new(base: String, apikey: SecretString, timeout: Duration) -> anyhow::Result<Self> {
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout)
            .pool_idle_timeout(Duration::from_secs(30))
            .build()?;
        Ok(GoTrueClient { http, base, apikey })
    }

    pub fn base_url(&self) -> &str {
        &self.base
    }

    /// The HTTP client (shared with the JWKS fetcher: one connection pool to the auth service).
    pub fn http(&self) -> reqwest::Client {
        self.http.clone()
    }

    /// `POST /logout?scope=...` with the caller's token (204 on success).
    pub async fn logout(&self, token: &str, scope: &str) -> Result<(), GoTrueError> {
        let request = self.http.post(format!("{}/logout", self.base)).query(&[("scope", scope)]).bearer_auth(token);
        self.send(request).await.map(|_| ())
    }

    /// `GET /user` with the caller's token.
    pub async fn get_user(&self, token: &str) -> Result<GoTrueUser, GoTrueError> {
        let response = self.send(self.http.get(format!("{}/user", self.base)).bearer_auth(token)).await?;
        response.json::<GoTrueUser>().await.map_err(|e| GoTrueError::Unavailable(format!("unreadable user: {e}")))
    }

    /// `GET /health`.
    pub async fn health(&self) -> Result<(), GoTrueError> {
        self.send(self.http.get(format!("{}/health", self.base))).await.map(|_| ())
    }

    async fn send(&self, request: reqwest::RequestBuilder) -> Result<reqwest::Response, GoTrueError> {
        let response = request
            .header("apikey", self.apikey.expose_secret())
            .header("X-Supabase-Api-Version", "2024-01-01")
            .send()
            .await
            .map_err(|e| {
                let kind = if e.is_timeout() {
                    "timeout"
                } else if e.is_connect() {
                    "connection refused or failed"
                } else {
                    "request failed"
                };
                GoTrueError::Unavailable(kind.to_owned())
            })?;
        let status = response.status();
        if status.is_success() {
            return Ok(response);
        }
        if status.is_server_error() || status.as_u16() == 429 {
            return Err(GoTrueError::Unavailable(format!("status {status}")));
        }
        let header_code = response.headers().get("x-sb-error-code").and_then(|v| v.to_str().ok()).map(str::to_owned);
        let body: Option<ErrorBody> = response.json().await.ok();
        let (body_code, message) = match body {
            Some(b) => (
                b.error_code.or_else(|| b.code.and_then(|c| c.as_str().map(str::to_owned))),
                b.message.or(b.msg).unwrap_or_default(),
            ),
            None => (None, String::new()),
        };
        Err(GoTrueError::Rejected {
            status: status.as_u16(),
            code: header_code.or(body_code).unwrap_or_else(|| "unknown".to_owned()),
            message,
        })
    }
}
