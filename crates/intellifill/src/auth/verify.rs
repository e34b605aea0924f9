//! The verification pipeline of one bearer token, cheapest step first.
//!
//! 1. L1 (in-process) cache hit, checked against the in-process revocation list: done, in microseconds. The
//!    key is SHA-256 of the exact token bytes and only tokens that passed step 2 are ever put there, so a
//!    hit is the shape and local check already made (re-verifying an ES256 signature would cost ~100x the
//!    lookup); on a miss the token's shape is checked first (`bearer::checked`);
//! 2. local JWT check (no network): algorithm allow-list, signature by `kid` or legacy secret, `exp`, `aud`,
//!    `iss`. Garbage, forgeries and expired tokens stop here and never reach the auth service or the breaker;
//!    then the in-process revocation list: a logged-out token is refused in every mode;
//! 3. L2 (Redis) lookup together with the shared revocation list, in one round trip each, concurrently
//!    (an L2 entry is trusted only after step 2 passed for the token in hand);
//! 4. `local` mode: the local check is the verdict. `remote` mode: `GET /auth/v1/user` through the circuit
//!    breaker, one call per token (single flight); 2xx is cached, 4xx is cached briefly as a rejection,
//!    timeouts / connection errors / 5xx / 429 / open breaker are an outage: 503 `AUTH_SERVICE_UNAVAILABLE`,
//!    or in `AUTH_OUTAGE_MODE=cached` a cache entry up to `AUTH_STALE_MAX_SECONDS` past its TTL (never past
//!    `exp`, never revoked: steps 1 and 2 ran first).

use std::sync::Arc;
use std::time::Duration;

use breaker::{BreakerError, CircuitBreaker, Outcome};

use super::cache::{CachedUser, Entry, LookupResult, TokenCache, TokenHash, now_ms};
use super::gotrue::{GoTrueClient, GoTrueError};
use super::jwt::{Claims, LocalVerifier};
use super::revocation::{Revocation, Revocations};
use super::singleflight::SingleFlight;
use super::{AuthUser, rejection, unavailable};
use jsonwebtoken::{Algorithm, DecodingKey};
use secrecy::ExposeSecret;

use super::jwks::Jwks;
use super::jwt::KeySource;
use crate::config::{Config, JwtKeys, OutageMode, VerifyMode};
use crate::error::{AppError, ErrorCode};
use crate::kv::Kv;
use crate::security::SecurityKind;

/// Why the auth service could not give a verdict.
#[derive(Debug, Clone, Copy)]
struct Outage {
    retry_after: u64,
}

/// Verifies bearer tokens; one per process, shared by every request.
pub struct Authenticator {
    gotrue: GoTrueClient,
    verifier: LocalVerifier,
    cache: Arc<TokenCache>,
    revocations: Revocations,
    breaker: CircuitBreaker,
    flights: SingleFlight<TokenHash, Result<Arc<Entry>, Outage>>,
    mode: VerifyMode,
    outage_mode: OutageMode,
}

impl CachedUser {
    /// The caller as the token's claims describe it. The claims carry no confirmation date, so `email` is
    /// taken as confirmed when the token is not anonymous: GoTrue signs a session for an e-mail user only
    /// once the address is confirmed (the password grant refuses `email_not_confirmed`; an OAuth sign-in
    /// with an unverified address is refused unless the project enables "allow unverified e-mail sign-ins",
    /// docs/DEPLOY.md). In remote mode the auth service's own answer replaces this (`ask_upstream`).
    fn from_claims(claims: &Claims) -> CachedUser {
        let email = claims.email.as_deref().unwrap_or_default();
        CachedUser {
            email_confirmed: !claims.is_anonymous && !email.is_empty(),
            is_anonymous: claims.is_anonymous,
            id: claims.sub,
            email: email.into(),
            session_id: claims.session_id,
            issued_at: claims.iat,
            expires_at: claims.exp,
            aal: claims.aal.as_deref().map(Into::into),
        }
    }
}

fn auth_user(user: &CachedUser, hash: TokenHash) -> AuthUser {
    AuthUser { user: user.clone(), token_hash: hash }
}

fn revoked() -> AppError {
    AppError::new(ErrorCode::SessionRevoked, "the session has ended, sign in again")
        .security(SecurityKind::RevokedTokenReuse)
}

impl Authenticator {
    #[allow(clippy::too_many_arguments, reason = "assembled once, in startup")]
    pub fn new(
        gotrue: GoTrueClient,
        verifier: LocalVerifier,
        cache: Arc<TokenCache>,
        revocations: Revocations,
        breaker: CircuitBreaker,
        mode: VerifyMode,
        outage_mode: OutageMode,
    ) -> Self {
        Authenticator {
            gotrue,
            verifier,
            cache,
            revocations,
            breaker,
            flights: SingleFlight::default(),
            mode,
            outage_mode,
        }
    }

    /// Assemble the pipeline from the configuration: local check, token cache (L1 + shared L2),
    /// revocations, breaker.
    pub fn from_config(config: &Config, kv: Kv) -> anyhow::Result<Authenticator> {
        let auth = &config.auth;
        // The HTTP client's own timeout is a backstop behind the breaker's per-call timeout.
        let gotrue = GoTrueClient::new(config.auth_base_url(), auth.anon_key.clone(), auth.http_timeout * 2)?;
        let (source, algorithms) = match &auth.keys {
            JwtKeys::Jwks { url, algorithms, max_age, min_refresh } => {
                let jwks = Jwks::new(gotrue.http(), url.clone(), *max_age, *min_refresh);
                (KeySource::Jwks(Arc::new(jwks)), algorithms.clone())
            }
            JwtKeys::Secret(secret) => (
                KeySource::Secret(Arc::new(DecodingKey::from_secret(secret.expose_secret().as_bytes()))),
                vec![Algorithm::HS256],
            ),
        };
        let verifier =
            LocalVerifier::new(source, algorithms, auth.audience.clone(), auth.issuer.clone(), auth.leeway_seconds);
        let stale_max = if auth.outage_mode == OutageMode::Cached { auth.stale_max } else { Duration::ZERO };
        let cache =
            Arc::new(TokenCache::new(kv.clone(), auth.cache_max_entries, auth.cache_ttl, auth.negative_ttl, stale_max));
        let revocations = Revocations::new(kv, cache.clone());
        let breaker = breaker::CircuitBreaker::new("supabase-auth", auth.breaker.clone());
        Ok(Authenticator::new(gotrue, verifier, cache, revocations, breaker, auth.verify_mode, auth.outage_mode))
    }

    pub fn gotrue(&self) -> &GoTrueClient {
        &self.gotrue
    }

    pub fn breaker(&self) -> &CircuitBreaker {
        &self.breaker
    }

    pub fn cache(&self) -> &TokenCache {
        &self.cache
    }

    pub fn verifier(&self) -> &LocalVerifier {
        &self.verifier
    }

    pub fn revocations(&self) -> &Revocations {
        &self.revocations
    }

    pub fn mode(&self) -> VerifyMode {
        self.mode
    }

    /// Run the whole pipeline for `token`.
    pub async fn verify(&self, token: &str) -> Result<AuthUser, AppError> {
        self.verify_bytes(token.as_bytes()).await
    }

    /// Run the whole pipeline for `token` as the header carried it (`bearer::token_bytes`): its shape is
    /// checked only when the L1 cache does not know it.
    pub async fn verify_bytes(&self, token: &[u8]) -> Result<AuthUser, AppError> {
        let hash = TokenHash::of(token);
        let now = now_ms();
        let l1 = self.cache.get_l1(&hash);
        if let Some(entry) = &l1
            && self.cache.is_fresh(entry, now)
        {
            // L1 holds only tokens that passed the local check, keyed by the hash of these exact bytes: the
            // signature, `aud` and `iss` were verified when the entry was made, and freshness includes `exp`.
            if let Entry::Valid { user, .. } = entry.as_ref()
                && self.revocations.revoked_locally(&hash, user)
            {
                self.cache.evict_l1(&hash);
                return Err(revoked());
            }
            self.cache.record(LookupResult::L1Hit);
            return accept(entry, hash);
        }

        let token = super::bearer::checked(token)?;
        let claims = self.verifier.verify(token).await?;
        let claimed = CachedUser::from_claims(&claims);
        if self.revocations.revoked_locally(&hash, &claimed) {
            return Err(revoked());
        }
        let (is_revoked, l2) = tokio::join!(self.revocations.revoked_shared(&hash, &claimed), self.cache.get_l2(&hash));
        if is_revoked {
            self.cache.evict_l1(&hash);
            return Err(revoked());
        }
        if let Some(entry) = l2.filter(|e| self.cache.is_fresh(e, now)) {
            self.cache.record(LookupResult::L2Hit);
            self.cache.put_l1(hash, entry.clone());
            return accept(&entry, hash);
        }
        self.cache.record(LookupResult::Miss);

        if self.mode == VerifyMode::Local {
            let entry = Entry::Valid { user: claimed, cached_at: now };
            self.cache.put_l1(hash, entry.clone());
            return accept(&entry, hash);
        }

        match self.ask_upstream(token, hash, &claims).await {
            Ok(entry) => accept(&entry, hash),
            Err(outage) => {
                if self.outage_mode == OutageMode::Cached {
                    let stale = l1.map(|e| (*e).clone());
                    let stale = match stale {
                        Some(e) => Some(e),
                        None => self.cache.get_l2(&hash).await,
                    };
                    if let Some(entry) = stale.filter(|e| self.cache.is_usable_stale(e, now_ms())) {
                        self.cache.record(LookupResult::StaleServed);
                        tracing::info!("auth service unavailable: serving a cached verification past its TTL");
                        return accept(&entry, hash);
                    }
                }
                Err(unavailable(outage.retry_after))
            }
        }
    }

    /// `GET /auth/v1/user` through the breaker, coalesced per token; caches the verdict.
    async fn ask_upstream(&self, token: &str, hash: TokenHash, claims: &Claims) -> Result<Arc<Entry>, Outage> {
        let gotrue = self.gotrue.clone();
        let breaker = self.breaker.clone();
        let cache = self.cache.clone();
        let token = token.to_owned();
        let claims = claims.clone();
        let call = move || async move {
            let result = breaker.call(gotrue.get_user(&token), classify).await;
            let entry = match result {
                Ok(user) if user.id == claims.sub => {
                    let mut cached = CachedUser::from_claims(&claims);
                    cached.email = user.email.unwrap_or_default().into();
                    cached.email_confirmed = user.email_confirmed_at.is_some() && !cached.email.is_empty();
                    cached.is_anonymous = user.is_anonymous;
                    Entry::Valid { user: cached, cached_at: now_ms() }
                }
                Ok(_) => cache.rejection("sub_mismatch", claims.exp),
                Err(BreakerError::Inner(GoTrueError::Rejected { code, .. })) => {
                    metrics::counter!("auth_upstream_rejections_total", "code" => code.clone()).increment(1);
                    cache.rejection(&code, claims.exp)
                }
                Err(e) => return Err(outage_of(&e)),
            };
            cache.put(hash, entry.clone()).await;
            Ok(Arc::new(entry))
        };
        self.flights.run(hash, call).await.unwrap_or(Err(Outage { retry_after: 5 }))
    }

    /// Log out at the auth service with the caller's own token, then revoke here on every instance.
    /// An unavailable auth service changes nothing (the client may retry with the same token).
    pub async fn logout(&self, token: &str, user: &AuthUser, scope: LogoutScope) -> Result<(), AppError> {
        match self.breaker.call(self.gotrue.logout(token, scope.as_str()), classify).await {
            Ok(()) => {}
            // Already gone upstream (an earlier logout): revoking here is still right.
            Err(BreakerError::Inner(GoTrueError::Rejected { .. })) => {}
            Err(e) => return Err(unavailable(outage_of(&e).retry_after)),
        }
        let now_s = now_ms() / 1000;
        let token_revocation = Revocation::Token { hash: user.token_hash.hex(), exp: user.expires_at };
        let revocations = match (scope, user.session_id) {
            (LogoutScope::Local, Some(session)) => vec![token_revocation, Revocation::Session { id: session }],
            (LogoutScope::Local, None) => vec![token_revocation],
            (LogoutScope::Global, _) => {
                vec![token_revocation, Revocation::User { id: user.id, before: now_s, except: None }]
            }
            (LogoutScope::Others, session) => {
                vec![Revocation::User { id: user.id, before: now_s, except: session }]
            }
        };
        for r in revocations {
            self.revocations.revoke(r).await;
        }
        if scope != LogoutScope::Others {
            self.cache.evict(&user.token_hash).await;
        }
        metrics::counter!("auth_logouts_total", "scope" => scope.as_str()).increment(1);
        Ok(())
    }
}

fn accept(entry: &Entry, hash: TokenHash) -> Result<AuthUser, AppError> {
    match entry {
        Entry::Valid { user, .. } => Ok(auth_user(user, hash)),
        Entry::Rejected { code, .. } => Err(rejection(code)),
    }
}

/// Only the auth service's own trouble counts against the breaker; a 4xx is the caller's fault.
fn classify<T>(result: &Result<T, GoTrueError>) -> Outcome {
    match result {
        Ok(_) => Outcome::Success,
        Err(GoTrueError::Rejected { .. }) => Outcome::Ignored,
        Err(GoTrueError::Unavailable(_)) => Outcome::Failure,
    }
}

fn outage_of(error: &BreakerError<GoTrueError>) -> Outage {
    let retry_after = match error {
        BreakerError::Open { retry_after } => retry_after_secs(*retry_after),
        _ => 5,
    };
    match error {
        BreakerError::Open { .. } => tracing::debug!("auth service breaker open: call not attempted"),
        other => tracing::warn!(error = %other, "auth service unavailable"),
    }
    metrics::counter!("auth_upstream_outages_total").increment(1);
    Outage { retry_after: retry_after.clamp(1, 60) }
}

/// Which sessions a logout ends (GoTrue's scopes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum LogoutScope {
    /// This session only.
    Local,
    /// Every session of the user.
    Global,
    /// Every session but this one.
    Others,
}

impl LogoutScope {
    pub fn as_str(self) -> &'static str {
        match self {
            LogoutScope::Local => "local",
            LogoutScope::Global => "global",
            LogoutScope::Others => "others",
        }
    }
}

/// How long a breaker rejection asks clients to wait, at least a second.
pub fn retry_after_secs(d: Duration) -> u64 {
    (d.as_secs() + u64::from(d.subsec_nanos() > 0)).max(1)
}
