//! Authentication: who is calling.
//!
//! The [`middleware::require_auth`] layer on the `/api` routes reads the bearer token ([`bearer`]),
//! verifies it with the [`Authenticator`] and stores the verified [`AuthUser`] in the request extensions.
//! Loading the `users` row (provisioned? active?) happens inside the request transaction, in
//! [`principal::UserTx`], so a deactivated user is locked out on the very next request.

pub mod bearer;
pub mod gotrue;
pub mod middleware;
pub mod principal;

use uuid::Uuid;

use crate::error::{AppError, ErrorCode};
use gotrue::{GoTrueClient, GoTrueError};

/// A caller whose token the auth service vouched for.
#[derive(Debug, Clone)]
pub struct AuthUser {
    pub id: Uuid,
    pub email: String,
    /// Token expiry (seconds since the epoch), when known.
    pub expires_at: Option<i64>,
}

/// Verifies bearer tokens.
#[derive(Clone)]
pub struct Authenticator {
    gotrue: GoTrueClient,
}

impl Authenticator {
    pub fn new(gotrue: GoTrueClient) -> Self {
        Authenticator { gotrue }
    }

    pub fn gotrue(&self) -> &GoTrueClient {
        &self.gotrue
    }

    /// Verify `token` with the auth service (`GET /auth/v1/user`).
    pub async fn verify(&self, token: &str) -> Result<AuthUser, AppError> {
        let expires_at = bearer::unverified_exp(token);
        match self.gotrue.get_user(token).await {
            Ok(user) => Ok(AuthUser { id: user.id, email: user.email.unwrap_or_default(), expires_at }),
            Err(GoTrueError::Rejected { code, .. }) => Err(rejection(&code)),
            Err(GoTrueError::Unavailable(reason)) => {
                tracing::warn!(reason = %reason, "auth service unavailable");
                Err(AppError::new(ErrorCode::AuthServiceUnavailable, "the authentication service is unavailable")
                    .with_retry_after(5))
            }
        }
    }
}

/// Map an auth-service error code to ours. Unknown codes are an invalid token: never an accept.
pub fn rejection(code: &str) -> AppError {
    match code {
        "session_not_found" | "session_expired" | "refresh_token_not_found" => {
            AppError::new(ErrorCode::SessionRevoked, "the session has ended, sign in again")
        }
        "user_banned" => AppError::new(ErrorCode::UserBanned, "this user is banned"),
        "no_authorization" => AppError::new(ErrorCode::TokenMissing, "a bearer token is required"),
        "user_not_found" => AppError::new(ErrorCode::TokenInvalid, "the token's user no longer exists"),
        "bad_jwt" => AppError::new(ErrorCode::TokenInvalid, "the token is invalid or expired"),
        _ => AppError::new(ErrorCode::TokenInvalid, "the token was rejected"),
    }
}
