//! A faithful emulator of Supabase Auth (GoTrue) as a backend server sees
//! it, for the product's dev mode and integration tests.
//!
//! It serves the same paths (`/auth/v1/...`), headers, JSON shapes, error
//! codes, JWT claims and JWKS as GoTrue behind the Supabase API gateway,
//! keeps all state in memory, and can be told to misbehave (latency, 5xx,
//! hangs, refused connections, a clock ahead of or behind real time) through
//! [`Faults`] or `POST /__emulator/faults`. Sessions end the ways they do in
//! GoTrue: `POST /logout` by scope, `PUT /user` with a new password (every
//! other session), admin bans and deletes.
//!
//! The flows that need an email (magic link and code through `POST /otp`,
//! `POST /recover`, `POST /resend`, an email change through `PUT /user`,
//! `POST /invite`) put the email in a mailbox instead of sending it
//! ([`Emulator::mailbox`], `GET /__emulator/mailbox`); its link opens
//! `GET /verify`, which redirects with the session in the URL fragment as
//! GoTrue's implicit flow does, and its code goes to `POST /verify`.
//! `POST /admin/generate_link` hands the same link back without sending.
//! The project's API keys are accepted in both of Supabase's forms
//! ([`Emulator::api_keys`]), and browsers may call from any origin (CORS).
//!
//! ```no_run
//! # async fn demo() -> anyhow::Result<()> {
//! use gotrue_emulator::{Emulator, EmulatorConfig};
//! let emulator = Emulator::start(EmulatorConfig::default(), "127.0.0.1:0".parse()?).await?;
//! let user = emulator.create_user("ada@example.com", "correct horse")?;
//! let session = emulator.sign_in("ada@example.com", "correct horse")?;
//! assert_eq!(session.user.id, user.id);
//! // point the product at emulator.base_url() with emulator.anon_key()
//! # Ok(()) }
//! ```
//!
//! Modules, by responsibility: [`config`](EmulatorConfig) (start-up
//! options), `keys` (signing, JWKS, verification), `store` (users, sessions,
//! refresh tokens), `auth` (GoTrue's behaviour, a file per flow), `views`
//! (JSON shapes), `errors` (error bodies), `routes` (HTTP and the gateway),
//! `faults`, `stats`, `mailbox` (captured emails), `server` (the accept
//! loop).

#![warn(unreachable_pub)]

mod auth;
mod config;
mod errors;
mod faults;
mod go_duration;
mod keys;
mod mailbox;
mod routes;
mod server;
mod state;
mod stats;
mod store;
mod views;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::Value;
use tokio::sync::{mpsc, oneshot};
use uuid::Uuid;

pub use config::{EmulatorConfig, MailSettings, Signing, SignupSettings};
pub use errors::ApiError;
pub use faults::{DEFAULT_ERROR_STATUS, FaultSettings, Faults, MAX_CLOCK_SKEW_SECONDS};
pub use mailbox::{Email, EmailKind, MAILBOX_CAPACITY};
pub use stats::Stats;

use auth::{AUTHENTICATED, AdminUserParams, Issued};
use faults::Control;
use state::AppState;
use store::UserRecord;

/// A user, as the in-process API reports it.
#[derive(Debug, Clone, PartialEq)]
pub struct User {
    /// `auth.users.id`, the `sub` of the user's tokens.
    pub id: Uuid,
    /// Lower-cased email address.
    pub email: String,
    /// Database role put in the `role` claim (`authenticated`).
    pub role: String,
    /// `app_metadata` (provider information plus anything set by admins).
    pub app_metadata: Value,
    /// `user_metadata`.
    pub user_metadata: Value,
    /// Creation time.
    pub created_at: DateTime<Utc>,
    /// When the email address was confirmed, if it was.
    pub email_confirmed_at: Option<DateTime<Utc>>,
    /// Created by an anonymous sign-in.
    pub is_anonymous: bool,
    /// End of the current ban, if any was set.
    pub banned_until: Option<DateTime<Utc>>,
}

impl From<&UserRecord> for User {
    fn from(record: &UserRecord) -> Self {
        Self {
            id: record.id,
            email: record.email.clone(),
            role: record.role.clone(),
            app_metadata: Value::Object(record.app_metadata.clone()),
            user_metadata: Value::Object(record.user_metadata.clone()),
            created_at: record.created_at,
            email_confirmed_at: record.email_confirmed_at,
            is_anonymous: record.is_anonymous,
            banned_until: record.banned_until,
        }
    }
}

/// A signed-in session, like the body of a successful password grant.
#[derive(Debug, Clone, PartialEq)]
pub struct Session {
    /// The access token (JWT).
    pub access_token: String,
    /// The refresh token (12 characters, single use).
    pub refresh_token: String,
    /// `exp` of the access token, in Unix seconds.
    pub expires_at: i64,
    /// Seconds until `expires_at` when issued.
    pub expires_in: i64,
    /// The `session_id` claim.
    pub session_id: Uuid,
    /// The signed-in user.
    pub user: User,
}

impl From<Issued> for Session {
    fn from(issued: Issued) -> Self {
        Self {
            user: User::from(&issued.user),
            access_token: issued.access_token,
            refresh_token: issued.refresh_token,
            expires_at: issued.expires_at,
            expires_in: issued.expires_in,
            session_id: issued.session_id,
        }
    }
}

struct Inner {
    state: Arc<AppState>,
    base_url: String,
    control: mpsc::UnboundedSender<Control>,
}

/// A running emulator. Cheap to clone; the server stops when
/// [`Emulator::shutdown`] is called or the last handle is dropped.
#[derive(Clone)]
pub struct Emulator {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Emulator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Emulator").field("base_url", &self.inner.base_url).finish_non_exhaustive()
    }
}

fn base_url_for(addr: SocketAddr) -> String {
    let ip = match addr.ip() {
        ip if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        ip => ip,
    };
    match ip {
        IpAddr::V4(v4) => format!("http://{v4}:{}", addr.port()),
        IpAddr::V6(v6) => format!("http://[{v6}]:{}", addr.port()),
    }
}

impl Emulator {
    /// Binds `addr` (port 0 picks a free port) and starts serving.
    pub async fn start(config: EmulatorConfig, addr: SocketAddr) -> anyhow::Result<Emulator> {
        let keys = keys::Keys::new(&config.signing)?;
        let listener = tokio::net::TcpListener::bind(addr).await?;
        let bound = listener.local_addr()?;
        let listener = listener.into_std()?;
        let base_url = base_url_for(bound);
        let (control_tx, control_rx) = mpsc::unbounded_channel();
        let faults = Faults::new(control_tx.downgrade());
        let legacy_anon_key = legacy_api_key(&keys, "anon")?;
        let legacy_service_role_key = legacy_api_key(&keys, "service_role")?;
        let mut state = AppState::new(
            keys,
            config.anon_key,
            config.service_role_key,
            config.access_token_ttl,
            format!("{base_url}/auth/v1"),
            config.signup,
            faults.clone(),
        );
        state.legacy_anon_key = legacy_anon_key;
        state.legacy_service_role_key = legacy_service_role_key;
        state.base_url = base_url.clone();
        state.mail = config.mail;
        let state = Arc::new(state);
        let app = routes::router(state.clone());
        server::spawn(listener, app, faults, control_rx).await?;
        tracing::info!(%base_url, "gotrue-emulator listening");
        Ok(Emulator { inner: Arc::new(Inner { state, base_url, control: control_tx }) })
    }

    fn state(&self) -> &AppState {
        &self.inner.state
    }

    /// The Supabase project URL, `http://127.0.0.1:<port>`.
    pub fn base_url(&self) -> String {
        self.inner.base_url.clone()
    }

    /// `<base_url>/auth/v1`, the `iss` of issued tokens.
    pub fn issuer(&self) -> String {
        self.state().issuer.clone()
    }

    /// The anon (publishable) API key as configured: by default the new
    /// form, `sb_publishable_…`.
    pub fn anon_key(&self) -> &str {
        &self.inner.state.anon_key
    }

    /// The service-role (secret) API key as configured: by default the new
    /// form, `sb_secret_…`.
    pub fn service_role_key(&self) -> &str {
        &self.inner.state.service_role_key
    }

    /// The project's API keys in both of Supabase's forms; every one of them
    /// is accepted as `apikey` (and as a bearer standing for its role).
    pub fn api_keys(&self) -> ApiKeys {
        let state = self.state();
        ApiKeys {
            publishable: state.anon_key.clone(),
            secret: state.service_role_key.clone(),
            anon: state.legacy_anon_key.clone(),
            service_role: state.legacy_service_role_key.clone(),
        }
    }

    /// Every email captured so far, oldest first (see [`Email`]).
    pub fn mailbox(&self) -> Vec<Email> {
        self.state().mailbox.messages(None)
    }

    /// The captured emails to one address, oldest first.
    pub fn mailbox_for(&self, to: &str) -> Vec<Email> {
        self.state().mailbox.messages(Some(to))
    }

    /// Empties the mailbox.
    pub fn clear_mailbox(&self) {
        self.state().mailbox.clear();
    }

    /// The document served at `/auth/v1/.well-known/jwks.json`.
    pub fn jwks(&self) -> Value {
        self.state().keys.jwks()
    }

    /// The `kid` of the signing key (`None` in HS256 mode).
    pub fn kid(&self) -> Option<String> {
        self.state().keys.kid()
    }

    /// The JWT header of issued access tokens (`alg`, `typ: JWT`, `kid`),
    /// a starting point for [`Emulator::mint_token`].
    pub fn token_header(&self) -> jsonwebtoken::Header {
        self.state().keys.header()
    }

    /// Creates a confirmed email/password user, as `POST /admin/users` with
    /// `email_confirm: true` does. Fails with `email_exists` for a taken
    /// email.
    pub fn create_user(&self, email: &str, password: &str) -> anyhow::Result<User> {
        let user = self.state().admin_create_user(AdminUserParams {
            email: email.to_owned(),
            password: Some(password.to_owned()),
            email_confirm: true,
            ..AdminUserParams::default()
        })?;
        Ok(User::from(&user))
    }

    /// Creates an email/password user whose address is not confirmed, as
    /// `POST /admin/users` without `email_confirm` does: the password grant
    /// refuses it (`email_not_confirmed`) until [`Emulator::confirm_email`].
    pub fn create_unconfirmed_user(&self, email: &str, password: &str) -> anyhow::Result<User> {
        let user = self.state().admin_create_user(AdminUserParams {
            email: email.to_owned(),
            password: Some(password.to_owned()),
            ..AdminUserParams::default()
        })?;
        Ok(User::from(&user))
    }

    /// Confirms a user's email address, as its confirmation link does.
    pub fn confirm_email(&self, id: Uuid) -> anyhow::Result<()> {
        Ok(self.state().confirm_email(id)?)
    }

    /// Signs in anonymously, like `POST /signup` with neither email nor
    /// phone: a new user with `is_anonymous: true`. Fails with
    /// `anonymous_provider_disabled` unless [`SignupSettings::anonymous`].
    pub fn sign_in_anonymously(&self) -> anyhow::Result<Session> {
        Ok(self.state().signup_anonymously(None)?.into())
    }

    /// A session for the user as a sign-in the emulator does not serve
    /// (OAuth, magic link) would start it: no password, and no check that
    /// the address is confirmed (GoTrue's OAuth callback skips it when
    /// `GOTRUE_MAILER_ALLOW_UNVERIFIED_EMAIL_SIGN_INS` is on). `amr` method
    /// `oauth`.
    pub fn start_session(&self, id: Uuid) -> anyhow::Result<Session> {
        Ok(self.state().start_session(id, "oauth")?.into())
    }

    /// Signs in like `POST /token?grant_type=password`, creating a session.
    pub fn sign_in(&self, email: &str, password: &str) -> anyhow::Result<Session> {
        Ok(self.state().password_grant(email, "", password)?.into())
    }

    /// Redeems a refresh token like `POST /token?grant_type=refresh_token`.
    pub fn refresh(&self, refresh_token: &str) -> anyhow::Result<Session> {
        Ok(self.state().refresh_grant(refresh_token)?.into())
    }

    /// The current state of a user, if it exists.
    pub fn user(&self, id: Uuid) -> Option<User> {
        self.state().store().user(id).map(User::from)
    }

    /// Number of live sessions of a user.
    pub fn session_count(&self, id: Uuid) -> usize {
        self.state().store().session_count(id)
    }

    /// Bans a user for `duration` from now, or lifts the ban with `None`.
    /// Like GoTrue, banning keeps the user's sessions; they are refused
    /// (`user_banned`) while the ban lasts.
    pub fn ban_user(&self, id: Uuid, duration: Option<Duration>) -> anyhow::Result<()> {
        let until = match duration {
            None => None,
            Some(d) => {
                let delta = chrono::TimeDelta::from_std(d)?;
                Some(
                    self.state()
                        .now()
                        .checked_add_signed(delta)
                        .ok_or_else(|| anyhow::anyhow!("ban duration out of range"))?,
                )
            }
        };
        Ok(self.state().ban_user(id, until)?)
    }

    /// Deletes a user with its sessions and refresh tokens.
    pub fn delete_user(&self, id: Uuid) -> anyhow::Result<()> {
        Ok(self.state().delete_user(id)?)
    }

    /// Signs arbitrary claims under an arbitrary header with the emulator's
    /// key, for forged, expired or otherwise tweaked tokens in tests.
    ///
    /// # Panics
    /// If `header.alg` cannot be used with the emulator's key (e.g. `HS256`
    /// in ES256 mode): that is a bug in the test, not a runtime condition.
    pub fn mint_token(&self, header: jsonwebtoken::Header, claims: &Value) -> String {
        match self.state().keys.sign(&header, claims) {
            Ok(token) => token,
            Err(e) => panic!(
                "mint_token: cannot sign a {:?} token with the emulator's {:?} key: {e}",
                header.alg,
                self.state().keys.algorithm()
            ),
        }
    }

    /// The claims of the session's access token, to tweak and re-sign with
    /// [`Emulator::mint_token`].
    pub fn claims_for(&self, session: &Session) -> Value {
        keys::unverified_claims(&session.access_token).unwrap_or(Value::Null)
    }

    /// The fault-injection handle.
    pub fn faults(&self) -> Faults {
        self.state().faults.clone()
    }

    /// A snapshot of the per-endpoint request counters.
    pub fn stats(&self) -> Stats {
        self.state().stats.snapshot()
    }

    /// Zeroes the request counters.
    pub fn reset_stats(&self) {
        self.state().stats.reset();
    }

    /// Stops serving: closes the socket and every connection. Idempotent.
    pub async fn shutdown(&self) {
        let (ack, done) = oneshot::channel();
        if self.inner.control.send(Control::Shutdown { ack }).is_ok() {
            let _ = done.await;
        }
    }
}

/// The API keys of the emulated project, in both of Supabase's forms.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiKeys {
    /// The new-style publishable key (`EmulatorConfig::anon_key`).
    pub publishable: String,
    /// The new-style secret key (`EmulatorConfig::service_role_key`).
    pub secret: String,
    /// The legacy anon key: a JWT with `role: anon`, signed with the
    /// emulator's key, valid for ten years.
    pub anon: String,
    /// The legacy service-role key: a JWT with `role: service_role`.
    pub service_role: String,
}

/// Project ref put in the legacy keys' `ref` claim.
const PROJECT_REF: &str = "emulator";

/// A legacy JWT API key for `role`, shaped like Supabase's (`iss: supabase`,
/// `ref`, `role`, `iat`, `exp`).
fn legacy_api_key(keys: &keys::Keys, role: &str) -> anyhow::Result<String> {
    let iat = Utc::now().timestamp();
    let claims = serde_json::json!({
        "iss": "supabase",
        "ref": PROJECT_REF,
        "role": role,
        "iat": iat,
        "exp": iat + 10 * 365 * 24 * 3600,
    });
    Ok(keys.sign(&keys.header(), &claims)?)
}

/// The audience of every token the emulator issues.
pub const AUDIENCE: &str = AUTHENTICATED;
