//! The audit middleware: one event per request, recorded after the response is produced.
//!
//! [`capture`] runs after the request id, the body limit and the per-ip limit, and before authentication (see
//! `http::middleware`), so failed authentications are audited too. Excluded paths (`AUDIT_EXCLUDE_PATHS`) are
//! matched on the full path. Inner steps fill in what only they know through the [`AuditSlot`] in the request
//! extensions: the matched route and its parameters ([`note_route`], first step of the `/api` route layer, the
//! only place the route template is known), the user (authentication), the organization (org extractor), a
//! created entity's id (handlers).
//! Write requests' bodies are buffered (they are within the body limit), handed on unchanged, and sanitized
//! in a spawned task after the response is out, so sanitizing never delays the client.

use std::time::Instant;

use axum::body::{Body, Bytes};
use axum::extract::{MatchedPath, RawPathParams, Request};
use axum::http::{Method, header};
use axum::response::{IntoResponse, Response};

use super::{AuditEvent, AuditSlot, actions, security, truncated};
use crate::error::{AppError, ErrorCode, ErrorPayload};
use crate::http::client_ip::client_ip;
use crate::http::request_id::RequestId;
use crate::state::AppState;

const MAX_USER_AGENT: usize = 256;

fn is_write(method: &Method) -> bool {
    matches!(*method, Method::POST | Method::PUT | Method::PATCH | Method::DELETE)
}

/// One event for the request `next` (the rest of the stack) answers (a step of the outer stack, see
/// `http::middleware`).
pub async fn capture<F: Future<Output = Response>>(
    state: &AppState,
    request: Request,
    next: impl FnOnce(Request) -> F,
) -> Response {
    let started = Instant::now();
    if let Some(prefix) = state.audit.config().excluded_by(request.uri().path()).map(str::to_owned) {
        let method = request.method().clone();
        let response = next(request).await;
        state.http_metrics.record(&method, &prefix, response.status().as_u16(), started.elapsed().as_secs_f64());
        return response;
    }
    let slot = AuditSlot::default();
    let (mut parts, body) = request.into_parts();
    parts.extensions.insert(slot.clone());

    // The action is known once the route is (`finish`).
    let mut event = AuditEvent::new(String::new());
    event.request_id = parts.extensions.get::<RequestId>().map(|r| r.0.clone());
    event.ip = client_ip(&parts, &state.config.http.trusted_proxies);
    event.user_agent = parts
        .headers
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .map(|ua| truncated(ua, MAX_USER_AGENT).to_owned());
    event.method = Some(parts.method.as_str().into());
    event.path = Some(truncated(parts.uri.path(), 512).into());
    // The user agent and the query string are sanitized by the writer, off the request path.
    let query = parts.uri.query().map(|q| truncated(q, 2048).to_owned());
    let method = parts.method.clone();

    let mut captured: Option<(Option<String>, Bytes)> = None;
    let request = if is_write(&method) {
        let content_type = parts.headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).map(str::to_owned);
        let declared = parts.headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse::<usize>().ok());
        let limit = state.config.http.max_body_bytes;
        if declared.is_some_and(|n| n > limit) {
            // The body limit answers 413 when the handler reads it; not buffered here.
            Request::from_parts(parts, body)
        } else {
            match axum::body::to_bytes(body, limit).await {
                Ok(bytes) => {
                    captured = Some((content_type, bytes.clone()));
                    Request::from_parts(parts, Body::from(bytes))
                }
                Err(_) => {
                    let response =
                        AppError::new(ErrorCode::PayloadTooLarge, "the request body is too large or unreadable")
                            .into_response();
                    finish(state, event, &slot, &method, &response, started, query, None);
                    return response;
                }
            }
        }
    } else {
        Request::from_parts(parts, body)
    };

    let response = next(request).await;
    finish(state, event, &slot, &method, &response, started, query, captured);
    response
}

#[allow(clippy::too_many_arguments, reason = "the pieces of one event, gathered before and after the handler")]
fn finish(
    state: &AppState,
    mut event: AuditEvent,
    slot: &AuditSlot,
    method: &Method,
    response: &Response,
    started: Instant,
    query: Option<String>,
    body: Option<(Option<String>, Bytes)>,
) {
    let mut notes = slot.take();
    let route = notes.route.as_ref().map(MatchedPath::as_str);
    let (action, entity_type) = actions::classify(method, route);
    event.action = action.into();
    event.entity_type = entity_type.map(Into::into);
    event.entity_id = notes.entity_id.take().or(notes.path_entity_id.take());
    event.user_id = notes.user_id;
    event.organization_id = notes.organization_id;
    event.status = Some(i32::from(response.status().as_u16()));
    state.http_metrics.record(
        method,
        route.unwrap_or("unmatched"),
        response.status().as_u16(),
        started.elapsed().as_secs_f64(),
    );
    event.duration_ms = Some(started.elapsed().as_millis().min(i32::MAX as u128) as i32);
    if let Some(kind) = response.extensions().get::<ErrorPayload>().and_then(|p| p.security) {
        let details = serde_json::json!({ "status": event.status, "route": route });
        security::mark(&mut event, kind, kind.severity(), details);
    }
    if let serde_json::Value::Object(map) = &mut event.metadata {
        if let Some(route) = route {
            map.insert("route".into(), route.into());
        }
        if let Some(q) = query {
            map.insert("query".into(), q.into());
        }
    }
    match body {
        Some((content_type, bytes)) if !bytes.is_empty() => {
            let task_state = state.clone();
            state.audit.in_flight(async move {
                let sanitized = task_state.audit.sanitizer().body(content_type.as_deref(), &bytes);
                if let serde_json::Value::Object(map) = &mut event.metadata {
                    map.insert("body".into(), sanitized);
                }
                task_state.audit.record(event);
            });
        }
        _ => state.audit.record(event),
    }
}

/// A step of the `/api` route layer: the matched route template and its parameters, known only once routing
/// is done.
pub async fn note_route(request: Request) -> Request {
    let (mut parts, body) = request.into_parts();
    let route = parts.extensions.get::<MatchedPath>().cloned();
    let entity_id = match RawPathParams::from_request_parts(&mut parts, &()).await {
        Ok(p) => actions::entity_id(|| p.iter()),
        Err(_) => None,
    };
    super::note(&parts.extensions, |n| {
        n.route = route;
        n.path_entity_id = entity_id;
    });
    Request::from_parts(parts, body)
}

use axum::extract::FromRequestParts;
