//! The auth service's signing keys (JWKS), cached.
//!
//! Keys are fetched from `<SUPABASE_URL>/auth/v1/.well-known/jwks.json` (or `AUTH_JWKS_URL`) and kept for
//! `AUTH_JWKS_CACHE_SECONDS` (~10 min). A token with an unknown `kid` triggers a refetch, at most once per
//! `AUTH_JWKS_MIN_REFRESH_SECONDS` (30 s), so a flood of forged `kid`s cannot turn into a flood of fetches.
//! When a fetch fails, the keys already held keep being served (stale) until one succeeds: a blip of the
//! auth service does not stop local verification. Only when no key was ever fetched is verification
//! impossible, which is an outage (503), not an invalid token.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use jsonwebtoken::jwk::{AlgorithmParameters, JwkSet};
use jsonwebtoken::{Algorithm, DecodingKey};
use tokio::sync::{Mutex, RwLock};

/// A usable verification key.
#[derive(Clone)]
pub struct VerifyingKey {
    pub algorithm: Algorithm,
    pub key: Arc<DecodingKey>,
}

#[derive(Default)]
struct KeySet {
    keys: HashMap<String, VerifyingKey>,
    fetched_at: Option<Instant>,
}

/// What a lookup found.
pub enum Lookup {
    Found(VerifyingKey),
    /// The kid is not among the keys (after a refetch, or while refetching is throttled).
    Unknown,
    /// No key could ever be fetched: the auth service is unreachable.
    Unavailable,
}

pub struct Jwks {
    http: reqwest::Client,
    url: String,
    max_age: Duration,
    min_refresh: Duration,
    set: RwLock<KeySet>,
    last_attempt: Mutex<Option<Instant>>,
}

impl Jwks {
    pub fn new(http: reqwest::Client, url: String, max_age: Duration, min_refresh: Duration) -> Jwks {
        Jwks { http, url, max_age, min_refresh, set: RwLock::new(KeySet::default()), last_attempt: Mutex::new(None) }
    }

    /// Age of the key set, for health reporting.
    pub async fn age(&self) -> Option<Duration> {
        self.set.read().await.fetched_at.map(|t| t.elapsed())
    }

    pub async fn key_count(&self) -> usize {
        self.set.read().await.keys.len()
    }

    /// The key for `kid`. A known key is answered at once, even from an old set (which is then refreshed in
    /// the background); an unknown `kid` waits for one (throttled) refetch, as after a key rotation.
    pub async fn lookup(self: &Arc<Self>, kid: &str) -> Lookup {
        {
            let set = self.set.read().await;
            if let Some(key) = set.keys.get(kid) {
                if set.fetched_at.is_none_or(|t| t.elapsed() >= self.max_age) {
                    let jwks = self.clone();
                    tokio::spawn(async move { jwks.refresh(false).await });
                }
                return Lookup::Found(key.clone());
            }
        }
        self.refresh(false).await;
        let set = self.set.read().await;
        match set.keys.get(kid) {
            Some(key) => Lookup::Found(key.clone()),
            None if set.fetched_at.is_none() => Lookup::Unavailable,
            None => Lookup::Unknown,
        }
    }

    /// Fetch the key set unless one was attempted within the minimum interval (or `force`).
    pub async fn refresh(&self, force: bool) {
        let mut last = self.last_attempt.lock().await;
        if !force && last.is_some_and(|t| t.elapsed() < self.min_refresh) {
            return;
        }
        *last = Some(Instant::now());
        match self.fetch().await {
            Ok(keys) => {
                let count = keys.len();
                *self.set.write().await = KeySet { keys, fetched_at: Some(Instant::now()) };
                tracing::debug!(keys = count, "JWKS refreshed");
            }
            Err(e) => {
                metrics::counter!("auth_jwks_fetch_failures_total").increment(1);
                tracing::warn!(error = %e, "JWKS fetch failed; keeping the keys already held");
            }
        }
    }

    async fn fetch(&self) -> anyhow::Result<HashMap<String, VerifyingKey>> {
        let response = self.http.get(&self.url).send().await?.error_for_status()?;
        let set: JwkSet = response.json().await?;
        let mut keys = HashMap::new();
        for jwk in &set.keys {
            let Some(kid) = jwk.common.key_id.clone() else { continue };
            let algorithm = match &jwk.algorithm {
                AlgorithmParameters::EllipticCurve(_) => Algorithm::ES256,
                AlgorithmParameters::RSA(_) => Algorithm::RS256,
                // Symmetric keys never come from a JWKS we trust; other kinds are not used by Supabase.
                _ => continue,
            };
            if let Some(declared) = jwk.common.key_algorithm
                && format!("{declared:?}") != format!("{algorithm:?}")
            {
                continue;
            }
            match DecodingKey::from_jwk(jwk) {
                Ok(key) => {
                    keys.insert(kid, VerifyingKey { algorithm, key: Arc::new(key) });
                }
                Err(e) => tracing::warn!(kid = %kid, error = %e, "unusable JWKS key skipped"),
            }
        }
        Ok(keys)
    }
}
