//! Request id, access log and the error envelope: the outermost layer.
//!
//! Mints the request's id (UUIDv7; a sane client-sent `X-Request-ID` is kept beside it as
//! [`ClientRequestId`], never in its place), stores it in the request extensions, runs the request inside a
//! tracing span carrying both, returns the server's id in `X-Request-ID`, and renders every error response as `{error, message, code, requestId}`: from the
//! [`ErrorPayload`] an [`crate::AppError`] left behind, or from the bare status of a framework response.
//!
//! A tower layer, service and future rather than `axum::middleware::from_fn`: its work before and after the
//! inner service is synchronous, so it calls the inner service directly and wraps its future, where `from_fn`
//! clones the inner service, boxes it and boxes the future on every request (docs/PERFORMANCE.md, "Middleware overhead").

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Instant;

use axum::body::Body;
use axum::extract::Request;
use axum::http::{HeaderName, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::Response;

use crate::error::{ErrorCode, ErrorPayload};

/// `X-Request-ID`, as a constant: inserting under a `&str` would build and allocate the name per response.
pub(crate) const HEADER: HeaderName = HeaderName::from_static("x-request-id");

/// The id of the current request: minted by the server (UUIDv7), returned in `X-Request-ID`.
#[derive(Debug, Clone)]
pub(crate) struct RequestId(pub Arc<str>);

/// A sane `X-Request-ID` the client sent (1-128 characters of `[A-Za-z0-9._:-]`): kept beside the server's id
/// (in the access log and the audit row's metadata) so the client's own correlation still finds the request.
#[derive(Debug, Clone)]
pub(crate) struct ClientRequestId(pub Arc<str>);

fn acceptable(id: &str) -> bool {
    (1..=128).contains(&id.len())
        && id.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-'))
}

/// The request's id: its sane incoming `X-Request-ID`, else a new one.
/// A new id (UUIDv7), for a request or for an answer the server gives without one.
pub(crate) fn new_id() -> Arc<str> {
    // Encoded into a stack buffer: one allocation (the `Arc`), not the formatter and a `String` too.
    Arc::from(&*uuid::Uuid::now_v7().hyphenated().encode_lower(&mut uuid::Uuid::encode_buffer()))
}

/// The answer to a request the server refuses before the stack sees it (`crate::http::server`: a head over
/// the size limit): the same error body, `X-Request-ID` and access log line as any other error.
pub(crate) fn refuse(method: &Method, uri: &Uri, error: crate::error::AppError) -> Response {
    use axum::response::IntoResponse;
    let log = AccessLog { started: Instant::now(), id: new_id(), method: method.clone(), uri: uri.clone() };
    log.finish(error.into_response())
}

/// The layer: [`RequestIdService`] around the rest of the stack.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct RequestIdLayer;

impl<S> tower::Layer<S> for RequestIdLayer {
    type Service = RequestIdService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RequestIdService { inner }
    }
}

#[derive(Debug, Clone)]
pub(crate) struct RequestIdService<S> {
    inner: S,
}

impl<S, B> tower::Service<Request> for RequestIdService<S>
where
    S: tower::Service<Request, Response = axum::http::Response<B>>,
    B: http_body::Body<Data = axum::body::Bytes> + Send + 'static,
    B::Error: Into<axum::BoxError>,
{
    type Response = Response;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request) -> Self::Future {
        let started = Instant::now();
        // Always the server's own: the key an investigator searches the audit trail and the logs by is never
        // chosen by a client.
        let id = new_id();
        if let Some(client) = request.headers().get(&HEADER).and_then(|v| v.to_str().ok()).filter(|v| acceptable(v)) {
            let client = ClientRequestId(client.into());
            request.extensions_mut().insert(client);
        }
        request.extensions_mut().insert(RequestId(id.clone()));
        let method = request.method().clone();
        // A clone of the URI shares its bytes: no copy of the path per request for the log lines.
        let uri = request.uri().clone();
        let client = request.extensions().get::<ClientRequestId>().map(|c| c.0.clone());
        let span = tracing::info_span!("request", request_id = %id, client_request_id = client.as_deref(),
            method = %method, path = %uri.path());
        let inner = span.in_scope(|| self.inner.call(request));
        ResponseFuture { inner, span, log: Some(AccessLog { started, id, method, uri }) }
    }
}

/// What the access log line and the response need once the inner service has answered.
struct AccessLog {
    started: Instant,
    id: Arc<str>,
    method: Method,
    uri: Uri,
}

impl AccessLog {
    fn finish<B>(self, response: axum::http::Response<B>) -> Response
    where
        B: http_body::Body<Data = axum::body::Bytes> + Send + 'static,
        B::Error: Into<axum::BoxError>,
    {
        let mut response = response.map(Body::new);
        render_error(&mut response, &self.id);
        if let Ok(value) = HeaderValue::from_str(&self.id) {
            response.headers_mut().insert(HEADER, value);
        }
        let status = response.status().as_u16();
        let duration_ms = self.started.elapsed().as_secs_f64() * 1000.0;
        let (id, method, path) = (&self.id, &self.method, self.uri.path());
        if status >= 500 {
            tracing::warn!(request_id = %id, %method, %path, status, duration_ms, "request");
        } else {
            tracing::info!(request_id = %id, %method, %path, status, duration_ms, "request");
        }
        response
    }
}

pin_project_lite::pin_project! {
    /// The inner service's future, polled inside the request's span; the response finished on the way out.
    pub struct ResponseFuture<F> {
        #[pin]
        inner: F,
        span: tracing::Span,
        log: Option<AccessLog>,
    }
}

impl<F, B, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<axum::http::Response<B>, E>>,
    B: http_body::Body<Data = axum::body::Bytes> + Send + 'static,
    B::Error: Into<axum::BoxError>,
{
    type Output = Result<Response, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let response = {
            let _entered = this.span.enter();
            ready!(this.inner.poll(cx))?
        };
        let log = this.log.take().expect("a ResponseFuture is not polled after it completed");
        Poll::Ready(Ok(log.finish(response)))
    }
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
        StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE => {
            (ErrorCode::HeadersTooLarge, "the request headers are too large")
        }
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
