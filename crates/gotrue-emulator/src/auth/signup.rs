//! `POST /signup`: an email/password sign-up, or an anonymous one when the
//! body names neither an email nor a phone number (GoTrue's route splits on
//! that before anything else).
//!
//! With email autoconfirm on (the emulator's default) the new user is
//! confirmed and signed in at once. With it off, the user is created
//! unconfirmed, a confirmation email goes to the mailbox, and the answer is
//! the user alone, without a session: the address must be confirmed (the
//! email's link, `PUT /admin/users/{id}` with `email_confirm`, or
//! [`crate::Emulator::confirm_email`]) before a password grant works.

use serde_json::{Map, Value, json};
use uuid::Uuid;

use super::access_token::Issued;
use super::new_user::NewUser;
use super::validation::{EmailOnly, check_password_strength, email_only, validate_email};
use crate::errors::ApiError;
use crate::mailbox::EmailKind;
use crate::state::AppState;
use crate::store::{PasswordHash, TokenSlot, UserRecord};
use crate::views::now;

/// What a sign-up hands back.
pub(crate) enum SignedUp {
    /// Confirmed (autoconfirm, or anonymous) and signed in.
    Session(Issued),
    /// Created unconfirmed: the user object only. GoTrue answers the same
    /// way for an address that is already registered, with a made-up user,
    /// so that sign-up cannot be used to find out who has an account.
    Unconfirmed(UserRecord),
}

impl AppState {
    /// `POST /signup`.
    pub(crate) fn signup(
        &self,
        email: &str,
        phone: &str,
        password: &str,
        data: Option<Map<String, Value>>,
        redirect_to: Option<&str>,
    ) -> Result<SignedUp, ApiError> {
        if email.is_empty() && phone.is_empty() {
            return self.signup_anonymously(data).map(SignedUp::Session);
        }
        if password.is_empty() {
            return Err(ApiError::validation("Signup requires a valid password"));
        }
        check_password_strength(password)?;
        let email = validate_email(email_only(email, phone, EmailOnly::Signup)?)?;
        let now = self.now();
        let mut store = self.store();
        let data = data.unwrap_or_default();
        let new_user = |id| NewUser {
            id,
            email: email.clone(),
            phone: String::new(),
            password: Some(PasswordHash::new(password)),
            user_metadata: data.clone(),
            email_identity_extra: Some(&data),
        };
        if store.user_by_email(&email).is_some() {
            if self.signup.autoconfirm {
                return Err(ApiError::unprocessable("user_already_exists", "User already registered"));
            }
            return Ok(SignedUp::Unconfirmed(new_user(Uuid::new_v4()).into_record(now)));
        }
        let id = Uuid::new_v4();
        let mut user = new_user(id).into_record(now);
        if !self.signup.autoconfirm {
            store.insert_user(user);
            let redirect_to = self.redirect_target(redirect_to);
            self.deliver(self.issue_email(
                &mut store,
                id,
                TokenSlot::Confirmation,
                EmailKind::Signup,
                &email,
                &redirect_to,
            )?)?;
            let user = store.user(id).cloned().ok_or_else(ApiError::user_not_found)?;
            return Ok(SignedUp::Unconfirmed(user));
        }
        user.confirm(now);
        store.insert_user(user);
        self.grant_session(store, id, "password", now, || {
            ApiError::internal("Database error loading user after sign-up")
        })
        .map(SignedUp::Session)
    }

    /// `SignupAnonymously`: a user without email, phone or password, signed
    /// in at once (`is_anonymous: true`, `amr` method `anonymous`). Refused
    /// with 422 `anonymous_provider_disabled` unless anonymous sign-ins are on.
    pub(crate) fn signup_anonymously(&self, data: Option<Map<String, Value>>) -> Result<Issued, ApiError> {
        if !self.signup.anonymous {
            return Err(ApiError::unprocessable("anonymous_provider_disabled", "Anonymous sign-ins are disabled"));
        }
        let now = now();
        let id = Uuid::new_v4();
        let mut user = NewUser {
            id,
            email: String::new(),
            phone: String::new(),
            password: None,
            user_metadata: data.unwrap_or_default(),
            email_identity_extra: None,
        }
        .into_record(now);
        user.is_anonymous = true;
        user.app_metadata =
            json!({ "provider": "anonymous", "providers": ["anonymous"] }).as_object().cloned().unwrap_or_default();
        let mut store = self.store();
        store.insert_user(user);
        self.grant_session(store, id, "anonymous", now, || ApiError::internal("Database error creating anonymous user"))
    }

    /// A session for `id` however the user proved who they are, without the
    /// password grant's checks (password, confirmed address): what an OAuth
    /// or magic-link sign-in starts, flows the emulator does not serve. An
    /// OAuth sign-in can hand a session to a user whose address is not
    /// confirmed when `GOTRUE_MAILER_ALLOW_UNVERIFIED_EMAIL_SIGN_INS` is on.
    /// A banned user gets `user_banned`.
    pub(crate) fn start_session(&self, id: Uuid, method: &str) -> Result<Issued, ApiError> {
        let now = now();
        let store = self.store();
        let user = store.user(id).ok_or_else(ApiError::user_not_found)?;
        if user.is_banned(now) {
            return Err(ApiError::bad_request("user_banned", "User is banned"));
        }
        self.grant_session(store, id, method, now, ApiError::user_not_found)
    }

    /// Confirms a user's address, as following the confirmation link does.
    pub(crate) fn confirm_email(&self, id: Uuid) -> Result<(), ApiError> {
        let now = now();
        let mut store = self.store();
        let user = store.user_mut(id).ok_or_else(ApiError::user_not_found)?;
        user.confirm(now);
        if let Some(identity) = user.identities.iter_mut().find(|i| i.provider == "email") {
            identity.identity_data.insert("email_verified".into(), Value::Bool(true));
        }
        user.updated_at = now;
        Ok(())
    }
}
