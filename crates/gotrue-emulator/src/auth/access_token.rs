//! Access tokens: GoTrue's claims, signed with the instance's key
//! (`GenerateAccessToken`), and what a successful grant hands back.

use serde::Serialize;
use serde_json::{Map, Value};
use uuid::Uuid;

use crate::errors::ApiError;
use crate::state::AppState;
use crate::store::{AmrEntry, SessionRecord, UserRecord};

/// The claims of a GoTrue access token, in GoTrue's order.
#[derive(Serialize)]
struct AccessTokenClaims<'a> {
    iss: &'a str,
    sub: String,
    aud: &'a str,
    exp: i64,
    iat: i64,
    email: &'a str,
    phone: &'a str,
    app_metadata: &'a Map<String, Value>,
    user_metadata: &'a Map<String, Value>,
    role: &'a str,
    aal: &'static str,
    amr: &'a [AmrEntry],
    session_id: String,
    is_anonymous: bool,
}

/// The outcome of a grant: what `AccessTokenResponse` carries.
pub(crate) struct Issued {
    pub(crate) access_token: String,
    pub(crate) refresh_token: String,
    pub(crate) expires_in: i64,
    pub(crate) expires_at: i64,
    pub(crate) session_id: Uuid,
    pub(crate) user: UserRecord,
}

impl AppState {
    /// Signs the access token of `session` for `user` (`GenerateAccessToken`).
    pub(super) fn issue(
        &self,
        user: UserRecord,
        session: &SessionRecord,
        refresh_token: String,
    ) -> Result<Issued, ApiError> {
        let iat = self.now().timestamp();
        let ttl = i64::try_from(self.access_token_ttl.as_secs()).unwrap_or(i64::MAX / 2);
        let exp = iat.saturating_add(ttl);
        let claims = AccessTokenClaims {
            iss: &self.issuer,
            sub: user.id.to_string(),
            aud: &user.aud,
            exp,
            iat,
            email: &user.email,
            phone: &user.phone,
            app_metadata: &user.app_metadata,
            user_metadata: &user.user_metadata,
            role: &user.role,
            aal: "aal1",
            amr: &session.amr,
            session_id: session.id.to_string(),
            is_anonymous: user.is_anonymous,
        };
        let access_token = self
            .keys
            .sign(&self.keys.header(), &claims)
            .map_err(|e| ApiError::internal(format!("error generating jwt token: {e}")))?;
        Ok(Issued { access_token, refresh_token, expires_in: exp - iat, expires_at: exp, session_id: session.id, user })
    }
}
