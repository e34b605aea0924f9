//! The rate limit section: `RATE_LIMIT_ENABLED`, `RATE_LIMIT_*_PER_MINUTE`, `RATE_LIMIT_IP_REFUSAL_DELAY_MS`.

use std::time::Duration;

use super::ServeArgs;
use super::check::{Checker, Section};

/// Limits per minute of each policy (0 disables that policy).
#[derive(Debug, Clone)]
pub struct RateLimitConfig {
    pub enabled: bool,
    pub ip_per_minute: u32,
    pub user_per_minute: u32,
    pub org_per_minute: u32,
    pub auth_per_minute: u32,
    /// How long a per-ip refusal is held before it is sent (at most half of `REQUEST_TIMEOUT_MS`, set by
    /// `Config::from_args`; each refusal also at most its `Retry-After`).
    pub ip_refusal_delay: Duration,
}

/// The rate limit section.
pub(super) fn from_args(args: &ServeArgs) -> Section<RateLimitConfig> {
    let mut c = Checker::default();
    const RANGE: (u32, u32) = (0, 1_000_000);
    let rate_limit = RateLimitConfig {
        enabled: c.boolean("RATE_LIMIT_ENABLED", &args.rate_limit_enabled),
        ip_per_minute: c.number("RATE_LIMIT_IP_PER_MINUTE", &args.rate_limit_ip_per_minute, RANGE),
        user_per_minute: c.number("RATE_LIMIT_USER_PER_MINUTE", &args.rate_limit_user_per_minute, RANGE),
        org_per_minute: c.number("RATE_LIMIT_ORG_PER_MINUTE", &args.rate_limit_org_per_minute, RANGE),
        auth_per_minute: c.number("RATE_LIMIT_AUTH_PER_MINUTE", &args.rate_limit_auth_per_minute, RANGE),
        ip_refusal_delay: Duration::from_millis(c.number(
            "RATE_LIMIT_IP_REFUSAL_DELAY_MS",
            &args.rate_limit_ip_refusal_delay_ms,
            (0, 10_000),
        )),
    };
    c.finish(rate_limit)
}
