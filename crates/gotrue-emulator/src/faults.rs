//! Fault injection for resilience tests.
//!
//! The product must degrade gracefully when Supabase Auth is slow, failing,
//! hanging, unreachable or on a wrong clock, and those paths can only be
//! tested against an upstream that misbehaves on command. Latency, error
//! rate and hang are applied per request by the gateway middleware
//! ([`Faults::apply`]); refusing connections is carried out by the accept
//! loop in [`crate::server`], which this handle drives through a control
//! channel; the clock skew moves the emulator's own clock
//! ([`crate::state::AppState::now`]), as a GoTrue host whose clock is off
//! would: `iat`/`exp` of issued tokens, the `exp`/`nbf` check of presented
//! ones, ban ends and timestamps.
//!
//! The in-process setters take effect before they return: in particular
//! [`Faults::refuse_connections`] and [`Faults::clear`] wait until the socket
//! is actually closed or re-bound, so a test can assert on the very next
//! request without sleeping.

use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use rand::Rng;
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::Instant;

/// Name of the emulator's server thread and its runtime's workers; blocking
/// waits for the accept loop are skipped on these threads.
pub(crate) const THREAD_NAME: &str = "gotrue-emulator";

/// Status used by [`Faults::set_error_rate`] callers that want "unavailable".
pub const DEFAULT_ERROR_STATUS: u16 = 503;

/// The largest clock skew accepted (a year either way): far beyond any real
/// drift, and well inside `chrono`'s range.
pub const MAX_CLOCK_SKEW_SECONDS: i64 = 366 * 24 * 3600;

/// How long a setter waits for the accept loop to act on a command.
const ACK_TIMEOUT: Duration = Duration::from_secs(10);

/// Commands for the accept loop.
pub(crate) enum Control {
    /// Close the listening socket and every open connection; re-bind at
    /// `until` if given.
    Refuse { until: Option<Instant>, ack: Option<std::sync::mpsc::Sender<()>> },
    /// Re-bind the listening socket if it is closed.
    Resume { ack: Option<std::sync::mpsc::Sender<()>> },
    /// Stop serving for good.
    Shutdown { ack: oneshot::Sender<()> },
}

/// The fault configuration in force.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct FaultSettings {
    /// Delay added before each affected request is handled.
    #[serde(rename = "latencyMs", serialize_with = "as_millis")]
    pub latency: Duration,
    /// Share of affected requests answered with `error_status` (0.0–1.0).
    pub error_rate: f64,
    /// Status of injected errors.
    pub error_status: u16,
    /// Affected requests are held without an answer while this is on.
    pub hang: bool,
    /// The listening socket is closed.
    pub refusing: bool,
    /// Paths the faults apply to (full paths); empty means all of `/auth/v1`.
    /// The clock skew is not path-bound: the emulator has one clock.
    pub paths: Vec<String>,
    /// How far the emulator's clock is ahead of real time, in seconds
    /// (negative: behind).
    pub clock_skew_seconds: i64,
}

fn as_millis<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_u64(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

impl Default for FaultSettings {
    fn default() -> Self {
        Self {
            latency: Duration::ZERO,
            error_rate: 0.0,
            error_status: DEFAULT_ERROR_STATUS,
            hang: false,
            refusing: false,
            paths: Vec::new(),
            clock_skew_seconds: 0,
        }
    }
}

impl FaultSettings {
    /// Whether the faults apply to a request for `path`.
    fn applies_to(&self, path: &str) -> bool {
        if !is_auth_path(path) {
            return false;
        }
        self.paths.is_empty()
            || self.paths.iter().any(|p| {
                path == p || path.strip_prefix(p.as_str()).is_some_and(|rest| rest.starts_with('/') || p.ends_with('/'))
            })
    }
}

pub(crate) fn is_auth_path(path: &str) -> bool {
    path == "/auth/v1" || path.starts_with("/auth/v1/")
}

/// `"user"`, `"/user"` and `"/auth/v1/user"` all mean `/auth/v1/user`.
fn normalize_path(path: &str) -> String {
    let path = path.trim();
    if is_auth_path(path) {
        path.to_owned()
    } else if path.starts_with('/') {
        format!("/auth/v1{path}")
    } else {
        format!("/auth/v1/{path}")
    }
}

struct Shared {
    settings: watch::Sender<FaultSettings>,
    control: mpsc::WeakUnboundedSender<Control>,
}

/// Handle to an emulator's fault injection; cheap to clone.
#[derive(Clone)]
pub struct Faults {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Faults {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Faults").field(&self.settings()).finish()
    }
}

impl Faults {
    pub(crate) fn new(control: mpsc::WeakUnboundedSender<Control>) -> Self {
        let (settings, _) = watch::channel(FaultSettings::default());
        Self { shared: Arc::new(Shared { settings, control }) }
    }

    /// The configuration in force.
    pub fn settings(&self) -> FaultSettings {
        self.shared.settings.borrow().clone()
    }

    /// Adds `latency` before every affected request (zero turns it off).
    pub fn set_latency(&self, latency: Duration) {
        self.shared.settings.send_modify(|s| s.latency = latency);
    }

    /// Answers a share `rate` (clamped to 0.0–1.0) of affected requests with
    /// `status` instead of handling them. 1.0 fails every request and 0.0
    /// none; rates in between are drawn at random per request.
    pub fn set_error_rate(&self, rate: f64, status: u16) {
        let rate = if rate.is_nan() { 0.0 } else { rate.clamp(0.0, 1.0) };
        self.shared.settings.send_modify(|s| {
            s.error_rate = rate;
            s.error_status = status;
        });
    }

    /// Runs the emulator's clock `seconds` ahead of real time (negative:
    /// behind), clamped to [`MAX_CLOCK_SKEW_SECONDS`] either way. Tokens
    /// issued from now on carry `iat`/`exp` on that clock, and presented
    /// tokens are checked against it; zero turns it off.
    pub fn set_clock_skew(&self, seconds: i64) {
        let seconds = seconds.clamp(-MAX_CLOCK_SKEW_SECONDS, MAX_CLOCK_SKEW_SECONDS);
        self.shared.settings.send_modify(|s| s.clock_skew_seconds = seconds);
    }

    /// The emulator's clock offset from real time.
    pub(crate) fn clock_skew(&self) -> chrono::TimeDelta {
        chrono::TimeDelta::seconds(self.shared.settings.borrow().clock_skew_seconds)
    }

    /// While on, affected requests are held without an answer; requests held
    /// when it is turned off are then handled normally.
    pub fn set_hang(&self, hang: bool) {
        self.shared.settings.send_modify(|s| s.hang = hang);
    }

    /// Restricts latency, errors and hang to these paths (and the paths
    /// below them). Entries may be full (`/auth/v1/user`) or relative
    /// (`user`, `/admin`); an empty list means every `/auth/v1` path.
    /// Refusing connections always affects the whole port.
    pub fn only_paths(&self, paths: Vec<String>) {
        let paths: Vec<String> = paths.iter().map(|p| normalize_path(p)).collect();
        self.shared.settings.send_modify(|s| s.paths = paths);
    }

    /// Closes the listening socket and drops every open connection, so that
    /// new connections are refused. With `Some(duration)` the same port is
    /// bound again after that time; with `None` only [`Faults::clear`] ends
    /// it. Returns once the socket is closed.
    pub fn refuse_connections(&self, duration: Option<Duration>) {
        self.refuse(duration, true);
    }

    /// Turns every fault off, re-binding the port if connections were being
    /// refused. Returns once the port accepts connections again.
    pub fn clear(&self) {
        self.reset(true);
    }

    pub(crate) fn refuse(&self, duration: Option<Duration>, wait: bool) {
        self.shared.settings.send_modify(|s| s.refusing = true);
        let until = duration.map(|d| Instant::now() + d);
        self.command(|ack| Control::Refuse { until, ack }, wait);
    }

    pub(crate) fn reset(&self, wait: bool) {
        let was_refusing = self.settings().refusing;
        self.shared.settings.send_replace(FaultSettings::default());
        if was_refusing {
            self.command(|ack| Control::Resume { ack }, wait);
        }
    }

    /// Called by the accept loop once it re-bound the port on its own.
    pub(crate) fn mark_resumed(&self) {
        self.shared.settings.send_modify(|s| s.refusing = false);
    }

    fn command(&self, make: impl FnOnce(Option<std::sync::mpsc::Sender<()>>) -> Control, wait: bool) {
        let Some(control) = self.shared.control.upgrade() else {
            return; // the server is gone; nothing to refuse or resume
        };
        let on_server_thread = std::thread::current().name() == Some(THREAD_NAME);
        if wait && !on_server_thread {
            let (tx, rx) = std::sync::mpsc::channel();
            if control.send(make(Some(tx))).is_ok() {
                let _ = rx.recv_timeout(ACK_TIMEOUT);
            }
        } else {
            let _ = control.send(make(None));
        }
    }

    /// Applies latency, hang and injected errors to a request for `path`.
    /// Returns the injected error response, if any.
    pub(crate) async fn apply(&self, path: &str) -> Option<Response> {
        let settings = self.settings();
        if !settings.applies_to(path) {
            return None;
        }
        if settings.hang {
            let mut rx = self.shared.settings.subscribe();
            // An error means the sender is gone, i.e. the emulator is
            // shutting down; then there is nobody left to answer anyway.
            let _ = rx.wait_for(|s| !(s.hang && s.applies_to(path))).await;
        }
        let settings = self.settings();
        if !settings.applies_to(path) {
            return None;
        }
        if !settings.latency.is_zero() {
            tokio::time::sleep(settings.latency).await;
        }
        let fail = if settings.error_rate >= 1.0 {
            true
        } else if settings.error_rate <= 0.0 {
            false
        } else {
            rand::thread_rng().r#gen::<f64>() < settings.error_rate
        };
        fail.then(|| injected_error(settings.error_status))
    }
}

fn injected_error(status: u16) -> Response {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
    let message = status.canonical_reason().unwrap_or("Injected fault");
    let mut response = (status, Json(serde_json::json!({ "message": message }))).into_response();
    response.headers_mut().insert("x-emulator-fault", HeaderValue::from_static("error"));
    response
}

/// Body of `POST /__emulator/faults`; omitted fields are off.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default, deny_unknown_fields)]
pub(crate) struct FaultRequest {
    pub(crate) latency_ms: u64,
    pub(crate) error_rate: f64,
    pub(crate) error_status: Option<u16>,
    pub(crate) hang: bool,
    pub(crate) refuse_for_ms: Option<u64>,
    pub(crate) paths: Vec<String>,
    pub(crate) clock_skew_seconds: i64,
}
