//! What one emulator instance shares between its HTTP handlers and the
//! in-process [`crate::Emulator`] handle.
//!
//! Both faces must see the same users and sessions (a test creates a user
//! in-process and signs in over HTTP), so they hold the same [`AppState`].

use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::config::{MailSettings, SignupSettings};
use crate::faults::Faults;
use crate::keys::Keys;
use crate::mailbox::Mailbox;
use crate::stats::Counters;
use crate::store::Store;

/// State of one emulator instance.
pub(crate) struct AppState {
    pub(crate) keys: Keys,
    pub(crate) anon_key: String,
    pub(crate) service_role_key: String,
    pub(crate) access_token_ttl: Duration,
    /// `<base_url>/auth/v1`, the `iss` of issued tokens.
    pub(crate) issuer: String,
    pub(crate) signup: SignupSettings,
    pub(crate) faults: Faults,
    pub(crate) stats: Counters,
    /// The legacy JWT form of the anon key (`role: anon`), accepted as well.
    pub(crate) legacy_anon_key: String,
    /// The legacy JWT form of the service-role key, accepted as well.
    pub(crate) legacy_service_role_key: String,
    /// `<base_url>` without `/auth/v1`, for links in emails and headers.
    pub(crate) base_url: String,
    pub(crate) mail: MailSettings,
    pub(crate) mailbox: Mailbox,
    store: Mutex<Store>,
}

impl AppState {
    pub(crate) fn new(
        keys: Keys,
        anon_key: String,
        service_role_key: String,
        access_token_ttl: Duration,
        issuer: String,
        signup: SignupSettings,
        faults: Faults,
    ) -> Self {
        Self {
            keys,
            anon_key,
            service_role_key,
            access_token_ttl,
            issuer,
            signup,
            faults,
            stats: Counters::default(),
            legacy_anon_key: String::new(),
            legacy_service_role_key: String::new(),
            base_url: String::new(),
            mail: MailSettings::default(),
            mailbox: Mailbox::default(),
            store: Mutex::new(Store::default()),
        }
    }

    /// The emulator's clock: real time plus the clock-skew fault, at
    /// Postgres' microsecond precision. Everything GoTrue reads its own clock
    /// for goes through here (token `iat`/`exp`, their verification, bans,
    /// timestamps), so a skewed emulator behaves like a GoTrue host whose
    /// clock is off.
    pub(crate) fn now(&self) -> DateTime<Utc> {
        let real = crate::views::now();
        real.checked_add_signed(self.faults.clock_skew()).unwrap_or(real)
    }

    /// Whether `key` is one of the project's API keys, in either form.
    pub(crate) fn is_api_key(&self, key: &str) -> bool {
        self.api_key_role(key).is_some()
    }

    /// The role an API key stands for (`anon` or `service_role`), in
    /// either of Supabase's forms: the opaque `sb_publishable_…` /
    /// `sb_secret_…` keys and the legacy JWT keys.
    pub(crate) fn api_key_role(&self, key: &str) -> Option<&'static str> {
        if key.is_empty() {
            None
        } else if key == self.anon_key || key == self.legacy_anon_key {
            Some("anon")
        } else if key == self.service_role_key || key == self.legacy_service_role_key {
            Some("service_role")
        } else {
            None
        }
    }

    /// Locks the store. A panic while holding the lock cannot leave it
    /// half-updated in a way that matters for an emulator, so poisoning is
    /// ignored.
    pub(crate) fn store(&self) -> MutexGuard<'_, Store> {
        self.store.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}
