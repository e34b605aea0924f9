//! The record of a new user: the `auth.users` row, its `email` and `phone`
//! identities and the provider list in `app_metadata`, as every flow that
//! creates users (sign-up, admin create) builds them.

use chrono::{DateTime, Utc};
use serde_json::{Map, Value, json};
use uuid::Uuid;

use super::AUTHENTICATED;
use crate::store::{IdentityRecord, PasswordHash, UserRecord};

/// What a new user starts with; the rest of the record follows from it.
pub(super) struct NewUser<'a> {
    pub(super) id: Uuid,
    /// Validated, lower-cased email, or empty for none.
    pub(super) email: String,
    /// Validated phone number, or empty for none.
    pub(super) phone: String,
    pub(super) password: Option<PasswordHash>,
    pub(super) user_metadata: Map<String, Value>,
    /// Claims added to the email identity's `identity_data` where it has no
    /// value of its own (sign-up copies its `data` there).
    pub(super) email_identity_extra: Option<&'a Map<String, Value>>,
}

impl NewUser<'_> {
    /// The user with audience and role `authenticated`, an identity per
    /// given email and phone (in that order), nothing confirmed, never
    /// signed in, not banned.
    pub(super) fn into_record(self, now: DateTime<Utc>) -> UserRecord {
        let mut providers = Vec::new();
        let mut identities = Vec::new();
        if !self.email.is_empty() {
            providers.push("email");
            identities.push(email_identity(self.id, &self.email, self.email_identity_extra, now));
        }
        if !self.phone.is_empty() {
            providers.push("phone");
            identities.push(phone_identity(self.id, &self.phone, now));
        }
        UserRecord {
            id: self.id,
            aud: AUTHENTICATED.into(),
            role: AUTHENTICATED.into(),
            email: self.email,
            phone: self.phone,
            password: self.password,
            email_confirmed_at: None,
            phone_confirmed_at: None,
            last_sign_in_at: None,
            app_metadata: providers_metadata(&providers),
            user_metadata: self.user_metadata,
            identities,
            created_at: now,
            updated_at: now,
            banned_until: None,
            is_anonymous: false,
            invited_at: None,
            confirmation_sent_at: None,
            recovery_sent_at: None,
            new_email: String::new(),
            email_change_sent_at: None,
        }
    }
}

/// The `email` identity of a user, `extra` claims added where the identity
/// has none of its own.
pub(super) fn email_identity(
    user_id: Uuid,
    email: &str,
    extra: Option<&Map<String, Value>>,
    now: DateTime<Utc>,
) -> IdentityRecord {
    let mut data = Map::new();
    data.insert("email".into(), json!(email));
    data.insert("email_verified".into(), json!(false));
    data.insert("phone_verified".into(), json!(false));
    data.insert("sub".into(), json!(user_id.to_string()));
    if let Some(extra) = extra {
        for (k, v) in extra {
            data.entry(k.clone()).or_insert_with(|| v.clone());
        }
    }
    identity(user_id, "email", data, email, now)
}

/// The `phone` identity of a user.
pub(super) fn phone_identity(user_id: Uuid, phone: &str, now: DateTime<Utc>) -> IdentityRecord {
    let mut data = Map::new();
    data.insert("email_verified".into(), json!(false));
    data.insert("phone".into(), json!(phone));
    data.insert("phone_verified".into(), json!(false));
    data.insert("sub".into(), json!(user_id.to_string()));
    identity(user_id, "phone", data, "", now)
}

/// An identity of `provider` whose provider-side id is the user's id, as
/// for GoTrue's own `email` and `phone` providers.
fn identity(
    user_id: Uuid,
    provider: &str,
    identity_data: Map<String, Value>,
    email: &str,
    now: DateTime<Utc>,
) -> IdentityRecord {
    IdentityRecord {
        id: Uuid::new_v4(),
        provider_id: user_id.to_string(),
        identity_data,
        provider: provider.into(),
        last_sign_in_at: Some(now),
        created_at: now,
        updated_at: now,
        email: email.to_owned(),
    }
}

/// `app_metadata` of a new user: its first provider and all of them.
fn providers_metadata(providers: &[&str]) -> Map<String, Value> {
    let mut app = Map::new();
    app.insert("provider".into(), json!(providers.first().copied().unwrap_or("email")));
    app.insert("providers".into(), json!(providers));
    app
}
