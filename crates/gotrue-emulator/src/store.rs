//! In-memory stand-in for GoTrue's `auth` schema: users, sessions and
//! refresh tokens.
//!
//! Everything an emulator instance knows lives in one [`Store`] behind a
//! mutex owned by the instance (no globals), so parallel tests never see each
//! other's users. The store enforces the relational rules GoTrue gets from
//! Postgres: deleting a user or a session cascades to its sessions and
//! refresh tokens, and refresh-token rotation follows GoTrue's legacy (v1)
//! token algorithm with rotation on and a reuse interval of zero.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::errors::ApiError;

/// Salted SHA-256 of a password; good enough for an emulator.
#[derive(Clone)]
pub(crate) struct PasswordHash {
    salt: [u8; 16],
    digest: [u8; 32],
}

impl PasswordHash {
    pub(crate) fn new(password: &str) -> Self {
        let salt: [u8; 16] = rand::random();
        Self { salt, digest: Self::digest(&salt, password) }
    }

    fn digest(salt: &[u8; 16], password: &str) -> [u8; 32] {
        let mut hasher = Sha256::new();
        hasher.update(salt);
        hasher.update(password.as_bytes());
        hasher.finalize().into()
    }

    pub(crate) fn matches(&self, password: &str) -> bool {
        let candidate = Self::digest(&self.salt, password);
        // Constant-time comparison, out of habit.
        candidate.iter().zip(self.digest.iter()).fold(0u8, |acc, (a, b)| acc | (a ^ b)) == 0
    }
}

/// A row of `auth.identities`.
#[derive(Clone)]
pub(crate) struct IdentityRecord {
    pub(crate) id: Uuid,
    pub(crate) provider_id: String,
    pub(crate) identity_data: Map<String, Value>,
    pub(crate) provider: String,
    pub(crate) last_sign_in_at: Option<DateTime<Utc>>,
    pub(crate) created_at: DateTime<Utc>,
    pub(crate) updated_at: DateTime<Utc>,
    pub(crate) email: String,
}

/// A row of `auth.users`.
#[derive(Clone)]
pub(crate) struct UserRecord {
    pub(crate) id: Uuid,
    pub(crate) aud: String,
    pub(crate) role: String,
    pub(crate) email: String,
    pub(crate) phone: String,
    pub(crate) password: Option<PasswordHash>,
    pub(crate) email_confirmed_at: Option<DateTime<Utc>>,
    pub(crate) phone_confirmed_at: Option<DateTime<Utc>>,
    pub(crate) last_sign_in_at: Option<DateTime<Utc>>,
    pub(crate) app_metadata: Map<String, Value>,
    pub(crate) user_metadata: Map<String, Value>,
    pub(crate) identities: Vec<IdentityRecord>,
    pub(crate) created_at: DateTime<Utc>,
    pub(crate) updated_at: DateTime<Utc>,
    pub(crate) banned_until: Option<DateTime<Utc>>,
    /// Created by an anonymous sign-in (no email, no phone, no password).
    pub(crate) is_anonymous: bool,
    /// When an invitation was sent (`POST /invite`).
    pub(crate) invited_at: Option<DateTime<Utc>>,
    /// When the last signup/invite confirmation email was sent.
    pub(crate) confirmation_sent_at: Option<DateTime<Utc>>,
    /// When the last recovery or magic-link email was sent.
    pub(crate) recovery_sent_at: Option<DateTime<Utc>>,
    /// The address an email change is waiting to switch to, or empty.
    pub(crate) new_email: String,
    /// When the email-change emails were sent.
    pub(crate) email_change_sent_at: Option<DateTime<Utc>>,
}

impl UserRecord {
    pub(crate) fn is_banned(&self, now: DateTime<Utc>) -> bool {
        self.banned_until.is_some_and(|until| now < until)
    }

    /// `user.Confirm`: stamps the confirmation and sets
    /// `user_metadata.email_verified`.
    pub(crate) fn confirm(&mut self, now: DateTime<Utc>) {
        self.email_confirmed_at = Some(now);
        self.user_metadata.insert("email_verified".to_owned(), Value::Bool(true));
    }

    pub(crate) fn ban(&mut self, until: Option<DateTime<Utc>>) {
        self.banned_until = until;
    }
}

/// Merges metadata the way GoTrue's `UpdateUserMetaData` does: `null`
/// values delete keys, everything else overwrites.
pub(crate) fn merge_metadata(target: &mut Map<String, Value>, updates: &Map<String, Value>) {
    for (key, value) in updates {
        if value.is_null() {
            target.remove(key);
        } else {
            target.insert(key.clone(), value.clone());
        }
    }
}

/// The columns of `auth.users` that hold a one-time token: which emails
/// and verification types a token answers to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum TokenSlot {
    /// `confirmation_token`: sign-up and invite confirmation.
    Confirmation,
    /// `recovery_token`: password recovery and magic links.
    Recovery,
    /// `email_change_token_current`: sent to the address being replaced.
    EmailChangeCurrent,
    /// `email_change_token_new`: sent to the new address.
    EmailChangeNew,
}

/// A one-time token waiting to be verified: the hash that goes in links
/// (`sha224(email + otp)`, hex) and when it was sent.
#[derive(Clone, Debug)]
pub(crate) struct OneTimeToken {
    pub(crate) user_id: Uuid,
    pub(crate) slot: TokenSlot,
    pub(crate) token_hash: String,
    pub(crate) sent_at: DateTime<Utc>,
}

/// One entry of the `amr` claim.
#[derive(Clone, Debug, Serialize)]
pub(crate) struct AmrEntry {
    pub(crate) method: String,
    pub(crate) timestamp: i64,
}

/// A row of `auth.sessions`.
#[derive(Clone)]
pub(crate) struct SessionRecord {
    pub(crate) id: Uuid,
    pub(crate) user_id: Uuid,
    pub(crate) refreshed_at: Option<DateTime<Utc>>,
    pub(crate) amr: Vec<AmrEntry>,
}

/// A row of `auth.refresh_tokens` (legacy 12-character tokens).
#[derive(Clone)]
struct RefreshTokenRecord {
    seq: u64,
    user_id: Uuid,
    session_id: Uuid,
    parent: Option<String>,
    revoked: bool,
}

/// Which sessions `POST /logout` ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum LogoutScope {
    Global,
    Local,
    Others,
}

/// All users, sessions and refresh tokens of one emulator instance.
#[derive(Default)]
pub(crate) struct Store {
    users: HashMap<Uuid, UserRecord>,
    sessions: HashMap<Uuid, SessionRecord>,
    refresh_tokens: HashMap<String, RefreshTokenRecord>,
    next_seq: u64,
    /// At most one token per user and slot: a new email replaces the token
    /// of the previous one, as the column is overwritten in GoTrue.
    one_time_tokens: HashMap<(Uuid, TokenSlot), OneTimeToken>,
}

/// GoTrue's legacy refresh tokens: 12 characters of `[a-z0-9]`.
fn new_refresh_token() -> String {
    use rand::Rng;
    const CHARS: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    let mut rng = rand::thread_rng();
    (0..12).map(|_| char::from(CHARS[rng.gen_range(0..CHARS.len())])).collect()
}

impl Store {
    pub(crate) fn user(&self, id: Uuid) -> Option<&UserRecord> {
        self.users.get(&id)
    }

    pub(crate) fn user_mut(&mut self, id: Uuid) -> Option<&mut UserRecord> {
        self.users.get_mut(&id)
    }

    pub(crate) fn user_by_email(&self, email: &str) -> Option<&UserRecord> {
        let email = email.to_lowercase();
        self.users.values().find(|u| !u.email.is_empty() && u.email == email)
    }

    pub(crate) fn email_taken(&self, email: &str, except: Option<Uuid>) -> bool {
        self.user_by_email(email).is_some_and(|u| Some(u.id) != except)
    }

    pub(crate) fn insert_user(&mut self, user: UserRecord) {
        self.users.insert(user.id, user);
    }

    /// Users newest first, as `GET /admin/users` sorts by `created_at desc`.
    pub(crate) fn users_newest_first(&self) -> Vec<&UserRecord> {
        let mut users: Vec<&UserRecord> = self.users.values().collect();
        users.sort_by(|a, b| b.created_at.cmp(&a.created_at).then(b.id.cmp(&a.id)));
        users
    }

    pub(crate) fn session(&self, id: Uuid) -> Option<&SessionRecord> {
        self.sessions.get(&id)
    }

    /// Deletes a user; sessions and refresh tokens go with it.
    pub(crate) fn delete_user(&mut self, id: Uuid) -> Option<UserRecord> {
        let user = self.users.remove(&id)?;
        self.sessions.retain(|_, s| s.user_id != id);
        self.refresh_tokens.retain(|_, t| t.user_id != id);
        self.one_time_tokens.retain(|(user_id, _), _| *user_id != id);
        Some(user)
    }

    /// Stores (replacing) the user's token in `slot`.
    pub(crate) fn put_token(&mut self, token: OneTimeToken) {
        self.one_time_tokens.insert((token.user_id, token.slot), token);
    }

    /// The token of `user_id` in `slot`, if one is pending.
    pub(crate) fn token(&self, user_id: Uuid, slot: TokenSlot) -> Option<&OneTimeToken> {
        self.one_time_tokens.get(&(user_id, slot))
    }

    /// The pending token with this hash in one of `slots`.
    pub(crate) fn token_by_hash(&self, hash: &str, slots: &[TokenSlot]) -> Option<OneTimeToken> {
        self.one_time_tokens.values().find(|t| slots.contains(&t.slot) && t.token_hash == hash).cloned()
    }

    /// Consumes the user's token in `slot` (tokens are single use).
    pub(crate) fn take_token(&mut self, user_id: Uuid, slot: TokenSlot) -> Option<OneTimeToken> {
        self.one_time_tokens.remove(&(user_id, slot))
    }

    fn issue_refresh_token(&mut self, user_id: Uuid, session_id: Uuid, parent: Option<String>) -> String {
        let token = loop {
            let candidate = new_refresh_token();
            if !self.refresh_tokens.contains_key(&candidate) {
                break candidate;
            }
        };
        self.next_seq += 1;
        self.refresh_tokens.insert(
            token.clone(),
            RefreshTokenRecord { seq: self.next_seq, user_id, session_id, parent, revoked: false },
        );
        token
    }

    /// Starts a session for a signed-in user (`GrantAuthenticatedUser`):
    /// records the sign-in, creates the session and its first refresh token.
    pub(crate) fn start_session(
        &mut self,
        user_id: Uuid,
        method: &str,
        now: DateTime<Utc>,
    ) -> Option<(SessionRecord, String)> {
        let user = self.users.get_mut(&user_id)?;
        user.last_sign_in_at = Some(now);
        let session = SessionRecord {
            id: Uuid::new_v4(),
            user_id,
            refreshed_at: None,
            amr: vec![AmrEntry { method: method.to_owned(), timestamp: now.timestamp() }],
        };
        self.sessions.insert(session.id, session.clone());
        let token = self.issue_refresh_token(user_id, session.id, None);
        Some((session, token))
    }

    /// The `refresh_token` grant with rotation (GoTrue's v1 algorithm,
    /// reuse interval 0): the presented token is revoked and a child issued.
    /// Presenting the direct parent of the session's active token again
    /// returns that active token (the "client failed to save" case); any
    /// older token revokes the whole token family and fails.
    pub(crate) fn refresh(
        &mut self,
        token: &str,
        now: DateTime<Utc>,
    ) -> Result<(UserRecord, SessionRecord, String), ApiError> {
        let not_found =
            || ApiError::bad_request("refresh_token_not_found", "Invalid Refresh Token: Refresh Token Not Found");
        let record = self.refresh_tokens.get(token).cloned().ok_or_else(not_found)?;
        let user = self.users.get(&record.user_id).ok_or_else(not_found)?;
        if user.is_banned(now) {
            return Err(ApiError::bad_request("user_banned", "Invalid Refresh Token: User Banned"));
        }
        if !self.sessions.contains_key(&record.session_id) {
            self.refresh_tokens.remove(token);
            return Err(ApiError::bad_request("session_not_found", "Invalid Refresh Token: No Valid Session Found"));
        }

        let issued = if record.revoked {
            let active = self
                .refresh_tokens
                .iter()
                .filter(|(_, t)| t.session_id == record.session_id && !t.revoked)
                .max_by_key(|(_, t)| t.seq)
                .map(|(k, t)| (k.clone(), t.parent.clone()));
            match active {
                Some((active_token, Some(parent))) if parent == token => active_token,
                _ => {
                    for t in self.refresh_tokens.values_mut() {
                        if t.session_id == record.session_id {
                            t.revoked = true;
                        }
                    }
                    return Err(ApiError::bad_request(
                        "refresh_token_already_used",
                        "Invalid Refresh Token: Already Used",
                    ));
                }
            }
        } else {
            if let Some(t) = self.refresh_tokens.get_mut(token) {
                t.revoked = true;
            }
            self.issue_refresh_token(record.user_id, record.session_id, Some(token.to_owned()))
        };

        let session = self.sessions.get_mut(&record.session_id).ok_or_else(not_found)?;
        session.refreshed_at = Some(now);
        let session = session.clone();
        let user = self.users.get(&record.user_id).cloned().ok_or_else(not_found)?;
        Ok((user, session, issued))
    }

    /// `POST /logout`: deletes sessions (and with them their refresh tokens).
    /// Without a session in the token every scope falls back to global, as
    /// in GoTrue.
    pub(crate) fn logout(&mut self, user_id: Uuid, session_id: Option<Uuid>, scope: LogoutScope) {
        let doomed: Vec<Uuid> = self
            .sessions
            .values()
            .filter(|s| s.user_id == user_id)
            .filter(|s| match (scope, session_id) {
                (LogoutScope::Local, Some(current)) => s.id == current,
                (LogoutScope::Others, Some(current)) => s.id != current,
                _ => true,
            })
            .map(|s| s.id)
            .collect();
        for id in &doomed {
            self.sessions.remove(id);
        }
        self.refresh_tokens.retain(|_, t| !doomed.contains(&t.session_id));
    }

    /// Number of live sessions of a user (for tests and diagnostics).
    pub(crate) fn session_count(&self, user_id: Uuid) -> usize {
        self.sessions.values().filter(|s| s.user_id == user_id).count()
    }
}
