//! The shared store section: `REDIS_URL`, `REDIS_KEY_PREFIX`, `REDIS_OP_TIMEOUT_MS`.

use std::time::Duration;

use secrecy::SecretString;

use super::ServeArgs;
use super::check::{Checker, Section};

#[derive(Debug, Clone)]
pub struct RedisConfig {
    pub url: Option<SecretString>,
    pub key_prefix: String,
    pub op_timeout: Duration,
}

/// The shared store section (no `REDIS_URL`: in-process state only).
pub(super) fn from_args(args: &ServeArgs) -> Section<RedisConfig> {
    let mut c = Checker::default();
    let url = c.optional("REDIS_URL", &args.redis_url).map(str::to_owned);
    if let Some(url) = &url
        && ::redis::Client::open(url.as_str()).is_err()
    {
        c.problem("REDIS_URL", "is not a valid redis:// URL (value not shown)");
    }
    let redis = RedisConfig {
        url: url.map(SecretString::from),
        key_prefix: c.text("REDIS_KEY_PREFIX", &args.redis_key_prefix),
        op_timeout: c.millis("REDIS_OP_TIMEOUT_MS", &args.redis_op_timeout_ms, 10_000),
    };
    c.finish(redis)
}
