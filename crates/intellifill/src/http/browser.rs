//! What browsers are allowed and told: CORS ([`cors_layer`], tower-http's layer built from `CORS_*`) and the
//! security headers every response carries ([`SecurityHeadersLayer`]).
//!
//! Security headers, chosen for a JSON API (docs/DEPLOY.md, "Browser"): nothing of it is a page to render,
//! frame, sniff or cache:
//! - `X-Content-Type-Options: nosniff`: a JSON body is never run as script or style;
//! - `Cache-Control: no-store`: answers are the caller's own (tokens, their organization's data); no shared or
//!   browser cache keeps them (a response that sets its own `Cache-Control` keeps it);
//! - `Referrer-Policy: no-referrer`: URLs (ids, search terms) never leave in a `Referer`;
//! - `X-Frame-Options: DENY` and `Content-Security-Policy: default-src 'none'; frame-ancestors 'none'`: nothing
//!   may frame the API, and a response opened as a document loads nothing (a response that sets its own CSP,
//!   the dev demo page, keeps it);
//! - `Cross-Origin-Resource-Policy: same-origin`: other sites cannot embed responses (`<script src>`,
//!   `<img>`); CORS requests are not affected (the policy applies to no-cors requests only);
//! - `Strict-Transport-Security` only when `HSTS_MAX_AGE_SECONDS` is set: only the deployment knows that
//!   clients reach it over HTTPS only, and a browser that has seen the header refuses plain HTTP for that long.

use std::convert::Infallible;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::extract::Request;
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, header};
use axum::response::Response;
use tower_http::cors::{AllowOrigin, CorsLayer};

use crate::config::{BrowserConfig, CorsConfig, CorsOrigins};
use crate::ratelimit::RATE_LIMIT_HEADERS;

/// Request headers a browser may send cross-origin besides the CORS-safelisted ones.
const ALLOWED_REQUEST_HEADERS: [HeaderName; 3] =
    [header::AUTHORIZATION, header::CONTENT_TYPE, HeaderName::from_static("x-request-id")];

/// Methods the API's routes use.
const ALLOWED_METHODS: [Method; 5] = [Method::GET, Method::POST, Method::PUT, Method::PATCH, Method::DELETE];

/// The CORS layer, or `None` when `CORS_ALLOWED_ORIGINS` is empty. It answers every `OPTIONS` request itself
/// (a preflight, 200 with no body), so it sits after the per-ip limit and before audit and authentication
/// (`super::middleware::stack`). Responses expose the headers a client reads: the request id, the rate-limit
/// headers and `Retry-After`.
pub(crate) fn cors_layer(config: &BrowserConfig) -> Option<CorsLayer> {
    let CorsConfig { origins, allow_credentials, max_age } = config.cors.as_ref()?;
    let allow_origin = match origins {
        CorsOrigins::Any => AllowOrigin::any(),
        CorsOrigins::List(list) => {
            AllowOrigin::list(list.iter().map(|o| HeaderValue::from_str(o).expect("validated origin")))
        }
    };
    let mut expose: Vec<HeaderName> = vec![super::request_id::HEADER.clone(), header::RETRY_AFTER];
    expose.extend(RATE_LIMIT_HEADERS.iter().cloned());
    Some(
        CorsLayer::new()
            .allow_origin(allow_origin)
            .allow_methods(ALLOWED_METHODS)
            .allow_headers(ALLOWED_REQUEST_HEADERS)
            .expose_headers(expose)
            .allow_credentials(*allow_credentials)
            .max_age(*max_age),
    )
}

/// Whether the CORS layer will answer this request itself (every `OPTIONS` while CORS is on).
pub(crate) fn answered_by_cors(config: &BrowserConfig, method: &Method) -> bool {
    config.cors.is_some() && method == Method::OPTIONS
}

/// The security headers of every response (see the module docs), added unless the response has its own.
#[derive(Debug, Clone)]
pub(crate) struct SecurityHeadersLayer(Arc<HeaderMap>);

impl SecurityHeadersLayer {
    pub(crate) fn new(config: &BrowserConfig) -> SecurityHeadersLayer {
        let mut headers = HeaderMap::new();
        let fixed = [
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            (header::CACHE_CONTROL, "no-store"),
            (header::REFERRER_POLICY, "no-referrer"),
            (header::X_FRAME_OPTIONS, "DENY"),
            (header::CONTENT_SECURITY_POLICY, "default-src 'none'; frame-ancestors 'none'"),
            (HeaderName::from_static("cross-origin-resource-policy"), "same-origin"),
        ];
        for (name, value) in fixed {
            headers.insert(name, HeaderValue::from_static(value));
        }
        if let Some(max_age) = config.hsts_max_age {
            let value = HeaderValue::from_str(&format!("max-age={}", max_age.as_secs())).expect("ascii digits");
            headers.insert(header::STRICT_TRANSPORT_SECURITY, value);
        }
        SecurityHeadersLayer(Arc::new(headers))
    }
}

impl<S> tower::Layer<S> for SecurityHeadersLayer {
    type Service = SecurityHeaders<S>;

    fn layer(&self, inner: S) -> Self::Service {
        SecurityHeaders { inner, headers: self.0.clone() }
    }
}

#[derive(Debug, Clone)]
pub(crate) struct SecurityHeaders<S> {
    inner: S,
    headers: Arc<HeaderMap>,
}

impl<S> tower::Service<Request> for SecurityHeaders<S>
where
    S: tower::Service<Request, Response = Response, Error = Infallible>,
{
    type Response = Response;
    type Error = Infallible;
    type Future = WithHeaders<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request) -> Self::Future {
        WithHeaders { inner: self.inner.call(request), headers: self.headers.clone() }
    }
}

pin_project_lite::pin_project! {
    /// The inner response with the security headers it lacks.
    pub struct WithHeaders<F> {
        #[pin]
        inner: F,
        headers: Arc<HeaderMap>,
    }
}

impl<F: Future<Output = Result<Response, Infallible>>> Future for WithHeaders<F> {
    type Output = Result<Response, Infallible>;

    fn poll(self: std::pin::Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let Ok(mut response) = std::task::ready!(this.inner.poll(cx));
        for (name, value) in this.headers.iter() {
            response.headers_mut().entry(name).or_insert_with(|| value.clone());
        }
        Poll::Ready(Ok(response))
    }
}
