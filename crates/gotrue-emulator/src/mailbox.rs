//! The emulator's mailbox: every email GoTrue would send (sign-up
//! confirmation, magic link / OTP, recovery, invite, email change) is kept
//! here instead of being delivered, like the Supabase CLI's Mailpit, so a
//! flow that needs an email can be finished locally or in a test.
//!
//! Read over HTTP at `GET /__emulator/mailbox` (`?to=` filters by
//! recipient), cleared with `DELETE /__emulator/mailbox`, read in-process
//! through [`crate::Emulator::mailbox`]; each message is also logged at info
//! so the dev console shows its link and code.

use std::collections::VecDeque;
use std::sync::Mutex;

use chrono::{DateTime, Utc};
use serde::{Serialize, Serializer};
use uuid::Uuid;

/// Messages kept; older ones are dropped first, so a long dev session
/// cannot grow the mailbox without bound.
pub const MAILBOX_CAPACITY: usize = 1000;

/// Which of GoTrue's email templates a message was built from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum EmailKind {
    /// "Confirm your signup" (`type=signup`).
    Signup,
    /// "Your magic link", carrying the email OTP too (`type=magiclink`).
    Magiclink,
    /// "Reset your password" (`type=recovery`).
    Recovery,
    /// "You have been invited" (`type=invite`).
    Invite,
    /// "Confirm email change", sent to both addresses (`type=email_change`).
    EmailChange,
}

impl EmailKind {
    /// The `type` of the verification link.
    pub fn verification_type(self) -> &'static str {
        match self {
            EmailKind::Signup => "signup",
            EmailKind::Magiclink => "magiclink",
            EmailKind::Recovery => "recovery",
            EmailKind::Invite => "invite",
            EmailKind::EmailChange => "email_change",
        }
    }

    /// GoTrue's default subject for the template.
    pub(crate) fn subject(self) -> &'static str {
        match self {
            EmailKind::Signup => "Confirm Your Signup",
            EmailKind::Magiclink => "Your Magic Link",
            EmailKind::Recovery => "Reset Your Password",
            EmailKind::Invite => "You have been invited",
            EmailKind::EmailChange => "Confirm Email Change",
        }
    }
}

/// One captured email.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Email {
    /// Unique id of the message.
    pub id: Uuid,
    /// Recipient address.
    pub to: String,
    /// Subject line.
    pub subject: String,
    /// Template it was built from.
    pub kind: EmailKind,
    /// The verification link (`{{ .ConfirmationURL }}`): following it
    /// verifies the token and redirects with a session.
    pub link: String,
    /// The six-digit code (`{{ .Token }}`), for `POST /verify` with the email.
    pub code: String,
    /// When it was "sent" (the emulator's clock).
    #[serde(serialize_with = "rfc3339")]
    pub sent_at: DateTime<Utc>,
}

fn rfc3339<S: Serializer>(t: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&crate::views::timestamp(*t))
}

/// The captured emails of one emulator instance, oldest first.
#[derive(Default)]
pub(crate) struct Mailbox {
    messages: Mutex<VecDeque<Email>>,
}

impl Mailbox {
    fn lock(&self) -> std::sync::MutexGuard<'_, VecDeque<Email>> {
        self.messages.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Captures a message and logs it.
    pub(crate) fn deliver(&self, email: Email) {
        tracing::info!(
            to = %email.to,
            kind = email.kind.verification_type(),
            link = %email.link,
            code = %email.code,
            "gotrue-emulator: email captured in the mailbox: {}",
            email.subject
        );
        let mut messages = self.lock();
        if messages.len() >= MAILBOX_CAPACITY {
            messages.pop_front();
        }
        messages.push_back(email);
    }

    /// All messages, or those to one address (compared case-insensitively).
    pub(crate) fn messages(&self, to: Option<&str>) -> Vec<Email> {
        let to = to.map(str::to_lowercase);
        self.lock().iter().filter(|m| to.as_deref().is_none_or(|to| m.to == to)).cloned().collect()
    }

    pub(crate) fn clear(&self) {
        self.lock().clear();
    }
}
