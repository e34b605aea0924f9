//! `PUT /user` (`UserUpdate`): the signed-in user changes their own password,
//! metadata or email address. A new password ends every other session of
//! the user (`LogoutAllExceptMe`; all of them when the token has no
//! session), which is one of the ways a session ends without the product
//! being told. A new address is only recorded (`new_email`) and confirmed
//! through the two emails of a secure email change (see `verify`).

use serde_json::{Map, Value};

use super::authentication::Authenticated;
use super::validation::{check_password_strength, validate_email};
use crate::errors::ApiError;
use crate::state::AppState;
use crate::store::{LogoutScope, PasswordHash, TokenSlot, UserRecord, merge_metadata};

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
    /// before"), then metadata, then the email change (its two emails), in
    /// one step; the other sessions end with the password change. Phone
    /// changes and reauthentication nonces need GoTrue's SMS flows, which
    /// the emulator does not have: they are refused rather than ignored.
    pub(crate) fn update_user(
        &self,
        auth: &Authenticated,
        params: UserUpdateParams,
        redirect_to: Option<&str>,
    ) -> Result<UserRecord, ApiError> {
        if !params.phone.is_empty() || !params.nonce.is_empty() {
            return Err(ApiError::validation("the emulator does not change phone numbers through PUT /user"));
        }
        let new_email = match params.email.as_str() {
            "" => None,
            email => Some(validate_email(email)?).filter(|email| *email != auth.user.email),
        };
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
        let redirect_to = self.redirect_target(redirect_to);
        let mut store = self.store();
        if let Some(email) = &new_email {
            if store.email_taken(email, Some(auth.user.id)) {
                return Err(ApiError::unprocessable(
                    "email_exists",
                    "A user with this email address has already been registered",
                ));
            }
            let user = store.user(auth.user.id).ok_or_else(ApiError::user_not_found)?;
            self.check_email_frequency(user, TokenSlot::EmailChangeNew, now)?;
        }
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
        if let Some(email) = new_email {
            user.new_email = email;
            self.send_email_change(&mut store, auth.user.id, &redirect_to, true)?;
        }
        let updated = store.user(auth.user.id).cloned().ok_or_else(ApiError::user_not_found)?;
        if params.password.is_some() {
            store.logout(auth.user.id, auth.session_id, LogoutScope::Others);
        }
        Ok(updated)
    }
}
