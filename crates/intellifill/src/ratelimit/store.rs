//! Where the counts live: Redis (shared by every instance) or, while Redis does not answer, this process.
//!
//! Both implement GCRA (the generic cell rate algorithm): a limit of `L` per period `P` admits a request
//! every `T = P/L` on average with bursts up to `L`, and its state is one timestamp per key (the theoretical
//! arrival time), so a window really is the configured window, with no fixed-window edges where twice the
//! limit gets through. In Redis it is one Lua script reading the server's clock (`TIME`, in microseconds),
//! so instances with skewed clocks still agree, and the key expires exactly when it would be full again.
//! The fallback is governor's keyed GCRA; every switch between the two is logged and counted.
//!
//! **Leases.** A Redis round trip per request and policy would cost more than everything else the
//! middleware does, so an instance takes cells from Redis in small leases: the script grants up to `want`
//! cells at once (never more than 1/16 of what is left, so a key close to its limit is counted one cell at
//! a time, exactly), the instance spends them locally for at most [`LEASE_TTL`], and gives back what it did
//! not spend with its next call (the script moves the key's time back by that many cells). `want` follows
//! the key's traffic on this instance: 1 at first, doubling while leases run out before they expire (up to
//! [`MAX_LEASE`]), the number actually spent otherwise. One call per key and instance at a time: concurrent
//! requests that find the lease empty wait for that call's answer (it asks for at least one cell for each
//! of them) instead of each taking a lease of its own; while Redis is failing nobody waits. A leased cell
//! is always preferred to a remembered refusal. What this keeps: every admitted request took a
//! cell in Redis, atomically, so the total over all instances never exceeds the limit; a slow key costs
//! one round trip per request; a busy one, one per `want`. What it gives up: a cell leased by one
//! instance is invisible to the others for up to a second (a client switching instances at the very edge
//! of its limit may be refused a few cells early), and `RateLimit-Remaining` on a lease is the count at
//! the grant minus what this instance spent since. A refusal is remembered locally for up to a second (at
//! most its `Retry-After`), so a flood against one key is refused in process, not by a round trip each.

use std::num::NonZeroU32;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, LazyLock, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use governor::middleware::StateInformationMiddleware;
use governor::{Quota, RateLimiter, clock::Clock, clock::DefaultClock, state::keyed::DefaultKeyedStateStore};

use crate::kv::Kv;

/// The outcome of one check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Decision {
    pub allowed: bool,
    pub remaining: u32,
    /// Seconds until the bucket is full again.
    pub reset_secs: u64,
    /// Seconds to wait before retrying (0 when allowed).
    pub retry_after_secs: u64,
}

/// The leased GCRA script. ARGV: interval (µs), limit, cells wanted, cells given back. Returns
/// `{allowed, granted, remaining, reset_ms, retry_after_ms}`.
static GCRA: LazyLock<::redis::Script> = LazyLock::new(|| {
    ::redis::Script::new(
        r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval = tonumber(ARGV[1])
local limit = tonumber(ARGV[2])
local want = tonumber(ARGV[3])
local returned = tonumber(ARGV[4])
local period = interval * limit
local tat = tonumber(redis.call('GET', KEYS[1]) or now)
if tat < now then tat = now end
if returned > 0 then
  tat = math.max(now, tat - returned * interval)
  if tat > now then
    redis.call('SET', KEYS[1], string.format('%.0f', tat), 'PX', math.ceil((tat - now) / 1000))
  else
    redis.call('DEL', KEYS[1])
  end
end
local available = math.floor((now + period - tat) / interval)
if available < 1 then
  return {0, 0, 0, math.ceil((tat - now) / 1000), math.ceil((tat + interval - period - now) / 1000)}
end
local grant = math.min(want, math.max(1, math.floor(available / 16)))
local new_tat = tat + grant * interval
redis.call('SET', KEYS[1], string.format('%.0f', new_tat), 'PX', math.ceil((new_tat - now) / 1000))
return {1, grant, available - grant, math.ceil((new_tat - now) / 1000), 0}
",
    )
});

/// Longest time leased cells may be spent locally.
pub(crate) const LEASE_TTL: Duration = Duration::from_secs(1);
/// Most cells one lease may hold.
pub(crate) const MAX_LEASE: u32 = 64;

type Local = RateLimiter<String, DefaultKeyedStateStore<String>, DefaultClock, StateInformationMiddleware>;

/// This instance's share of one key: cells taken from Redis and not spent yet, or a remembered refusal.
#[derive(Debug, Default)]
struct Lease {
    cells: u32,
    expires: Option<Instant>,
    /// Size of the last grant and how many of it were spent: the next `want`.
    granted: u32,
    spent: u32,
    /// Redis's count at the grant (the lease excluded), and seconds until the key is full again.
    remaining: u32,
    reset_secs: u64,
    /// A refusal answered locally until the first instant; the second is the retry time Redis gave.
    refused: Option<(Instant, Instant)>,
    /// A call to Redis for this key is under way, and how many requests wait for its answer.
    refilling: bool,
    waiting: u32,
}

/// One key: its lease, and the signal that a call to Redis for it has ended.
#[derive(Default)]
struct Slot {
    lease: Mutex<Lease>,
    refilled: tokio::sync::Notify,
}

/// Marks a slot's call to Redis as under way until dropped (a request cancelled mid-call included), then
/// wakes whoever waits for it.
struct Refill<'a>(&'a Slot);

impl Drop for Refill<'_> {
    fn drop(&mut self) {
        lock(&self.0.lease).refilling = false;
        self.0.refilled.notify_waiters();
    }
}

/// Counts a request as waiting for a slot's refill until dropped.
struct Waiting<'a>(&'a Slot);

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        let mut l = lock(&self.0.lease);
        l.waiting = l.waiting.saturating_sub(1);
    }
}

/// Longest a request waits for another's call to Redis before looking again (that call has its own timeout).
const REFILL_WAIT: Duration = Duration::from_secs(2);

/// One policy's store.
pub(crate) struct Store {
    kv: Kv,
    local: Local,
    clock: DefaultClock,
    limit: u32,
    interval: Duration,
    leases: moka::sync::Cache<String, Arc<Slot>>,
    using_fallback: AtomicBool,
    pub fallbacks: AtomicU64,
    /// Round trips to Redis (health, tests).
    pub round_trips: AtomicU64,
}

impl Store {
    pub(crate) fn new(kv: Kv, limit: NonZeroU32, period: Duration) -> Store {
        let interval = (period / limit.get()).max(Duration::from_micros(1));
        let quota = Quota::with_period(interval).unwrap_or_else(|| Quota::per_second(limit)).allow_burst(limit);
        Store {
            kv,
            local: RateLimiter::keyed(quota).with_middleware::<StateInformationMiddleware>(),
            clock: DefaultClock::default(),
            limit: limit.get(),
            interval,
            leases: moka::sync::Cache::builder().max_capacity(100_000).time_to_idle(Duration::from_secs(10)).build(),
            using_fallback: AtomicBool::new(false),
            fallbacks: AtomicU64::new(0),
            round_trips: AtomicU64::new(0),
        }
    }

    /// Whether this store answers from process memory right now.
    pub(crate) fn is_local(&self) -> bool {
        !self.kv.is_configured() || self.using_fallback.load(Ordering::Relaxed)
    }

    /// Forget idle in-process keys (called periodically).
    pub(crate) fn shrink(&self) {
        self.local.retain_recent();
        self.local.shrink_to_fit();
        self.leases.run_pending_tasks();
    }

    /// A decision for `key` without waiting, when this instance can take one: always without Redis; with
    /// Redis, from the key's lease (a leased cell, or a remembered refusal). `None`: ask [`Self::check`].
    pub(crate) fn check_now(&self, key: &String) -> Option<Decision> {
        if !self.kv.is_configured() {
            return Some(self.check_local(key));
        }
        let slot = self.leases.get(key)?;
        self.answer_from_lease(&mut lock(&slot.lease))
    }

    /// A decision for `key`; Redis (when configured) is asked only when this instance's lease of the key is
    /// spent.
    pub(crate) async fn check(&self, key: String) -> Decision {
        if !self.kv.is_configured() {
            return self.check_local(&key);
        }
        let slot = self.leases.get_with_by_ref(&key, Default::default);
        loop {
            let refilled = slot.refilled.notified();
            let mut refilled = std::pin::pin!(refilled);
            // Registered before the state is read, so a refill that ends in between still wakes us.
            refilled.as_mut().enable();
            let plan = {
                let mut l = lock(&slot.lease);
                if let Some(d) = self.answer_from_lease(&mut l) {
                    return d;
                }
                if l.refilling && !self.using_fallback.load(Ordering::Relaxed) {
                    l.waiting += 1;
                    None
                } else {
                    let expired = l.expires.is_none_or(|e| Instant::now() >= e);
                    let returned = std::mem::take(&mut l.cells);
                    let by_pace = if l.granted > 0 && l.spent >= l.granted && !expired {
                        l.granted.saturating_mul(2)
                    } else {
                        l.spent
                    };
                    l.refilling = true;
                    Some((by_pace.max(l.waiting + 1).clamp(1, MAX_LEASE), returned))
                }
            };
            let Some((want, returned)) = plan else {
                // Another request of this instance is asking Redis for this key: its answer serves us too.
                let _waiting = Waiting(&slot);
                let _ = tokio::time::timeout(REFILL_WAIT, refilled).await;
                if self.using_fallback.load(Ordering::Relaxed) {
                    return self.check_local(&key);
                }
                continue;
            };
            let _refill = Refill(&slot);
            return self.refill(&slot, &key, want, returned).await;
        }
    }

    /// One call to Redis for `want` cells, giving back `returned`; the first cell is this request's.
    async fn refill(&self, slot: &Slot, key: &String, want: u32, returned: u32) -> Decision {
        self.round_trips.fetch_add(1, Ordering::Relaxed);
        // `gcra2`: the leased script's values are microseconds; a different key keeps instances of an older
        // release (milliseconds) from reading them during a rolling upgrade.
        let redis_key = self.kv.key(crate::kv::Key::RateLimit(&format!("gcra2:{key}")));
        let args = vec![
            self.interval.as_micros().max(1).to_string(),
            self.limit.to_string(),
            want.to_string(),
            returned.to_string(),
        ];
        match self.kv.script::<Vec<i64>>(&GCRA, vec![redis_key], args).await {
            Ok(v) if v.len() == 5 => {
                self.switch(false);
                let now = Instant::now();
                let ms = |x: i64| Duration::from_millis(x.max(0) as u64);
                let mut l = lock(&slot.lease);
                let remaining = v[2].clamp(0, i64::from(self.limit)) as u32;
                let reset_secs = ms(v[3]).as_secs_f64().ceil() as u64;
                if v[0] == 1 {
                    let granted = (v[1].max(1) as u32).min(MAX_LEASE);
                    l.cells += granted - 1;
                    l.granted = granted;
                    l.spent = 1;
                    l.expires = Some(now + LEASE_TTL);
                    l.remaining = remaining;
                    l.reset_secs = reset_secs;
                    l.refused = None;
                    return self.allowed(remaining + l.cells, reset_secs);
                }
                let retry_at = now + ms(v[4]);
                l.refused = Some((retry_at.min(now + LEASE_TTL), retry_at));
                l.reset_secs = reset_secs;
                self.refused(reset_secs, ms(v[4]))
            }
            _ => {
                // Cells taken back from the lease stay spent: nothing is counted twice.
                self.switch(true);
                self.check_local(key)
            }
        }
    }

    /// A leased cell, or a remembered refusal; `None` when Redis must be asked.
    fn answer_from_lease(&self, l: &mut Lease) -> Option<Decision> {
        let now = Instant::now();
        if let Some(d) = self.take_cell(l, now) {
            return Some(d);
        }
        if let Some((until, retry_at)) = l.refused {
            if now < until {
                return Some(self.refused(l.reset_secs, retry_at.saturating_duration_since(now)));
            }
            l.refused = None;
        }
        None
    }

    /// One unspent cell of a lease that has not expired.
    fn take_cell(&self, l: &mut Lease, now: Instant) -> Option<Decision> {
        if l.cells > 0 && l.expires.is_some_and(|e| now < e) {
            l.cells -= 1;
            l.spent += 1;
            return Some(self.allowed(l.remaining + l.cells, l.reset_secs));
        }
        None
    }

    fn allowed(&self, remaining: u32, reset_secs: u64) -> Decision {
        Decision { allowed: true, remaining: remaining.min(self.limit), reset_secs, retry_after_secs: 0 }
    }

    fn refused(&self, reset_secs: u64, retry_after: Duration) -> Decision {
        Decision {
            allowed: false,
            remaining: 0,
            reset_secs,
            retry_after_secs: (retry_after.as_secs_f64().ceil() as u64).max(1),
        }
    }

    fn check_local(&self, key: &String) -> Decision {
        match self.local.check_key(key) {
            Ok(snapshot) => {
                let remaining = snapshot.remaining_burst_capacity();
                let used = u64::from(self.limit.saturating_sub(remaining));
                Decision {
                    allowed: true,
                    remaining,
                    reset_secs: (self.interval * used as u32).as_secs_f64().ceil() as u64,
                    retry_after_secs: 0,
                }
            }
            Err(not_until) => {
                let wait = not_until.wait_time_from(self.clock.now());
                Decision {
                    allowed: false,
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

fn lock(lease: &Mutex<Lease>) -> MutexGuard<'_, Lease> {
    lease.lock().unwrap_or_else(|p| p.into_inner())
}
