//! The metrics section: `METRICS_BIND_ADDR`, `METRICS_BEARER_TOKEN`.

use std::net::SocketAddr;

use secrecy::SecretString;

use super::ServeArgs;
use super::check::{Checker, Section};

#[derive(Debug, Clone)]
pub struct MetricsConfig {
    /// A listener of its own for /metrics; `None`: served on the API port.
    pub bind_addr: Option<SocketAddr>,
    pub bearer_token: Option<SecretString>,
}

/// The metrics section.
pub(super) fn from_args(args: &ServeArgs) -> Section<MetricsConfig> {
    let mut c = Checker::default();
    let metrics = MetricsConfig {
        bind_addr: c.socket_addr("METRICS_BIND_ADDR", &args.metrics_bind_addr, "127.0.0.1:9090"),
        bearer_token: c
            .optional("METRICS_BEARER_TOKEN", &args.metrics_bearer_token)
            .map(|v| SecretString::from(v.to_owned())),
    };
    c.finish(metrics)
}
