//! Revocation: a logged-out token is refused by every instance, in every verification mode.
//!
//! A revocation is written to the shared store with a TTL reaching past the tokens it covers, applied to
//! this instance's in-process sets, and published on a pub/sub channel so every instance applies it too
//! (and drops the matching L1 cache entries) at once. The kinds, after the logout scopes and what the auth
//! service reports:
//! - `Token`: one token (by hash), until its `exp`;
//! - `Session`: every token of a session (scope `local`, the caller's session on `global`, and any session
//!   the auth service reports gone: `session_not_found`);
//! - `User`: the user's [`Cutoff`] (scopes `global` and `others`, and a user the auth service reports gone):
//!   tokens issued before it are refused, tokens issued within the clock-skew window around it are checked
//!   once with the auth service ([`Verdict::Undecided`]), later ones are clear;
//! - `Evict`: no record, only a broadcast: every instance drops its L1 entries of the user, so they are
//!   looked up again (a user the auth service reports banned: the ban may be lifted, so nothing is revoked).
//!
//! Besides revocations, a session the auth service confirmed alive after a cut-off is remembered (in process
//! and in the shared store, not broadcast): its tokens are then clear against that cut-off everywhere.
//!
//! The request path consults the in-process sets on every request; the shared store is consulted whenever
//! a token is not in L1 (a miss goes to the slower path anyway). Messages missed while an instance was not
//! subscribed are covered because the subscriber clears L1 on every (re)connection.

use std::sync::{Arc, LazyLock, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::cache::{CachedUser, TokenCache, TokenHash, now_ms};
pub(crate) use super::cutoff::{Cutoff, Verdict};
use crate::kv::bus::{self, Subscription};
use crate::kv::{Key, Kv};

/// How long session and user revocations are kept: longer than any access token lives.
pub(crate) const MAX_TOKEN_LIFETIME: Duration = Duration::from_secs(24 * 3600);

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "camelCase")]
pub enum Revocation {
    Token {
        hash: String,
        exp: i64,
    },
    Session {
        id: Uuid,
    },
    User {
        id: Uuid,
        #[serde(flatten)]
        cutoff: Cutoff,
    },
    Evict {
        user: Uuid,
    },
}

impl Revocation {
    /// The kind, as a metric label.
    pub fn kind(&self) -> &'static str {
        match self {
            Revocation::Token { .. } => "token",
            Revocation::Session { .. } => "session",
            Revocation::User { .. } => "user",
            Revocation::Evict { .. } => "evict",
        }
    }
}

/// Keep the later cut-off of a user (`KEYS[1]`; `ARGV`: JSON, its `doneMs`, TTL in ms): two instances
/// logging the same user out at once must not let the earlier logout overwrite the later one.
static KEEP_LATEST_CUTOFF: LazyLock<::redis::Script> = LazyLock::new(|| {
    ::redis::Script::new(
        r"
local current = redis.call('GET', KEYS[1])
if current then
  local ok, c = pcall(cjson.decode, current)
  if ok and type(c) == 'table' and tonumber(c.doneMs) and tonumber(c.doneMs) >= tonumber(ARGV[2]) then
    return 0
  end
end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[3])
return 1
",
    )
});

/// The sets' hasher: their keys are SHA-256 digests and the session and user ids of verified tokens, which no
/// client can choose to collide, so a fast unkeyed hash serves where SipHash would be paid on every request.
type Fx = rustc_hash::FxBuildHasher;

struct Sets {
    tokens: moka::sync::Cache<TokenHash, (), Fx>,
    sessions: moka::sync::Cache<Uuid, (), Fx>,
    users: moka::sync::Cache<Uuid, Cutoff, Fx>,
    /// Session -> the latest cut-off (`done_ms`) of its user it was confirmed alive against.
    alive: moka::sync::Cache<Uuid, i64, Fx>,
    cache: Arc<TokenCache>,
    skew_ms: i64,
}

impl Sets {
    fn apply(&self, revocation: &Revocation) {
        match revocation {
            Revocation::Token { hash, .. } => {
                if let Some(h) = parse_hash(hash) {
                    self.tokens.insert(h, ());
                    self.cache.evict_l1(&h);
                }
            }
            Revocation::Session { id } => {
                self.sessions.insert(*id, ());
                let id = *id;
                self.cache.evict_l1_where(move |u| u.session_id == Some(id));
            }
            Revocation::User { id, cutoff } => {
                let except = self.learn_cutoff(*id, *cutoff).except;
                let id = *id;
                self.cache.evict_l1_where(move |u| u.id == id && (u.session_id.is_none() || u.session_id != except));
            }
            Revocation::Evict { user } => {
                let id = *user;
                self.cache.evict_l1_where(move |u| u.id == id);
            }
        }
    }

    /// Merge a cut-off into the user's; returns the one in force.
    fn learn_cutoff(&self, user: Uuid, cutoff: Cutoff) -> Cutoff {
        let merged = self.users.get(&user).map_or(cutoff, |c| c.latest(cutoff));
        self.users.insert(user, merged);
        merged
    }

    fn learn_alive(&self, session: Uuid, against: i64) {
        if self.alive.get(&session).is_none_or(|a| a < against) {
            self.alive.insert(session, against);
        }
    }

    fn verdict(&self, hash: &TokenHash, user: &CachedUser) -> Verdict {
        if self.tokens.contains_key(hash) || user.session_id.is_some_and(|s| self.sessions.contains_key(&s)) {
            return Verdict::Revoked;
        }
        match self.users.get(&user.id) {
            None => Verdict::Clear,
            Some(cutoff) => {
                let alive = user.session_id.and_then(|s| self.alive.get(&s));
                cutoff.judge(user.session_id, user.issued_at, self.skew_ms, alive)
            }
        }
    }
}

fn parse_hash(hex_hash: &str) -> Option<TokenHash> {
    let bytes = hex::decode(hex_hash).ok()?;
    let arr: [u8; 32] = bytes.try_into().ok()?;
    Some(TokenHash::from_bytes(arr))
}

pub struct Revocations {
    sets: Arc<Sets>,
    kv: Kv,
    subscription: Option<Arc<Subscription>>,
    /// Revocations the shared store has not taken yet.
    pending: Arc<Mutex<Vec<Revocation>>>,
}

impl Revocations {
    /// `skew_bound`: `AUTH_CLOCK_SKEW_BOUND_SECONDS`, the width of a cut-off's window on either side.
    pub fn new(kv: Kv, cache: Arc<TokenCache>, skew_bound: Duration) -> Revocations {
        fn set<K: std::hash::Hash + Eq + Send + Sync + 'static, V: Clone + Send + Sync + 'static>()
        -> moka::sync::Cache<K, V, Fx> {
            moka::sync::Cache::builder()
                .time_to_live(MAX_TOKEN_LIFETIME)
                .max_capacity(1_000_000)
                .build_with_hasher(Fx::default())
        }
        let sets = Arc::new(Sets {
            tokens: set(),
            sessions: set(),
            users: set(),
            alive: set(),
            cache,
            skew_ms: i64::try_from(skew_bound.as_millis()).unwrap_or(i64::MAX / 4),
        });
        let on_message = sets.clone();
        let on_connect = sets.clone();
        let subscription = bus::subscribe(
            &kv,
            kv.key(Key::RevocationChannel),
            move || on_connect.cache.clear_l1(),
            move |payload| match serde_json::from_str::<Revocation>(payload) {
                Ok(r) => on_message.apply(&r),
                Err(e) => tracing::warn!(error = %e, "unreadable revocation broadcast ignored"),
            },
        );
        let pending = Arc::new(Mutex::new(Vec::new()));
        if kv.is_configured() {
            spawn_retry(kv.clone(), Arc::downgrade(&pending));
        }
        Revocations { sets, kv, subscription, pending }
    }

    /// Whether this instance is receiving other instances' revocations.
    pub fn is_listening(&self) -> Option<bool> {
        self.subscription.as_ref().map(|s| s.is_listening())
    }

    /// In-process check (every request).
    pub fn check_local(&self, hash: &TokenHash, user: &CachedUser) -> Verdict {
        self.sets.verdict(hash, user)
    }

    /// Shared-store check (L1 misses), on top of the in-process one (`local`, which is not `Revoked`): what
    /// the store knows is learned here too. An unreachable store adds nothing: the in-process sets and the
    /// broadcast still apply.
    pub async fn check_shared(&self, hash: &TokenHash, user: &CachedUser, local: Verdict) -> Verdict {
        if !self.kv.is_configured() {
            return local;
        }
        let session = user.session_id.unwrap_or_default();
        let keys = vec![
            self.kv.key(Key::RevokedToken(&hash.hex())),
            self.kv.key(Key::RevokedSession(session)),
            self.kv.key(Key::RevokedUser(user.id)),
            self.kv.key(Key::SessionAlive(session)),
        ];
        let Ok(values) = self.kv.mget::<String>(keys).await else { return local };
        let present = |i: usize| values.get(i).is_some_and(Option::is_some);
        if present(0) {
            return Verdict::Revoked;
        }
        if user.session_id.is_some() {
            if present(1) {
                self.sets.sessions.insert(session, ());
                return Verdict::Revoked;
            }
            if let Some(against) = values.get(3).and_then(|v| v.as_deref()).and_then(|v| v.parse::<i64>().ok()) {
                self.sets.learn_alive(session, against);
            }
        }
        if let Some(cutoff) = values.get(2).and_then(|v| v.as_deref()).and_then(|v| serde_json::from_str(v).ok()) {
            self.sets.learn_cutoff(user.id, cutoff);
        }
        self.sets.verdict(hash, user)
    }

    /// The auth service confirmed `session` alive after the cut-off `against` of its user: its tokens are
    /// clear against that cut-off, here and (through the shared store) on every instance that looks.
    pub async fn confirm_alive(&self, session: Uuid, against: i64) {
        self.sets.learn_alive(session, against);
        if self.kv.is_configured() {
            let key = self.kv.key(Key::SessionAlive(session));
            let _ = self.kv.set_px(key, against.to_string(), MAX_TOKEN_LIFETIME).await;
        }
    }

    /// Record, apply and broadcast a revocation. When the shared store cannot take it, it is applied here at
    /// once and kept for a retry every few seconds until the store does: other instances learn of it as soon
    /// as Redis is back (a revocation must never be lost just because Redis blinked).
    pub async fn revoke(&self, revocation: Revocation) {
        self.sets.apply(&revocation);
        if let Revocation::Evict { .. } = revocation {
            // Nothing to keep: an instance that misses it looks the user's tokens up again within
            // AUTH_REVALIDATE_SECONDS anyway.
            let _ = publish(&self.kv, &revocation).await;
            return;
        }
        if !share(&self.kv, &revocation).await {
            tracing::warn!("revocation kept on this instance for now: the shared store is unavailable, retrying");
            metrics::counter!("auth_revocations_deferred_total").increment(1);
            self.pending.lock().unwrap_or_else(|p| p.into_inner()).push(revocation);
        }
    }

    /// Revocations waiting for the shared store.
    pub fn pending(&self) -> usize {
        self.pending.lock().map(|p| p.len()).unwrap_or(0)
    }
}

/// Write the revocation to the shared store and broadcast it; false if the store did not take it.
async fn share(kv: &Kv, revocation: &Revocation) -> bool {
    if !kv.is_configured() {
        return true;
    }
    let written = match revocation {
        Revocation::Token { hash, exp } => {
            let ttl_ms = (exp * 1000 - now_ms()).max(1_000) as u64;
            kv.set_px(kv.key(Key::RevokedToken(hash)), "1".to_owned(), Duration::from_millis(ttl_ms)).await
        }
        Revocation::Session { id } => {
            kv.set_px(kv.key(Key::RevokedSession(*id)), "1".to_owned(), MAX_TOKEN_LIFETIME).await
        }
        Revocation::User { id, cutoff } => {
            let args = vec![
                serde_json::to_string(cutoff).unwrap_or_default(),
                cutoff.done_ms.to_string(),
                MAX_TOKEN_LIFETIME.as_millis().to_string(),
            ];
            kv.script::<i64>(&KEEP_LATEST_CUTOFF, vec![kv.key(Key::RevokedUser(*id))], args).await.map(|_| ())
        }
        Revocation::Evict { .. } => Ok(()),
    };
    written.is_ok() && publish(kv, revocation).await
}

async fn publish(kv: &Kv, revocation: &Revocation) -> bool {
    if !kv.is_configured() {
        return true;
    }
    let message = serde_json::to_string(revocation).unwrap_or_default();
    kv.publish(kv.key(Key::RevocationChannel), message).await.is_ok()
}

/// Retry deferred revocations until the store takes them; ends with the `Revocations` it serves.
fn spawn_retry(kv: Kv, pending: std::sync::Weak<Mutex<Vec<Revocation>>>) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(2));
        loop {
            tick.tick().await;
            let Some(pending) = pending.upgrade() else { return };
            let batch: Vec<Revocation> = std::mem::take(&mut *pending.lock().unwrap_or_else(|p| p.into_inner()));
            let mut failed = Vec::new();
            for r in batch {
                if !share(&kv, &r).await {
                    failed.push(r);
                }
            }
            if failed.is_empty() {
                continue;
            }
            pending.lock().unwrap_or_else(|p| p.into_inner()).extend(failed);
        }
    });
}
