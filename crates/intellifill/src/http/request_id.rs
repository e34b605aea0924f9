//! Request id, access log and the error envelope: the outermost layer.
//!
//! Accepts a sane incoming `X-Request-ID` (1-128 characters of `[A-Za-z0-9._:-]`), otherwise mints a UUIDv7;
//! stores it in the request extensions, runs the request inside a tracing span carrying it, returns it in
//! `X-Request-ID`, and renders every error response as `{error, message, code, requestId}`: from the
//! [`ErrorPayload`] an [`crate::AppError`] left behind, or from the bare status of a framework response.

use std::sync::Arc;
use std::time::Instant;

use axum::body::Body;
use axum::extract::Request;
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::Response;
use tracing::Instrument;

use crate::error::{ErrorCode, ErrorPayload};

pub const HEADER: &str = "x-request-id";

/// The id of the current request.
#[derive(Debug, Clone)]
pub struct RequestId(pub Arc<str>);

fn acceptable(id: &str) -> bool {
    (1..=128).contains(&id.len())
        && id.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-'))
}

pub async fn layer(mut request: Request, next: Next) -> Response {
    let started = Instant::now();
    let id: Arc<str> = match request.headers().get(HEADER).and_then(|v| v.to_str().ok()) {
        Some(v) if acceptable(v) => v.into(),
        _ => uuid::Uuid::now_v7().to_string().into(),
    };
    request.extensions_mut().insert(RequestId(id.clone()));
    let method = request.method().clone();
    // A clone of the URI shares its bytes: no copy of the path per request for the log lines.
    let uri = request.uri().clone();
    let path = uri.path();
    let span = tracing::info_span!("request", request_id = %id, method = %method, path = %path);
    let mut response = next.run(request).instrument(span).await;
    render_error(&mut response, &id);
    if let Ok(value) = HeaderValue::from_str(&id) {
        response.headers_mut().insert(HEADER, value);
    }
    let status = response.status().as_u16();
    let duration_ms = started.elapsed().as_secs_f64() * 1000.0;
    if status >= 500 {
        tracing::warn!(request_id = %id, %method, %path, status, duration_ms, "request");
    } else {
        tracing::info!(request_id = %id, %method, %path, status, duration_ms, "request");
    }
    response
}

/// Fill in the JSON error body.
fn render_error(response: &mut Response, request_id: &str) {
    let payload = match response.extensions_mut().remove::<ErrorPayload>() {
        Some(p) => p,
        None if response.status().is_client_error() || response.status().is_server_error() => {
            let already_json = response
                .headers()
                .get(header::CONTENT_TYPE)
                .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
            if already_json {
                return;
            }
            framework_error(response.status())
        }
        None => return,
    };
    let body = serde_json::to_vec(&payload.body(request_id)).unwrap_or_default();
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response.headers_mut().remove(header::CONTENT_LENGTH);
    *response.body_mut() = Body::from(body);
}

fn framework_error(status: StatusCode) -> ErrorPayload {
    let (code, message) = match status {
        StatusCode::NOT_FOUND => (ErrorCode::RouteNotFound, "no such route"),
        StatusCode::METHOD_NOT_ALLOWED => (ErrorCode::MethodNotAllowed, "method not allowed on this route"),
        StatusCode::PAYLOAD_TOO_LARGE => (ErrorCode::PayloadTooLarge, "the request body is too large"),
        StatusCode::REQUEST_TIMEOUT => (ErrorCode::RequestTimeout, "the request took too long"),
        StatusCode::UNSUPPORTED_MEDIA_TYPE => (ErrorCode::UnsupportedMediaType, "unsupported content type"),
        s if s.is_client_error() => (ErrorCode::ValidationError, "the request is invalid"),
        _ => (ErrorCode::InternalError, "internal server error"),
    };
    ErrorPayload { code, message: message.into(), field: None, security: None }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn incoming_ids_are_accepted_only_when_sane() {
        assert!(acceptable("abc-123_x.y:z"));
        assert!(!acceptable(""));
        assert!(!acceptable("has space"));
        assert!(!acceptable("<script>"));
        assert!(!acceptable(&"a".repeat(129)));
    }
}
