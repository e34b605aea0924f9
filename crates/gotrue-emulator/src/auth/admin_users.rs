//! User administration: `POST /admin/users`, `PUT /admin/users/{id}`,
//! `DELETE /admin/users/{id}`, and bans (admin updates and the in-process
//! API).

use chrono::{DateTime, TimeDelta, Utc};
use serde::Deserialize;
use serde_json::{Map, Value, json};
use uuid::Uuid;

use super::new_user::{NewUser, email_identity, phone_identity};
use super::validation::{MAX_PASSWORD_LENGTH, check_password_strength, validate_email, validate_phone};
use crate::errors::ApiError;
use crate::go_duration;
use crate::state::AppState;
use crate::store::{PasswordHash, UserRecord, merge_metadata};

/// Body of `POST /admin/users` and `PUT /admin/users/{id}`.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct AdminUserParams {
    pub(crate) id: String,
    pub(crate) aud: String,
    pub(crate) role: String,
    pub(crate) email: String,
    pub(crate) phone: String,
    pub(crate) password: Option<String>,
    pub(crate) password_hash: String,
    pub(crate) email_confirm: bool,
    pub(crate) phone_confirm: bool,
    pub(crate) user_metadata: Option<Map<String, Value>>,
    pub(crate) app_metadata: Option<Map<String, Value>>,
    pub(crate) ban_duration: String,
}

fn email_exists() -> ApiError {
    ApiError::unprocessable("email_exists", "A user with this email address has already been registered")
}

/// `ban_duration`: `"none"` lifts a ban, anything else is a Go duration
/// from now. `None` when the field was not given.
fn parse_ban_duration(value: &str, now: DateTime<Utc>) -> Result<Option<Option<DateTime<Utc>>>, ApiError> {
    if value.is_empty() {
        return Ok(None);
    }
    if value == "none" {
        return Ok(Some(None));
    }
    let nanos =
        go_duration::parse(value).map_err(|e| ApiError::validation(format!("invalid format for ban duration: {e}")))?;
    if nanos == 0 {
        return Ok(Some(None));
    }
    let nanos =
        i64::try_from(nanos).map_err(|_| ApiError::validation("invalid format for ban duration: out of range"))?;
    Ok(Some(now.checked_add_signed(TimeDelta::nanoseconds(nanos))))
}

impl AppState {
    /// `POST /admin/users` (`adminUserCreate`).
    pub(crate) fn admin_create_user(&self, params: AdminUserParams) -> Result<UserRecord, ApiError> {
        if params.email.is_empty() && params.phone.is_empty() {
            return Err(ApiError::validation("Cannot create a user without either an email or phone"));
        }
        let mut store = self.store();
        let email = if params.email.is_empty() {
            String::new()
        } else {
            let email = validate_email(&params.email)?;
            if store.email_taken(&email, None) {
                return Err(email_exists());
            }
            email
        };
        let phone = if params.phone.is_empty() {
            String::new()
        } else {
            let phone = validate_phone(&params.phone)?;
            if store.users_newest_first().iter().any(|u| u.phone == phone) {
                return Err(ApiError::unprocessable("phone_exists", "Phone number already registered by another user"));
            }
            phone
        };
        if params.password.is_some() && !params.password_hash.is_empty() {
            return Err(ApiError::validation("Only a password or a password hash should be provided"));
        }
        let password = match params.password.as_deref() {
            Some(p) if !p.is_empty() => {
                if p.len() > MAX_PASSWORD_LENGTH {
                    return Err(ApiError::validation("bcrypt: password length exceeds 72 bytes"));
                }
                Some(PasswordHash::new(p))
            }
            // A password hash cannot be checked here (no bcrypt), and a
            // generated password is unknown to everyone: no password login.
            _ => None,
        };
        let id = if params.id.is_empty() {
            Uuid::new_v4()
        } else {
            let id = Uuid::parse_str(&params.id)
                .map_err(|_| ApiError::validation("ID must conform to the uuid v4 format"))?;
            if id.is_nil() {
                return Err(ApiError::validation("ID cannot be a nil uuid"));
            }
            if store.user(id).is_some() {
                return Err(ApiError::internal("Database error creating new user"));
            }
            id
        };
        let now = self.now();
        let ban = parse_ban_duration(&params.ban_duration, now)?;
        let mut user = NewUser {
            id,
            email,
            phone,
            password,
            user_metadata: params.user_metadata.unwrap_or_default(),
            email_identity_extra: None,
        }
        .into_record(now);
        if !params.aud.is_empty() {
            user.aud = params.aud;
        }
        if !params.role.is_empty() {
            user.role = params.role.trim().to_owned();
        }
        if let Some(app) = &params.app_metadata {
            merge_metadata(&mut user.app_metadata, app);
        }
        if params.email_confirm {
            user.confirm(now);
        }
        if params.phone_confirm {
            user.phone_confirmed_at = Some(now);
        }
        if let Some(until) = ban {
            user.ban(until);
        }
        store.insert_user(user.clone());
        Ok(user)
    }

    /// `PUT /admin/users/{id}` (`adminUserUpdate`). Banning does not end the
    /// user's sessions: GoTrue only sets `banned_until`, and the ban is
    /// enforced on every authenticated request and refresh instead.
    pub(crate) fn admin_update_user(&self, id: Uuid, params: AdminUserParams) -> Result<UserRecord, ApiError> {
        let email = if params.email.is_empty() { None } else { Some(validate_email(&params.email)?) };
        let phone = if params.phone.is_empty() { None } else { Some(validate_phone(&params.phone)?) };
        let now = self.now();
        let ban = parse_ban_duration(&params.ban_duration, now)?;
        if let Some(password) = &params.password {
            check_password_strength(password)?;
        }
        let mut store = self.store();
        if store.user(id).is_none() {
            return Err(ApiError::user_not_found());
        }
        if let Some(email) = &email
            && store.email_taken(email, Some(id))
        {
            return Err(email_exists());
        }
        let user = store.user_mut(id).ok_or_else(ApiError::user_not_found)?;
        if !params.role.is_empty() {
            user.role = params.role.trim().to_owned();
        }
        if params.email_confirm {
            user.confirm(now);
        }
        if params.phone_confirm {
            user.phone_confirmed_at = Some(now);
        }
        if let Some(password) = &params.password {
            user.password = Some(PasswordHash::new(password));
        }
        if let Some(email) = email {
            match user.identities.iter_mut().find(|i| i.provider == "email") {
                Some(identity) => {
                    identity.identity_data.insert("email".into(), json!(email));
                    identity.identity_data.insert("email_verified".into(), json!(params.email_confirm));
                    identity.email = email.clone();
                    identity.updated_at = now;
                }
                None => {
                    let mut identity = email_identity(id, &email, None, now);
                    identity.identity_data.insert("email_verified".into(), json!(params.email_confirm));
                    user.identities.push(identity);
                }
            }
            user.email = email;
        }
        if let Some(phone) = phone {
            if !user.identities.iter().any(|i| i.provider == "phone") {
                user.identities.push(phone_identity(id, &phone, now));
            }
            user.phone = phone;
        }
        if let Some(app) = &params.app_metadata {
            merge_metadata(&mut user.app_metadata, app);
        }
        if let Some(meta) = &params.user_metadata {
            merge_metadata(&mut user.user_metadata, meta);
        }
        if let Some(until) = ban {
            user.ban(until);
        }
        user.updated_at = now;
        Ok(user.clone())
    }

    /// `DELETE /admin/users/{id}` (hard delete; sessions go with the user).
    pub(crate) fn delete_user(&self, id: Uuid) -> Result<(), ApiError> {
        self.store().delete_user(id).map(|_| ()).ok_or_else(ApiError::user_not_found)
    }

    /// Sets or lifts (`None`) a user's ban.
    pub(crate) fn ban_user(&self, id: Uuid, until: Option<DateTime<Utc>>) -> Result<(), ApiError> {
        let mut store = self.store();
        let user = store.user_mut(id).ok_or_else(ApiError::user_not_found)?;
        user.ban(until);
        user.updated_at = self.now();
        Ok(())
    }
}
