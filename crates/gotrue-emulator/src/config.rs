//! Start-up options of an emulator instance.
//!
//! Kept apart from the server so that the app's dev mode can build a config
//! from its own settings without touching anything else. The defaults mirror
//! a fresh Supabase project: asymmetric ES256 signing, new-style
//! `sb_publishable_…` / `sb_secret_…` API keys and one-hour access tokens.

use std::time::Duration;

use rand::Rng;
use rand::distributions::Alphanumeric;

/// How access tokens are signed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Signing {
    /// ES256 with a P-256 key generated at start, published in the JWKS under a `kid`.
    Es256,
    /// Legacy HS256 with a shared secret; the JWKS is then empty.
    Hs256 {
        /// The project's JWT secret.
        secret: String,
    },
}

/// Options of [`crate::Emulator::start`].
#[derive(Debug, Clone)]
pub struct EmulatorConfig {
    /// Access token signing mode.
    pub signing: Signing,
    /// Value accepted in the `apikey` header as the anon/publishable key.
    pub anon_key: String,
    /// Value accepted as the service-role/secret key (admin endpoints).
    pub service_role_key: String,
    /// Lifetime of issued access tokens (`exp - iat`).
    pub access_token_ttl: Duration,
    /// How `POST /signup` treats new users.
    pub signup: SignupSettings,
    /// How emails (confirmation, magic link, recovery, ...) are built.
    pub mail: MailSettings,
}

/// The project's sign-up settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SignupSettings {
    /// `GOTRUE_MAILER_AUTOCONFIRM`: a new email user is confirmed and signed
    /// in at once (on by default here, so tests need no confirmation step);
    /// off, sign-up creates the user unconfirmed and starts no session.
    pub autoconfirm: bool,
    /// `GOTRUE_EXTERNAL_ANONYMOUS_USERS_ENABLED`: a sign-up with neither
    /// email nor phone creates an anonymous user (off by default, as in
    /// GoTrue).
    pub anonymous: bool,
}

impl Default for SignupSettings {
    fn default() -> Self {
        Self { autoconfirm: true, anonymous: false }
    }
}

/// The project's email settings, as GoTrue's `GOTRUE_SITE_URL` and
/// `GOTRUE_MAILER_*` / `GOTRUE_SMTP_MAX_FREQUENCY` set them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MailSettings {
    /// `GOTRUE_SITE_URL`: where a verification link redirects when the
    /// request named no (valid) `redirect_to`. Default: the Supabase CLI's
    /// `http://127.0.0.1:3000`.
    pub site_url: String,
    /// `GOTRUE_MAILER_OTP_EXP`: how long an emailed link or code stays
    /// valid (GoTrue's default: one day).
    pub otp_ttl: Duration,
    /// `GOTRUE_SMTP_MAX_FREQUENCY`: the least time between two emails of
    /// the same kind to one user; sooner is 429 `over_email_send_rate_limit`
    /// (GoTrue's default: 60 s; zero turns the limit off).
    pub max_frequency: Duration,
}

impl Default for MailSettings {
    fn default() -> Self {
        Self {
            site_url: "http://127.0.0.1:3000".to_owned(),
            otp_ttl: Duration::from_secs(86_400),
            max_frequency: Duration::from_secs(60),
        }
    }
}

impl Default for EmulatorConfig {
    fn default() -> Self {
        Self {
            signing: Signing::Es256,
            anon_key: format!("sb_publishable_{}", random_token(22)),
            service_role_key: format!("sb_secret_{}", random_token(22)),
            access_token_ttl: Duration::from_secs(3600),
            signup: SignupSettings::default(),
            mail: MailSettings::default(),
        }
    }
}

pub(crate) fn random_token(len: usize) -> String {
    rand::thread_rng().sample_iter(&Alphanumeric).take(len).map(char::from).collect()
}
