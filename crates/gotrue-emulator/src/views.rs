//! GoTrue's JSON wire shapes for users, identities and token responses.
//!
//! Field names, order, `omitempty` behaviour and timestamp format follow the
//! Go structs (`models.User`, `models.Identity`, `AccessTokenResponse`), so
//! that code written against real Supabase parses emulator responses
//! unchanged. Storage types stay free of serialization concerns.

use chrono::{DateTime, SecondsFormat, Utc};
use serde::Serialize;
use serde_json::{Map, Value};
use uuid::Uuid;

use crate::store::{IdentityRecord, UserRecord};

/// Go marshals `time.Time` as RFC 3339 with nanoseconds trimmed; Postgres
/// keeps microseconds.
pub(crate) fn timestamp(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::AutoSi, true)
}

/// Truncates to Postgres' microsecond precision.
pub(crate) fn now() -> DateTime<Utc> {
    let now = Utc::now();
    DateTime::from_timestamp_micros(now.timestamp_micros()).unwrap_or(now)
}

/// `models.Identity` as JSON.
#[derive(Serialize)]
pub(crate) struct IdentityJson<'a> {
    identity_id: Uuid,
    id: &'a str,
    user_id: Uuid,
    identity_data: &'a Map<String, Value>,
    provider: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    last_sign_in_at: Option<String>,
    created_at: String,
    updated_at: String,
    #[serde(skip_serializing_if = "str::is_empty")]
    email: &'a str,
}

impl<'a> IdentityJson<'a> {
    fn new(user_id: Uuid, identity: &'a IdentityRecord) -> Self {
        Self {
            identity_id: identity.id,
            id: &identity.provider_id,
            user_id,
            identity_data: &identity.identity_data,
            provider: &identity.provider,
            last_sign_in_at: identity.last_sign_in_at.map(timestamp),
            created_at: timestamp(identity.created_at),
            updated_at: timestamp(identity.updated_at),
            email: &identity.email,
        }
    }
}

/// `models.User` as JSON (the fields an email/password user can have).
#[derive(Serialize)]
pub(crate) struct UserJson<'a> {
    id: Uuid,
    aud: &'a str,
    role: &'a str,
    email: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    email_confirmed_at: Option<String>,
    phone: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    phone_confirmed_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    confirmed_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    invited_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    confirmation_sent_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    recovery_sent_at: Option<String>,
    #[serde(skip_serializing_if = "str::is_empty")]
    new_email: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    email_change_sent_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    last_sign_in_at: Option<String>,
    app_metadata: &'a Map<String, Value>,
    user_metadata: &'a Map<String, Value>,
    identities: Vec<IdentityJson<'a>>,
    created_at: String,
    updated_at: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    banned_until: Option<String>,
    is_anonymous: bool,
}

impl<'a> UserJson<'a> {
    pub(crate) fn new(user: &'a UserRecord) -> Self {
        Self {
            id: user.id,
            aud: &user.aud,
            role: &user.role,
            email: &user.email,
            email_confirmed_at: user.email_confirmed_at.map(timestamp),
            phone: &user.phone,
            phone_confirmed_at: user.phone_confirmed_at.map(timestamp),
            // A generated column: least(email_confirmed_at, phone_confirmed_at).
            confirmed_at: match (user.email_confirmed_at, user.phone_confirmed_at) {
                (Some(e), Some(p)) => Some(timestamp(e.min(p))),
                (e, p) => e.or(p).map(timestamp),
            },
            invited_at: user.invited_at.map(timestamp),
            confirmation_sent_at: user.confirmation_sent_at.map(timestamp),
            recovery_sent_at: user.recovery_sent_at.map(timestamp),
            new_email: &user.new_email,
            email_change_sent_at: user.email_change_sent_at.map(timestamp),
            last_sign_in_at: user.last_sign_in_at.map(timestamp),
            app_metadata: &user.app_metadata,
            user_metadata: &user.user_metadata,
            identities: user.identities.iter().map(|i| IdentityJson::new(user.id, i)).collect(),
            created_at: timestamp(user.created_at),
            updated_at: timestamp(user.updated_at),
            banned_until: user.banned_until.map(timestamp),
            is_anonymous: user.is_anonymous,
        }
    }
}

/// `AccessTokenResponse` as JSON.
#[derive(Serialize)]
pub(crate) struct TokenResponseJson<'a> {
    pub(crate) access_token: &'a str,
    pub(crate) token_type: &'static str,
    pub(crate) expires_in: i64,
    pub(crate) expires_at: i64,
    pub(crate) refresh_token: &'a str,
    pub(crate) user: UserJson<'a>,
}

/// The `{users, aud}` body of `GET /admin/users`.
#[derive(Serialize)]
pub(crate) struct UserListJson<'a> {
    pub(crate) users: Vec<UserJson<'a>>,
    pub(crate) aud: &'static str,
}
