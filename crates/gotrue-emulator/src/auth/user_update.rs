//! `PUT /user` (`UserUpdate`): the signed-in user changes their own password
//! or metadata. A new password ends every other session of the user
//! (`LogoutAllExceptMe`; all of them when the token has no session), which
//! is one of the ways a session ends without the product being told.

use serde_json::{Map, Value};

use super::authentication::Authenticated;
use super::validation::check_password_strength;
use crate::errors::ApiError;
use crate::state::AppState;
use crate::store::{LogoutScope, PasswordHash, UserRecord, merge_metadata};

/// The fields of `PUT /user` the emulator implements.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(default)]
pub(crate) struct UserUpdateParams {
    pub(crate) password: Option<String>,
    pub(crate) data: Option<Map<String, Value>>,
    pub(crate) email: String,
    pub(crate) phone: String,
    pub(crate) nonce: String,
    pub(crate) app_metadata: Option<Map<String, Value>>,
}

impl AppState {
    /// `PUT /user` after authentication: password (strength, then "same as
    /// before"), then metadata, in one step; the other sessions end with the
    /// password change. Email and phone changes need GoTrue's mail and SMS
    /// flows, which the emulator does not have: they are refused rather than
    /// ignored.
    pub(crate) fn update_user(&self, auth: &Authenticated, params: UserUpdateParams) -> Result<UserRecord, ApiError> {
        if !params.email.is_empty() || !params.phone.is_empty() || !params.nonce.is_empty() {
            return Err(ApiError::validation("the emulator does not change email or phone through PUT /user"));
        }
        if params.app_metadata.is_some() {
            return Err(ApiError::new(
                axum::http::StatusCode::UNAUTHORIZED,
                "no_authorization",
                "Updating app_metadata requires admin privileges",
            ));
        }
        if let Some(password) = &params.password {
            check_password_strength(password)?;
        }
        let now = self.now();
        let mut store = self.store();
        let user = store.user_mut(auth.user.id).ok_or_else(ApiError::user_not_found)?;
        if let Some(password) = &params.password {
            if user.password.as_ref().is_some_and(|old| old.matches(password)) {
                return Err(ApiError::unprocessable(
                    "same_password",
                    "New password should be different from the old password.",
                ));
            }
            user.password = Some(PasswordHash::new(password));
        }
        if let Some(data) = &params.data {
            merge_metadata(&mut user.user_metadata, data);
        }
        user.updated_at = now;
        let updated = user.clone();
        if params.password.is_some() {
            store.logout(auth.user.id, auth.session_id, LogoutScope::Others);
        }
        Ok(updated)
    }
}
