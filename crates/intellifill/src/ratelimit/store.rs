//! Where the counts live: Redis (shared by every instance) or, while Redis does not answer, this process.
//!
//! Both implement GCRA (the generic cell rate algorithm): a limit of `L` per period `P` admits a request
//! every `T = P/L` on average with bursts up to `L`, and its state is one timestamp per key (the theoretical
//! arrival time), so a window really is the configured window, with no fixed-window edges where twice the
//! limit gets through. In Redis it is one Lua script reading the server's clock (`TIME`), so instances with
//! skewed clocks still agree, and the key expires exactly when it would be full again. The fallback is
//! governor's keyed GCRA; every switch between the two is logged and counted.

use std::num::NonZeroU32;
use std::sync::LazyLock;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use governor::middleware::StateInformationMiddleware;
use governor::{Quota, RateLimiter, clock::Clock, clock::DefaultClock, state::keyed::DefaultKeyedStateStore};

use crate::kv::Kv;

/// The outcome of one check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    pub allowed: bool,
    pub limit: u32,
    pub remaining: u32,
    /// Seconds until the bucket is full again.
    pub reset_secs: u64,
    /// Seconds to wait before retrying (0 when allowed).
    pub retry_after_secs: u64,
}

static GCRA: LazyLock<::redis::Script> = LazyLock::new(|| {
    ::redis::Script::new(
        r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local interval = tonumber(ARGV[1])
local limit = tonumber(ARGV[2])
local period = interval * limit
local tat = tonumber(redis.call('GET', KEYS[1]) or now)
if tat < now then tat = now end
local new_tat = tat + interval
local allow_at = new_tat - period
if allow_at > now then
  return {0, 0, math.ceil((tat - now) / 1000), math.ceil((allow_at - now) / 1000)}
end
redis.call('SET', KEYS[1], new_tat, 'PX', math.ceil(new_tat - now))
local remaining = math.floor((now + period - new_tat) / interval)
return {1, remaining, math.ceil((new_tat - now) / 1000), 0}
",
    )
});

type Local = RateLimiter<String, DefaultKeyedStateStore<String>, DefaultClock, StateInformationMiddleware>;

/// One policy's store.
pub struct Store {
    kv: Kv,
    local: Local,
    clock: DefaultClock,
    limit: u32,
    interval: Duration,
    using_fallback: AtomicBool,
    pub fallbacks: AtomicU64,
}

impl Store {
    pub fn new(kv: Kv, limit: NonZeroU32, period: Duration) -> Store {
        let interval = (period / limit.get()).max(Duration::from_micros(1));
        let quota = Quota::with_period(interval).unwrap_or_else(|| Quota::per_second(limit)).allow_burst(limit);
        Store {
            kv,
            local: RateLimiter::keyed(quota).with_middleware::<StateInformationMiddleware>(),
            clock: DefaultClock::default(),
            limit: limit.get(),
            interval,
            using_fallback: AtomicBool::new(false),
            fallbacks: AtomicU64::new(0),
        }
    }

    /// Whether this store answers from process memory right now.
    pub fn is_local(&self) -> bool {
        !self.kv.is_configured() || self.using_fallback.load(Ordering::Relaxed)
    }

    /// Forget idle in-process keys (called periodically).
    pub fn shrink(&self) {
        self.local.retain_recent();
        self.local.shrink_to_fit();
    }

    pub async fn check(&self, key: String, redis_key: String) -> Decision {
        if self.kv.is_configured() {
            let args = vec![self.interval.as_millis().max(1).to_string(), self.limit.to_string()];
            match self.kv.script::<Vec<i64>>(&GCRA, vec![redis_key], args).await {
                Ok(v) if v.len() == 4 => {
                    self.switch(false);
                    return Decision {
                        allowed: v[0] == 1,
                        limit: self.limit,
                        remaining: v[1].clamp(0, i64::from(self.limit)) as u32,
                        reset_secs: v[2].max(0) as u64,
                        retry_after_secs: if v[0] == 1 { 0 } else { v[3].max(1) as u64 },
                    };
                }
                _ => self.switch(true),
            }
        }
        self.check_local(&key)
    }

    fn check_local(&self, key: &String) -> Decision {
        match self.local.check_key(key) {
            Ok(snapshot) => {
                let remaining = snapshot.remaining_burst_capacity();
                let used = u64::from(self.limit.saturating_sub(remaining));
                Decision {
                    allowed: true,
                    limit: self.limit,
                    remaining,
                    reset_secs: (self.interval * used as u32).as_secs_f64().ceil() as u64,
                    retry_after_secs: 0,
                }
            }
            Err(not_until) => {
                let wait = not_until.wait_time_from(self.clock.now());
                Decision {
                    allowed: false,
                    limit: self.limit,
                    remaining: 0,
                    reset_secs: (self.interval * self.limit).as_secs_f64().ceil() as u64,
                    retry_after_secs: wait.as_secs_f64().ceil().max(1.0) as u64,
                }
            }
        }
    }

    fn switch(&self, to_fallback: bool) {
        if self.using_fallback.swap(to_fallback, Ordering::Relaxed) != to_fallback {
            if to_fallback {
                self.fallbacks.fetch_add(1, Ordering::Relaxed);
                tracing::warn!("rate limits: Redis unavailable, counting in process (limits are per instance now)");
            } else {
                tracing::info!("rate limits: back on Redis (shared by every instance)");
            }
            let store = if to_fallback { "memory" } else { "redis" };
            metrics::counter!("rate_limit_store_switches_total", "to" => store).increment(1);
        }
    }
}
