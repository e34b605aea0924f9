//! Client for the Supabase Auth (GoTrue) API.
//!
//! Sends `apikey` on every call and asks for the 2024-01-01 error format, so errors carry a string code
//! (also in the `x-sb-error-code` header). The distinction that matters downstream: [`GoTrueError::Rejected`]
//! (the service answered 4xx: the caller's token is bad) versus [`GoTrueError::Unavailable`] (timeout,
//! connection error, 5xx, 429: the service is in trouble, which must never be reported as a bad token) versus
//! [`GoTrueError::KeyRejected`] (the API gateway in front of the service refused *our* `apikey`: this server's
//! misconfiguration, which must never be reported as a bad token either).
//!
//! How a refused key is told apart from a refused token: GoTrue's own errors always carry an error code (in
//! the `x-sb-error-code` header and the body); the gateway's refusal is a 401 whose body is only
//! `{"message", "hint"}` (hosted: "Invalid API key", "No API key found in request"; self-hosted Kong:
//! "Invalid authentication credentials"). Every refusal is counted (`auth_upstream_key_rejected_total`) and
//! logged at ERROR, naming `SUPABASE_ANON_KEY`, at most once per [`KEY_ALARM_INTERVAL`] per process.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
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
    #[error("the auth service refuses this server's API key (SUPABASE_ANON_KEY): {message}")]
    KeyRejected { message: String },
    #[error("auth service unavailable: {0}")]
    Unavailable(String),
}

/// How often, at most, a refused API key is logged at ERROR (every refusal is counted).
pub(crate) const KEY_ALARM_INTERVAL: Duration = Duration::from_secs(60);

/// Reports the gateway refusing our API key: a counter for every refusal, an ERROR line per interval.
struct KeyAlarm {
    /// When the last ERROR line was written (unix ms), `i64::MIN` before the first.
    last_logged_ms: AtomicI64,
    refusals: metrics::Counter,
}

impl KeyAlarm {
    fn new() -> KeyAlarm {
        KeyAlarm {
            last_logged_ms: AtomicI64::new(i64::MIN),
            refusals: metrics::counter!("auth_upstream_key_rejected_total"),
        }
    }

    fn raise(&self, endpoint: &'static str, gateway_message: &str) {
        self.refusals.increment(1);
        let now = chrono::Utc::now().timestamp_millis();
        let last = self.last_logged_ms.load(Ordering::Relaxed);
        let due = last == i64::MIN || now.saturating_sub(last) >= KEY_ALARM_INTERVAL.as_millis() as i64;
        // One winner per interval, however many requests see the refusal at once.
        if due && self.last_logged_ms.compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed).is_ok() {
            tracing::error!(
                endpoint,
                gateway_message,
                "the auth service refuses this server's API key: check SUPABASE_ANON_KEY (the project's \
                 publishable or anon key, sent as `apikey`). Tokens that need the auth service get 503 \
                 AUTH_SERVICE_MISCONFIGURED until it is fixed (logged at most once a minute; every refusal is \
                 counted in auth_upstream_key_rejected_total)"
            );
        }
    }
}

#[derive(Clone)]
pub struct GoTrueClient {
    http: reqwest::Client,
    base: String,
    apikey: SecretString,
    key_alarm: Arc<KeyAlarm>,
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
        Ok(GoTrueClient { http, base, apikey, key_alarm: Arc::new(KeyAlarm::new()) })
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
        self.send("logout", request).await.map(|_| ())
    }

    /// `GET /user` with the caller's token.
    pub async fn get_user(&self, token: &str) -> Result<GoTrueUser, GoTrueError> {
        let response = self.send("user", self.http.get(format!("{}/user", self.base)).bearer_auth(token)).await?;
        response.json::<GoTrueUser>().await.map_err(|e| GoTrueError::Unavailable(format!("unreadable user: {e}")))
    }

    /// `GET /health`.
    pub async fn health(&self) -> Result<(), GoTrueError> {
        self.send("health", self.http.get(format!("{}/health", self.base))).await.map(|_| ())
    }

    /// `GET /settings`: needs the `apikey` and nothing else, so it tells whether the auth service accepts our
    /// key without any user token.
    pub async fn settings(&self) -> Result<(), GoTrueError> {
        self.send("settings", self.http.get(format!("{}/settings", self.base))).await.map(|_| ())
    }

    /// Send with `apikey` and the API version; `endpoint` names the call in logs.
    async fn send(
        &self,
        endpoint: &'static str,
        request: reqwest::RequestBuilder,
    ) -> Result<reqwest::Response, GoTrueError> {
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
        let code = header_code.or(body_code);
        if status.as_u16() == 401 && code.is_none() {
            // Not GoTrue's answer (it always names its error): the gateway refused the request before
            // GoTrue saw it, whatever token it carried.
            let message: String = message.chars().take(200).collect();
            self.key_alarm.raise(endpoint, &message);
            return Err(GoTrueError::KeyRejected { message });
        }
        Err(GoTrueError::Rejected {
            status: status.as_u16(),
            code: code.unwrap_or_else(|| "unknown".to_owned()),
            message,
        })
    }
}
