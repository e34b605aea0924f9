//! Revocation: a logged-out token is refused by every instance, in every verification mode.
//!
//! A revocation is written to the shared store with a TTL reaching past the tokens it covers, applied to
//! this instance's in-process sets, and published on a pub/sub channel so every instance applies it too
//! (and drops the matching L1 cache entries) at once. Three kinds, after the logout scopes:
//! - `Token`: one token (by hash), until its `exp`;
//! - `Session`: every token of a session (scope `local`: the session is gone upstream);
//! - `User`: every token of a user issued up to a cut-off, except one session (scopes `global`, `others`).
//!   `iat` has a resolution of one second, so the cut-off covers the whole second of the logout: a token
//!   issued in that second, even just after, is refused too (the safe side of the ambiguity).
//!
//! The request path consults the in-process sets on every request; the shared store is consulted whenever
//! a token is not in L1 (a miss goes to the slower path anyway). Messages missed while an instance was not
//! subscribed are covered because the subscriber clears L1 on every (re)connection.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::cache::{CachedUser, TokenCache, TokenHash, now_ms};
use crate::kv::bus::{self, Subscription};
use crate::kv::{Key, Kv};

/// How long session and user revocations are kept: longer than any access token lives.
pub const MAX_TOKEN_LIFETIME: Duration = Duration::from_secs(24 * 3600);

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "camelCase")]
pub enum Revocation {
    Token { hash: String, exp: i64 },
    Session { id: Uuid },
    User { id: Uuid, before: i64, except: Option<Uuid> },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
struct Cutoff {
    before: i64,
    except: Option<Uuid>,
}

impl Cutoff {
    fn covers(&self, user: &CachedUser) -> bool {
        user.issued_at <= self.before && (self.except.is_none() || user.session_id != self.except)
    }
}

struct Sets {
    tokens: moka::sync::Cache<TokenHash, ()>,
    sessions: moka::sync::Cache<Uuid, ()>,
    users: moka::sync::Cache<Uuid, Cutoff>,
    cache: Arc<TokenCache>,
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
            Revocation::User { id, before, except } => {
                let cutoff = Cutoff { before: *before, except: *except };
                self.users.insert(*id, cutoff);
                let id = *id;
                self.cache.evict_l1_where(move |u| u.id == id && cutoff.covers(u));
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
    pub fn new(kv: Kv, cache: Arc<TokenCache>) -> Revocations {
        let sets = Arc::new(Sets {
            tokens: moka::sync::Cache::builder().time_to_live(MAX_TOKEN_LIFETIME).max_capacity(1_000_000).build(),
            sessions: moka::sync::Cache::builder().time_to_live(MAX_TOKEN_LIFETIME).max_capacity(1_000_000).build(),
            users: moka::sync::Cache::builder().time_to_live(MAX_TOKEN_LIFETIME).max_capacity(1_000_000).build(),
            cache,
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
    pub fn revoked_locally(&self, hash: &TokenHash, user: &CachedUser) -> bool {
        self.sets.tokens.contains_key(hash)
            || user.session_id.is_some_and(|s| self.sets.sessions.contains_key(&s))
            || self.sets.users.get(&user.id).is_some_and(|c| c.covers(user))
    }

    /// Shared-store check (L1 misses). An unreachable store answers "not revoked here": the in-process sets
    /// and the broadcast still apply.
    pub async fn revoked_shared(&self, hash: &TokenHash, user: &CachedUser) -> bool {
        if !self.kv.is_configured() {
            return false;
        }
        let keys = vec![
            self.kv.key(Key::RevokedToken(&hash.hex())),
            self.kv.key(Key::RevokedSession(user.session_id.unwrap_or_default())),
            self.kv.key(Key::RevokedUser(user.id)),
        ];
        let Ok(values) = self.kv.mget::<String>(keys).await else { return false };
        let token = values.first().is_some_and(Option::is_some);
        let session = user.session_id.is_some() && values.get(1).is_some_and(Option::is_some);
        let by_user = values
            .get(2)
            .and_then(|v| v.as_deref())
            .and_then(|raw| serde_json::from_str::<Cutoff>(raw).ok())
            .is_some_and(|c| c.covers(user));
        if session {
            self.sets.sessions.insert(user.session_id.unwrap_or_default(), ());
        }
        token || session || by_user
    }

    /// Record, apply and broadcast a revocation. When the shared store cannot take it, it is applied here at
    /// once and kept for a retry every few seconds until the store does: other instances learn of it as soon
    /// as Redis is back (a revocation must never be lost just because Redis blinked).
    pub async fn revoke(&self, revocation: Revocation) {
        self.sets.apply(&revocation);
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
    let (key, value, ttl) = match revocation {
        Revocation::Token { hash, exp } => {
            let ttl_ms = (exp * 1000 - now_ms()).max(1_000) as u64;
            (kv.key(Key::RevokedToken(hash)), "1".to_owned(), Duration::from_millis(ttl_ms))
        }
        Revocation::Session { id } => (kv.key(Key::RevokedSession(*id)), "1".to_owned(), MAX_TOKEN_LIFETIME),
        Revocation::User { id, before, except } => (
            kv.key(Key::RevokedUser(*id)),
            serde_json::to_string(&Cutoff { before: *before, except: *except }).unwrap_or_default(),
            MAX_TOKEN_LIFETIME,
        ),
    };
    if kv.set_px(key, value, ttl).await.is_err() {
        return false;
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
