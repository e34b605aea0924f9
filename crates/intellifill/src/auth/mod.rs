//! Authentication: who is calling, and may they still.
//!
//! [`middleware::authenticate`] (a route step, for routes with a security requirement) reads the bearer token
//! ([`bearer`]) and hands it to the [`Authenticator`], which runs the verification pipeline of [`verify`]:
//! scheme and length -> token cache L1 ([`cache`], keyed by the token's SHA-256) with the in-process
//! revocation list -> on an L1 miss: the token's shape, the local JWT check ([`jwt`], keys from [`jwks`] or
//! the legacy secret), the revocation list in-process then in Redis ([`revocation`]), the L2 cache in Redis
//! -> in remote mode, `GET /auth/v1/user` through the circuit breaker, one call per token however many
//! requests wait for it ([`singleflight`]). At start, [`key_check`] asks the auth service whether it accepts
//! this server's own API key.
//! The verified [`AuthUser`] goes into the request extensions. Loading the `users` row (provisioned?
//! active?) happens inside the request transaction, in [`crate::principal::UserTx`], so a deactivated user is
//! locked out on the very next request whatever any cache says.

pub(crate) mod bearer;
pub(crate) mod cache;
pub(crate) mod cutoff;
pub(crate) mod gotrue;
pub(crate) mod jwks;
pub(crate) mod jwt;
pub(crate) mod key_check;
pub(crate) mod middleware;
pub(crate) mod revocation;
pub(crate) mod singleflight;
pub(crate) mod verify;

use crate::error::{AppError, ErrorCode};
pub(crate) use cache::{CachedUser, TokenHash};
pub(crate) use verify::Authenticator;

/// A caller whose token passed the pipeline: who the token belongs to (as the cache keeps it; its fields read
/// through `Deref`) and the token's hash.
#[derive(Debug, Clone)]
pub struct AuthUser {
    pub user: CachedUser,
    /// SHA-256 of the token: what logout revokes. The token itself is never kept.
    pub token_hash: TokenHash,
}

impl std::ops::Deref for AuthUser {
    type Target = CachedUser;

    fn deref(&self) -> &CachedUser {
        &self.user
    }
}

/// The rejection code kept for a token the auth service found expired by its own clock (a `bad_jwt` whose
/// message says so) while this server's clock had it still valid.
pub(crate) const EXPIRED_UPSTREAM: &str = "token_expired";

/// Map an auth-service error code to ours. Unknown codes are an invalid token: never an accept.
pub(crate) fn rejection(code: &str) -> AppError {
    match code {
        EXPIRED_UPSTREAM => AppError::new(ErrorCode::TokenExpired, "the token has expired"),
        "session_not_found" | "session_expired" | "refresh_token_not_found" | "revoked" => {
            AppError::new(ErrorCode::SessionRevoked, "the session has ended, sign in again")
        }
        "user_banned" => AppError::new(ErrorCode::UserBanned, "this user is banned"),
        "no_authorization" => AppError::new(ErrorCode::TokenMissing, "a bearer token is required"),
        "user_not_found" => AppError::new(ErrorCode::TokenInvalid, "the token's user no longer exists"),
        "bad_jwt" => AppError::new(ErrorCode::TokenInvalid, "the token is invalid or expired"),
        _ => AppError::new(ErrorCode::TokenInvalid, "the token was rejected"),
    }
}

/// The auth service refuses our API key: this server's misconfiguration, never an invalid token. No
/// `Retry-After`: it lasts until an operator fixes `SUPABASE_ANON_KEY` (or the key is restored at Supabase).
pub(crate) fn misconfigured() -> AppError {
    AppError::new(
        ErrorCode::AuthServiceMisconfigured,
        "this server cannot use the authentication service (its API key is refused); the operator must fix it",
    )
}

/// The auth service cannot answer: an outage, never an invalid token.
pub(crate) fn unavailable(retry_after: u64) -> AppError {
    AppError::new(ErrorCode::AuthServiceUnavailable, "the authentication service is unavailable")
        .with_retry_after(retry_after.max(1))
}
