//! The verification pipeline of one bearer token, cheapest step first.
//!
//! 1. L1 (in-process) cache hit, checked against the in-process revocation list: done, in microseconds. The
//!    key is SHA-256 of the exact token bytes and only tokens that passed step 2 are ever put there, so a
//!    hit is the shape and local check already made (re-verifying an ES256 signature would cost ~100x the
//!    lookup); on a miss the token's shape is checked first (`bearer::checked`). A hit older than
//!    `AUTH_REVALIDATE_SECONDS` is served as it is while one background call re-verifies it with the auth
//!    service (stale-while-revalidate, single flight, both modes): a session ended elsewhere is refused on
//!    the next request after that call, on every instance (the refusal is broadcast);
//! 2. local JWT check (no network): algorithm allow-list, signature by `kid` or legacy secret, `exp` (strict),
//!    `nbf`, `aud`, `iss`. Garbage, forgeries, expired and not-yet-valid tokens stop here, in every mode, and
//!    never reach the auth service or the breaker; then the in-process revocation list: a logged-out token is
//!    refused in every mode;
//! 3. L2 (Redis) lookup together with the shared revocation list, in one round trip each, concurrently
//!    (an L2 entry is trusted only after step 2 passed for the token in hand, and only if it names the
//!    token's own `sub`, session, `iat` and `exp`: anything else is deleted and the token verified again);
//! 4. `local` mode: the local check is the verdict. `remote` mode: `GET /auth/v1/user` through the circuit
//!    breaker, one call per token (single flight); 2xx is cached, 4xx is cached briefly as a rejection (and
//!    a session or user the auth service reports gone is revoked on every instance), timeouts / connection
//!    errors / 5xx / 429 / open breaker are an outage: 503 `AUTH_SERVICE_UNAVAILABLE`, or in
//!    `AUTH_OUTAGE_MODE=cached` a cache entry up to `AUTH_STALE_MAX_SECONDS` past its TTL (never past
//!    `exp`, never revoked: steps 1 and 2 ran first). The gateway refusing our API key is no verdict either:
//!    503 `AUTH_SERVICE_MISCONFIGURED` (or the same stale entry), never cached, ignored by the breaker.
//!
//! A token the revocation list cannot decide (issued within the clock-skew window of its user's last global
//! or `others` logout, see [`super::cutoff`]) skips the caches and goes to step 4 in both modes: the auth
//! service's answer is cached and remembered for its session; an outage is a 503, never a guess.

use std::sync::Arc;
use std::time::Duration;

use breaker::{BreakerError, CircuitBreaker, Outcome};

use super::cache::{CachedUser, Entry, LookupResult, TokenCache, TokenHash, now_ms};
use super::gotrue::{GoTrueClient, GoTrueError};
use super::jwt::{Claims, LocalVerifier};
use super::revocation::{Cutoff, Revocation, Revocations, Verdict};
use super::singleflight::SingleFlight;
use super::{AuthUser, EXPIRED_UPSTREAM, misconfigured, rejection, unavailable};
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
enum Outage {
    /// Timeout, connection error, 5xx, 429, open breaker.
    Unavailable { retry_after: u64 },
    /// The gateway refused our API key: nothing is known about the token, nothing is cached.
    Misconfigured,
}

impl Outage {
    fn error(self) -> AppError {
        match self {
            Outage::Unavailable { retry_after } => unavailable(retry_after),
            Outage::Misconfigured => misconfigured(),
        }
    }
}

/// Verifies bearer tokens; one per process, shared by every request.
pub struct Authenticator {
    gotrue: GoTrueClient,
    verifier: LocalVerifier,
    cache: Arc<TokenCache>,
    revocations: Arc<Revocations>,
    breaker: CircuitBreaker,
    /// Keyed by token and by the cut-off a check is made against (0: none): a check of a token in a skew
    /// window must not be answered by a call that may have been sent before the logout.
    flights: SingleFlight<(TokenHash, i64), Result<Arc<Entry>, Outage>>,
    mode: VerifyMode,
    outage_mode: OutageMode,
    /// `AUTH_REVALIDATE_SECONDS` in ms; 0: off.
    revalidate_ms: i64,
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

/// What [`Authenticator::verify_now`] found for a token L1 cannot answer for, to continue from.
pub(crate) struct Unknown {
    hash: TokenHash,
    l1: Option<Arc<Entry>>,
    now: i64,
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
        revalidate_after: Duration,
    ) -> Self {
        Authenticator {
            gotrue,
            verifier,
            cache,
            revocations: Arc::new(revocations),
            breaker,
            flights: SingleFlight::default(),
            mode,
            outage_mode,
            revalidate_ms: i64::try_from(revalidate_after.as_millis()).unwrap_or(i64::MAX),
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
        let revocations = Revocations::new(kv, cache.clone(), auth.clock_skew_bound);
        let breaker = breaker::CircuitBreaker::new("supabase-auth", auth.breaker.clone());
        Ok(Authenticator::new(
            gotrue,
            verifier,
            cache,
            revocations,
            breaker,
            auth.verify_mode,
            auth.outage_mode,
            auth.revalidate_after,
        ))
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
        match self.verify_now(token) {
            Ok(answer) => answer,
            // Boxed: the local check, Redis and the auth service make a future of kilobytes, carried only where
            // it runs (`crate::flow`).
            Err(unknown) => Box::pin(self.verify_unknown(token, unknown)).await,
        }
    }

    /// [`Self::verify_bytes`] as far as it goes without waiting: the answer when L1 holds a fresh verdict on
    /// the token, else what [`Self::verify_unknown`] continues from.
    pub(crate) fn verify_now(&self, token: &[u8]) -> Result<Result<AuthUser, AppError>, Unknown> {
        let hash = TokenHash::of(token);
        let now = now_ms();
        let l1 = self.cache.get_l1(&hash);
        if let Some(entry) = &l1
            && self.cache.is_fresh(entry, now)
        {
            // L1 holds only tokens that passed the local check, keyed by the hash of these exact bytes: the
            // signature, `aud` and `iss` were verified when the entry was made, and freshness includes `exp`.
            match entry.as_ref() {
                Entry::Valid { user, cached_at } => match self.revocations.check_local(&hash, user) {
                    Verdict::Revoked => {
                        self.cache.evict_l1(&hash);
                        return Ok(Err(revoked()));
                    }
                    Verdict::Clear => {
                        self.cache.record(LookupResult::L1Hit);
                        self.revalidate_if_due(token, hash, user, *cached_at, now);
                        return Ok(Ok(auth_user(user, hash)));
                    }
                    // In a logout's skew window: asked by `verify_unknown`.
                    Verdict::Undecided { .. } => {}
                },
                Entry::Rejected { .. } => {
                    self.cache.record(LookupResult::L1Hit);
                    return Ok(accept(entry, hash));
                }
            }
        }
        Err(Unknown { hash, l1, now })
    }

    /// The rest of [`Self::verify_bytes`] for a token L1 could not answer for: the local check, the shared
    /// revocations and L2, then the auth service.
    pub(crate) async fn verify_unknown(&self, token: &[u8], unknown: Unknown) -> Result<AuthUser, AppError> {
        let Unknown { hash, l1, now } = unknown;
        let token = super::bearer::checked(token)?;
        let claims = self.verifier.verify(token).await?;
        let claimed = CachedUser::from_claims(&claims);
        let local = self.revocations.check_local(&hash, &claimed);
        if local == Verdict::Revoked {
            return Err(revoked());
        }
        let (verdict, l2) =
            tokio::join!(self.revocations.check_shared(&hash, &claimed, local), self.cache.get_l2(&hash));
        let against = match verdict {
            Verdict::Revoked => {
                self.cache.evict_l1(&hash);
                return Err(revoked());
            }
            Verdict::Undecided { against } => Some(against),
            Verdict::Clear => None,
        };
        let l2 = self.trusted_l2(&hash, l2, &claimed).await;
        if against.is_none()
            && let Some(entry) = l2.as_ref().filter(|e| self.cache.is_fresh(e, now))
        {
            self.cache.record(LookupResult::L2Hit);
            self.cache.put_l1(hash, entry.clone());
            if let Entry::Valid { user, cached_at } = entry {
                self.revalidate_if_due(token.as_bytes(), hash, user, *cached_at, now);
            }
            return accept(entry, hash);
        }
        self.cache.record(LookupResult::Miss);

        if self.mode == VerifyMode::Local && against.is_none() {
            let entry = Entry::Valid { user: claimed, cached_at: now };
            self.cache.put_l1(hash, entry.clone());
            return accept(&entry, hash);
        }

        let answer = self.ask_upstream(token, hash, &claimed, against).await;
        if against.is_some() {
            let result = match answer.as_deref() {
                Ok(Entry::Valid { .. }) => "alive",
                Ok(Entry::Rejected { .. }) => "ended",
                Err(_) => "outage",
            };
            metrics::counter!("auth_skew_window_checks_total", "result" => result).increment(1);
        }
        match answer {
            Ok(entry) => accept(&entry, hash),
            // A token in a skew window is never served from a cache: it may be of a session the logout ended.
            Err(outage) if against.is_some() => Err(outage.error()),
            Err(outage) => {
                if self.outage_mode == OutageMode::Cached {
                    // The entries read before the call: L1's, else the (trusted) L2 entry.
                    let stale = l1.map(|e| (*e).clone()).or(l2);
                    if let Some(entry) = stale.filter(|e| self.cache.is_usable_stale(e, now_ms())) {
                        self.cache.record(LookupResult::StaleServed);
                        tracing::info!("auth service unavailable: serving a cached verification past its TTL");
                        return accept(&entry, hash);
                    }
                }
                Err(outage.error())
            }
        }
    }

    /// The L2 entry, if it is about the token in hand. Redis is shared and outside this process: an entry
    /// that names another user, session or lifetime than the token's own claims (which the local check just
    /// verified) is not this token's verification, however it got there. It is deleted and the token is
    /// verified again as if there were no entry. A negative entry names no one and can only refuse: kept.
    async fn trusted_l2(&self, hash: &TokenHash, entry: Option<Entry>, claimed: &CachedUser) -> Option<Entry> {
        match entry {
            Some(Entry::Valid { user, .. }) if !same_token(&user, claimed) => {
                tracing::warn!(
                    event = "auth.l2_entry_mismatch",
                    token_user = %claimed.id,
                    entry_user = %user.id,
                    "a shared (Redis) token cache entry does not match its token's claims: ignored and deleted, \
                     the token is verified again; something other than this service writes to its keys"
                );
                metrics::counter!("auth_token_cache_mismatches_total").increment(1);
                self.cache.evict(hash).await;
                None
            }
            other => other,
        }
    }

    /// `GET /auth/v1/user` through the breaker, coalesced per token (and cut-off); caches the verdict.
    async fn ask_upstream(
        &self,
        token: &str,
        hash: TokenHash,
        claimed: &CachedUser,
        against: Option<i64>,
    ) -> Result<Arc<Entry>, Outage> {
        let call = self.upstream_call(token.to_owned(), hash, claimed.clone(), against);
        self.flights
            .run((hash, against.unwrap_or(0)), move || call)
            .await
            .unwrap_or(Err(Outage::Unavailable { retry_after: 5 }))
    }

    /// The call behind [`Self::ask_upstream`] and background revalidation: what the auth service says about
    /// the token becomes the cache entry, and what it says about the session or user is shared: a session
    /// confirmed alive against the cut-off `against`, a session or user reported gone revoked everywhere, a
    /// banned user's entries dropped everywhere.
    fn upstream_call(
        &self,
        token: String,
        hash: TokenHash,
        claimed: CachedUser,
        against: Option<i64>,
    ) -> impl Future<Output = Result<Arc<Entry>, Outage>> + Send + 'static {
        let gotrue = self.gotrue.clone();
        let breaker = self.breaker.clone();
        let cache = self.cache.clone();
        let revocations = self.revocations.clone();
        async move {
            let result = breaker.call(gotrue.get_user(&token), classify).await;
            let entry = match result {
                Ok(user) if user.id == claimed.id => {
                    if let (Some(against), Some(session)) = (against, claimed.session_id) {
                        revocations.confirm_alive(session, against).await;
                    }
                    let mut cached = claimed;
                    cached.email = user.email.unwrap_or_default().into();
                    cached.email_confirmed = user.email_confirmed_at.is_some() && !cached.email.is_empty();
                    cached.is_anonymous = user.is_anonymous;
                    Entry::Valid { user: cached, cached_at: now_ms() }
                }
                Ok(_) => cache.rejection("sub_mismatch", claimed.expires_at),
                Err(BreakerError::Inner(GoTrueError::Rejected { code, message, .. })) => {
                    // The auth service's clock ahead of ours: a token still valid here has expired there. It
                    // is what it says, expired (the client refreshes), not an invalid token.
                    let code = if code == "bad_jwt" && message.contains("expired") {
                        EXPIRED_UPSTREAM.to_owned()
                    } else {
                        code
                    };
                    metrics::counter!("auth_upstream_rejections_total", "code" => code.clone()).increment(1);
                    if let Some(learned) = learned_from(&code, &claimed) {
                        metrics::counter!("auth_upstream_revocations_total", "kind" => learned.kind()).increment(1);
                        revocations.revoke(learned).await;
                    }
                    cache.rejection(&code, claimed.expires_at)
                }
                // Not a verdict on this token: never cached (the next request asks again), never the user's
                // failure. Counted and logged by the client.
                Err(BreakerError::Inner(GoTrueError::KeyRejected { .. })) => return Err(Outage::Misconfigured),
                Err(e) => return Err(outage_of(&e)),
            };
            cache.put(hash, entry.clone()).await;
            Ok(Arc::new(entry))
        }
    }

    /// Start one background re-verification of a cached entry older than `AUTH_REVALIDATE_SECONDS` (unless
    /// one is running, or the breaker is open); the request is served from the cache meanwhile. Another
    /// instance's newer verification in L2 is taken instead of a call.
    fn revalidate_if_due(&self, token: &[u8], hash: TokenHash, user: &CachedUser, cached_at: i64, now: i64) {
        if self.revalidate_ms == 0
            || now.saturating_sub(cached_at) < self.revalidate_ms
            || self.breaker.state() == breaker::State::Open
        {
            return;
        }
        let Ok(token) = std::str::from_utf8(token) else { return };
        let call = self.upstream_call(token.to_owned(), hash, user.clone(), None);
        let cache = self.cache.clone();
        let revalidate_ms = self.revalidate_ms;
        let claimed = user.clone();
        self.flights.start((hash, 0), move || async move {
            // An entry that is not this token's (see `trusted_l2`) is no newer verification: the call below
            // overwrites it.
            if let Some(newer) = cache.get_l2(&hash).await.filter(|e| match e {
                Entry::Valid { cached_at: c, user } => {
                    same_token(user, &claimed) && *c > cached_at && now_ms() - c < revalidate_ms
                }
                Entry::Rejected { until, .. } => *until > now_ms(),
            }) {
                metrics::counter!("auth_revalidations_total", "result" => "shared").increment(1);
                cache.put_l1(hash, newer.clone());
                return Ok(Arc::new(newer));
            }
            let result = call.await;
            let label = match result.as_deref() {
                Ok(Entry::Valid { .. }) => "valid",
                Ok(Entry::Rejected { .. }) => "rejected",
                Err(_) => "outage",
            };
            metrics::counter!("auth_revalidations_total", "result" => label).increment(1);
            result
        });
    }

    /// Log out at the auth service with the caller's own token, then revoke here on every instance.
    /// An unavailable auth service changes nothing (the client may retry with the same token).
    pub async fn logout(&self, token: &str, user: &AuthUser, scope: LogoutScope) -> Result<(), AppError> {
        // Every session the auth service ends existed when the request left: the start of the cut-off.
        let sent_ms = now_ms();
        match self.breaker.call(self.gotrue.logout(token, scope.as_str()), classify).await {
            Ok(()) => {}
            // Already gone upstream (an earlier logout): revoking here is still right.
            Err(BreakerError::Inner(GoTrueError::Rejected { .. })) => {}
            Err(BreakerError::Inner(GoTrueError::KeyRejected { .. })) => return Err(misconfigured()),
            Err(e) => return Err(outage_of(&e).error()),
        }
        let done_ms = now_ms();
        let cutoff = |except| Revocation::User { id: user.id, cutoff: Cutoff { sent_ms, done_ms, except } };
        let token_revocation = Revocation::Token { hash: user.token_hash.hex(), exp: user.expires_at };
        let revocations = match (scope, user.session_id) {
            (LogoutScope::Local, Some(session)) => vec![token_revocation, Revocation::Session { id: session }],
            (LogoutScope::Local, None) => vec![token_revocation],
            (LogoutScope::Global, Some(session)) => {
                vec![token_revocation, Revocation::Session { id: session }, cutoff(None)]
            }
            (LogoutScope::Global, None) => vec![token_revocation, cutoff(None)],
            (LogoutScope::Others, session) => vec![cutoff(session)],
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

/// What an auth-service refusal says beyond the token: a session gone (`session_not_found`) is revoked, a
/// user gone (`user_not_found`) gets a cut-off now (every session went with it), a banned user's entries are
/// dropped everywhere (the ban may end, so nothing is revoked).
fn learned_from(code: &str, user: &CachedUser) -> Option<Revocation> {
    match (code, user.session_id) {
        ("session_not_found", Some(id)) => Some(Revocation::Session { id }),
        ("user_not_found", _) => Some(Revocation::User { id: user.id, cutoff: Cutoff::at(now_ms()) }),
        ("user_banned", _) => Some(Revocation::Evict { user: user.id }),
        _ => None,
    }
}

fn accept(entry: &Entry, hash: TokenHash) -> Result<AuthUser, AppError> {
    match entry {
        Entry::Valid { user, .. } => Ok(auth_user(user, hash)),
        Entry::Rejected { code, .. } => Err(rejection(code)),
    }
}

/// Only the auth service's own trouble counts against the breaker; a 4xx is the caller's fault. A refused
/// API key is ignored too: the service answered at once, so there is nothing to shed, and an open breaker
/// would turn the precise `AUTH_SERVICE_MISCONFIGURED` into `AUTH_SERVICE_UNAVAILABLE` with a retry schedule
/// that no retry can satisfy (and keep refusing for a reset timeout after the key is restored upstream).
fn classify<T>(result: &Result<T, GoTrueError>) -> Outcome {
    match result {
        Ok(_) => Outcome::Success,
        Err(GoTrueError::Rejected { .. } | GoTrueError::KeyRejected { .. }) => Outcome::Ignored,
        Err(GoTrueError::Unavailable(_)) => Outcome::Failure,
    }
}

/// Whether a cached verification is about the token whose verified claims are `claimed`. The e-mail is
/// compared too: provisioning trusts the entry's e-mail and its confirmation, so an entry naming another
/// address is re-verified rather than believed.
fn same_token(user: &CachedUser, claimed: &CachedUser) -> bool {
    user.id == claimed.id
        && user.email == claimed.email
        && user.is_anonymous == claimed.is_anonymous
        && user.session_id == claimed.session_id
        && user.issued_at == claimed.issued_at
        && user.expires_at == claimed.expires_at
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
    Outage::Unavailable { retry_after: retry_after.clamp(1, 60) }
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
pub(crate) fn retry_after_secs(d: Duration) -> u64 {
    (d.as_secs() + u64::from(d.subsec_nanos() > 0)).max(1)
}
