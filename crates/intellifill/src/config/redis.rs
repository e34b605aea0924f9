//! The shared store section: `REDIS_URL`, `REDIS_CA_FILE`, `REDIS_KEY_PREFIX`, `REDIS_OP_TIMEOUT_MS`.

use std::path::PathBuf;
use std::time::Duration;

use secrecy::SecretString;

use super::ServeArgs;
use super::check::{Checker, Section};

#[derive(Debug, Clone)]
pub struct RedisConfig {
    pub url: Option<SecretString>,
    /// CA certificates (PEM) trusted for `rediss://`, besides the system roots.
    pub ca_file: Option<PathBuf>,
    pub key_prefix: String,
    pub op_timeout: Duration,
}

/// The shared store section (no `REDIS_URL`: in-process state only).
pub(super) fn from_args(args: &ServeArgs) -> Section<RedisConfig> {
    let mut c = Checker::default();
    let url = c.optional("REDIS_URL", &args.redis_url).map(str::to_owned);
    let tls = url.as_deref().is_some_and(|u| u.starts_with("rediss://"));
    if let Some(url) = &url {
        if ::redis::Client::open(url.as_str()).is_err() {
            c.problem("REDIS_URL", "is not a valid redis:// or rediss:// URL (value not shown)");
        } else if tls && url.contains('#') {
            // The client reads `#insecure` as "do not verify the certificate": never allowed.
            c.problem("REDIS_URL", "a rediss:// URL may not carry a #fragment: the certificate is always verified");
        }
    }
    let ca_file = c.optional("REDIS_CA_FILE", &args.redis_ca_file).map(PathBuf::from);
    if let Some(path) = &ca_file {
        if !path.is_file() {
            c.problem("REDIS_CA_FILE", format!("no such file: {}", path.display()));
        } else if !tls {
            c.problem("REDIS_CA_FILE", "is set, but REDIS_URL is not a rediss:// (TLS) URL");
        }
    }
    let redis = RedisConfig {
        url: url.map(SecretString::from),
        ca_file,
        key_prefix: c.text("REDIS_KEY_PREFIX", &args.redis_key_prefix),
        op_timeout: c.millis("REDIS_OP_TIMEOUT_MS", &args.redis_op_timeout_ms, 10_000),
    };
    c.finish(redis)
}
