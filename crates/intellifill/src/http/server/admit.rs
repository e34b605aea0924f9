//! The service of one connection, in front of the stack: each request gets the client's address
//! (`ConnectInfo`, read by [`crate::http::client_ip`]), a head over `HTTP_MAX_HEADER_BYTES` is answered 431
//! `HEADERS_TOO_LARGE` before the stack sees it, and the request counts as in flight for the connection's
//! timeouts ([`super::timeouts`]) until its response body is done.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use axum::body::{Body, Bytes};
use axum::extract::ConnectInfo;
use axum::http::{HeaderValue, Request, Response, header};
use http_body::{Frame, SizeHint};
use hyper::body::Incoming;
use tower::ServiceExt;
use tower::util::Oneshot;

use super::timeouts::{InFlight, Phase};
use crate::error::{AppError, ErrorCode};
use crate::http::middleware::Served;
use crate::http::request_id;

/// The hyper service of one connection.
pub(super) struct Admit<S> {
    app: S,
    peer: SocketAddr,
    phase: Arc<Phase>,
    max_header_bytes: usize,
}

impl<S> Admit<S> {
    pub(super) fn new(app: S, peer: SocketAddr, phase: Arc<Phase>, max_header_bytes: usize) -> Admit<S> {
        Admit { app, peer, phase, max_header_bytes }
    }
}

impl<S: Served> hyper::service::Service<Request<Incoming>> for Admit<S> {
    type Response = Response<TrackedBody>;
    type Error = Infallible;
    type Future = Admitted<Oneshot<S, Request<Body>>>;

    fn call(&self, request: Request<Incoming>) -> Self::Future {
        let in_flight = Some(self.phase.request_started());
        if head_len(&request) > self.max_header_bytes {
            metrics::counter!("http_head_errors_total", "reason" => "too_large").increment(1);
            let message = format!("the request line and headers exceed {} bytes", self.max_header_bytes);
            let error = AppError::new(ErrorCode::HeadersTooLarge, message);
            let mut response = request_id::refuse(request.method(), request.uri(), error);
            // The client is sending heads this server refuses: no further request on this connection.
            response.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("close"));
            return Admitted::Refused { response: Some(response), in_flight };
        }
        let mut request = request.map(Body::new);
        request.extensions_mut().insert(ConnectInfo(self.peer));
        Admitted::Served { future: self.app.clone().oneshot(request), in_flight }
    }
}

/// The size of the request head as sent, give or take optional whitespace: `METHOD SP target SP HTTP/1.1
/// CRLF`, each `name: value CRLF`, the closing CRLF.
fn head_len<B>(request: &Request<B>) -> usize {
    let uri = request.uri();
    let target = uri.scheme_str().map_or(0, |s| s.len() + 3)
        + uri.authority().map_or(0, |a| a.as_str().len())
        + uri.path_and_query().map_or(1, |p| p.as_str().len());
    let line = request.method().as_str().len() + 1 + target + 1 + "HTTP/1.1".len() + 2;
    let fields: usize = request.headers().iter().map(|(name, value)| name.as_str().len() + 2 + value.len() + 2).sum();
    line + fields + 2
}

pin_project_lite::pin_project! {
    /// The response of one request, its body tracked.
    #[project = AdmittedProjection]
    pub(super) enum Admitted<F> {
        Refused { response: Option<Response<Body>>, in_flight: Option<InFlight> },
        Served { #[pin] future: F, in_flight: Option<InFlight> },
    }
}

impl<F> Future for Admitted<F>
where
    F: Future<Output = Result<Response<Body>, Infallible>>,
{
    type Output = Result<Response<TrackedBody>, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let (response, in_flight) = match self.project() {
            AdmittedProjection::Refused { response, in_flight } => {
                (response.take().expect("an Admitted future is not polled after it completed"), in_flight)
            }
            AdmittedProjection::Served { future, in_flight } => (ready!(future.poll(cx))?, in_flight),
        };
        let in_flight = in_flight.take().expect("an Admitted future is not polled after it completed");
        Poll::Ready(Ok(response.map(|body| TrackedBody { body, _in_flight: in_flight })))
    }
}

/// A response body that keeps its request in flight until hyper is done with it.
pub(super) struct TrackedBody {
    body: Body,
    _in_flight: InFlight,
}

impl http_body::Body for TrackedBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        Pin::new(&mut self.get_mut().body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_head_length_counts_the_request_line_and_every_field() {
        let request =
            Request::get("/api/me?x=1").header("host", "a").header("cookie", "c=1").body(()).expect("request");
        let sent = "GET /api/me?x=1 HTTP/1.1\r\nhost: a\r\ncookie: c=1\r\n\r\n";
        assert_eq!(head_len(&request), sent.len());
    }
}
