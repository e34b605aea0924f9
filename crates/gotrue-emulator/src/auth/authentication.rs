//! Who a request comes from: the bearer token (or the API key the gateway
//! turns into one), verified and resolved to a user and session
//! (`requireAuthentication`), or checked for an admin role
//! (`requireAdminCredentials`).

use serde_json::{Map, Value, json};
use uuid::Uuid;

use crate::errors::ApiError;
use crate::state::AppState;
use crate::store::UserRecord;

/// Roles GoTrue accepts on admin endpoints (`GOTRUE_JWT_ADMIN_ROLES`).
const ADMIN_ROLES: &[&str] = &["service_role", "supabase_admin"];

/// A request that passed `requireAuthentication`.
pub(crate) struct Authenticated {
    pub(crate) user: UserRecord,
    pub(crate) session_id: Option<Uuid>,
    pub(crate) claims: Map<String, Value>,
}

/// `Bearer <token>` as GoTrue's `bearerRegexp` (`^(?:B|b)earer (\S+$)`) reads it.
fn bearer_token(authorization: Option<&str>) -> Option<&str> {
    let value = authorization?;
    let token = value.strip_prefix("Bearer ").or_else(|| value.strip_prefix("bearer "))?;
    (!token.is_empty() && !token.chars().any(char::is_whitespace)).then_some(token)
}

impl AppState {
    /// `requireAuthentication`: verifies the bearer token, then loads the
    /// user and the session, then rejects banned users.
    pub(crate) fn authenticate(&self, authorization: Option<&str>) -> Result<Authenticated, ApiError> {
        let token = bearer_token(authorization).ok_or_else(ApiError::no_authorization)?;
        let claims = self.parse_claims(token)?;
        self.load_user_and_session(claims)
    }

    /// `parseJWTClaims`. The gateway swaps an opaque `sb_…` API key used as a
    /// bearer for a role token without `sub`, which is what GoTrue then sees;
    /// a legacy JWT key is such a role token already.
    fn parse_claims(&self, token: &str) -> Result<Map<String, Value>, ApiError> {
        if let Some(role) = self.api_key_role(token) {
            return Ok(role_claims(role));
        }
        self.keys.verify(token, self.now().timestamp()).map_err(ApiError::bad_jwt)
    }

    /// `maybeLoadUserOrSession` plus the ban check.
    fn load_user_and_session(&self, claims: Map<String, Value>) -> Result<Authenticated, ApiError> {
        let sub = claims.get("sub").and_then(Value::as_str).unwrap_or("");
        if sub.is_empty() {
            return Err(ApiError::forbidden("bad_jwt", "invalid claim: missing sub claim"));
        }
        let user_id = Uuid::parse_str(sub)
            .map_err(|_| ApiError::bad_request("bad_jwt", "invalid claim: sub claim must be a UUID"))?;
        let store = self.store();
        let user = store
            .user(user_id)
            .cloned()
            .ok_or_else(|| ApiError::forbidden("user_not_found", "User from sub claim in JWT does not exist"))?;
        let session_id = match claims.get("session_id").and_then(Value::as_str) {
            None | Some("") => None,
            Some(raw) => {
                let id = Uuid::parse_str(raw)
                    .map_err(|_| ApiError::forbidden("bad_jwt", "invalid claim: session_id claim must be a UUID"))?;
                if id.is_nil() {
                    None
                } else {
                    if store.session(id).is_none() {
                        return Err(ApiError::forbidden(
                            "session_not_found",
                            "Session from session_id claim in JWT does not exist",
                        ));
                    }
                    Some(id)
                }
            }
        };
        drop(store);
        if user.is_banned(self.now()) {
            return Err(ApiError::forbidden("user_banned", "User is banned"));
        }
        Ok(Authenticated { user, session_id, claims })
    }

    /// `requireAdminCredentials`. Without an `Authorization` header the
    /// gateway turns the `apikey` into the bearer.
    pub(crate) fn require_admin(&self, authorization: Option<&str>, apikey: Option<&str>) -> Result<(), ApiError> {
        let token = match authorization {
            Some(header) => bearer_token(Some(header)).ok_or_else(ApiError::no_authorization)?,
            None => apikey.ok_or_else(ApiError::no_authorization)?,
        };
        let claims = self.parse_claims(token)?;
        let has_session = claims
            .get("session_id")
            .and_then(Value::as_str)
            .is_some_and(|s| !s.is_empty() && s != Uuid::nil().to_string());
        if has_session {
            self.load_user_and_session(claims.clone())?;
        }
        let role = claims.get("role").and_then(Value::as_str).unwrap_or("");
        if ADMIN_ROLES.contains(&role) { Ok(()) } else { Err(ApiError::not_admin()) }
    }
}

/// Claims of the role tokens the gateway substitutes for opaque API keys.
fn role_claims(role: &str) -> Map<String, Value> {
    let mut claims = Map::new();
    claims.insert("role".into(), json!(role));
    claims
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_matches_gotrue_regexp() {
        assert_eq!(bearer_token(Some("Bearer abc")), Some("abc"));
        assert_eq!(bearer_token(Some("bearer abc")), Some("abc"));
        assert_eq!(bearer_token(Some("BEARER abc")), None);
        assert_eq!(bearer_token(Some("Bearer ")), None);
        assert_eq!(bearer_token(Some("Bearer a b")), None);
        assert_eq!(bearer_token(Some("Basic abc")), None);
        assert_eq!(bearer_token(None), None);
    }
}
