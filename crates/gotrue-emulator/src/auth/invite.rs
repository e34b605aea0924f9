//! The service-role email flows: `POST /invite` (create a user and email an
//! invitation) and `POST /admin/generate_link` (build any email's link and
//! code without sending it, for apps that send their own emails).

use serde::Deserialize;
use serde_json::{Map, Value};
use uuid::Uuid;

use super::new_user::NewUser;
use super::validation::{check_password_strength, validate_email};
use crate::errors::ApiError;
use crate::mailbox::{Email, EmailKind};
use crate::state::AppState;
use crate::store::{PasswordHash, Store, TokenSlot, UserRecord};

/// Body of `POST /admin/generate_link`.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct GenerateLinkParams {
    #[serde(rename = "type")]
    pub(crate) kind: String,
    pub(crate) email: String,
    pub(crate) new_email: String,
    pub(crate) password: String,
    pub(crate) data: Option<Map<String, Value>>,
    pub(crate) redirect_to: String,
}

/// What `generate_link` hands back besides the user.
pub(crate) struct GeneratedLink {
    pub(crate) user: UserRecord,
    pub(crate) email: Email,
    pub(crate) redirect_to: String,
}

fn email_exists() -> ApiError {
    ApiError::unprocessable("email_exists", "A user with this email address has already been registered")
}

/// A new, unconfirmed email user.
fn new_email_user(
    store: &mut Store,
    email: &str,
    password: Option<&str>,
    data: Option<Map<String, Value>>,
    now: chrono::DateTime<chrono::Utc>,
) -> Uuid {
    let data = data.unwrap_or_default();
    let user = NewUser {
        id: Uuid::new_v4(),
        email: email.to_owned(),
        phone: String::new(),
        password: password.map(PasswordHash::new),
        user_metadata: data.clone(),
        email_identity_extra: Some(&data),
    }
    .into_record(now);
    let id = user.id;
    store.insert_user(user);
    id
}

impl AppState {
    /// The user to invite: a new one, or an unconfirmed existing one
    /// (invited again); a confirmed address is 422 `email_exists`.
    fn invitee(&self, store: &mut Store, email: &str, data: Option<Map<String, Value>>) -> Result<Uuid, ApiError> {
        let now = self.now();
        let id = match store.user_by_email(email) {
            Some(user) if user.email_confirmed_at.is_some() => return Err(email_exists()),
            Some(user) => user.id,
            None => new_email_user(store, email, None, data, now),
        };
        let user = store.user_mut(id).ok_or_else(ApiError::user_not_found)?;
        user.invited_at = Some(now);
        Ok(id)
    }

    /// `POST /invite`.
    pub(crate) fn invite(
        &self,
        email: &str,
        data: Option<Map<String, Value>>,
        redirect_to: Option<&str>,
    ) -> Result<UserRecord, ApiError> {
        let email = validate_email(email)?;
        let redirect_to = self.redirect_target(redirect_to);
        let mut store = self.store();
        let id = self.invitee(&mut store, &email, data)?;
        self.deliver(self.issue_email(
            &mut store,
            id,
            TokenSlot::Confirmation,
            EmailKind::Invite,
            &email,
            &redirect_to,
        )?)?;
        store.user(id).cloned().ok_or_else(ApiError::user_not_found)
    }

    /// `POST /admin/generate_link`: like the matching flow, without sending.
    pub(crate) fn generate_link(
        &self,
        params: GenerateLinkParams,
        redirect_to: Option<&str>,
    ) -> Result<GeneratedLink, ApiError> {
        let email = validate_email(&params.email)?;
        let requested = if params.redirect_to.is_empty() { redirect_to } else { Some(params.redirect_to.as_str()) };
        let redirect_to = self.redirect_target(requested);
        let now = self.now();
        let mut store = self.store();
        let existing = store.user_by_email(&email).map(|u| (u.id, u.email_confirmed_at.is_some()));
        let not_found = || ApiError::not_found("user_not_found", "User with this email not found");
        let mut kind = params.kind.as_str();
        if kind == "magiclink" && existing.is_none() {
            // An unknown address gets a sign-up link, as in GoTrue.
            kind = "signup";
        }
        let (id, email_message) = match kind {
            "signup" => {
                let id = match existing {
                    Some((_, true)) => return Err(email_exists()),
                    Some((id, false)) => id,
                    None => {
                        if params.kind == "signup" {
                            check_password_strength(&params.password)?;
                        }
                        let password = (!params.password.is_empty()).then_some(params.password.as_str());
                        new_email_user(&mut store, &email, password, params.data, now)
                    }
                };
                let message =
                    self.issue_email(&mut store, id, TokenSlot::Confirmation, EmailKind::Signup, &email, &redirect_to)?;
                (id, message)
            }
            "invite" => {
                let id = self.invitee(&mut store, &email, params.data)?;
                let message =
                    self.issue_email(&mut store, id, TokenSlot::Confirmation, EmailKind::Invite, &email, &redirect_to)?;
                (id, message)
            }
            "magiclink" | "recovery" => {
                let (id, _) = existing.ok_or_else(not_found)?;
                let email_kind = if kind == "magiclink" { EmailKind::Magiclink } else { EmailKind::Recovery };
                let message =
                    self.issue_email(&mut store, id, TokenSlot::Recovery, email_kind, &email, &redirect_to)?;
                (id, message)
            }
            "email_change_current" | "email_change_new" => {
                let (id, _) = existing.ok_or_else(not_found)?;
                if params.new_email.is_empty() {
                    return Err(ApiError::validation("The new email address provided is invalid"));
                }
                let new_email = validate_email(&params.new_email)?;
                if store.email_taken(&new_email, Some(id)) {
                    return Err(email_exists());
                }
                if let Some(user) = store.user_mut(id) {
                    user.new_email = new_email;
                }
                let (current, new) = self.send_email_change(&mut store, id, &redirect_to, false)?;
                let message = if kind == "email_change_current" { current.unwrap_or(new) } else { new };
                (id, message)
            }
            _ => return Err(ApiError::validation(format!("Invalid email action link type requested: {kind}"))),
        };
        let user = store.user(id).cloned().ok_or_else(ApiError::user_not_found)?;
        Ok(GeneratedLink { user, email: email_message, redirect_to })
    }
}
