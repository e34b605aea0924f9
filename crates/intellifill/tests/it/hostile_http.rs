//! Hostile HTTP clients, over raw TCP against the real server: slow and silent heads, idle keep-alive
//! connections, oversized and malformed heads, more connections than the cap, undecodable path parameters.

use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::{Instant, timeout};
use uuid::Uuid;

use crate::helpers::{TestApp, assert_error, email, wait_until};

/// One response read off a raw connection.
struct Raw {
    status: u16,
    /// Status line and header lines, header names lower-cased.
    head: String,
    body: Vec<u8>,
}

impl Raw {
    fn header(&self, name: &str) -> Option<&str> {
        self.head.lines().skip(1).find_map(|line| {
            let (n, v) = line.split_once(':')?;
            n.eq_ignore_ascii_case(name).then(|| v.trim())
        })
    }

    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| panic!("not a JSON body ({e}): {}", self.head))
    }
}

async fn connect(app: &TestApp) -> TcpStream {
    TcpStream::connect(app.base.trim_start_matches("http://")).await.expect("connect")
}

/// Read one response: its head, then `content-length` bytes of body.
async fn read_response(stream: &mut TcpStream) -> Raw {
    let mut buf = Vec::new();
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i;
        }
        let mut chunk = [0u8; 4096];
        let n =
            timeout(Duration::from_secs(5), stream.read(&mut chunk)).await.expect("a response in time").expect("read");
        assert!(n > 0, "connection closed before a whole response head: {:?}", String::from_utf8_lossy(&buf));
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8(buf[..head_end].to_vec()).expect("ascii head");
    let status = head.split(' ').nth(1).and_then(|s| s.parse().ok()).expect("status code");
    let mut body = buf[head_end + 4..].to_vec();
    let raw = Raw { status, head, body: Vec::new() };
    let length: usize = raw.header("content-length").map_or(0, |v| v.parse().expect("content-length"));
    while body.len() < length {
        let mut chunk = [0u8; 4096];
        let n = timeout(Duration::from_secs(5), stream.read(&mut chunk)).await.expect("body in time").expect("read");
        assert!(n > 0, "connection closed inside the body");
        body.extend_from_slice(&chunk[..n]);
    }
    Raw { body, ..raw }
}

/// Wait for the server to close the connection (end of file or reset, nothing else sent); returns how long
/// that took.
async fn closed_within(stream: &mut TcpStream, limit: Duration) -> Duration {
    let started = Instant::now();
    let mut chunk = [0u8; 1024];
    match timeout(limit, stream.read(&mut chunk)).await {
        Err(_) => panic!("the connection is still open after {limit:?}"),
        Ok(Ok(0)) | Ok(Err(_)) => started.elapsed(),
        Ok(Ok(n)) => panic!("unexpected bytes instead of a close: {:?}", String::from_utf8_lossy(&chunk[..n])),
    }
}

async fn get(stream: &mut TcpStream, path: &str, extra_headers: &str) -> Raw {
    let request = format!("GET {path} HTTP/1.1\r\nHost: test\r\n{extra_headers}\r\n");
    stream.write_all(request.as_bytes()).await.expect("write request");
    read_response(stream).await
}

/// The value of a series (name and labels as rendered) in this process's metrics; 0 when absent.
fn metric(app: &TestApp, series: &str) -> f64 {
    let text = intellifill::testing::render_metrics(&app.state);
    let value = text.lines().filter(|l| !l.starts_with('#')).find(|l| l.starts_with(series));
    value.and_then(|l| l.rsplit(' ').next()).and_then(|v| v.parse().ok()).unwrap_or(0.0)
}

#[tokio::test]
async fn a_head_trickled_byte_by_byte_gets_408_after_the_header_timeout() {
    let app = TestApp::spawn_with(|args| args.http_header_read_timeout_ms = Some("300".into())).await;
    let (mut read, mut write) = connect(&app).await.into_split();
    let started = Instant::now();
    let trickle = tokio::spawn(async move {
        let _ = write.write_all(b"GET /health HTTP/1.1\r\nHost: test\r\nX-Slow: ").await;
        // One byte every 50 ms: always sending, never done.
        while write.write_all(b"a").await.is_ok() {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    });
    let mut stream_bytes = Vec::new();
    timeout(Duration::from_secs(3), read.read_to_end(&mut stream_bytes)).await.expect("closed in time").ok();
    let elapsed = started.elapsed();
    trickle.abort();
    assert!(elapsed >= Duration::from_millis(250), "closed before the timeout: {elapsed:?}");
    assert!(elapsed < Duration::from_millis(1500), "not closed at the timeout: {elapsed:?}");
    let text = String::from_utf8(stream_bytes).expect("utf-8");
    let (head, body) = text.split_once("\r\n\r\n").expect("a 408 response before the close");
    assert!(head.starts_with("HTTP/1.1 408 Request Timeout\r\n"), "{head}");
    assert!(head.contains("connection: close"), "{head}");
    let body: Value = serde_json::from_str(body).expect("JSON body");
    assert_error(408, &body, 408, "REQUEST_TIMEOUT");
    assert!(head.contains(body["requestId"].as_str().expect("id")), "X-Request-ID is the body's id: {head}");
    assert_eq!(metric(&app, "http_head_errors_total{reason=\"timeout\"}"), 1.0);
}

#[tokio::test]
async fn silent_connections_are_closed_after_the_header_timeout() {
    let app = TestApp::spawn_with(|args| args.http_header_read_timeout_ms = Some("300".into())).await;
    let mut silent = Vec::new();
    for _ in 0..200 {
        silent.push(connect(&app).await);
    }
    let closes = silent.iter_mut().map(|stream| closed_within(stream, Duration::from_secs(3)));
    let waited = futures::future::join_all(closes).await;
    let longest = waited.iter().max().expect("200 connections");
    // Each was closed without a byte sent to it (`closed_within` refuses bytes), within the timeout plus slack.
    assert!(*longest < Duration::from_millis(1500), "closed after {longest:?}");
    assert_eq!(metric(&app, "http_head_errors_total{reason=\"timeout\"}"), 200.0);
    wait_until(Duration::from_secs(2), || metric(&app, "http_connections_open{listener=\"api\"}") == 0.0).await;
    let mut fresh = connect(&app).await;
    assert_eq!(get(&mut fresh, "/health", "").await.status, 200, "the server still serves");
}

#[tokio::test]
async fn an_idle_keep_alive_connection_lives_past_the_header_timeout_and_closes_at_the_keepalive_timeout() {
    let app =
        TestApp::spawn_with(settings!(http_header_read_timeout_ms = "200", http_keepalive_timeout_ms = "800")).await;
    let mut stream = connect(&app).await;
    assert_eq!(get(&mut stream, "/health", "").await.status, 200);
    // Idle for longer than the header timeout: still open, the next request is served on it.
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(get(&mut stream, "/health", "").await.status, 200, "an idle connection is not a slow head");
    let idle = closed_within(&mut stream, Duration::from_secs(3)).await;
    assert!(idle >= Duration::from_millis(700), "closed before the keep-alive timeout: {idle:?}");
    assert!(idle < Duration::from_millis(2000), "not closed at the keep-alive timeout: {idle:?}");
    assert_eq!(metric(&app, "http_head_errors_total{reason=\"timeout\"}"), 0.0, "an idle close is no error");
}

#[tokio::test]
async fn oversized_request_heads_get_431() {
    let app = TestApp::spawn().await;
    let limit = app.state.config.http.connections.max_header_bytes;
    assert_eq!(limit, 32 * 1024);

    // Over the limit, within hyper's read buffer (twice the limit): our 431 with the error body.
    let mut stream = connect(&app).await;
    let cookie = format!("Cookie: c={}\r\nX-Request-ID: big-cookie-1\r\n", "a".repeat(40 * 1024));
    let refused = get(&mut stream, "/health", &cookie).await;
    assert_error(refused.status, &refused.json(), 431, "HEADERS_TOO_LARGE");
    // The server's own id, never the client's, in the body and the header alike.
    let id = refused.json()["requestId"].as_str().map(str::to_owned).expect("requestId");
    assert_eq!(uuid::Uuid::parse_str(&id).expect("a server id").get_version_num(), 7);
    assert_eq!(refused.header("x-request-id"), Some(id.as_str()));
    assert_eq!(refused.header("connection"), Some("close"));
    closed_within(&mut stream, Duration::from_secs(2)).await;

    // A 64 KiB cookie does not fit in hyper's buffer: hyper answers a bare 431 itself and closes. The head is
    // sent up to the buffer's size only: bytes still unread when the server closes would turn the close into
    // a reset, which may discard the answer before the client reads it.
    let mut stream = connect(&app).await;
    let mut head = b"GET /health HTTP/1.1\r\nHost: test\r\nCookie: c=".to_vec();
    head.resize(2 * limit, b'a');
    stream.write_all(&head).await.expect("write head");
    let refused = read_response(&mut stream).await;
    assert_eq!(refused.status, 431, "{}", refused.head);
    assert!(refused.head.starts_with("HTTP/1.1 431 Request Header Fields Too Large"), "{}", refused.head);
    assert_eq!(refused.header("content-length"), Some("0"), "hyper's own answer has no body");
    closed_within(&mut stream, Duration::from_secs(2)).await;

    assert_eq!(metric(&app, "http_head_errors_total{reason=\"too_large\"}"), 2.0);
    let mut fresh = connect(&app).await;
    assert_eq!(get(&mut fresh, "/health", "").await.status, 200, "the server still serves");
}

#[tokio::test]
async fn malformed_request_heads_get_400() {
    let app = TestApp::spawn().await;
    for malformed in
        ["GET /health HTTP/1.1 and more\r\nHost: test\r\n\r\n", "GET /health HTTP/1.1\r\nno colon here\r\n\r\n"]
    {
        let mut stream = connect(&app).await;
        stream.write_all(malformed.as_bytes()).await.expect("write");
        let refused = read_response(&mut stream).await;
        assert!(refused.head.starts_with("HTTP/1.1 400 Bad Request"), "{malformed:?}: {}", refused.head);
        assert_eq!(refused.header("content-length"), Some("0"), "hyper's own answer has no body");
        closed_within(&mut stream, Duration::from_secs(2)).await;
    }
    assert_eq!(metric(&app, "http_head_errors_total{reason=\"malformed\"}"), 2.0);
}

#[tokio::test]
async fn a_connection_over_the_cap_gets_503_and_is_counted() {
    let app = TestApp::spawn_with(|args| args.http_max_connections = Some("3".into())).await;
    let open = |app: &TestApp| metric(app, "http_connections_open{listener=\"api\"}");
    let mut served = connect(&app).await;
    assert_eq!(get(&mut served, "/health", "").await.status, 200);
    let _silent = [connect(&app).await, connect(&app).await];
    wait_until(Duration::from_secs(2), || open(&app) == 3.0).await;
    assert_eq!(metric(&app, "http_connections_refused_total{listener=\"api\"}"), 0.0);

    let mut extra = connect(&app).await;
    let refused = read_response(&mut extra).await;
    assert_error(refused.status, &refused.json(), 503, "TOO_MANY_CONNECTIONS");
    assert_eq!(refused.header("retry-after"), Some("1"));
    closed_within(&mut extra, Duration::from_secs(2)).await;
    assert_eq!(metric(&app, "http_connections_refused_total{listener=\"api\"}"), 1.0);
    assert_eq!(open(&app), 3.0, "the refused connection was never counted open");
    assert_eq!(get(&mut served, "/health", "").await.status, 200, "open connections keep being served");

    drop(served);
    wait_until(Duration::from_secs(2), || open(&app) == 2.0).await;
    let mut next = connect(&app).await;
    assert_eq!(get(&mut next, "/health", "").await.status, 200, "a freed place is taken again");
}

#[tokio::test]
async fn invalid_utf8_in_a_path_parameter_is_400_with_the_error_body() {
    let app = TestApp::spawn().await;
    let u = app.user(&email("u")).await;
    let org = app.org(&u, "Utf8").await;
    let bearer = format!("Authorization: Bearer {}\r\n", u.token);
    let paths = [
        "/api/organizations/%FF".to_owned(),
        format!("/api/organizations/{org}/knowledge/%FF%FE"),
        format!("/api/organizations/{}/knowledge/%FF%FE", Uuid::new_v4()),
    ];
    for path in &paths {
        for headers in ["", bearer.as_str()] {
            let mut stream = connect(&app).await;
            let answer = get(&mut stream, path, headers).await;
            assert_eq!(answer.status, 400, "{path}: {}", answer.head);
            assert_error(answer.status, &answer.json(), 400, "INVALID_ID");
        }
    }
}

#[tokio::test]
async fn shutdown_closes_idle_and_silent_connections_at_once() {
    let mut app = TestApp::spawn().await;
    let mut idle = connect(&app).await;
    assert_eq!(get(&mut idle, "/health", "").await.status, 200);
    let mut silent = connect(&app).await;
    wait_until(Duration::from_secs(2), || metric(&app, "http_connections_open{listener=\"api\"}") == 2.0).await;
    let started = Instant::now();
    app.stop().await.expect("clean stop");
    // Neither connection holds the drain: far less than the 5 s grace and the 75 s keep-alive timeout.
    assert!(started.elapsed() < Duration::from_secs(2), "stop took {:?}", started.elapsed());
    closed_within(&mut idle, Duration::from_secs(1)).await;
    closed_within(&mut silent, Duration::from_secs(1)).await;
}
