//! Local token verification: no network call (beyond the cached JWKS).
//!
//! Order: header `alg` must be one of the configured algorithms (`none` never, and HS* never when
//! asymmetric keys are configured: a token "signed" with the public key as an HMAC secret is refused before
//! any key is looked at); the key comes from the JWKS by `kid` (and must be of the header's algorithm) or
//! is the legacy HS256 secret; then signature, `exp`, `nbf`, `aud`, `iss`, `sub`. A token failing here is 401
//! `TOKEN_INVALID` / `TOKEN_EXPIRED` and never reaches the auth service or the breaker, in every verify mode.
//!
//! Clocks: `AUTH_JWT_LEEWAY_SECONDS` is how far the auth service's clock may run ahead of this server's. It
//! widens `nbf` only (a token the auth service dated a few seconds "in the future" is accepted). `exp` is
//! strict, to the second: the auth service itself gives `exp` no leeway, so a leeway here would only accept
//! tokens that `GET /auth/v1/user` refuses (in remote mode one upstream call per request, answered 401
//! `TOKEN_INVALID`); a clock of ours ahead of the issuer's shortens each token by that skew, which clients
//! absorb because they refresh ahead of `exp` (supabase-js: 90 s).

use std::sync::Arc;

use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;
use uuid::Uuid;

use super::jwks::{Jwks, Lookup};
use crate::error::{AppError, ErrorCode};
use crate::security::SecurityKind;

/// The claims this server uses (Supabase's claim set has more).
#[derive(Debug, Clone, Deserialize)]
pub struct Claims {
    pub sub: Uuid,
    pub exp: i64,
    #[serde(default)]
    pub iat: i64,
    #[serde(default)]
    pub email: Option<String>,
    #[serde(default)]
    pub session_id: Option<Uuid>,
    #[serde(default)]
    pub role: Option<String>,
    #[serde(default)]
    pub aal: Option<String>,
    /// An anonymous sign-in (no email, no phone).
    #[serde(default)]
    pub is_anonymous: bool,
}

/// Where keys come from.
pub enum KeySource {
    Jwks(Arc<Jwks>),
    Secret(Arc<DecodingKey>),
}

pub struct LocalVerifier {
    source: KeySource,
    algorithms: Vec<Algorithm>,
    audience: String,
    issuer: String,
    leeway: u64,
}

fn invalid(message: &'static str) -> AppError {
    AppError::new(ErrorCode::TokenInvalid, message)
}

/// A forged-looking token is a security event, not just a 401.
fn forged(reason: &'static str) -> AppError {
    tracing::debug!(reason, "token refused by local verification");
    invalid("the token is invalid").security(SecurityKind::ForgedToken)
}

impl LocalVerifier {
    pub fn new(source: KeySource, algorithms: Vec<Algorithm>, audience: String, issuer: String, leeway: u64) -> Self {
        LocalVerifier { source, algorithms, audience, issuer, leeway }
    }

    pub fn jwks(&self) -> Option<&Arc<Jwks>> {
        match &self.source {
            KeySource::Jwks(j) => Some(j),
            KeySource::Secret(_) => None,
        }
    }

    pub async fn verify(&self, token: &str) -> Result<Claims, AppError> {
        let header = jsonwebtoken::decode_header(token).map_err(|_| invalid("the token header is unreadable"))?;
        if !self.algorithms.contains(&header.alg) {
            return Err(forged("algorithm not allowed"));
        }
        let (key, alg) = match &self.source {
            KeySource::Secret(secret) => (secret.clone(), header.alg),
            KeySource::Jwks(jwks) => {
                let kid = header.kid.as_deref().ok_or_else(|| forged("no kid"))?;
                match jwks.lookup(kid).await {
                    Lookup::Found(k) if k.algorithm == header.alg => (k.key, k.algorithm),
                    Lookup::Found(_) => return Err(forged("kid and alg disagree")),
                    Lookup::Unknown => return Err(forged("unknown kid")),
                    Lookup::Unavailable => {
                        return Err(AppError::new(
                            ErrorCode::AuthServiceUnavailable,
                            "the authentication service's keys cannot be fetched",
                        )
                        .with_retry_after(5));
                    }
                }
            }
        };
        let mut validation = Validation::new(alg);
        validation.algorithms = vec![alg];
        // The library applies one leeway to both `exp` and `nbf`: `exp` is checked strictly below.
        validation.leeway = self.leeway;
        // `nbf` (Supabase does not set it, a custom access token hook may) is checked whenever present.
        validation.validate_nbf = true;
        validation.set_audience(&[&self.audience]);
        validation.set_issuer(&[&self.issuer]);
        validation.set_required_spec_claims(&["exp", "sub", "aud", "iss"]);
        match jsonwebtoken::decode::<Claims>(token, &key, &validation) {
            // RFC 7519: `exp` is the time *on or after which* the token must not be accepted; no leeway (see
            // the module documentation).
            Ok(data) if chrono::Utc::now().timestamp() >= data.claims.exp => {
                Err(AppError::new(ErrorCode::TokenExpired, "the token has expired"))
            }
            Ok(data) => Ok(data.claims),
            Err(e) => {
                use jsonwebtoken::errors::ErrorKind;
                Err(match e.kind() {
                    ErrorKind::ExpiredSignature => AppError::new(ErrorCode::TokenExpired, "the token has expired"),
                    ErrorKind::InvalidSignature => forged("bad signature"),
                    ErrorKind::InvalidAudience => invalid("the token is for another audience"),
                    ErrorKind::InvalidIssuer => invalid("the token is from another issuer"),
                    ErrorKind::ImmatureSignature => invalid("the token is not valid yet"),
                    _ => invalid("the token is invalid"),
                })
            }
        }
    }
}
