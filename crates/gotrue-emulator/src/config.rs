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
}

impl Default for EmulatorConfig {
    fn default() -> Self {
        Self {
            signing: Signing::Es256,
            anon_key: format!("sb_publishable_{}", random_token(22)),
            service_role_key: format!("sb_secret_{}", random_token(22)),
            access_token_ttl: Duration::from_secs(3600),
        }
    }
}

pub(crate) fn random_token(len: usize) -> String {
    rand::thread_rng().sample_iter(&Alphanumeric).take(len).map(char::from).collect()
}
