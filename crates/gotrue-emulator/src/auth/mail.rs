//! Sending GoTrue's emails: a one-time token per email (a six-digit code,
//! and the hash of address and code that goes in the link), stored in the
//! user's token slot, stamped on the user, and the message put in the
//! [`crate::mailbox`] instead of being delivered.

use chrono::{DateTime, TimeDelta, Utc};
use rand::Rng;
use sha2::{Digest, Sha224};
use uuid::Uuid;

use crate::errors::ApiError;
use crate::mailbox::{Email, EmailKind};
use crate::state::AppState;
use crate::store::{OneTimeToken, Store, TokenSlot, UserRecord};

/// GoTrue's default `GOTRUE_MAILER_OTP_LENGTH`.
const OTP_LENGTH: usize = 6;

/// The hash GoTrue puts in links and stores: `sha224(email + otp)`, hex.
pub(super) fn token_hash(email: &str, otp: &str) -> String {
    let digest = Sha224::digest(format!("{email}{otp}").as_bytes());
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

fn new_otp() -> String {
    let mut rng = rand::thread_rng();
    (0..OTP_LENGTH).map(|_| char::from(b'0' + rng.gen_range(0..10u8))).collect()
}

/// When the user was last sent an email using `slot`.
fn last_sent(user: &UserRecord, slot: TokenSlot) -> Option<DateTime<Utc>> {
    match slot {
        TokenSlot::Confirmation => user.confirmation_sent_at,
        TokenSlot::Recovery => user.recovery_sent_at,
        TokenSlot::EmailChangeCurrent | TokenSlot::EmailChangeNew => user.email_change_sent_at,
    }
}

fn stamp(user: &mut UserRecord, slot: TokenSlot, now: DateTime<Utc>) {
    match slot {
        TokenSlot::Confirmation => user.confirmation_sent_at = Some(now),
        TokenSlot::Recovery => user.recovery_sent_at = Some(now),
        TokenSlot::EmailChangeCurrent | TokenSlot::EmailChangeNew => user.email_change_sent_at = Some(now),
    }
}

impl AppState {
    /// Where a verification link sends the browser: the requested
    /// `redirect_to` if it is an absolute http(s) URL, else the site URL.
    /// (GoTrue also checks it against the project's allow list; the
    /// emulator, a development tool, allows any.)
    pub(crate) fn redirect_target(&self, requested: Option<&str>) -> String {
        match requested.map(str::trim).filter(|r| !r.is_empty()) {
            Some(r) if url::Url::parse(r).is_ok_and(|u| matches!(u.scheme(), "http" | "https")) => r.to_owned(),
            _ => self.mail.site_url.clone(),
        }
    }

    /// `GOTRUE_SMTP_MAX_FREQUENCY`: refuses a new email of the slot's kind
    /// sent too soon after the last one.
    pub(super) fn check_email_frequency(
        &self,
        user: &UserRecord,
        slot: TokenSlot,
        now: DateTime<Utc>,
    ) -> Result<(), ApiError> {
        let Some(last) = last_sent(user, slot) else { return Ok(()) };
        let window = TimeDelta::from_std(self.mail.max_frequency).unwrap_or(TimeDelta::zero());
        let next = last.checked_add_signed(window).unwrap_or(last);
        if now < next {
            let wait = (next - now).num_milliseconds().saturating_add(999) / 1000;
            return Err(ApiError::new(
                axum::http::StatusCode::TOO_MANY_REQUESTS,
                "over_email_send_rate_limit",
                format!("For security purposes, you can only request this after {wait} seconds."),
            ));
        }
        Ok(())
    }

    /// Issues a one-time token for `user_id` in `slot` (replacing any
    /// earlier one), stamps the user, and builds the email to `to` that
    /// carries it. The caller delivers it (or, for `generate_link`, hands
    /// it back instead).
    pub(super) fn issue_email(
        &self,
        store: &mut Store,
        user_id: Uuid,
        slot: TokenSlot,
        kind: EmailKind,
        to: &str,
        redirect_to: &str,
    ) -> Result<Email, ApiError> {
        let now = self.now();
        let user = store.user_mut(user_id).ok_or_else(ApiError::user_not_found)?;
        stamp(user, slot, now);
        let otp = new_otp();
        let hash = token_hash(to, &otp);
        store.put_token(OneTimeToken { user_id, slot, token_hash: hash.clone(), sent_at: now });
        let query = serde_urlencoded::to_string([
            ("token", hash.as_str()),
            ("type", kind.verification_type()),
            ("redirect_to", redirect_to),
        ])
        .map_err(|e| ApiError::internal(format!("error building the email link: {e}")))?;
        Ok(Email {
            id: Uuid::new_v4(),
            to: to.to_owned(),
            subject: kind.subject().to_owned(),
            kind,
            link: format!("{}/auth/v1/verify?{query}", self.base_url),
            code: otp,
            sent_at: now,
        })
    }

    /// Puts an email made by [`AppState::issue_email`] into the mailbox.
    pub(super) fn deliver(&self, email: Email) -> Result<(), ApiError> {
        self.mailbox.deliver(email);
        Ok(())
    }

    /// The two emails of an email change (secure email change, GoTrue's
    /// default): one to the current address, one to the new one; both links
    /// must be followed before the address changes.
    pub(super) fn send_email_change(
        &self,
        store: &mut Store,
        user_id: Uuid,
        redirect_to: &str,
        deliver: bool,
    ) -> Result<(Option<Email>, Email), ApiError> {
        let user = store.user(user_id).ok_or_else(ApiError::user_not_found)?;
        let (current, new) = (user.email.clone(), user.new_email.clone());
        let kind = EmailKind::EmailChange;
        let to_current = if current.is_empty() {
            None
        } else {
            Some(self.issue_email(store, user_id, TokenSlot::EmailChangeCurrent, kind, &current, redirect_to)?)
        };
        let to_new = self.issue_email(store, user_id, TokenSlot::EmailChangeNew, kind, &new, redirect_to)?;
        if deliver {
            if let Some(email) = to_current.clone() {
                self.mailbox.deliver(email);
            }
            self.mailbox.deliver(to_new.clone());
        }
        Ok((to_current, to_new))
    }
}
