//! The token cache: L1 in-process (moka), L2 in the shared store (Redis), keyed by SHA-256 of the token.
//!
//! The token itself is never stored or logged: only its hash. An entry is the verified user and when it was
//! verified, or a negative result (session gone, user gone, banned) kept briefly so a rejected token does not
//! hit the auth service on every retry. An entry is *fresh* for `TOKEN_CACHE_TTL_SECONDS` and never past the
//! token's `exp`; when `AUTH_OUTAGE_MODE=cached` it is kept (not served) for `AUTH_STALE_MAX_SECONDS` more, to
//! be served only while the auth service is down. L1 holds only tokens that passed local verification, so
//! an L1 hit is as good as verifying again. L2 failures are never errors: the cache degrades to L1 alone.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use moka::Expiry;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::kv::{Key, Kv};

/// SHA-256 of a bearer token: the only form in which a token is kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TokenHash([u8; 32]);

impl TokenHash {
    pub fn of(token: impl AsRef<[u8]>) -> TokenHash {
        TokenHash(Sha256::digest(token.as_ref()).into())
    }

    pub fn from_bytes(bytes: [u8; 32]) -> TokenHash {
        TokenHash(bytes)
    }

    pub fn hex(&self) -> String {
        hex::encode(self.0)
    }
}

/// Who a verified token belongs to (also the L2 JSON shape).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CachedUser {
    pub id: Uuid,
    /// Shared (`Arc`): every request's caller is a copy of the cached entry, made without copying text.
    pub email: Arc<str>,
    /// The token's session (`session_id` claim).
    pub session_id: Option<Uuid>,
    /// `iat`, seconds since the epoch.
    pub issued_at: i64,
    /// `exp`, seconds since the epoch.
    pub expires_at: i64,
    /// Authenticator assurance level (`aal1`, `aal2`).
    pub aal: Option<Arc<str>>,
    /// The auth service vouches that `email` is confirmed (what provisioning and the e-mail of the `users`
    /// row go by: `crate::principal`). An entry without the field reads as unconfirmed.
    #[serde(default)]
    pub email_confirmed: bool,
    /// An anonymous sign-in.
    #[serde(default)]
    pub is_anonymous: bool,
}

/// A cache entry (also the L2 JSON value).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "camelCase")]
pub enum Entry {
    /// Verified by the auth service at `cached_at` (unix ms).
    Valid { user: CachedUser, cached_at: i64 },
    /// Rejected by the auth service with `code` (its error code); valid until `until` (unix ms).
    Rejected { code: String, until: i64 },
}

pub(crate) fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

#[derive(Debug, Default)]
pub struct CacheStats {
    pub l1_hits: AtomicU64,
    pub l2_hits: AtomicU64,
    pub misses: AtomicU64,
    pub stale_served: AtomicU64,
}

/// What one lookup found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LookupResult {
    L1Hit,
    L2Hit,
    Miss,
    /// Served past its TTL during an auth-service outage.
    StaleServed,
}

impl CacheStats {
    /// Hits over lookups (stale answers count as neither), 0 when there were none.
    pub fn hit_rate(&self) -> f64 {
        let hits = self.l1_hits.load(Ordering::Relaxed) + self.l2_hits.load(Ordering::Relaxed);
        let total = hits + self.misses.load(Ordering::Relaxed);
        if total == 0 { 0.0 } else { hits as f64 / total as f64 }
    }
}

#[derive(Clone)]
struct Stored {
    entry: Arc<Entry>,
    keep_for: Duration,
}

struct PerEntry;

impl Expiry<TokenHash, Stored> for PerEntry {
    fn expire_after_create(&self, _key: &TokenHash, value: &Stored, _now: Instant) -> Option<Duration> {
        Some(value.keep_for)
    }

    /// A replaced entry (re-verified, or now rejected) is kept for its own time, not its predecessor's.
    fn expire_after_update(
        &self,
        _key: &TokenHash,
        value: &Stored,
        _updated_at: Instant,
        _duration_until_expiry: Option<Duration>,
    ) -> Option<Duration> {
        Some(value.keep_for)
    }
}

pub struct TokenCache {
    /// Hashed with Fx: its keys are SHA-256 digests, which no client can choose to collide.
    l1: moka::sync::Cache<TokenHash, Stored, rustc_hash::FxBuildHasher>,
    kv: Kv,
    ttl: Duration,
    negative_ttl: Duration,
    stale_max: Duration,
    pub stats: CacheStats,
    /// `auth_token_cache_total` by result, in [`LookupResult`] order: registered once, not per lookup.
    counters: [metrics::Counter; 4],
}

impl TokenCache {
    /// `stale_max` is zero unless outage mode `cached` keeps entries past their TTL.
    pub fn new(kv: Kv, max_entries: u64, ttl: Duration, negative_ttl: Duration, stale_max: Duration) -> TokenCache {
        let l1 = moka::sync::Cache::builder()
            .max_capacity(max_entries)
            .expire_after(PerEntry)
            .support_invalidation_closures()
            .build_with_hasher(rustc_hash::FxBuildHasher);
        let lookups = |result: &'static str| metrics::counter!("auth_token_cache_total", "result" => result);
        let counters = [lookups("l1_hit"), lookups("l2_hit"), lookups("miss"), lookups("stale_served")];
        TokenCache { l1, kv, ttl, negative_ttl, stale_max, stats: CacheStats::default(), counters }
    }

    /// Count a lookup (stats for health, and the Prometheus counter).
    pub fn record(&self, result: LookupResult) {
        let (counter, i) = match result {
            LookupResult::L1Hit => (&self.stats.l1_hits, 0),
            LookupResult::L2Hit => (&self.stats.l2_hits, 1),
            LookupResult::Miss => (&self.stats.misses, 2),
            LookupResult::StaleServed => (&self.stats.stale_served, 3),
        };
        counter.fetch_add(1, Ordering::Relaxed);
        self.counters[i].increment(1);
    }

    pub fn entries(&self) -> u64 {
        self.l1.entry_count()
    }

    /// Fresh: verified within the TTL and the token not expired.
    pub fn is_fresh(&self, entry: &Entry, now: i64) -> bool {
        match entry {
            Entry::Valid { user, cached_at } => {
                now < cached_at + self.ttl.as_millis() as i64 && now < user.expires_at * 1000
            }
            Entry::Rejected { until, .. } => now < *until,
        }
    }

    /// Usable during an outage: a positive entry within TTL + stale window, token not expired.
    pub fn is_usable_stale(&self, entry: &Entry, now: i64) -> bool {
        match entry {
            Entry::Valid { user, cached_at } => {
                now < cached_at + (self.ttl + self.stale_max).as_millis() as i64 && now < user.expires_at * 1000
            }
            Entry::Rejected { .. } => false,
        }
    }

    pub fn get_l1(&self, hash: &TokenHash) -> Option<Arc<Entry>> {
        self.l1.get(hash).map(|s| s.entry)
    }

    pub async fn get_l2(&self, hash: &TokenHash) -> Option<Entry> {
        let raw: Option<String> = self.kv.get(self.kv.key(Key::Token(&hash.hex()))).await.ok().flatten();
        raw.and_then(|r| serde_json::from_str(&r).ok())
    }

    /// How long an entry is physically kept (L1 and L2).
    fn keep_for(&self, entry: &Entry, now: i64) -> Duration {
        let ms = match entry {
            Entry::Valid { user, cached_at } => {
                let logical = cached_at + (self.ttl + self.stale_max).as_millis() as i64;
                logical.min(user.expires_at * 1000) - now
            }
            Entry::Rejected { until, .. } => until - now,
        };
        Duration::from_millis(ms.max(0) as u64)
    }

    /// Put into L1 only (an entry that came from L2).
    pub fn put_l1(&self, hash: TokenHash, entry: Entry) {
        let keep_for = self.keep_for(&entry, now_ms());
        if !keep_for.is_zero() {
            self.l1.insert(hash, Stored { entry: Arc::new(entry), keep_for });
        }
    }

    /// Put into L1 and L2.
    pub async fn put(&self, hash: TokenHash, entry: Entry) {
        let keep_for = self.keep_for(&entry, now_ms());
        if keep_for.is_zero() {
            return;
        }
        let json = serde_json::to_string(&entry).unwrap_or_default();
        self.l1.insert(hash, Stored { entry: Arc::new(entry), keep_for });
        let _ = self.kv.set_px(self.kv.key(Key::Token(&hash.hex())), json, keep_for).await;
    }

    /// A negative entry for a rejected token, never past its `exp`.
    pub fn rejection(&self, code: &str, exp: i64) -> Entry {
        let until = (now_ms() + self.negative_ttl.as_millis() as i64).min(exp * 1000);
        Entry::Rejected { code: code.to_owned(), until }
    }

    pub async fn evict(&self, hash: &TokenHash) {
        self.l1.invalidate(hash);
        let _ = self.kv.del(self.kv.key(Key::Token(&hash.hex()))).await;
    }

    /// Drop every L1 entry matching `pred` (session or user revocations).
    pub fn evict_l1_where(&self, pred: impl Fn(&CachedUser) -> bool + Send + Sync + 'static) {
        let _ = self.l1.invalidate_entries_if(move |_, stored| match stored.entry.as_ref() {
            Entry::Valid { user, .. } => pred(user),
            Entry::Rejected { .. } => false,
        });
    }

    pub fn evict_l1(&self, hash: &TokenHash) {
        self.l1.invalidate(hash);
    }

    pub fn clear_l1(&self) {
        self.l1.invalidate_all();
    }
}
