//! The auth section: `SUPABASE_*`, `AUTH_*` (verification, keys, claims, outage, circuit breaker) and
//! `TOKEN_CACHE_*`.

use std::time::Duration;

use jsonwebtoken::Algorithm;
use secrecy::SecretString;
use url::Url;

use super::check::{Checker, Section, is_http_url};
use super::{AppEnv, ServeArgs};

#[derive(Debug, Clone)]
pub struct AuthConfig {
    pub supabase_url: Url,
    pub anon_key: SecretString,
    pub http_timeout: Duration,
    pub startup_key_check: StartupKeyCheck,
    /// Provision confirmed users on first sight and keep their e-mail in step (`crate::principal`).
    pub auto_provision: bool,
    /// Anonymous sign-ins may use the API.
    pub allow_anonymous: bool,
    pub verify_mode: VerifyMode,
    pub keys: JwtKeys,
    pub audience: String,
    pub issuer: String,
    pub leeway_seconds: u64,
    pub cache_ttl: Duration,
    pub negative_ttl: Duration,
    pub cache_max_entries: u64,
    pub outage_mode: OutageMode,
    pub stale_max: Duration,
    /// `AUTH_CLOCK_SKEW_BOUND_SECONDS`: how far the auth service's clock may be from ours.
    pub clock_skew_bound: Duration,
    /// `AUTH_REVALIDATE_SECONDS`: age after which a cached verification is re-verified in the background;
    /// zero: never.
    pub revalidate_after: Duration,
    pub breaker: breaker::BreakerConfig,
}

/// How bearer tokens are verified.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VerifyMode {
    /// Local check, then the token cache, then `GET /auth/v1/user` on a miss: a session ended at the auth
    /// service is refused once a cached entry is re-verified (`AUTH_REVALIDATE_SECONDS`, in the background),
    /// at the latest after `TOKEN_CACHE_TTL_SECONDS`.
    Remote,
    /// Local check and this service's revocation list: no call on the request path (except for a token
    /// issued within `AUTH_CLOCK_SKEW_BOUND_SECONDS` of a global logout); a session ended elsewhere is
    /// refused after the background re-verification while the auth service answers, else at `exp`.
    Local,
}

/// What start-up does when the auth service refuses `SUPABASE_ANON_KEY` (an unreachable auth service is only
/// ever a warning: it may be back before the first request, and refusing to start would make one outage two).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartupKeyCheck {
    /// Refuse to start (the production default).
    Require,
    /// Log the refusal at ERROR and serve (the default elsewhere).
    Warn,
    /// No check.
    Off,
}

/// What an outage of the auth service does to tokens that need it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutageMode {
    /// 503 `AUTH_SERVICE_UNAVAILABLE` for anything not fresh in the cache.
    Closed,
    /// Serve cache entries up to `AUTH_STALE_MAX_SECONDS` past their TTL (never past `exp`, never revoked).
    Cached,
}

/// Where token signatures are checked against.
#[derive(Debug, Clone)]
pub enum JwtKeys {
    /// The auth service's JWKS (ES256 / RS256 by `kid`).
    Jwks { url: String, algorithms: Vec<Algorithm>, max_age: Duration, min_refresh: Duration },
    /// The legacy shared HS256 secret.
    Secret(SecretString),
}

/// The auth service base URL (`<SUPABASE_URL>/auth/v1`).
pub(super) fn base_url(supabase_url: &Url) -> String {
    format!("{}/auth/v1", supabase_url.as_str().trim_end_matches('/'))
}

/// The auth section.
pub(super) fn from_args(args: &ServeArgs, app_env: Option<AppEnv>) -> Section<AuthConfig> {
    let mut c = Checker::default();
    let supabase_url = c.required("SUPABASE_URL", &args.supabase_url, "https://<project>.supabase.co").and_then(
        |raw| match Url::parse(&raw) {
            Ok(u) if is_http_url(&raw) => Some(u),
            _ => {
                c.problem(
                    "SUPABASE_URL",
                    format!("expected an http(s) URL such as https://<project>.supabase.co, got {raw:?}"),
                );
                None
            }
        },
    );
    let anon_key = c.required("SUPABASE_ANON_KEY", &args.supabase_anon_key, "the project's anon or publishable key");
    let supabase_url = supabase_url.unwrap_or_else(|| Url::parse("http://invalid.localhost").expect("static url"));
    let auth_base = base_url(&supabase_url);
    let http_timeout = c.millis("AUTH_HTTP_TIMEOUT_MS", &args.auth_http_timeout_ms, 120_000);
    let keys = keys(&mut c, args, &auth_base);
    let breaker = circuit_breaker(&mut c, args, http_timeout);
    let cache_ttl = c.seconds("TOKEN_CACHE_TTL_SECONDS", &args.token_cache_ttl_seconds, (0, 86_400));
    let startup_key_check = startup_key_check(&mut c, args, app_env);
    // Above TOKEN_CACHE_TTL_SECONDS it has no effect: entries expire first and are verified again on the
    // request path.
    let revalidate_after = c.seconds("AUTH_REVALIDATE_SECONDS", &args.auth_revalidate_seconds, (0, 86_400));
    let auth = AuthConfig {
        anon_key: SecretString::from(anon_key.unwrap_or_default()),
        http_timeout,
        startup_key_check,
        auto_provision: c.boolean("AUTH_AUTO_PROVISION", &args.auth_auto_provision),
        allow_anonymous: c.boolean("AUTH_ALLOW_ANONYMOUS", &args.auth_allow_anonymous),
        verify_mode: c.choice(
            "AUTH_VERIFY_MODE",
            &args.auth_verify_mode,
            &[("remote", VerifyMode::Remote), ("local", VerifyMode::Local)],
        ),
        keys,
        audience: c.text("AUTH_JWT_AUDIENCE", &args.auth_jwt_audience),
        issuer: c.optional("AUTH_JWT_ISSUER", &args.auth_jwt_issuer).map_or(auth_base, str::to_owned),
        leeway_seconds: c.number("AUTH_JWT_LEEWAY_SECONDS", &args.auth_jwt_leeway_seconds, (0, 300)),
        cache_ttl,
        negative_ttl: c.seconds("TOKEN_CACHE_NEGATIVE_TTL_SECONDS", &args.token_cache_negative_ttl_seconds, (0, 3_600)),
        cache_max_entries: c.number("TOKEN_CACHE_MAX_ENTRIES", &args.token_cache_max_entries, (1, 100_000_000)),
        outage_mode: c.choice(
            "AUTH_OUTAGE_MODE",
            &args.auth_outage_mode,
            &[("closed", OutageMode::Closed), ("cached", OutageMode::Cached)],
        ),
        stale_max: c.seconds("AUTH_STALE_MAX_SECONDS", &args.auth_stale_max_seconds, (0, 86_400)),
        clock_skew_bound: c.seconds("AUTH_CLOCK_SKEW_BOUND_SECONDS", &args.auth_clock_skew_bound_seconds, (0, 3_600)),
        revalidate_after,
        breaker,
        supabase_url,
    };
    c.finish(auth)
}

/// `AUTH_STARTUP_KEY_CHECK`: `require` in production and `warn` elsewhere unless set.
fn startup_key_check(c: &mut Checker, args: &ServeArgs, app_env: Option<AppEnv>) -> StartupKeyCheck {
    const VARIABLE: &str = "AUTH_STARTUP_KEY_CHECK";
    if c.optional(VARIABLE, &args.auth_startup_key_check).is_none() {
        return if app_env == Some(AppEnv::Production) { StartupKeyCheck::Require } else { StartupKeyCheck::Warn };
    }
    c.choice(
        VARIABLE,
        &args.auth_startup_key_check,
        &[("require", StartupKeyCheck::Require), ("warn", StartupKeyCheck::Warn), ("off", StartupKeyCheck::Off)],
    )
}

/// The legacy HS256 secret when `AUTH_JWT_SECRET` is set, else the JWKS and its refresh settings.
fn keys(c: &mut Checker, args: &ServeArgs, auth_base: &str) -> JwtKeys {
    if let Some(secret) = c.optional("AUTH_JWT_SECRET", &args.auth_jwt_secret) {
        if secret.len() < 32 {
            c.problem("AUTH_JWT_SECRET", "must be at least 32 characters (value not shown)");
        }
        return JwtKeys::Secret(SecretString::from(secret.to_owned()));
    }
    JwtKeys::Jwks {
        url: c.url("AUTH_JWKS_URL", &args.auth_jwks_url, format!("{auth_base}/.well-known/jwks.json")),
        algorithms: algorithms(c, args),
        max_age: c.seconds("AUTH_JWKS_CACHE_SECONDS", &args.auth_jwks_cache_seconds, (1, 86_400)),
        min_refresh: c.seconds("AUTH_JWKS_MIN_REFRESH_SECONDS", &args.auth_jwks_min_refresh_seconds, (0, 3_600)),
    }
}

/// `AUTH_JWT_ALGORITHMS`: a comma-separated subset of the asymmetric algorithms Supabase signs with.
fn algorithms(c: &mut Checker, args: &ServeArgs) -> Vec<Algorithm> {
    let raw = c.text("AUTH_JWT_ALGORITHMS", &args.auth_jwt_algorithms);
    let mut out = Vec::new();
    for name in raw.split(',').map(|n| n.trim().to_ascii_uppercase()) {
        match name.as_str() {
            "ES256" => out.push(Algorithm::ES256),
            "RS256" => out.push(Algorithm::RS256),
            _ => c.problem(
                "AUTH_JWT_ALGORITHMS",
                format!(
                    "expected a comma-separated list of ES256, RS256 (HS256 only via AUTH_JWT_SECRET), got {name:?}"
                ),
            ),
        }
    }
    out
}

/// `AUTH_BREAKER_*`, with the per-call timeout of `AUTH_HTTP_TIMEOUT_MS`.
fn circuit_breaker(c: &mut Checker, args: &ServeArgs, http_timeout: Duration) -> breaker::BreakerConfig {
    let breaker = breaker::BreakerConfig {
        timeout: Some(http_timeout),
        reset_timeout: c.millis("AUTH_BREAKER_RESET_TIMEOUT_MS", &args.auth_breaker_reset_timeout_ms, 3_600_000),
        error_threshold_percentage: f64::from(c.number::<u32>(
            "AUTH_BREAKER_ERROR_THRESHOLD_PERCENT",
            &args.auth_breaker_error_threshold_percent,
            (0, 100),
        )),
        volume_threshold: c.number(
            "AUTH_BREAKER_VOLUME_THRESHOLD",
            &args.auth_breaker_volume_threshold,
            (1, 1_000_000),
        ),
        rolling_window: c.millis("AUTH_BREAKER_WINDOW_MS", &args.auth_breaker_window_ms, 3_600_000),
        buckets: c.number("AUTH_BREAKER_BUCKETS", &args.auth_breaker_buckets, (1, 1_000)),
        enabled: c.boolean("AUTH_BREAKER_ENABLED", &args.auth_breaker_enabled),
    };
    if let Err(e) = breaker.validate() {
        c.problem("AUTH_BREAKER_WINDOW_MS", format!("the breaker window does not fit its buckets: {e}"));
    }
    breaker
}
