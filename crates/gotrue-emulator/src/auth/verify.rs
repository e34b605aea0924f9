//! `GET /verify` (a link from an email) and `POST /verify` (a code or token
//! hash sent by the app): checks the one-time token, carries out what it
//! was for (confirm the address, sign in, change the address), consumes it
//! and starts a session (`amr` method `otp`, as GoTrue records it).

use serde::Deserialize;
use serde_json::Value;
use uuid::Uuid;

use super::access_token::Issued;
use super::mail::token_hash;
use super::validation::validate_email;
use crate::errors::ApiError;
use crate::state::AppState;
use crate::store::{Store, TokenSlot};

/// Body of `POST /verify` (and the query of `GET /verify`, whose `token`
/// is the hash).
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct VerifyParams {
    #[serde(rename = "type")]
    pub(crate) kind: String,
    pub(crate) token: String,
    pub(crate) token_hash: String,
    pub(crate) email: String,
    pub(crate) phone: String,
    pub(crate) redirect_to: String,
}

/// What a successful verification hands back.
pub(crate) enum Verified {
    /// The user, signed in.
    Session(Box<Issued>),
    /// One of the two email-change links was followed; the other one is
    /// still needed.
    OtherEmailPending,
}

/// GoTrue's message when one of the two email-change confirmations is done.
pub(crate) const OTHER_EMAIL_PENDING: &str =
    "Confirmation link accepted. Please proceed to confirm link sent to the other email";

/// Where the token was presented: a link (`GET`) or a code/hash (`POST`);
/// they word the refusal differently.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Via {
    Link,
    Api,
}

fn slots_for(kind: &str) -> Result<&'static [TokenSlot], ApiError> {
    Ok(match kind {
        "signup" | "invite" => &[TokenSlot::Confirmation],
        "recovery" | "magiclink" => &[TokenSlot::Recovery],
        "email" => &[TokenSlot::Confirmation, TokenSlot::Recovery],
        "email_change" => &[TokenSlot::EmailChangeCurrent, TokenSlot::EmailChangeNew],
        "sms" | "phone_change" => {
            return Err(ApiError::unprocessable("phone_provider_disabled", "Unsupported phone provider"));
        }
        _ => return Err(ApiError::validation("Invalid email verification type")),
    })
}

fn expired(via: Via) -> ApiError {
    let message = match via {
        Via::Link => "Email link is invalid or has expired",
        Via::Api => "Token has expired or is invalid",
    };
    ApiError::forbidden("otp_expired", message)
}

impl AppState {
    /// Checks the parameters in GoTrue's order, then verifies.
    pub(crate) fn verify(&self, params: &VerifyParams, via: Via) -> Result<Verified, ApiError> {
        if params.token.is_empty() && params.token_hash.is_empty() {
            return Err(ApiError::validation("Verify requires a token or a token hash"));
        }
        if params.kind.is_empty() {
            return Err(ApiError::validation("Verify requires a verification type"));
        }
        let slots = slots_for(&params.kind)?;
        let now = self.now();
        let mut store = self.store();
        let hash = if via == Via::Link {
            params.token.replace('-', "")
        } else if !params.token_hash.is_empty() {
            params.token_hash.clone()
        } else {
            match (params.email.is_empty(), params.phone.is_empty()) {
                (false, true) => {}
                (true, false) => return Err(slots_for("sms").err().unwrap_or_else(ApiError::user_not_found)),
                _ => {
                    return Err(ApiError::validation(
                        "Only an email address or phone number should be provided on verify",
                    ));
                }
            }
            let email = validate_email(&params.email).map_err(|_| ApiError::validation("Invalid email format"))?;
            token_hash(&email, &params.token.replace('-', ""))
        };
        let token = store.token_by_hash(&hash, slots).ok_or_else(|| expired(via))?;
        let ttl = chrono::TimeDelta::from_std(self.mail.otp_ttl).unwrap_or(chrono::TimeDelta::MAX);
        if token.sent_at.checked_add_signed(ttl).is_some_and(|end| now > end) {
            return Err(expired(via));
        }
        let user_id = token.user_id;
        let user = store.user(user_id).ok_or_else(|| expired(via))?;
        if user.is_banned(now) {
            return Err(ApiError::forbidden("user_banned", "User is banned"));
        }
        store.take_token(user_id, token.slot);
        match token.slot {
            TokenSlot::Confirmation | TokenSlot::Recovery => confirm(&mut store, user_id, now),
            TokenSlot::EmailChangeCurrent | TokenSlot::EmailChangeNew => {
                let other = match token.slot {
                    TokenSlot::EmailChangeCurrent => TokenSlot::EmailChangeNew,
                    _ => TokenSlot::EmailChangeCurrent,
                };
                if store.token(user_id, other).is_some() {
                    return Ok(Verified::OtherEmailPending);
                }
                change_email(&mut store, user_id, now)?;
            }
        }
        self.grant_session(store, user_id, "otp", now, ApiError::user_not_found)
            .map(|issued| Verified::Session(Box::new(issued)))
    }
}

/// `user.Confirm` on the user and its email identity.
fn confirm(store: &mut Store, user_id: Uuid, now: chrono::DateTime<chrono::Utc>) {
    if let Some(user) = store.user_mut(user_id) {
        if user.email_confirmed_at.is_none() {
            user.confirm(now);
        }
        if let Some(identity) = user.identities.iter_mut().find(|i| i.provider == "email") {
            identity.identity_data.insert("email_verified".into(), Value::Bool(true));
        }
        user.updated_at = now;
    }
}

/// `ConfirmEmailChange`: the new address replaces the old one, confirmed.
fn change_email(store: &mut Store, user_id: Uuid, now: chrono::DateTime<chrono::Utc>) -> Result<(), ApiError> {
    let new_email = store.user(user_id).map(|u| u.new_email.clone()).unwrap_or_default();
    if new_email.is_empty() {
        return Err(ApiError::forbidden("otp_expired", "Email link is invalid or has expired"));
    }
    if store.email_taken(&new_email, Some(user_id)) {
        return Err(ApiError::unprocessable(
            "email_exists",
            "A user with this email address has already been registered",
        ));
    }
    let user = store.user_mut(user_id).ok_or_else(ApiError::user_not_found)?;
    user.email = new_email.clone();
    user.new_email.clear();
    user.email_change_sent_at = None;
    user.email_confirmed_at = Some(now);
    if let Some(identity) = user.identities.iter_mut().find(|i| i.provider == "email") {
        identity.identity_data.insert("email".into(), Value::String(new_email.clone()));
        identity.identity_data.insert("email_verified".into(), Value::Bool(true));
        identity.email = new_email;
        identity.updated_at = now;
    }
    user.updated_at = now;
    Ok(())
}
