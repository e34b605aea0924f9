//! `/__emulator`: fault injection, request counters and the mailbox over
//! HTTP, for test harnesses and browsers that use the emulator out of
//! process. Never faulted, never counted, no API key.

use std::time::Duration;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::SharedState;
use crate::faults::FaultRequest;

/// Delay between answering `POST /__emulator/faults` and closing the socket,
/// so the answer itself gets out before its connection is dropped.
const REFUSE_GRACE: Duration = Duration::from_millis(50);

fn bad_request(message: String) -> Response {
    (StatusCode::BAD_REQUEST, Json(json!({ "error": message }))).into_response()
}

pub(super) async fn get_faults(State(state): State<SharedState>) -> Response {
    Json(state.faults.settings()).into_response()
}

/// Replaces the fault configuration with the one in the body.
pub(super) async fn set_faults(State(state): State<SharedState>, body: Bytes) -> Response {
    let request: FaultRequest = if body.is_empty() {
        FaultRequest::default()
    } else {
        match serde_json::from_slice(&body) {
            Ok(request) => request,
            Err(e) => return bad_request(format!("invalid fault configuration: {e}")),
        }
    };
    let status = request.error_status.unwrap_or(crate::faults::DEFAULT_ERROR_STATUS);
    if !(100..=599).contains(&status) {
        return bad_request(format!("errorStatus must be an HTTP status, got {status}"));
    }
    if !(0.0..=1.0).contains(&request.error_rate) {
        return bad_request(format!("errorRate must be between 0 and 1, got {}", request.error_rate));
    }
    if request.refuse_for_ms == Some(0) {
        return bad_request(
            "refuseForMs must be positive: an unlimited refusal could not be cleared over HTTP".to_owned(),
        );
    }
    if request.clock_skew_seconds.abs() > crate::faults::MAX_CLOCK_SKEW_SECONDS {
        return bad_request(format!(
            "clockSkewSeconds must be within ±{}, got {}",
            crate::faults::MAX_CLOCK_SKEW_SECONDS,
            request.clock_skew_seconds
        ));
    }
    let faults = state.faults.clone();
    faults.reset(false);
    faults.set_clock_skew(request.clock_skew_seconds);
    faults.only_paths(request.paths);
    faults.set_latency(Duration::from_millis(request.latency_ms));
    faults.set_error_rate(request.error_rate, status);
    faults.set_hang(request.hang);
    let mut settings = faults.settings();
    if let Some(ms) = request.refuse_for_ms {
        settings.refusing = true;
        tokio::spawn(async move {
            tokio::time::sleep(REFUSE_GRACE).await;
            faults.refuse(Some(Duration::from_millis(ms)), false);
        });
    }
    Json(settings).into_response()
}

pub(super) async fn clear_faults(State(state): State<SharedState>) -> StatusCode {
    state.faults.reset(false);
    StatusCode::NO_CONTENT
}

pub(super) async fn get_stats(State(state): State<SharedState>) -> Response {
    let stats = state.stats.snapshot();
    let mut body = serde_json::to_value(stats).unwrap_or_else(|_| json!({}));
    if let Some(map) = body.as_object_mut() {
        map.insert("total".into(), json!(stats.total()));
    }
    Json(body).into_response()
}

pub(super) async fn reset_stats(State(state): State<SharedState>) -> StatusCode {
    state.stats.reset();
    StatusCode::NO_CONTENT
}

/// `GET /__emulator/mailbox[?to=<email>]`: `{"messages": [...]}`, oldest first.
pub(super) async fn get_mailbox(State(state): State<SharedState>, RawQuery(query): RawQuery) -> Response {
    let to = super::gotrue::query_param(query.as_deref(), "to");
    Json(json!({ "messages": state.mailbox.messages(to.as_deref()) })).into_response()
}

pub(super) async fn clear_mailbox(State(state): State<SharedState>) -> StatusCode {
    state.mailbox.clear();
    StatusCode::NO_CONTENT
}
