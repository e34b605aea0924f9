//! `POST /token`: the password grant and the refresh-token grant.

use super::access_token::Issued;
use super::validation::{EmailOnly, email_only};
use crate::errors::ApiError;
use crate::state::AppState;

impl AppState {
    /// `grant_type=password` (`ResourceOwnerPasswordGrant`).
    pub(crate) fn password_grant(&self, email: &str, phone: &str, password: &str) -> Result<Issued, ApiError> {
        let email = email_only(email, phone, EmailOnly::Login)?;
        let now = self.now();
        let store = self.store();
        let user = store.user_by_email(email).ok_or_else(ApiError::invalid_credentials)?;
        let Some(hash) = &user.password else {
            return Err(ApiError::invalid_credentials());
        };
        if user.is_banned(now) {
            return Err(ApiError::bad_request("user_banned", "User is banned"));
        }
        if !hash.matches(password) {
            return Err(ApiError::invalid_credentials());
        }
        if user.email_confirmed_at.is_none() {
            return Err(ApiError::bad_request("email_not_confirmed", "Email not confirmed"));
        }
        let user_id = user.id;
        self.grant_session(store, user_id, "password", now, ApiError::invalid_credentials)
    }

    /// `grant_type=refresh_token` (`RefreshTokenGrant`).
    pub(crate) fn refresh_grant(&self, refresh_token: &str) -> Result<Issued, ApiError> {
        let legacy_format =
            refresh_token.len() == 12 && refresh_token.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
        if !legacy_format {
            // Shorter tokens, and longer ones that are not valid v2 tokens
            // (the emulator issues none), fail validation.
            return Err(ApiError::validation("Refresh token is not valid"));
        }
        let (user, session, token) = self.store().refresh(refresh_token, self.now())?;
        self.issue(user, &session, token)
    }
}
