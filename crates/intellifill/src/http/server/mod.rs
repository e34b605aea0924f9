//! The HTTP/1.1 server of the API (and metrics) listener: hyper's connection builder in an accept loop of our
//! own, for the limits `axum::serve` does not expose (`HTTP_*` variables, [`ConnectionLimits`]):
//!
//! - open connections are capped: one over the cap is answered 503 `TOO_MANY_CONNECTIONS` (`Retry-After: 1`)
//!   at once and closed, and counted in `http_connections_refused_total`; `http_connections_open` is the gauge
//!   of open ones;
//! - the header-read and keep-alive timeouts ([`timeouts`]);
//! - the size of a request head: over the limit it is answered 431 `HEADERS_TOO_LARGE` with the error body
//!   ([`admit`]). hyper's read buffer is twice the limit: a head that does not fit in it is refused by hyper
//!   itself, as are a request line or header field it cannot parse and more than 100 header fields. hyper
//!   writes those answers before any service sees a request and has no hook to give them a body: a bare
//!   `431 Request Header Fields Too Large` (too large, too many fields) or `400 Bad Request` (unparseable),
//!   `content-length: 0`, then it closes the connection. Each is counted in `http_head_errors_total`;
//! - graceful shutdown: on the stop signal the listener is closed (the kernel refuses new connections), idle
//!   connections are closed, requests in flight finish, and [`serve`] returns once every connection is closed.
//!
//! HTTP/1.1 only (`http1_only`; the crate is built without HTTP/2): the timeouts follow HTTP/1.1's one
//! request at a time per connection.

mod admit;
mod timeouts;

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::http::StatusCode;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};

use crate::config::ConnectionLimits;
use crate::error::{ErrorCode, ErrorPayload};
use crate::http::middleware::Served;
use crate::http::request_id;

/// hyper's smallest allowed read buffer.
const MIN_READ_BUFFER: usize = 8_192;

/// Serve `app` on `listener` until `stop` resolves, then drain: see the module documentation. `listener_name`
/// labels the connection metrics (`api`, `metrics`).
pub(crate) async fn serve<S: Served>(
    listener: TcpListener,
    app: S,
    limits: ConnectionLimits,
    listener_name: &'static str,
    stop: impl Future<Output = ()>,
) {
    let mut builder = auto::Builder::new(TokioExecutor::new()).http1_only();
    builder
        .http1()
        .keep_alive(true)
        // Kept by the transport instead, apart from the keep-alive timeout (`timeouts`).
        .header_read_timeout(None)
        .max_buf_size((2 * limits.max_header_bytes).max(MIN_READ_BUFFER));
    let permits = Arc::new(Semaphore::new(limits.max_connections));
    let open = metrics::gauge!("http_connections_open", "listener" => listener_name);
    let refused = metrics::counter!("http_connections_refused_total", "listener" => listener_name);
    let (stopping, stop_seen) = watch::channel(false);
    let mut stop = std::pin::pin!(stop);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    accept_failed(e).await;
                    continue;
                }
            },
            () = &mut stop => break,
        };
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            refused.increment(1);
            refuse_connection(&stream);
            continue;
        };
        let connection = Connection { app: app.clone(), peer, limits, _open: Open::new(open.clone(), permit) };
        tokio::spawn(connection.run(stream, builder.clone(), stop_seen.clone()));
    }
    drop(listener);
    let _ = stopping.send(true);
    // Every open connection holds a permit: all of them back means every connection is closed.
    let all = u32::try_from(limits.max_connections).unwrap_or(u32::MAX);
    let _ = permits.acquire_many(all).await;
}

/// An accept error: the client's (it went away before it was accepted) is skipped; the process's (out of file
/// descriptors) is logged, and accepting pauses briefly rather than spinning on it.
async fn accept_failed(e: io::Error) {
    use io::ErrorKind::{ConnectionAborted, ConnectionRefused, ConnectionReset};
    if matches!(e.kind(), ConnectionAborted | ConnectionRefused | ConnectionReset) {
        return;
    }
    tracing::warn!(error = %e, "cannot accept a connection");
    tokio::time::sleep(Duration::from_millis(100)).await;
}

/// Over the cap: the 503 written without waiting (a fresh socket's send buffer holds it), then closed.
fn refuse_connection(stream: &TcpStream) {
    let _ = stream.try_write(&raw_error(ErrorCode::TooManyConnections, "the server has too many open connections"));
}

/// One open connection: its permit and its place in the gauge, given back on drop.
struct Open {
    gauge: metrics::Gauge,
    _permit: OwnedSemaphorePermit,
}

impl Open {
    fn new(gauge: metrics::Gauge, permit: OwnedSemaphorePermit) -> Open {
        gauge.increment(1.0);
        Open { gauge, _permit: permit }
    }
}

impl Drop for Open {
    fn drop(&mut self) {
        self.gauge.decrement(1.0);
    }
}

/// An accepted connection, before it is served.
struct Connection<S> {
    app: S,
    peer: SocketAddr,
    limits: ConnectionLimits,
    _open: Open,
}

impl<S: Served> Connection<S> {
    /// Serve the connection until it closes; on the stop signal, finish the request in flight and close.
    async fn run(self, stream: TcpStream, builder: auto::Builder<TokioExecutor>, mut stop: watch::Receiver<bool>) {
        let phase = timeouts::Phase::new();
        let io = TokioIo::new(timeouts::TimedIo::new(stream, phase.clone(), self.limits));
        let service = admit::Admit::new(self.app, self.peer, phase, self.limits.max_header_bytes);
        let mut conn = std::pin::pin!(builder.serve_connection(io, service));
        let mut draining = false;
        let result = loop {
            tokio::select! {
                result = conn.as_mut() => break result,
                // A closed channel (the server future dropped) stops the connection too.
                _ = stop.wait_for(|stopping| *stopping), if !draining => {
                    draining = true;
                    conn.as_mut().graceful_shutdown();
                }
            }
        };
        if let Err(e) = result {
            connection_failed(&*e);
        }
    }
}

/// A connection that ended in an error: hyper's refusals of a request head are counted (it answered them
/// itself); the rest (client gone, head timeout already counted) is routine.
fn connection_failed(error: &(dyn std::error::Error + 'static)) {
    let reason = match error.downcast_ref::<hyper::Error>() {
        Some(e) if e.is_parse_too_large() => "too_large",
        Some(e) if e.is_parse() => "malformed",
        _ => {
            tracing::debug!(error = %error, "connection closed with an error");
            return;
        }
    };
    metrics::counter!("http_head_errors_total", "reason" => reason).increment(1);
    tracing::debug!(reason, error = %error, "request head refused by the HTTP parser");
}

/// A whole HTTP/1.1 error response with the error body, for answers written to the socket directly, where no
/// request was read (so the id is a new one): over the connection cap, a head not received in time.
fn raw_error(code: ErrorCode, message: &'static str) -> Vec<u8> {
    let id = request_id::new_id();
    let payload = ErrorPayload { code, message: message.into(), field: None, security: None };
    let body = serde_json::to_vec(&payload.body(&id)).unwrap_or_default();
    let status = code.status();
    let retry_after = if status == StatusCode::SERVICE_UNAVAILABLE { "retry-after: 1\r\n" } else { "" };
    let mut response = format!(
        "HTTP/1.1 {} {}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\
         {retry_after}x-request-id: {id}\r\n\r\n",
        status.as_str(),
        status.canonical_reason().unwrap_or("Error"),
        body.len(),
    )
    .into_bytes();
    response.extend_from_slice(&body);
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_raw_error_is_a_whole_response_with_the_error_body() {
        let raw = String::from_utf8(raw_error(ErrorCode::TooManyConnections, "busy")).expect("utf-8");
        let (head, body) = raw.split_once("\r\n\r\n").expect("head and body");
        assert!(head.starts_with("HTTP/1.1 503 Service Unavailable\r\n"), "{head}");
        assert!(head.contains("\r\nretry-after: 1"), "{head}");
        assert!(head.contains(&format!("\r\ncontent-length: {}", body.len())), "{head}");
        let body: serde_json::Value = serde_json::from_str(body).expect("json body");
        assert_eq!(body["code"], "TOO_MANY_CONNECTIONS");
        assert_eq!(body["error"], "Service Unavailable");
        assert!(head.contains(&format!("x-request-id: {}", body["requestId"].as_str().expect("id"))), "{head}");
    }
}
