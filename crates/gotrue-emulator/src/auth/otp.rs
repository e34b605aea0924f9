//! The email-sending entry points of a signed-out user: `POST /otp` (magic
//! link / email code), `POST /recover` (password recovery) and
//! `POST /resend`. Each answers `{}` whether or not an email went out where
//! GoTrue does, so they cannot be used to find out who has an account.

use serde::Deserialize;
use serde_json::{Map, Value};
use uuid::Uuid;

use super::new_user::NewUser;
use super::validation::validate_email;
use crate::errors::ApiError;
use crate::mailbox::EmailKind;
use crate::state::AppState;
use crate::store::TokenSlot;

/// Body of `POST /otp`.
#[derive(Debug, Deserialize)]
#[serde(default)]
pub(crate) struct OtpParams {
    pub(crate) email: String,
    pub(crate) phone: String,
    pub(crate) data: Option<Map<String, Value>>,
    pub(crate) create_user: bool,
}

impl Default for OtpParams {
    fn default() -> Self {
        Self { email: String::new(), phone: String::new(), data: None, create_user: true }
    }
}

/// Body of `POST /resend`.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct ResendParams {
    #[serde(rename = "type")]
    pub(crate) kind: String,
    pub(crate) email: String,
    pub(crate) phone: String,
}

fn phone_disabled() -> ApiError {
    ApiError::unprocessable("phone_provider_disabled", "Unsupported phone provider")
}

impl AppState {
    /// `POST /otp` with an email (`MagicLink`): a confirmed user gets a magic
    /// link with a code; an unknown address becomes a new (autoconfirmed)
    /// user first, unless `create_user` is false (422 `otp_disabled`); a
    /// user whose address is not confirmed gets the sign-up confirmation.
    pub(crate) fn otp(&self, params: OtpParams, redirect_to: Option<&str>) -> Result<(), ApiError> {
        match (params.email.is_empty(), params.phone.is_empty()) {
            (false, false) => {
                return Err(ApiError::validation("Only an email address or phone number should be provided"));
            }
            (true, true) => return Err(ApiError::validation("An email address or phone number is required")),
            (true, false) => return Err(phone_disabled()),
            (false, true) => {}
        }
        let email = validate_email(&params.email)?;
        let redirect_to = self.redirect_target(redirect_to);
        let now = self.now();
        let mut store = self.store();
        let user_id = match store.user_by_email(&email) {
            Some(user) => user.id,
            None if !params.create_user => {
                return Err(ApiError::unprocessable("otp_disabled", "Signups not allowed for otp"));
            }
            None => {
                let data = params.data.unwrap_or_default();
                let mut user = NewUser {
                    id: Uuid::new_v4(),
                    email: email.clone(),
                    phone: String::new(),
                    password: None,
                    user_metadata: data.clone(),
                    email_identity_extra: Some(&data),
                }
                .into_record(now);
                user.confirm(now);
                let id = user.id;
                store.insert_user(user);
                id
            }
        };
        let user = store.user(user_id).ok_or_else(ApiError::user_not_found)?;
        let (slot, kind) = if user.email_confirmed_at.is_some() {
            (TokenSlot::Recovery, EmailKind::Magiclink)
        } else {
            (TokenSlot::Confirmation, EmailKind::Signup)
        };
        self.check_email_frequency(user, slot, now)?;
        self.deliver(self.issue_email(&mut store, user_id, slot, kind, &email, &redirect_to)?)
    }

    /// `POST /recover`: a recovery email to a known address; `{}` for an
    /// unknown one as well.
    pub(crate) fn recover(&self, email: &str, redirect_to: Option<&str>) -> Result<(), ApiError> {
        if email.is_empty() {
            return Err(ApiError::validation("Password recovery requires an email"));
        }
        let email = validate_email(email)?;
        let redirect_to = self.redirect_target(redirect_to);
        let now = self.now();
        let mut store = self.store();
        let Some(user) = store.user_by_email(&email) else { return Ok(()) };
        let user_id = user.id;
        self.check_email_frequency(user, TokenSlot::Recovery, now)?;
        self.deliver(self.issue_email(
            &mut store,
            user_id,
            TokenSlot::Recovery,
            EmailKind::Recovery,
            &email,
            &redirect_to,
        )?)
    }

    /// `POST /resend`: the sign-up confirmation again (nothing for a
    /// confirmed or unknown user), or the email-change emails again
    /// (nothing without a pending change).
    pub(crate) fn resend(&self, params: ResendParams, redirect_to: Option<&str>) -> Result<(), ApiError> {
        match params.kind.as_str() {
            "signup" | "email_change" => {}
            "sms" | "phone_change" => return Err(phone_disabled()),
            _ => {
                return Err(ApiError::validation(
                    "Missing one of these types: signup, email_change, sms, phone_change",
                ));
            }
        }
        if params.email.is_empty() {
            return Err(ApiError::validation("Type provided requires an email address"));
        }
        let email = validate_email(&params.email)?;
        let redirect_to = self.redirect_target(redirect_to);
        let now = self.now();
        let mut store = self.store();
        let Some(user) = store.user_by_email(&email) else { return Ok(()) };
        let user_id = user.id;
        if params.kind == "signup" {
            if user.email_confirmed_at.is_some() {
                return Ok(());
            }
            self.check_email_frequency(user, TokenSlot::Confirmation, now)?;
            let kind = if user.invited_at.is_some() { EmailKind::Invite } else { EmailKind::Signup };
            return self.deliver(self.issue_email(
                &mut store,
                user_id,
                TokenSlot::Confirmation,
                kind,
                &email,
                &redirect_to,
            )?);
        }
        if user.new_email.is_empty() {
            return Ok(());
        }
        self.check_email_frequency(user, TokenSlot::EmailChangeNew, now)?;
        self.send_email_change(&mut store, user_id, &redirect_to, true).map(|_| ())
    }
}
