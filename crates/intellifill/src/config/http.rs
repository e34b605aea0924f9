//! The HTTP section: `BIND_ADDR`, `TRUSTED_PROXIES`, `MAX_BODY_BYTES`, `REQUEST_TIMEOUT_MS`,
//! `SHUTDOWN_GRACE_MS`, and the connection limits `HTTP_HEADER_READ_TIMEOUT_MS`, `HTTP_KEEPALIVE_TIMEOUT_MS`,
//! `HTTP_MAX_HEADER_BYTES`, `HTTP_MAX_CONNECTIONS`.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use ipnet::IpNet;

use super::ServeArgs;
use super::check::{Checker, Section};

#[derive(Debug, Clone)]
pub struct HttpConfig {
    pub max_body_bytes: usize,
    pub trusted_proxies: TrustedProxies,
    pub request_timeout: Duration,
    pub shutdown_grace: Duration,
    pub connections: ConnectionLimits,
}

/// What one client connection may hold or take (enforced by `crate::http::server`).
#[derive(Debug, Clone, Copy)]
pub struct ConnectionLimits {
    /// Time to send a request head, from the connection's start or its first byte after an idle period.
    pub header_read_timeout: Duration,
    /// Idle time between two requests of a keep-alive connection.
    pub keepalive_timeout: Duration,
    /// Largest request head (request line and header fields).
    pub max_header_bytes: usize,
    /// Open connections at once.
    pub max_connections: usize,
}

/// Networks whose `X-Forwarded-For` is believed.
#[derive(Debug, Clone, Default)]
pub struct TrustedProxies(pub Vec<IpNet>);

impl TrustedProxies {
    /// Comma-separated CIDRs or single addresses.
    pub fn parse(raw: &str) -> Result<TrustedProxies, String> {
        let mut nets = Vec::new();
        for item in raw.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            let net = item
                .parse::<IpNet>()
                .or_else(|_| item.parse::<IpAddr>().map(IpNet::from))
                .map_err(|_| format!("{item:?} is not an ip address or CIDR"))?;
            nets.push(net);
        }
        Ok(TrustedProxies(nets))
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        self.0.iter().any(|n| n.contains(&ip))
    }
}

/// `BIND_ADDR`: the address the API listens on.
pub(super) fn bind_addr(args: &ServeArgs) -> Section<SocketAddr> {
    let mut c = Checker::default();
    let addr = c.socket_addr("BIND_ADDR", &args.bind_addr, "0.0.0.0:8080").unwrap_or_else(|| {
        c.problem("BIND_ADDR", "is required (ip:port such as 0.0.0.0:8080)");
        SocketAddr::from(([0, 0, 0, 0], 0))
    });
    c.finish(addr)
}

/// The request limits and the proxies trusted for the client address.
pub(super) fn from_args(args: &ServeArgs) -> Section<HttpConfig> {
    let mut c = Checker::default();
    let trusted_proxies =
        TrustedProxies::parse(&c.text("TRUSTED_PROXIES", &args.trusted_proxies)).unwrap_or_else(|e| {
            c.problem("TRUSTED_PROXIES", format!("expected comma-separated ips or CIDRs: {e}"));
            TrustedProxies::default()
        });
    let http = HttpConfig {
        trusted_proxies,
        max_body_bytes: c.number("MAX_BODY_BYTES", &args.max_body_bytes, (1_024, 64 * 1_048_576)),
        request_timeout: c.millis("REQUEST_TIMEOUT_MS", &args.request_timeout_ms, 600_000),
        shutdown_grace: c.millis("SHUTDOWN_GRACE_MS", &args.shutdown_grace_ms, 600_000),
        connections: ConnectionLimits {
            header_read_timeout: c.millis("HTTP_HEADER_READ_TIMEOUT_MS", &args.http_header_read_timeout_ms, 600_000),
            keepalive_timeout: c.millis("HTTP_KEEPALIVE_TIMEOUT_MS", &args.http_keepalive_timeout_ms, 3_600_000),
            max_header_bytes: c.number("HTTP_MAX_HEADER_BYTES", &args.http_max_header_bytes, (4_096, 1_048_576)),
            max_connections: c.number("HTTP_MAX_CONNECTIONS", &args.http_max_connections, (1, 1_000_000)),
        },
    };
    c.finish(http)
}
