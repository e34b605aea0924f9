//! A bare HTTP/1.1 keep-alive connection (hyper's client connection, no pool): one per worker, reconnected
//! after a transport error. Cheaper per request than a pooled client, which matters when the generator and
//! the server share the same two cores.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use anyhow::{Result, anyhow};
use bytes::Bytes;
use http::{HeaderValue, Method, Request, header};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use tokio::net::{TcpSocket, TcpStream};

/// What the harness keeps of a response.
#[derive(Debug, Clone)]
pub(crate) struct Resp {
    pub status: u16,
    pub retry_after: bool,
    pub request_id: Option<String>,
    pub body: Bytes,
}

impl Resp {
    /// The `code` of the standard error body, if any.
    pub(crate) fn code(&self) -> Option<String> {
        if self.status < 400 {
            return None;
        }
        serde_json::from_slice::<serde_json::Value>(&self.body)
            .ok()
            .and_then(|v| v.get("code").and_then(|c| c.as_str()).map(str::to_owned))
    }

    pub(crate) fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or(serde_json::Value::Null)
    }
}

pub(crate) struct Conn {
    addr: SocketAddr,
    /// The local address connections are made from (a loopback alias: the server sees another client).
    source: Option<IpAddr>,
    host: HeaderValue,
    sender: Option<SendRequest<Full<Bytes>>>,
    pub connects: u64,
}

impl Conn {
    pub(crate) fn new(addr: SocketAddr) -> Conn {
        let host = HeaderValue::from_str(&addr.to_string()).unwrap_or_else(|_| HeaderValue::from_static("localhost"));
        Conn { addr, source: None, host, sender: None, connects: 0 }
    }

    /// Connections from `source` (e.g. `127.0.0.12`: every address of 127.0.0.0/8 is local on Linux), so the
    /// server sees a client address of its own, as it would for another machine.
    pub(crate) fn from_source(addr: SocketAddr, source: IpAddr) -> Conn {
        Conn { source: Some(source), ..Conn::new(addr) }
    }

    /// Open the connection now (with a bound on the time it may take).
    pub(crate) async fn connect(&mut self, within: Duration) -> Result<()> {
        let connect = async {
            match self.source {
                None => TcpStream::connect(self.addr).await,
                Some(source) => {
                    let socket = if source.is_ipv4() { TcpSocket::new_v4()? } else { TcpSocket::new_v6()? };
                    socket.bind(SocketAddr::new(source, 0))?;
                    socket.connect(self.addr).await
                }
            }
        };
        let stream = tokio::time::timeout(within, connect).await.map_err(|_| anyhow!("connect timed out"))??;
        stream.set_nodelay(true)?;
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        self.sender = Some(sender);
        self.connects += 1;
        Ok(())
    }

    pub(crate) fn is_connected(&self) -> bool {
        self.sender.as_ref().is_some_and(|s| !s.is_closed())
    }

    /// Send one request; a transport error drops the connection (the next call reconnects).
    pub(crate) async fn send(
        &mut self,
        method: Method,
        path: &str,
        auth: Option<&HeaderValue>,
        body: Option<Bytes>,
    ) -> Result<Resp> {
        if !self.is_connected() {
            self.connect(Duration::from_secs(5)).await?;
        }
        let mut builder = Request::builder().method(method).uri(path).header(header::HOST, self.host.clone());
        if let Some(auth) = auth {
            builder = builder.header(header::AUTHORIZATION, auth.clone());
        }
        let body = match body {
            Some(b) => {
                builder = builder.header(header::CONTENT_TYPE, "application/json");
                Full::new(b)
            }
            None => Full::new(Bytes::new()),
        };
        let request = builder.body(body)?;
        let result = async {
            let sender = self.sender.as_mut().ok_or_else(|| anyhow!("not connected"))?;
            sender.ready().await?;
            let response = sender.send_request(request).await?;
            let status = response.status().as_u16();
            let retry_after = response.headers().contains_key(header::RETRY_AFTER);
            let request_id = response.headers().get("x-request-id").and_then(|v| v.to_str().ok()).map(str::to_owned);
            let body = response.into_body().collect().await?.to_bytes();
            Ok::<_, anyhow::Error>(Resp { status, retry_after, request_id, body })
        }
        .await;
        if result.is_err() {
            self.sender = None;
        }
        result
    }

    /// Forget the connection (after a client-side timeout the connection's state is unknown).
    pub(crate) fn reset(&mut self) {
        self.sender = None;
    }
}

/// `Bearer <token>` as a header value.
pub(crate) fn bearer(token: &str) -> HeaderValue {
    HeaderValue::from_str(&format!("Bearer {token}")).unwrap_or_else(|_| HeaderValue::from_static("Bearer invalid"))
}
